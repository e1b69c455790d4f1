"""Export: selective disclosure, redaction, the export event, BagIt interop, VERIFY.md verbatim, import."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import commitments
from evidence_vault.bagit import validate_bag
from tests.conftest import SAMPLE_FILES, Cli
from tests.paths import CORPUS
from tests.servers.bitcoind import BitcoindServer
from tests.servers.ots_calendar import CalendarServer
from tests.servers.tsa import LocalTSA
from tests.stamping import stamp_vault

GPS_IMAGES = (CORPUS / "images" / "Apple iPhone 4.jpg", CORPUS / "images" / "DSCN0010.jpg")
GPS_VIDEO = CORPUS / "video" / "with-gps.mov"
EXPORTED_NAME = "exported-one.jpg"


def codes(report: dict[str, Any], level: str = "FAIL") -> set[str]:
    return {f["code"] for f in report["findings"] if f["level"] == level}


def ids_by_name(cli: Cli, vault: Path) -> dict[str, dict[str, Any]]:
    res = cli("--vault", vault, "ls", "--json")
    assert res.code == 0, res.stderr
    return {i["name"]: i for i in res.json()}


def metadata_fields(vault: Path, item: dict[str, Any]) -> dict[str, Any]:
    hex_id = item["metadata_object"].removeprefix("sha256:")
    doc = json.loads((vault / "objects" / "sha256" / hex_id[:2] / hex_id).read_bytes())
    return {k: v["value"] for k, v in doc["fields"].items()}


@pytest.fixture
def fifty(cli: Cli, vault: Path, tmp_path: Path) -> Path:
    """A vault with 50 items: the one to export, 3 real GPS-tagged media and 46 other files, all tagged."""
    src = tmp_path / "src"
    src.mkdir()
    (src / EXPORTED_NAME).write_bytes((CORPUS / "images" / "Canon_40D.jpg").read_bytes())
    res = cli("--vault", vault, "add", src / EXPORTED_NAME, "--tag", "case-public")
    assert res.code == 0, res.stderr
    others = []
    for n in range(46):
        p = src / f"victim-statement-{n:02d}-Nadia.txt"
        p.write_text(f"withheld statement {n} of a person at a secret address\n")
        others.append(p)
    res = cli(
        "--vault",
        vault,
        "add",
        *others,
        *GPS_IMAGES,
        GPS_VIDEO,
        "--tag",
        "secret-op-nightingale",
        "--note",
        "free text about a victim",
    )
    assert res.code == 0, res.stderr
    assert cli("--vault", vault, "checkpoint").code == 0
    assert len(ids_by_name(cli, vault)) == 50
    return vault


def bag_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def secrets_of(cli: Cli, vault: Path) -> list[str]:
    """Strings that would betray a withheld item: ids, names, paths, metadata values, tags, metadata ids."""
    out = ["secret-op-nightingale", "free text about a victim", "Nadia", "victim-statement"]
    for name, item in ids_by_name(cli, vault).items():
        if name == EXPORTED_NAME:
            continue
        out += [item["id"].removeprefix("sha256:"), name, item["metadata_object"].removeprefix("sha256:")]
        for key, value in metadata_fields(vault, item).items():
            if key.startswith("gps") or key in ("original_path", "original_name"):
                out.append(str(value))
    return out


def assert_nothing_leaks(blobs: list[tuple[str, bytes]], needles: list[str]) -> None:
    for where, data in blobs:
        for needle in needles:
            for form in {needle, needle.replace("/", "\\/"), json.dumps(needle)[1:-1]}:
                assert form.encode() not in data, f"{needle!r} leaked in {where}"


def test_export_one_of_fifty_reveals_only_that_item(
    cli: Cli, fifty: Path, tmp_path: Path, identity: str
) -> None:
    items = ids_by_name(cli, fifty)
    target = items[EXPORTED_NAME]["id"]
    bag = tmp_path / "bag"
    res = cli("--vault", fifty, "export", target[7:19], "--out", bag, "--json")
    assert res.code == 0, res.stderr
    out = res.json()
    assert out["items"] == [target] and out["names"] == {target: EXPORTED_NAME}
    assert [p.relative_to(bag).as_posix() for p in (bag / "data").iterdir()] == [f"data/{EXPORTED_NAME}"]
    log = [json.loads(line) for line in (bag / "evidence" / "log.jsonl").read_text().splitlines()]
    withheld = [e for e in log if e.get("withheld")]
    assert len(log) == 52 and out["withheld"] == len(withheld) == 49  # 49 ingests; genesis, checkpoint shown
    assert all(set(e) == {"seq", "withheld", "line_sha256", "leaf_hash"} for e in withheld)
    # No name, path, metadata value, tag or hash of a withheld file anywhere in the bag, nor in the zip.
    needles = secrets_of(cli, fifty)
    assert_nothing_leaks([(p.as_posix(), p.read_bytes()) for p in bag_files(bag)], needles)
    zipped = tmp_path / "bag.zip"
    assert cli("--vault", fifty, "export", target[7:19], "--out", zipped, "--zip").code == 0
    with zipfile.ZipFile(zipped) as zf:
        members = [(f"zip:{n}", zf.read(n)) for n in zf.namelist()]
    assert_nothing_leaks([("zip", zipped.read_bytes()), *members], needles)
    # It verifies, as a directory and as a zip; the genesis key is reported until pinned.
    for path in (bag, zipped):
        r = cli("verify-bundle", path, "--json")
        assert r.code == 0, r.stdout
        assert not codes(r.json()) and "trust.genesis-not-pinned" in codes(r.json(), "WARN")
        pinned = cli("verify-bundle", path, "--trust", identity, "--json").json()
        assert pinned["genesis_pinned"] and not codes(pinned)
        assert pinned["stats"]["withheld"] == 49 and pinned["stats"]["items"] == 1
        # What was read to check the manifests: every payload and tag file listed (not "0 B re-hashed").
        payload = (bag / "data" / EXPORTED_NAME).stat().st_size
        assert payload < pinned["stats"]["bytes_hashed"] < sum(f.stat().st_size for f in bag_files(bag))
    # Independent BagIt validators agree.
    assert not [f for f in validate_bag(bag) if f.level == "error"]
    for cmd in (
        ["bagit.py", "--validate", str(bag)],
        ["sha256sum", "--strict", "-c", "manifest-sha256.txt"],
        ["sha256sum", "--strict", "-c", "tagmanifest-sha256.txt"],
    ):
        done = subprocess.run(cmd, cwd=bag, capture_output=True, text=True)
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
    info = (bag / "bag-info.txt").read_text()
    assert (
        "Source-Organization: test vault" in info and "Payload-Oxum: " in info and "Bag-Count: 1 of 1" in info
    )
    vault_id = json.loads((fifty / "vault.json").read_text())["vault_id"]
    assert f"External-Identifier: {vault_id}" in info


def test_export_is_recorded_with_its_tagmanifest_and_committed_recipient(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    bag = tmp_path / "bag"
    res = cli(
        "--vault",
        filled_vault,
        "export",
        "--all",
        "--out",
        bag,
        "--recipient",
        "Counsel for the victim",
        "--json",
    )
    assert res.code == 0, res.stderr
    line = (filled_vault / "log.jsonl").read_text().splitlines()[-1]
    event = json.loads(line)
    assert event["type"] == "item.exported" and event["seq"] == res.json()["seq"]
    data = event["data"]
    assert sorted(data["items"]) == sorted(res.json()["items"]) and len(data["items"]) == 4
    assert (
        data["tagmanifest_sha256"]
        == hashlib.sha256((bag / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    )
    assert "Counsel" not in line  # the recipient is committed, not written in the clear
    hex_obj = data["openings"].removeprefix("sha256:")
    opening = json.loads((filled_vault / "objects" / "sha256" / hex_obj[:2] / hex_obj).read_bytes())
    assert opening["fields"]["recipient"]["value"] == "Counsel for the victim"
    assert commitments.opens(data["recipient"], opening["fields"]["recipient"])
    assert data["committed"] == {"recipient": data["recipient"]}
    # The vault still verifies (the openings object is referenced), and the event is not in the bag.
    ver = cli("--vault", filled_vault, "verify", "--json")
    assert ver.code == 0, ver.stdout
    assert not codes(ver.json()) and "object.orphan" not in codes(ver.json(), "WARN")
    assert b"item.exported" not in (bag / "evidence" / "log.jsonl").read_bytes()
    # With every item exported and nothing redacted, the full metadata objects ship too.
    assert len(list((bag / "evidence" / "metadata").iterdir())) == 4


def test_redact_metadata_withholds_fields_and_signatures_still_check(
    cli: Cli, vault: Path, tmp_path: Path, identity: str
) -> None:
    assert cli("--vault", vault, "add", GPS_IMAGES[0], "--note", "name of the witness: Omar").code == 0
    item = next(iter(ids_by_name(cli, vault).values()))
    fields = metadata_fields(vault, item)
    assert fields["gps_lat"] and fields["original_path"]
    bag = tmp_path / "bag"
    res = cli(
        "--vault",
        vault,
        "export",
        item["id"][7:19],
        "--out",
        bag,
        "--redact-metadata",
        "gps,original_path,note",
        "--json",
    )
    assert res.code == 0, res.stderr
    assert set(res.json()["redacted"]) == {"gps_lat", "gps_lon", "original_path", "note"}
    opened = json.loads((bag / "evidence" / "openings" / f"{item['id'][7:]}.json").read_text())
    assert set(opened) == {"original_name", "modified_at"} or "gps_lat" not in opened
    assert not (bag / "evidence" / "metadata").exists(), "the raw metadata object (EXIF) must not ship"
    needles = [str(fields["gps_lat"]), str(fields["gps_lon"]), fields["original_path"], "Omar"]
    assert_nothing_leaks([(p.as_posix(), p.read_bytes()) for p in bag_files(bag)], needles)
    r = cli("verify-bundle", bag, "--trust", identity, "--json")
    assert r.code == 0, r.stdout
    assert not codes(r.json())
    html = (bag / "report.html").read_text()
    assert "withheld" in html and "gps_lat" in html


def _blocks(verify_md: str) -> dict[str, str]:
    """The fenced sh blocks of VERIFY.md by the name on their fence line (```sh check=NAME)."""
    out = {}
    for name, body in re.findall(r"```sh(?: check=(\S+))?\n(.*?)```", verify_md, re.S):
        assert name, body
        out[name] = body
    return out


#: The shells VERIFY.md's blocks are written for: bash, zsh (macOS's default shell) and dash (the `sh` of
#: Debian and Ubuntu). `make setup` installs zsh (Makefile APT_PACKAGES); dash is part of every Debian.
SHELLS = ("bash", "zsh", "dash")


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    """Each shell in turn. CI must run every one of them: a missing shell fails there, and skips elsewhere."""
    name: str = request.param
    if shutil.which(name) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: no {name} to run VERIFY.md's blocks in (make setup installs it)")
        pytest.skip(f"no {name} on this machine (make setup installs it)")
    return name


def _run_block(
    body: str, bag: Path, shell: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    return subprocess.run(  # no -e: each block must stop at its first failure by itself
        [shell, "-c", body], cwd=bag, capture_output=True, text=True, env=environ, timeout=120
    )


def test_verify_md_commands_run_verbatim(
    cli: Cli, filled_vault: Path, tmp_path: Path, identity: str, shell: str
) -> None:
    with CalendarServer() as a, CalendarServer() as b, LocalTSA() as tsa:
        stamp_vault(cli, filled_vault, [a.url, b.url], tsa, tmp_path)
    cli("--vault", filled_vault, "add", CORPUS / "images" / "Canon_40D.jpg")  # already in: nothing recorded
    ids = ids_by_name(cli, filled_vault)
    bag = tmp_path / "bag with space"
    res = cli(
        "--vault",
        filled_vault,
        "export",
        ids["Canon_40D.jpg"]["id"][7:19],
        ids["with-gps.mov"]["id"][7:19],
        "--out",
        bag,
    )
    assert res.code == 0, res.stderr
    blocks = _blocks((bag / "VERIFY.md").read_text())
    assert set(blocks) == {
        "files",
        "checkpoint-signatures",
        "event-signatures",
        "opentimestamps",
        "rfc3161",
        "script",
        "exporter-signature",
    }
    for name in (
        "files",
        "checkpoint-signatures",
        "event-signatures",
        "rfc3161",
        "script",
        "exporter-signature",
    ):
        done = _run_block(blocks[name], bag, shell)
        assert done.returncode == 0, (name, done.stdout, done.stderr)
    assert blocks["event-signatures"].count("ssh-keygen -Y verify") == 4  # genesis, 2 ingests, checkpoint
    sigs = _run_block(blocks["event-signatures"], bag, shell)
    assert (sigs.stdout + sigs.stderr).count('Good "evidence-vault" signature') == 4
    assert "Verification: OK" in _run_block(blocks["rfc3161"], bag, shell).stdout
    assert "PASS" in _run_block(blocks["script"], bag, shell).stdout
    exporter = _run_block(blocks["exporter-signature"], bag, shell)
    assert 'Good "evidence-vault" signature' in exporter.stdout + exporter.stderr
    assert f"-I {identity} -n evidence-vault -s tagmanifest-sha256.txt.sig" in blocks["exporter-signature"]
    # Our stamps are still pending (the stand-in calendars never reach a block): ots says so and fails.
    with BitcoindServer() as node:
        done = _run_block(blocks["opentimestamps"], bag, shell, {"BITCOIN_NODE": node.url})
    assert done.returncode != 0 and "Ignoring attestation from calendar" in done.stderr, done.stderr
    assert "Success!" not in done.stderr
    # The same commands catch a tampered bag.
    (bag / "evidence" / "events" / "0.json").write_bytes(b'{"tampered":true}')
    assert _run_block(blocks["event-signatures"], bag, shell).returncode != 0
    cp = next((bag / "evidence" / "checkpoints").iterdir()) / "checkpoint"
    cp.write_bytes(cp.read_bytes().replace(b"\n5\n", b"\n4\n"))
    assert _run_block(blocks["checkpoint-signatures"], bag, shell).returncode != 0
    assert _run_block(blocks["rfc3161"], bag, shell).returncode != 0
    assert _run_block(blocks["files"], bag, shell).returncode != 0
    assert _run_block(blocks["script"], bag, shell).returncode != 0
    # The exporter's signature covers the tag manifest: one made again (to match the tampered files) fails.
    tagmanifest = bag / "tagmanifest-sha256.txt"
    tagmanifest.write_text(tagmanifest.read_text().replace("  evidence/log.jsonl", "  evidence/log.jsonl "))
    assert _run_block(blocks["exporter-signature"], bag, shell).returncode != 0


def test_verify_md_files_block_handles_percent_encoded_names(
    cli: Cli, vault: Path, tmp_path: Path, shell: str
) -> None:
    """BagIt writes '%' in a path as '%25' (manifest line 'data/50%25.txt'): the files block decodes
    the manifests before sha256sum, so it passes on such a bag, and still catches a changed file."""
    src = tmp_path / "src"
    src.mkdir()
    names = ["50%.txt", "odd %25 name.txt", "a b.txt"]
    for n, name in enumerate(names):
        (src / name).write_text(f"statement {n}\n")
    assert cli("--vault", vault, "add", *(src / n for n in names)).code == 0
    bag = tmp_path / "bag"
    assert cli("--vault", vault, "export", "--all", "--out", bag).code == 0
    manifest = (bag / "manifest-sha256.txt").read_text()
    assert "data/50%25.txt" in manifest and "data/odd %2525 name.txt" in manifest
    files = _blocks((bag / "VERIFY.md").read_text())["files"]
    done = _run_block(files, bag, shell)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "data/50%.txt: OK" in done.stdout and "data/odd %25 name.txt: OK" in done.stdout
    victim = bag / "data" / "50%.txt"
    os.chmod(victim, 0o644)
    victim.write_text("changed\n")
    done = _run_block(files, bag, shell)
    assert done.returncode != 0 and "data/50%.txt: FAILED" in done.stdout, done.stdout


def test_verify_md_files_block_refuses_a_link_to_an_identical_file(
    cli: Cli, filled_vault: Path, tmp_path: Path, shell: str
) -> None:
    """sha256sum follows links: a payload file replaced by a link to an identical copy outside the bag
    would pass `sha256sum -c`. The files block stops at any link or special file first."""
    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    files = _blocks((bag / "VERIFY.md").read_text())["files"]
    assert "find . -type l" in (bag / "VERIFY.md").read_text()  # for whoever checks by hand
    assert _run_block(files, bag, shell).returncode == 0
    victim = next((bag / "data").iterdir())
    outside = tmp_path / victim.name
    victim.rename(outside)
    victim.symlink_to(outside)
    done = _run_block(files, bag, shell)
    assert done.returncode == 1 and f"./data/{victim.name}" in done.stdout, done.stdout + done.stderr
    assert ": OK" not in done.stdout  # it stopped before sha256sum


def test_verify_md_blocks_stop_at_the_first_failure(
    cli: Cli, filled_vault: Path, tmp_path: Path, shell: str
) -> None:
    """'Each block stops at the first failure it meets': a failing command that is not the last one
    makes the block fail (run by plain bash, zsh or dash, as pasted), and nothing after it runs."""
    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    blocks = _blocks((bag / "VERIFY.md").read_text())
    assert all("\nset -e\n" in b for b in blocks.values())
    victim = bag / "evidence" / "events" / "0.json"  # the first line's signed bytes: its check is first
    os.chmod(victim, 0o644)
    victim.write_bytes(b'{"tampered":true}')
    sigs = _run_block(blocks["event-signatures"], bag, shell)
    assert sigs.returncode != 0, sigs.stdout + sigs.stderr
    assert 'Good "evidence-vault" signature' not in sigs.stdout + sigs.stderr  # later lines never ran
    # The first manifest fails (a payload file changed) while the second would pass.
    payload = next((bag / "data").iterdir())
    os.chmod(payload, 0o644)
    payload.write_bytes(b"swapped")
    files = _run_block(blocks["files"], bag, shell)
    assert files.returncode != 0 and "bagit.txt: OK" not in files.stdout, files.stdout  # tag files unchecked


#: Each shell as a terminal runs it: interactive, reading what is pasted, and without this machine's
#: start-up files (zsh -f: every option at its default, as in a new account on a Mac; INTERACTIVE_COMMENTS
#: is then off, so a `# ...` line is run as the command `#`).
INTERACTIVE = {"bash": ["--norc", "--noprofile", "-i"], "zsh": ["-f", "-i"], "dash": ["-i"]}
#: How bash, zsh and dash report a line they cannot run or parse.
SHELL_ERROR = re.compile(r"not found|syntax error|parse error|bad substitution|no matches found|unexpected")


def _paste_block(
    body: str, bag: Path, shell: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`cd` into ``bag`` (its path quoted as a terminal quotes a dragged folder) and the block, typed into
    an interactive shell; the shell's exit status is then the block's."""
    script = f"cd {shlex.quote(str(bag))}\n{body}"
    return subprocess.run(
        [shell, *INTERACTIVE[shell]],
        input=script,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_verify_md_blocks_run_as_pasted_into_an_interactive_shell(
    cli: Cli, vault: Path, tmp_path: Path, shell: str
) -> None:
    """Pasted into a terminal's bash, zsh or dash, every block of a real bag (real photos and a video, and
    names with a space, '%', '[' and non-ASCII letters) passes without one line the shell cannot run, and
    fails on a changed data file, a changed event file, and a link in place of a file. A `# check:` line
    in each block made zsh print 'zsh: command not found: #' (the block still ran)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("50% Zeugenaussage_Ärztin.jpg", "odd %25 [a].jpg"):
        (src / name).write_bytes((CORPUS / "images" / "DSCN0010.jpg").read_bytes() + name.encode())
    assert cli("--vault", vault, "add", *SAMPLE_FILES, *src.iterdir()).code == 0
    with CalendarServer() as a, CalendarServer() as b, LocalTSA() as tsa:
        stamp_vault(cli, vault, [a.url, b.url], tsa, tmp_path)
    # A folder name a lawyer's machine may well have: the old blocks' `cd "..."` broke on `"`, `$`, a
    # backtick and `\`. The reader now types `cd` once (a dragged folder comes quoted); blocks name no path.
    bag = tmp_path / 'Client\'s "bag" $HOME `x` \\ 1'
    assert cli("--vault", vault, "export", "--all", "--out", bag).code == 0
    verify_md = (bag / "VERIFY.md").read_text()
    assert "zsh (macOS's default), bash and sh" in verify_md and "WSL" in verify_md  # the shells it is for
    blocks = _blocks(verify_md)
    assert len(blocks) == 7
    for name, body in blocks.items():
        assert not [ln for ln in body.splitlines() if ln.lstrip().startswith("#")], (name, body)
        assert not re.search(r"^\s*cd\b", body, re.M), (name, body)
        elsewhere = _paste_block(body, tmp_path, shell)  # pasted before `cd` into the bag
        assert elsewhere.returncode == 1 and "not in the bag folder" in elsewhere.stderr, (name, elsewhere)
    with BitcoindServer() as node:
        for name, body in blocks.items():
            done = _paste_block(body, bag, shell, {"BITCOIN_NODE": node.url})
            assert not SHELL_ERROR.search(done.stderr), (name, done.stderr)
            if name == "opentimestamps":  # still pending: ots says so and exits non-zero
                assert done.returncode != 0 and "Ignoring attestation" in done.stderr, done.stderr
            else:
                assert done.returncode == 0, (name, done.stdout, done.stderr)
    files = _paste_block(blocks["files"], bag, shell)
    assert (
        "data/50% Zeugenaussage_Ärztin.jpg: OK" in files.stdout and "data/odd %25 [a].jpg: OK" in files.stdout
    )
    assert files.stdout.count(": OK") == len(bag_files(bag)) - 2  # all but the tag manifest and its .sig
    # Damaged copies: each fails the block that checks it.
    for damage, checks in (("data", ("files", "script")), ("event", ("files", "event-signatures", "script"))):
        copy = tmp_path / f"damaged {damage}"
        shutil.copytree(bag, copy)
        victim = (
            copy / "data" / "50% Zeugenaussage_Ärztin.jpg"
            if damage == "data"
            else copy / "evidence" / "events" / "3.json"
        )
        os.chmod(victim, 0o644)
        victim.write_bytes(victim.read_bytes() + b" ")
        for name in checks:
            assert _paste_block(blocks[name], copy, shell).returncode != 0, (damage, name)
    linked = bag / "data" / "Canon_40D.jpg"
    outside = tmp_path / "Canon_40D.jpg"
    linked.rename(outside)
    linked.symlink_to(outside)
    done = _paste_block(blocks["files"], bag, shell)
    assert done.returncode == 1 and "./data/Canon_40D.jpg" in done.stdout and ": OK" not in done.stdout


def _path_without(hidden: tuple[str, ...], root: Path) -> str:
    """$PATH with each directory that holds one of ``hidden`` replaced by a copy of it (links to its
    entries) without them: a machine without those commands (a Mac without sha256sum) and all else alike."""
    dirs = []
    for n, d in enumerate(os.environ["PATH"].split(os.pathsep)):
        here = Path(d)
        if not any((here / name).exists() for name in hidden):
            dirs.append(d)
            continue
        shadow = root / str(n)
        shadow.mkdir(parents=True)
        for entry in here.iterdir():
            if entry.name not in hidden:
                (shadow / entry.name).symlink_to(entry)
        dirs.append(str(shadow))
    return os.pathsep.join(dirs)


def test_verify_md_blocks_use_shasum_where_sha256sum_is_missing(
    cli: Cli, filled_vault: Path, tmp_path: Path, shell: str
) -> None:
    """macOS may have no sha256sum; it ships shasum. Without sha256sum on PATH the files and rfc3161
    blocks (the ones that use it) check the same with `shasum -a 256`, and still fail on a changed file;
    with neither command they fail (exit non-zero), never pass. Before, they failed with
    'sha256sum: command not found', so a Mac without sha256sum could not check steps 2 and 6."""
    if shutil.which("shasum") is None:  # Debian's perl package has it, as macOS does
        if os.environ.get("CI"):
            pytest.fail("CI: no shasum (Debian package perl)")
        pytest.skip("no shasum on this machine")
    with CalendarServer() as a, CalendarServer() as b, LocalTSA() as tsa:
        stamp_vault(cli, filled_vault, [a.url, b.url], tsa, tmp_path)
    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    blocks = _blocks((bag / "VERIFY.md").read_text())
    no_sha256sum = {"PATH": _path_without(("sha256sum",), tmp_path / "no-sha256sum")}
    found = subprocess.run(
        [shell, "-c", "command -v sha256sum"],
        env={**os.environ, **no_sha256sum},
        capture_output=True,
        text=True,
    )
    assert found.returncode != 0, found.stdout  # hidden
    files = _run_block(blocks["files"], bag, shell, no_sha256sum)
    assert files.returncode == 0, files.stdout + files.stderr
    assert files.stdout.count(": OK") == len(bag_files(bag)) - 2  # all but the tag manifest and its .sig
    tsa_check = _run_block(blocks["rfc3161"], bag, shell, no_sha256sum)
    assert tsa_check.returncode == 0 and "Verification: OK" in tsa_check.stdout, tsa_check.stderr
    neither = {"PATH": _path_without(("sha256sum", "shasum"), tmp_path / "neither")}
    for name in ("files", "rfc3161"):
        done = _run_block(blocks[name], bag, shell, neither)
        assert done.returncode != 0 and ": OK" not in done.stdout, (name, done.stdout)
    payload = next((bag / "data").iterdir())
    os.chmod(payload, 0o644)
    payload.write_bytes(payload.read_bytes() + b" ")
    files = _run_block(blocks["files"], bag, shell, no_sha256sum)
    assert files.returncode != 0 and f"data/{payload.name}: FAILED" in files.stdout, files.stdout
    checkpoint = next((bag / "evidence" / "checkpoints").iterdir()) / "checkpoint"
    os.chmod(checkpoint, 0o644)
    checkpoint.write_bytes(checkpoint.read_bytes() + b" ")
    assert _run_block(blocks["rfc3161"], bag, shell, no_sha256sum).returncode != 0


def test_ots_command_of_verify_md_confirms_a_complete_proof(tmp_path: Path, shell: str) -> None:
    """The exact `ots` command form of VERIFY.md, on a complete real proof (ours stay pending in tests)."""
    from evidence_vault.export import render_verify_md  # noqa: F401  (the form is built there)

    ots_dir = CORPUS / "timestamps" / "opentimestamps"
    cmd = (
        'ots --no-cache --no-default-whitelist --bitcoin-node "${BITCOIN_NODE:-http://127.0.0.1:8332/}" '
        f'verify -f "{ots_dir}/hello-world.txt" "{ots_dir}/hello-world.txt.ots"'
    )
    with BitcoindServer() as node:
        done = subprocess.run(
            [shell, "-e", "-c", cmd],
            capture_output=True,
            text=True,
            env={**os.environ, "BITCOIN_NODE": node.url},
            timeout=60,
        )
    assert done.returncode == 0 and "Success! Bitcoin block 358391" in done.stderr, done.stderr


def test_import_takes_custody_with_provenance(
    cli: Cli, filled_vault: Path, tmp_path: Path, identity: str
) -> None:
    bag = tmp_path / "bag.zip"
    ids = ids_by_name(cli, filled_vault)
    target = ids["Canon_40D.jpg"]["id"]
    assert cli("--vault", filled_vault, "export", target[7:19], "--out", bag, "--zip").code == 0
    other = tmp_path / "receiving"
    assert cli("init", other, "--name", "law office").code == 0
    res = cli("--vault", other, "import", bag, "--trust", identity, "--json")
    assert res.code == 0, res.stderr
    out = res.json()
    vault_id = json.loads((filled_vault / "vault.json").read_text())["vault_id"]
    assert out["source"] == f"bag {vault_id} from test vault"
    assert [r["status"] for r in out["results"]] == ["added"] and out["results"][0]["id"] == target
    event = json.loads((other / "log.jsonl").read_text().splitlines()[-1])
    prov = event["data"]["provenance"]
    assert prov["source_vault"] == vault_id and prov["bundle_object"].startswith("sha256:")
    with zipfile.ZipFile(bag) as zf:
        top = zf.namelist()[0].split("/")[0]
        tagm = zf.read(f"{top}/tagmanifest-sha256.txt")
    assert prov["bag_tagmanifest_sha256"] == hashlib.sha256(tagm).hexdigest()
    hex_obj = prov["bundle_object"].removeprefix("sha256:")
    with zipfile.ZipFile(other / "objects" / "sha256" / hex_obj[:2] / hex_obj) as kept:
        assert "evidence/log.jsonl" in kept.namelist() and not any(
            n.startswith("data/") for n in kept.namelist()
        )
        # Each file is streamed into the zip, with the bytes writestr of the whole file would give.
        again = io.BytesIO()
        with zipfile.ZipFile(again, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for info in kept.infolist():
                zf.writestr(info, kept.read(info))
    assert hashlib.sha256(again.getvalue()).hexdigest() == hex_obj
    ver = cli("--vault", other, "verify", "--json")
    assert ver.code == 0 and "object.orphan" not in codes(ver.json(), "WARN"), ver.stdout
    shown = cli("--vault", other, "show", target[7:19], "--json").json()
    assert shown["metadata"].get("source") == f"bag {vault_id} from test vault"
    # Recorded where the file is in the zip, not where it was unpacked (a temporary directory, gone).
    name = out["results"][0]["path"]
    assert (
        shown["metadata"]["original_path"] == name == f"{bag.resolve()}/{top}/data/{name.rsplit('/', 1)[1]}"
    )
    assert "evidence-vault-import-" not in (other / "log.jsonl").read_text() + str(shown)


def test_import_shows_the_warnings_of_the_bag_it_takes(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    """A WARN bag is imported (unless --strict), but its warnings are shown, not only "added" lines."""
    bag = tmp_path / "bag.zip"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag, "--zip").code == 0
    other = tmp_path / "receiving"
    assert cli("init", other).code == 0
    res = cli("--vault", other, "import", bag)
    assert res.code == 0, res.stderr
    assert "warning: bag: trust.genesis-not-pinned" in res.stderr and "--trust" in res.stderr
    assert res.stderr.count("added ") == 4


def test_import_refuses_a_bag_that_does_not_verify(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag).code == 0
    victim = next((bag / "data").iterdir())
    os.chmod(victim, 0o644)
    victim.write_bytes(b"swapped")
    other = tmp_path / "receiving"
    assert cli("init", other).code == 0
    before = (other / "log.jsonl").read_bytes()
    res = cli("--vault", other, "import", bag)
    assert res.code == 1 and "nothing imported" in res.stderr
    assert (other / "log.jsonl").read_bytes() == before


def test_export_refuses_existing_destination_and_unknown_items(
    cli: Cli, filled_vault: Path, tmp_path: Path
) -> None:
    (tmp_path / "exists").mkdir()
    assert cli("--vault", filled_vault, "export", "--all", "--out", tmp_path / "exists").code == 2
    assert cli("--vault", filled_vault, "export", "deadbeefdeadbeef", "--out", tmp_path / "x").code == 2
    assert cli("--vault", filled_vault, "export", "--out", tmp_path / "y").code == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("name", ["case.zip", "CASE.ZIP"])
def test_export_out_ending_in_zip_needs_zip(cli: Cli, filled_vault: Path, tmp_path: Path, name: str) -> None:
    """`export ITEM --out x.zip` without --zip made a directory named x.zip: refused (exit 2, nothing
    written or recorded); with --zip it is a zip file."""
    item = cli("--vault", filled_vault, "ls", "--json").json()[0]["id"][7:19]
    before = (filled_vault / "log.jsonl").read_bytes()
    res = cli("--vault", filled_vault, "export", item, "--out", tmp_path / name)
    assert res.code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        f"{tmp_path / name}: --out ends in .zip: add --zip for a zip file"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["vault"]  # no directory named .zip, no temp folder
    assert (filled_vault / "log.jsonl").read_bytes() == before
    res = cli("--vault", filled_vault, "export", item, "--out", tmp_path / name, "--zip")
    assert res.code == 0, res.stderr
    assert zipfile.is_zipfile(tmp_path / name)


def test_exporting_a_derived_item_alone_says_to_add_its_original(
    cli: Cli, filled_vault: Path, tmp_path: Path, identity: str
) -> None:
    """A working copy's ingest line names its original (derived_from): alone, it cannot be revealed
    without revealing the original's id, so export says to add the original (not 'no ingest event');
    with its original it exports and verifies."""
    original = ids_by_name(cli, filled_vault)["Canon_40D.jpg"]["id"]
    copy = tmp_path / "redacted.jpg"
    copy.write_bytes(b"a redacted working copy")
    res = cli(
        "--vault", filled_vault, "derive", original[7:19], copy, "--action", "redact", "--tool", "gimp 2",
        "--json",
    )  # fmt: skip
    assert res.code == 0, res.stderr
    derived = res.json()["id"]
    res = cli("--vault", filled_vault, "export", derived[7:19], "--out", tmp_path / "alone")
    assert res.code == 2 and "no ingest event" not in res.stderr, res.stderr
    assert f"derived from {original[7:19]}" in res.stderr and "together with it" in res.stderr
    assert not (tmp_path / "alone").exists()
    both = tmp_path / "both"
    res = cli("--vault", filled_vault, "export", derived[7:19], original[7:19], "--out", both)
    assert res.code == 0, res.stderr
    ver = cli("verify-bundle", both, "--trust", identity, "--json")
    assert ver.code == 0 and not codes(ver.json()), ver.stdout
    assert ver.json()["stats"]["items"] == 2


def test_verify_md_marks_the_genesis_key(cli: Cli, vault: Path, tmp_path: Path, identity: str) -> None:
    """Keys are listed by fingerprint, so after `key rotate` the genesis key need not be first:
    VERIFY.md marks it, and tells you to --trust it by that mark."""
    res = cli("--vault", vault, "key", "rotate", "--json")
    assert res.code == 0, res.stderr
    new_key = res.json()["new"]
    assert cli("--vault", vault, "--key", new_key, "add", CORPUS / "images" / "Canon_40D.jpg").code == 0
    bag = tmp_path / "bag"
    assert cli("--vault", vault, "--key", new_key, "export", "--all", "--out", bag).code == 0
    text = (bag / "VERIFY.md").read_text()
    keys = [ln for ln in text.splitlines() if ln.startswith("- `SHA256:")]
    assert len(keys) == 2, keys
    marked = [ln for ln in keys if "**genesis key**" in ln]
    assert len(marked) == 1 and identity in marked[0], keys
    assert "first key above" not in text and "--trust <the genesis key above>" in text


def test_redact_metadata_says_the_original_file_ships_unchanged(
    cli: Cli, vault: Path, tmp_path: Path
) -> None:
    """--redact-metadata gps withholds the signed fields, not the EXIF inside the original, which ships
    byte for byte (it is the evidence): the message says so rather than implying the GPS is gone."""
    assert cli("--vault", vault, "add", GPS_IMAGES[0]).code == 0
    item = next(iter(ids_by_name(cli, vault).values()))
    bag = tmp_path / "bag"
    res = cli("--vault", vault, "export", item["id"][7:19], "--out", bag, "--redact-metadata", "gps")
    assert res.code == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert "withheld the signed metadata fields gps_lat, gps_lon" in said, said
    assert "original files ship unchanged" in said and "EXIF GPS" in said and "derive" in said
    shipped = next((bag / "data").iterdir())
    assert shipped.read_bytes() == GPS_IMAGES[0].read_bytes()  # what the message promises


def test_a_redaction_word_that_withholds_nothing_is_refused(cli: Cli, vault: Path, tmp_path: Path) -> None:
    """A typo in --redact-metadata would ship the field it meant to withhold: refused before anything is
    written or recorded. A known field or alias that these items lack is fine (a habit such as
    `--redact-metadata gps,serial` on every export)."""
    assert cli("--vault", vault, "add", GPS_IMAGES[0]).code == 0
    item = next(iter(ids_by_name(cli, vault).values()))
    log_before = (vault / "log.jsonl").read_bytes()
    bag = tmp_path / "bag"
    res = cli("--vault", vault, "export", item["id"][7:19], "--out", bag, "--redact-metadata", "gps_latitud")
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "'gps_latitud' matches no signed metadata field" in res.stderr and "gps_lat" in res.stderr
    assert not bag.exists() and not list(tmp_path.glob(".bag.export-*"))
    assert (vault / "log.jsonl").read_bytes() == log_before, "nothing recorded"
    res = cli(
        "--vault", vault, "export", item["id"][7:19], "--out", bag, "--redact-metadata", "GPS, serial,note"
    )
    assert res.code == 0, res.stderr
    assert "withheld the signed metadata fields gps_lat, gps_lon" in " ".join(res.stderr.split())
    # Fields the extractors give that this item lacks (it has no artist or lens model): a habit, not a
    # typo. They were refused before, when the export knew fewer field names than `add` commits.
    args = ("export", item["id"][7:19], "--out", tmp_path / "bag2", "--redact-metadata", "artist,lens_model")
    res = cli("--vault", vault, *args)
    assert res.code == 0, res.stderr
