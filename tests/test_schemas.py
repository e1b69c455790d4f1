"""Every JSON the CLI prints (and every file format of the vault) validates against its schema."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest

from evidence_vault import schemas
from evidence_vault.errors import VaultFormatError
from tests.conftest import SAMPLE_FILES, Cli, object_path
from tests.paths import CORPUS, REPO

MORE_FILES = (
    CORPUS / "images" / "Issue 263 dotnet.heic",
    CORPUS / "images" / "png_with_exif_and_gps.png",
    CORPUS / "video" / "Issue 515 (java).mp4",
    CORPUS / "video" / "with-gps.mp4",
    CORPUS / "malformed" / "broken.png",
)


def check(name: str, value: Any) -> None:
    assert schemas.validate(name, value) is True


def test_every_schema_is_valid_2020_12_with_id_and_description() -> None:
    files = sorted((REPO / "schemas").glob("*.schema.json"))
    assert {p.name.removesuffix(".schema.json") for p in files} == set(schemas.names())
    for expected in ("event", "vault", "report", "item", "add-result", "identity", "metadata-object"):
        assert expected in schemas.names()
    for name in schemas.names():
        schema = schemas.load(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(name) and schema["description"]


def test_unknown_schema_name() -> None:
    with pytest.raises(Exception, match="no schema named"):
        schemas.load("nope")


def test_real_cli_output_validates(cli: Cli, tmp_path: Path) -> None:
    res = cli("key", "new", "--name", "Schema Tester", "--email", "s@example.org", "--json")
    assert res.code == 0, res.stderr
    check("identity", res.json())
    fp = res.json()["fingerprint"]
    res = cli("key", "new", "--name", "Second", "--no-passphrase", "--json")
    check("identity", res.json())
    res = cli("key", "list", "--json")
    assert res.code == 0 and len(res.json()["identities"]) == 2
    check("key-list", res.json())
    res = cli("key", "show", fp, "--json")
    assert res.code == 0
    check("identity", res.json())

    vault = tmp_path / "v"
    res = cli("init", vault, "--json")
    assert res.code == 0, res.stderr
    check("init-result", res.json())
    check("vault", json.loads((vault / "vault.json").read_text("utf-8")))

    folder = tmp_path / "dir"
    folder.mkdir()
    shutil.copyfile(SAMPLE_FILES[0], folder / "copy.jpg")
    res = cli(
        "--vault",
        vault,
        "add",
        "--json",
        "--tag",
        "a",
        "--note",
        "n",
        "--source",
        "s",
        "--captured-by",
        "c",
        *SAMPLE_FILES,
        *MORE_FILES,
        folder,
        folder / "copy.jpg",
        tmp_path / "missing.jpg",
    )
    assert res.code == 1, res.stderr  # the missing file
    results = res.json_lines()
    assert {r["status"] for r in results} == {"added", "duplicate", "skipped", "failed"}
    for r in results:
        check("add-result", r)
    added = [r for r in results if r["status"] == "added"]
    assert len(added) == len(SAMPLE_FILES) + len(MORE_FILES)
    assert any(r["metadata_errors"] for r in added)  # broken.png

    res = cli("--vault", vault, "ls", "--json")
    assert res.code == 0
    listing = res.json()
    assert len(listing) == len(added)
    for item in listing:
        check("item", item)
        res = cli("--vault", vault, "show", "--json", item["id"])
        assert res.code == 0, res.stderr
        detail = res.json()
        check("item", detail)
        assert detail["events"]
        doc = json.loads(object_path(vault, item["metadata_object"]).read_bytes())
        check("metadata-object", doc)

    res = cli("--vault", vault, "log", "--json")
    events = res.json_lines()
    assert len(events) == len(added) + 1
    for event in events:
        check("event", event)

    res = cli("--vault", vault, "key", "list", "--json")
    assert res.code == 0 and res.json()["authorized"][0]["fingerprint"] == fp
    check("key-list", res.json())
    res = cli("--vault", vault, "verify", "--json")
    assert res.code == 0
    check("report", res.json())
    res = cli("--vault", vault, "doctor", "--json")
    check("doctor-result", res.json())

    # A report full of findings validates too.
    os.unlink(object_path(vault, listing[0]["id"]))
    lines = (vault / "log.jsonl").read_bytes().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    (vault / "log.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    res = cli("--vault", vault, "verify", "--json", "--trust", "SHA256:" + "A" * 43)
    assert res.code == 1
    report = res.json()
    assert report["counts"]["fail"] >= 4
    check("report", report)


def test_schemas_reject_what_the_code_never_emits(filled_vault: Path) -> None:
    line = (filled_vault / "log.jsonl").read_bytes().splitlines()[1]
    event = json.loads(line)
    check("event", event)
    bad_cases: list[tuple[str, Any]] = [
        ("event", {**event, "extra": 1}),
        ("event", {**event, "seq": -1}),
        ("event", {**event, "prev": "sha256:xyz"}),
        ("event", {**event, "time": "2023-12-22 18:03:11"}),
        ("event", {**event, "data": {**event["data"], "size": 1.5}}),
        ("event", {**event, "data": {**event["data"], "public": {"gps_lat": "1.000000"}}}),
        (
            "add-result",
            {
                "path": "x",
                "status": "added",
                "id": None,
                "size": None,
                "media_type": None,
                "seq": None,
                "message": None,
                "metadata_errors": [],
            },
        ),
        ("identity", {"fingerprint": "md5:00"}),
    ]
    for name, value in bad_cases:
        with pytest.raises(VaultFormatError, match=f"schema '{name}'"):
            schemas.validate(name, value)


def test_validate_without_jsonschema_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_jsonschema(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "jsonschema":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jsonschema)
    assert schemas.validate("event", {"not": "an event"}) is False
