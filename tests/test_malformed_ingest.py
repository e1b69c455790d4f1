"""Every file of corpus/malformed/ is ingested in one `add` run: no traceback, problems recorded."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli
from tests.paths import CORPUS

MALFORMED = sorted(p for p in (CORPUS / "malformed").iterdir() if p.is_file())


def test_add_all_malformed_files(run: Cli, cli: Cli, vault: Path, identity: str) -> None:
    assert len(MALFORMED) >= 30
    res = run("--vault", vault, "add", "--json", *MALFORMED, timeout=300)
    assert "Traceback" not in res.stderr
    assert res.code == 0, res.stderr
    results = {r["path"]: r for r in (json.loads(line) for line in res.stdout.splitlines())}
    assert set(results) == {str(p) for p in MALFORMED}
    assert {r["status"] for r in results.values()} == {"added"}
    assert len({r["id"] for r in results.values()}) == len(MALFORMED)

    # Extraction problems are recorded, never fatal; the signed event carries the same list.
    with_errors = {p: r for p, r in results.items() if r["metadata_errors"]}
    for name in ("broken.png", "30-type_error.jpg"):
        assert str(CORPUS / "malformed" / name) in with_errors, name
    # Matroska UIDs beyond 2**53 are kept as text (RFC 8785 cannot sign such integers).
    mkv = results[str(CORPUS / "malformed" / "block_ends_beyond_cluster.mkv")]
    assert mkv["media_type"] == "video/x-matroska"
    events = {e["data"]["item"]: e for e in cli("--vault", vault, "log", "--json").json_lines()[1:]}
    for r in results.values():
        assert events[r["id"]]["data"]["extraction_errors"] == r["metadata_errors"]
        assert events[r["id"]]["data"]["size"] == (Path(r["path"]).stat().st_size)

    # Hostile headers produce bounded, plausible metadata (no decompression of the bomb).
    bomb = cli("--vault", vault, "show", "--json", CORPUS / "malformed" / "decompression_bomb.gif").json()
    assert bomb["media_type"] == "image/gif"
    fuzzed = cli(
        "--vault",
        vault,
        "show",
        "--json",
        CORPUS / "malformed" / "crash-167ecb9d69e6ef44bff716199a9f012a07031c86.fuzzed",
    ).json()
    assert fuzzed["media_type"] == "video/mp4"  # sniffed from content, not the extension

    res = cli("--vault", vault, "verify", "--json", "--trust", identity)
    assert res.code == 0, res.stdout
    assert res.json()["findings"] == []
    assert res.json()["stats"]["items"] == len(MALFORMED)


def test_add_malformed_human_output(run: Cli, vault: Path) -> None:
    res = run("--vault", vault, "add", *MALFORMED, timeout=300)
    assert res.code == 0
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert f"{len(MALFORMED)} added, 0 already present, 0 failed, 0 skipped" in res.stderr
