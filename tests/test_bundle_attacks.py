"""Attacks on an exported bag: each must make verify-bundle exit 1 with its specific finding."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from evidence_vault.bundle_verify import verify_bundle
from evidence_vault.signing import armor
from tests.conftest import Cli, signer_of
from tests.hostile_json import FIELDS, JSON
from tests.paths import CORPUS


def codes(report: dict[str, Any]) -> set[str]:
    return {f["code"] for f in report["findings"] if f["level"] == "FAIL"}


@pytest.fixture
def bag(cli: Cli, filled_vault: Path, tmp_path: Path) -> Path:
    """A bag of 2 of the 4 items, over two checkpoints (so withheld lines and consistency proofs exist)."""
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    assert cli("--vault", filled_vault, "add", CORPUS / "images" / "DSCN0010.jpg").code == 0
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    items = {i["name"]: i["id"] for i in cli("--vault", filled_vault, "ls", "--json").json()}
    out = tmp_path / "bag"
    res = cli(
        "--vault",
        filled_vault,
        "export",
        items["Canon_40D.jpg"][7:19],
        items["DSCN0010.jpg"][7:19],
        "--out",
        out,
    )
    assert res.code == 0, res.stderr
    ok = cli("verify-bundle", out, "--json")
    assert ok.code == 0 and not codes(ok.json()), ok.stdout
    for p in out.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o644)
    return out


def check(cli: Cli, path: Path, *extra: str) -> tuple[int, set[str]]:
    res = cli("verify-bundle", path, "--json", *extra)
    return res.code, codes(res.json())


def rewrite_tagmanifest(bag: Path) -> None:
    """What a careful forger does: make the BagIt manifests match the forged tag files again (and drop
    the lines of files they deleted)."""
    lines = []
    for line in (bag / "tagmanifest-sha256.txt").read_text().splitlines():
        _, rel = line.split("  ", 1)
        if (bag / rel).is_file():
            lines.append(f"{hashlib.sha256((bag / rel).read_bytes()).hexdigest()}  {rel}\n")
    (bag / "tagmanifest-sha256.txt").write_text("".join(lines))


def resign_as_exporter(bag: Path) -> None:
    """What the exporter itself (or whoever holds its private key) can do after forging: sign the
    re-made tag manifest again. The checks of what the bag says must catch it without the signature."""
    fp = re.search(r"^Evidence-Vault-Exporter: (\S+)$", (bag / "bag-info.txt").read_text(), re.M)
    assert fp is not None
    signer = signer_of(Path(os.environ["EVIDENCE_VAULT_HOME"]), fp.group(1))
    (bag / "tagmanifest-sha256.txt.sig").write_text(
        armor(signer.sign((bag / "tagmanifest-sha256.txt").read_bytes()))
    )


def log_lines(bag: Path) -> list[bytes]:
    return (bag / "evidence" / "log.jsonl").read_bytes().splitlines()


def write_log(bag: Path, lines: list[bytes]) -> None:
    (bag / "evidence" / "log.jsonl").write_bytes(b"".join(x + b"\n" for x in lines))


def test_file_swapped_in_data(cli: Cli, bag: Path) -> None:
    victim = next((bag / "data").iterdir())
    victim.write_bytes(b"a different photo")
    code, found = check(cli, bag)
    assert code == 1 and "bag.payload.hash-mismatch" in found and "bundle.payload-not-an-item" in found


def test_file_swapped_and_manifests_forged(cli: Cli, bag: Path) -> None:
    victim = next((bag / "data").iterdir())
    victim.write_bytes(b"a different photo")
    rel = victim.relative_to(bag).as_posix()
    (bag / "manifest-sha256.txt").write_text(
        "".join(
            f"{hashlib.sha256((bag / r).read_bytes()).hexdigest()}  {r}\n"
            for r in [ln.split("  ", 1)[1] for ln in (bag / "manifest-sha256.txt").read_text().splitlines()]
        )
    )
    rewrite_tagmanifest(bag)
    info = (bag / "bag-info.txt").read_text()
    total = sum(p.stat().st_size for p in (bag / "data").iterdir())
    (bag / "bag-info.txt").write_text(re.sub(r"Payload-Oxum: \d+\.", f"Payload-Oxum: {total}.", info))
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "bundle.payload-not-an-item" in found, (rel, found)
    assert not any(c.startswith("bag.") for c in found)


def test_one_byte_of_log_edited(cli: Cli, bag: Path) -> None:
    data = bytearray((bag / "evidence" / "log.jsonl").read_bytes())
    i = data.index(b'"size":') + 7
    data[i] = ord("9") if data[i] != ord("9") else ord("8")
    (bag / "evidence" / "log.jsonl").write_bytes(bytes(data))
    code, found = check(cli, bag)
    assert code == 1 and "bag.tag.hash-mismatch" in found


def test_one_byte_of_log_edited_with_tagmanifest_forged(cli: Cli, bag: Path) -> None:
    data = bytearray((bag / "evidence" / "log.jsonl").read_bytes())
    i = data.index(b'"size":') + 7
    data[i] = ord("9") if data[i] != ord("9") else ord("8")
    (bag / "evidence" / "log.jsonl").write_bytes(bytes(data))
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1
    assert not any(c.startswith("bag.") for c in found)  # BagIt no longer helps: the signature and chain do
    assert {"log.bad-signature", "checkpoint.root-mismatch", "bundle.event-file-mismatch"} <= found


def test_withheld_leaf_hash_changed(cli: Cli, bag: Path) -> None:
    lines = log_lines(bag)
    i = next(n for n, ln in enumerate(lines) if b'"withheld":true' in ln)
    stub = json.loads(lines[i])
    stub["leaf_hash"] = "00" * 32
    lines[i] = json.dumps(stub, separators=(",", ":"), sort_keys=True).encode()
    write_log(bag, lines)
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "checkpoint.root-mismatch" in found


def test_withheld_line_hash_changed(cli: Cli, bag: Path) -> None:
    lines = log_lines(bag)
    # A withheld line followed by a revealed one: the revealed line's signed prev binds the line hash.
    i = next(
        n for n, ln in enumerate(lines[:-1]) if b'"withheld":true' in ln and b'"withheld"' not in lines[n + 1]
    )
    stub = json.loads(lines[i])
    stub["line_sha256"] = "11" * 32
    lines[i] = json.dumps(stub, separators=(",", ":"), sort_keys=True).encode()
    write_log(bag, lines)
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "log.chain-broken" in found


def test_withheld_line_removed(cli: Cli, bag: Path) -> None:
    lines = log_lines(bag)
    i = next(n for n, ln in enumerate(lines) if b'"withheld":true' in ln)
    write_log(bag, lines[:i] + lines[i + 1 :])
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and {"log.seq-mismatch", "checkpoint.root-mismatch"} & found


def test_withheld_entries_in_another_json_form_check_the_same(cli: Cli, bag: Path) -> None:
    """verify-bundle reads a withheld entry as export writes it without parsing JSON; the same values in
    another JSON form (spaces, keys in another order) take the JSON path and check exactly the same."""
    code, found = check(cli, bag)
    lines = log_lines(bag)
    stubs = [n for n, ln in enumerate(lines) if b'"withheld":true' in ln]
    assert stubs
    for n in stubs:
        doc = json.loads(lines[n])
        lines[n] = json.dumps(dict(reversed(doc.items())), separators=(", ", " : ")).encode()
    write_log(bag, lines)
    rewrite_tagmanifest(bag)
    resign_as_exporter(bag)
    assert check(cli, bag) == (code, found)
    lines[stubs[0]] = lines[stubs[0]].replace(b'"seq" : %d' % stubs[0], b'"seq" : %d' % (stubs[0] + 1))
    write_log(bag, lines)
    rewrite_tagmanifest(bag)
    resign_as_exporter(bag)
    code2, found2 = check(cli, bag)
    assert code2 == 1 and "log.seq-mismatch" in found2


def test_log_without_its_last_newline_is_a_torn_line(cli: Cli, bag: Path) -> None:
    log = bag / "evidence" / "log.jsonl"
    log.write_bytes(log.read_bytes().removesuffix(b"\n"))
    rewrite_tagmanifest(bag)
    resign_as_exporter(bag)
    code, found = check(cli, bag)
    assert code == 1 and "log.torn-line" in found


def test_inclusion_proof_for_another_checkpoint(cli: Cli, bag: Path, filled_vault: Path) -> None:
    from evidence_vault import merkle

    sizes = sorted(int(p.name) for p in (bag / "evidence" / "checkpoints").iterdir())
    assert len(sizes) == 2
    leaves = []
    for ln in log_lines(bag):
        stub = json.loads(ln)
        leaves.append(bytes.fromhex(stub["leaf_hash"]) if stub.get("withheld") else merkle.leaf_hash(ln))
    doc = json.loads((bag / "evidence" / "proofs" / "inclusion.json").read_text())
    # Valid proofs, but for the older checkpoint: claim them as such ...
    older = {
        str(s): [h.hex() for h in merkle.inclusion_proof(leaves, int(s), sizes[0])]
        for s in doc["proofs"]
        if int(s) < sizes[0]
    }
    (bag / "evidence" / "proofs" / "inclusion.json").write_text(
        json.dumps({"tree_size": sizes[0], "proofs": older})
    )
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "proof.wrong-checkpoint" in found
    # ... or pass them off as proofs in the latest one.
    (bag / "evidence" / "proofs" / "inclusion.json").write_text(
        json.dumps({"tree_size": sizes[1], "proofs": older})
    )
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "proof.inclusion-invalid" in found


def test_keys_in_allowed_signers_differ_from_signers(cli: Cli, bag: Path) -> None:
    other = cli("key", "new", "--name", "Mallory", "--json").json()
    pub = cli("key", "export-public", other["fingerprint"]).stdout.strip()
    assert pub.startswith("ssh-ed25519 ")
    allowed = bag / "evidence" / "keys" / "allowed_signers"
    allowed.write_text(allowed.read_text() + f'{other["fingerprint"]} namespaces="evidence-vault" {pub}\n')
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "bundle.keys-mismatch" in found


def test_keys_in_verify_md_differ_from_signers(cli: Cli, bag: Path) -> None:
    other = cli("key", "new", "--name", "Mallory", "--json").json()["fingerprint"]
    text = (bag / "VERIFY.md").read_text()
    signer = next(iter(json.loads(cli("verify-bundle", bag, "--json").stdout)["genesis_key"].split()))
    (bag / "VERIFY.md").write_text(text.replace(signer, other))
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "bundle.keys-mismatch" in found


def test_wrong_trusted_key(cli: Cli, bag: Path) -> None:
    other = cli("key", "new", "--name", "Mallory", "--json").json()["fingerprint"]
    code, found = check(cli, bag, "--trust", other)
    assert code == 1 and "trust.genesis-mismatch" in found


def test_opening_forged(cli: Cli, bag: Path) -> None:
    path = next((bag / "evidence" / "openings").iterdir())
    doc = json.loads(path.read_text())
    doc["original_name"]["value"] = "somewhere-else.jpg"
    path.write_text(json.dumps(doc))
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and "metadata.commitment-mismatch" in found


def _zip_with(tmp_path: Path, name: str, entries: list[zipfile.ZipInfo]) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bag/bagit.txt", "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
        for info in entries:
            zf.writestr(info, b"x" if not stat.S_ISLNK(info.external_attr >> 16) else b"/etc/passwd")
    return path


@pytest.mark.parametrize(
    "entry",
    [
        ("dotdot", "bag/../../escaped.txt", 0o100644),
        ("absolute", "/tmp/evidence-vault-absolute.txt", 0o100644),
        ("symlink", "bag/data/link", 0o120777),
    ],
    ids=lambda e: e[0],
)
def test_hostile_zip_rejected_before_anything_is_written(
    cli: Cli, tmp_path: Path, entry: tuple[str, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, name, mode = entry
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    info.create_system = 3
    z = _zip_with(tmp_path, "hostile.zip", [info])
    target = tmp_path / "extract-here"
    report = verify_bundle(z, extract_to=target)
    assert report.outcome == "FAIL" and [f.code for f in report.failures] == ["bundle.unsafe-zip"]
    assert not target.exists(), "nothing may be written for a rejected zip"
    assert (
        not (tmp_path.parent / "escaped.txt").exists()
        and not Path("/tmp/evidence-vault-absolute.txt").exists()
    )
    # Through the CLI too, with its own temporary directory left empty.
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    code, found = check(cli, z)
    assert code == 1 and found == {"bundle.unsafe-zip"}
    assert list(tmpdir.iterdir()) == []


def _stdlib_script(bag: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(bag / "verify_bundle.py"), str(bag)], capture_output=True, text=True, timeout=60
    )


def test_stdlib_script_flags_a_small_order_key_in_allowed_signers(bag: Path) -> None:
    """ssh-keygen accepts a signature that verifies for every message under a small-order key: the
    stdlib-only script, which cannot check signatures, at least refuses such a key."""
    assert _stdlib_script(bag).returncode == 0
    weak = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + b"\x01" + bytes(31)).decode()
    allowed = bag / "evidence" / "keys" / "allowed_signers"
    allowed.write_text(
        allowed.read_text() + f'SHA256:nobody namespaces="evidence-vault" ssh-ed25519 {weak}\n'
    )
    rewrite_tagmanifest(bag)
    res = _stdlib_script(bag)
    assert res.returncode == 1
    assert "allowed_signers: SHA256:nobody: the key is an Ed25519 point of small order" in res.stdout


@pytest.mark.parametrize(
    "damage",
    ["not json", "withheld without hashes", "lone surrogate seq", "inclusion proofs without a list"],
)
def test_stdlib_script_reports_a_damaged_bundle_without_a_traceback(bag: Path, damage: str) -> None:
    """A lawyer runs the script on what they were given: damage is a FAIL line and exit 1, never a
    Python traceback."""
    log = bag / "evidence" / "log.jsonl"
    lines = log.read_bytes().splitlines()
    if damage == "not json":
        lines[1] = b"{not json"
    elif damage == "withheld without hashes":
        lines[1] = b'{"seq":1,"withheld":true}'
    elif damage == "lone surrogate seq":
        lines[1] = b'{"seq":"\\ud800","prev":null}'
    else:
        (bag / "evidence" / "proofs" / "inclusion.json").write_text("{}")
    log.write_bytes(b"\n".join(lines) + b"\n")
    rewrite_tagmanifest(bag)
    res = _stdlib_script(bag)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and res.stderr == "", res.stderr
    assert res.stdout.rstrip().splitlines()[-1].startswith("FAIL ("), res.stdout


def test_stdlib_script_small_order_list_matches_libsodium() -> None:
    """The script's hand-written list: every entry, with either sign bit, is a point libsodium refuses,
    and the order-1 point makes the any-message signature; real keys are not on it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from nacl.bindings import crypto_core_ed25519_is_valid_point

    from evidence_vault.bundle_templates import verify_bundle as script

    def blob(raw: bytes) -> str:
        return base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + raw).decode()

    assert len(script.SMALL_ORDER) == 7
    for raw in script.SMALL_ORDER:
        assert _times_8_is_identity(raw), raw.hex()
        for variant in (raw, raw[:31] + bytes([raw[31] | 0x80])):
            assert not crypto_core_ed25519_is_valid_point(variant)
            assert script.small_order_key(blob(variant))
    for _ in range(50):
        real = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        assert not script.small_order_key(blob(real))


_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _times_8_is_identity(enc: bytes) -> bool:
    """Decode an Ed25519 point (y reduced mod p, as the non-canonical entries mean) and check [8]P = O,
    on the affine twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2 (RFC 8032, 5.1)."""
    y = int.from_bytes(enc, "little") & (2**255 - 1)
    y %= _P
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - x2) % _P:
        return False  # not on the curve
    if (x & 1) != enc[31] >> 7:
        x = (_P - x) % _P

    def add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        t = _D * a[0] * b[0] * a[1] * b[1] % _P
        return (
            (a[0] * b[1] + a[1] * b[0]) * pow(1 + t, _P - 2, _P) % _P,
            (a[1] * b[1] + a[0] * b[0]) * pow(1 - t, _P - 2, _P) % _P,
        )

    point = (x, y)
    for _ in range(3):
        point = add(point, point)
    return point == (0, 1)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_lines_in_a_bag_are_reported_never_raised(
    data: st.DataObject, bag: Path, cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What a lawyer receives may hold any hand-made line (manifests made to match): verify-bundle
    answers FAIL with a report, the stdlib script with FAIL lines; neither raises."""
    copy = tmp_path_factory.mktemp("bagfuzz") / "bag"
    shutil.copytree(bag, copy)
    log = copy / "evidence" / "log.jsonl"
    lines = log.read_bytes().splitlines()
    at = data.draw(st.integers(0, len(lines)))  # replace a line, or append one
    event = json.loads(lines[min(at, len(lines) - 1)])
    if event.get("withheld"):
        event = {"seq": at, "withheld": data.draw(JSON), "leaf_hash": data.draw(JSON)}
    else:
        fields = data.draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True))
        event.update(
            type=data.draw(st.sampled_from([event["type"], "item.ingested", "key.added", "checkpoint"])),
            data={**event["data"], **{f: data.draw(JSON) for f in fields}},
        )
    line = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    assume(at == len(lines) or line != lines[at])  # an unchanged line is no attack
    lines[at : at + 1] = [line]
    log.write_bytes(b"\n".join(lines) + b"\n")
    rewrite_tagmanifest(copy)
    res = cli("verify-bundle", copy, "--json")  # an exception here fails the test
    assert res.code == 1, res.stdout + res.stderr
    assert res.stdout.startswith("{"), res.stderr
    assert codes(res.json())
    script = _stdlib_script(copy)
    assert "Traceback" not in script.stderr, script.stderr
    assert script.returncode in (0, 1)  # it cannot check signatures: a re-signed-looking line may pass


@pytest.fixture
def stamped_bag(cli: Cli, filled_vault: Path, tmp_path: Path) -> Path:
    """A bag of one item whose checkpoint has an RFC 3161 token (the TSA's CA shipped in the bag)."""
    from tests.servers.ots_calendar import CalendarServer
    from tests.servers.tsa import LocalTSA
    from tests.stamping import stamp_vault

    with CalendarServer() as a, CalendarServer() as b, LocalTSA() as tsa:
        stamp_vault(cli, filled_vault, [a.url, b.url], tsa, tmp_path)
    item = cli("--vault", filled_vault, "ls", "--json").json()[0]["id"]
    out = tmp_path / "stamped-bag"
    assert cli("--vault", filled_vault, "export", item[7:19], "--out", out).code == 0
    for p in out.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o644)
    return out


def test_tsa_ca_given_replaces_the_shipped_root(cli: Cli, stamped_bag: Path, tmp_path: Path) -> None:
    """A token signed by a CA shipped in the bag is not 'verified with your trust anchor' when you give
    another root: your roots replace the bag's."""
    from tests.servers.tsa import LocalTSA

    res = cli("verify-bundle", stamped_bag, "--json")
    valid = [f for f in res.json()["findings"] if f["code"] == "anchors.tsa-valid"]
    assert res.code == 0 and valid and "shipped with the proof" in valid[0]["message"]
    with LocalTSA() as other:  # the root the lawyer trusts: not the one that signed the bag's token
        mine = tmp_path / "my-tsa-root.pem"
        mine.write_bytes(other.ca_pem)
    res = cli("verify-bundle", stamped_bag, "--json", "--tsa-ca", mine)
    report = res.json()
    assert res.code == 1 and "anchors.tsa-invalid" in codes(report), res.stdout
    assert not [f for f in report["findings"] if f["code"] == "anchors.tsa-valid"]
    # The right root still verifies it, and says so.
    shipped = next(stamped_bag.glob("evidence/checkpoints/*/tsa-*.ca.pem"))
    res = cli("verify-bundle", stamped_bag, "--json", "--tsa-ca", shipped)
    valid = [f for f in res.json()["findings"] if f["code"] == "anchors.tsa-valid"]
    assert res.code == 0 and valid and "given by you" in valid[0]["message"]


def _first_checkpoint(bag: Path) -> Path:
    return sorted((bag / "evidence" / "checkpoints").iterdir())[0]


def _set_opening(bag: Path, raw_value: str) -> None:
    path = next((bag / "evidence" / "openings").iterdir())
    doc = json.loads(path.read_text())
    doc["original_name"]["value"] = "@VALUE@"
    path.write_text(json.dumps(doc).replace('"@VALUE@"', raw_value))


def _set_log_line(bag: Path, n: int, line: bytes) -> None:
    lines = log_lines(bag)
    lines[n] = line
    write_log(bag, lines)


_DEEP = "[" * 100_000 + "]" * 100_000


def _hostile_tsa_file(bag: Path, suffix: str, content: bytes) -> None:
    cp = _first_checkpoint(bag)
    (cp / "tsa-x.tsr").write_bytes(b"not a token")
    (cp / f"tsa-x{suffix}").write_bytes(content)


# damage -> (the code, the file the finding must name)
HOSTILE: dict[str, tuple[Any, str, str]] = {
    "opening 1e400": (lambda b: _set_opening(b, "1e400"), "metadata.commitment-mismatch", "openings/"),
    "opening 2**60": (lambda b: _set_opening(b, str(2**60)), "metadata.commitment-mismatch", "openings/"),
    "consistency old_size [1]": (
        lambda b: (b / "evidence/proofs/consistency.json").write_text(
            '[{"old_size":[1],"new_size":[2],"proof":[]}]'
        ),
        "proof.consistency-invalid",
        "evidence/proofs/consistency.json",
    ),
    "checkpoint dir named with a superscript digit": (
        lambda b: (b / "evidence/checkpoints/\u00b2").mkdir(),
        "bundle.malformed",
        "evidence/checkpoints/\u00b2",
    ),
    "junk tsa ca.pem": (
        lambda b: _hostile_tsa_file(b, ".ca.pem", b"junk"),
        "anchors.tsa-malformed",
        "tsa-x.ca.pem",
    ),
    "tsa json is a list": (
        lambda b: _hostile_tsa_file(b, ".json", b"[]"),
        "anchors.tsa-malformed",
        "tsa-x.json",
    ),
    "deeply nested export.json": (
        lambda b: (b / "evidence/export.json").write_text(_DEEP),
        "bundle.malformed",
        "evidence/export.json",
    ),
    "deeply nested headers.json": (
        lambda b: (b / "evidence/headers.json").write_text(_DEEP),
        "anchors.bad-headers",
        "evidence/headers.json",
    ),
    "deeply nested log line": (
        lambda b: _set_log_line(b, 1, _DEEP.encode()),
        "log.malformed",
        "seq 1",
    ),
    "deeply nested withheld stub": (
        lambda b: _set_log_line(b, 1, b'{"withheld":true,"x":' + _DEEP.encode() + b"}"),
        "log.malformed",
        "seq 1",
    ),
}


@pytest.mark.parametrize("damage", sorted(HOSTILE))
def test_hostile_values_are_fail_findings_not_internal_errors(cli: Cli, bag: Path, damage: str) -> None:
    """A hostile bag is a FAIL naming the file (exit 1), never an internal error (exit 2); the stdlib
    script answers FAIL lines, never a traceback."""
    make, code, where = HOSTILE[damage]
    make(bag)
    rewrite_tagmanifest(bag)
    report = verify_bundle(bag)  # raising here is the bug
    assert report.exit_code() == 1
    assert any(f.code == code and where in f.subject for f in report.failures), [
        (f.code, f.subject, f.message) for f in report.failures
    ]
    res = cli("verify-bundle", bag, "--json")
    assert res.code == 1 and res.stdout.startswith("{"), res.stderr
    script = _stdlib_script(bag)
    assert "Traceback" not in script.stderr and script.returncode in (0, 1), script.stderr


@pytest.mark.parametrize("removed", ["allowed_signers emptied", "pub files deleted", "both"])
def test_signer_keys_removed_from_the_bag(cli: Cli, bag: Path, removed: str) -> None:
    """Every signer of a revealed line must be in allowed_signers and have its .pub file: removing
    them (so that ssh-keygen has nothing to check against) is a FAIL, not a pass."""
    keys = bag / "evidence" / "keys"
    if removed != "pub files deleted":
        (keys / "allowed_signers").write_text("")
    if removed != "allowed_signers emptied":
        for p in keys.glob("*.pub"):
            p.unlink()
    rewrite_tagmanifest(bag)
    report = verify_bundle(bag)
    mismatch = [f.subject for f in report.failures if f.code == "bundle.keys-mismatch"]
    if removed != "pub files deleted":
        assert "evidence/keys/allowed_signers" in mismatch, mismatch
    if removed != "allowed_signers emptied":
        assert "evidence/keys" in mismatch, mismatch
    code, found = check(cli, bag)
    assert code == 1 and "bundle.keys-mismatch" in found


@pytest.mark.parametrize("tamper", ["signed bytes", "signature file", "extra file"])
def test_stdlib_script_checks_event_files_against_the_log(bag: Path, tamper: str) -> None:
    """VERIFY.md step 4 has ssh-keygen check evidence/events/<seq>.json: the script checks that those
    are the signed bytes (and signature) of the lines in log.jsonl, as VERIFY.md says it does."""
    assert _stdlib_script(bag).returncode == 0
    events = bag / "evidence" / "events"
    seqs = sorted(int(p.name.split(".")[0]) for p in events.glob("*.json"))
    if tamper == "signed bytes":  # another revealed line's bytes and signature: ssh-keygen says Good
        for ext in (".json", ".json.sig"):
            (events / f"{seqs[1]}{ext}").write_bytes((events / f"{seqs[0]}{ext}").read_bytes())
        expected = f"evidence/events/{seqs[1]}.json: is not the signed bytes of log line {seqs[1] + 1}"
    elif tamper == "signature file":
        (events / f"{seqs[1]}.json.sig").write_bytes((events / f"{seqs[0]}.json.sig").read_bytes())
        expected = f"evidence/events/{seqs[1]}.json.sig: is not the signature in log line {seqs[1] + 1}"
    else:
        (events / "999.json").write_text("{}")
        expected = "evidence/events/999.json: belongs to no revealed log line"
    rewrite_tagmanifest(bag)
    if tamper == "extra file":
        with (bag / "tagmanifest-sha256.txt").open("a") as f:
            f.write(f"{hashlib.sha256(b'{}').hexdigest()}  evidence/events/999.json\n")
    res = _stdlib_script(bag)
    assert res.returncode == 1 and expected in res.stdout, res.stdout


def _python39() -> str | None:
    """A working Python 3.9 (on PATH, or installed by pyenv), if this machine has one."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for cand in [shutil.which("python3.9"), *map(str, sorted(root.glob("versions/3.9*/bin/python3.9")))]:
        if cand is None:
            continue
        probe = subprocess.run([cand, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True)
        if probe.returncode == 0 and probe.stdout.strip() == b"(3, 9)":
            return cand
    return None


def test_stdlib_script_is_python_3_9_code() -> None:
    """verify_bundle.py promises Python 3.9+: no newer syntax, no zip(strict=) (3.10)."""
    import ast

    from evidence_vault.export import template

    tree = ast.parse(template("verify_bundle.py"), feature_version=(3, 9))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
            assert not [k for k in node.keywords if k.arg == "strict"], ast.unparse(node)
        assert not isinstance(node, ast.Match)


def test_stdlib_script_runs_on_python_3_9(bag: Path) -> None:
    """On a real Python 3.9, a clean bag with two checkpoints (consistency proofs) passes."""
    py39 = _python39()
    if py39 is None:
        if os.environ.get("CI"):  # CI must run it, not skip it (this machine kind has pyenv's 3.9)
            pytest.fail("CI: no python3.9 to run verify_bundle.py on")
        pytest.skip("no python3.9 on this machine")
    res = subprocess.run([py39, str(bag / "verify_bundle.py"), str(bag)], capture_output=True, text=True)
    assert res.returncode == 0 and "consistency proofs checked" in res.stdout, res.stdout + res.stderr
    assert res.stdout.rstrip().splitlines()[-1].startswith("PASS")


def test_withheld_lines_are_noted_without_changing_the_outcome(
    cli: Cli, bag: Path, filled_vault: Path, tmp_path: Path, identity: str
) -> None:
    """A stub carries no signed type (it could stand for a key revocation): a bag with withheld lines
    says, as INFO, that authorization was judged on the revealed key events only; that is no warning,
    so a clean selective export still passes (--strict too). A full export has no withheld line and no
    such note."""
    res = cli("verify-bundle", bag, "--json", "--trust", identity)
    report = res.json()
    notes = [f for f in report["findings"] if f["code"] == "bundle.withheld-lines"]
    assert res.code == 0 and not codes(report), res.stdout
    # the only warnings are the fixture's unstamped checkpoints: the note is no warning (--strict)
    assert {f["code"] for f in report["findings"] if f["level"] == "WARN"} == {"anchors.unstamped"}
    assert len(notes) == 1 and notes[0]["level"] == "INFO"
    assert f"{report['stats']['withheld']} of {report['stats']['events']}" in notes[0]["message"]
    full = tmp_path / "full"
    assert cli("--vault", filled_vault, "export", "--all", "--out", full).code == 0
    report = cli("verify-bundle", full, "--json").json()
    assert report["stats"]["withheld"] == 0
    assert "bundle.withheld-lines" not in {f["code"] for f in report["findings"]}


def _one_error(res: Any) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return str(lines[0])


@pytest.mark.parametrize("command", ["verify-bundle", "import"])
def test_what_is_no_bag_or_no_zip_cannot_be_checked(
    cli: Cli, vault: Path, tmp_path: Path, command: str
) -> None:
    """A plain directory (no bagit.txt, data/ or evidence/), a file that is no zip (a JPEG, an empty
    file) or a zip of no bag: one line saying so, exit 2 (could not check), no findings about files a
    bag would hold, no raw errno text."""
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    photos = tmp_path / "photos.zip"
    with zipfile.ZipFile(photos, "w") as zf:
        zf.write(CORPUS / "images" / "Canon_40D.jpg", "photos/Canon_40D.jpg")
    cases = [
        (CORPUS / "images", "not a BagIt bag (no bagit.txt, data/ or evidence/)"),
        (CORPUS / "images" / "Canon_40D.jpg", "not a zip file"),
        (empty, "not a zip file (it is empty)"),
        (photos, "not a BagIt bag (no bagit.txt, data/ or evidence/ in the zip)"),
    ]
    log = (vault / "log.jsonl").read_bytes()
    for path, said in cases:
        res = cli("--vault", vault, command, path, "--json")
        assert res.code == 2, (path, res.stdout, res.stderr)
        assert res.stdout == "" and _one_error(res).endswith(f"{path}: {said}")
        assert "Errno" not in res.stderr and "unsafe-zip" not in res.stderr
    assert (vault / "log.jsonl").read_bytes() == log, "nothing imported"


def _damage_payload(z: Path) -> None:
    """Flip a byte inside the biggest member's data (not its headers): the zip opens, extracting fails."""
    with zipfile.ZipFile(z) as zf:
        info = max(zf.infolist(), key=lambda i: i.compress_size)
    data = bytearray(z.read_bytes())
    header = info.header_offset
    name_len = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(data[header + 28 : header + 30], "little")
    at = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    data[at] ^= 0xFF
    z.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "payload byte flipped"])
def test_a_damaged_zip_is_unreadable_zip_not_unsafe_zip(
    cli: Cli, filled_vault: Path, tmp_path: Path, damage: str
) -> None:
    """A bag zip cut short (an interrupted download) or with a damaged member is FAIL
    bundle.unreadable-zip naming the damage, not bundle.unsafe-zip ("File is not a zip file"); import
    refuses it the same way (exit 1, nothing imported)."""
    z = tmp_path / "bag.zip"
    assert cli("--vault", filled_vault, "export", "--all", "--zip", "--out", z).code == 0
    if damage == "truncated":
        z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    else:
        _damage_payload(z)
    res = cli("verify-bundle", z, "--json")
    assert res.code == 1, (res.stdout, res.stderr)
    (finding,) = res.json()["findings"]
    assert finding["code"] == "bundle.unreadable-zip" and finding["level"] == "FAIL"
    assert "damaged" in finding["message"] and "File is not a zip file" not in finding["message"]
    receiver = tmp_path / "receiver"
    assert cli("init", receiver, "--name", "receiver").code == 0
    res = cli("--vault", receiver, "import", z)
    assert res.code == 1 and "bag rejected: damaged" in _one_error(res)


def test_a_missing_allowed_signers_is_named_without_errno_text(cli: Cli, bag: Path) -> None:
    (bag / "evidence" / "keys" / "allowed_signers").unlink()
    res = cli("verify-bundle", bag, "--json")
    assert res.code == 1
    (finding,) = [
        f
        for f in res.json()["findings"]
        if f["subject"] == "evidence/keys/allowed_signers" and f["code"].startswith("bundle.")
    ]
    assert finding["code"] == "bundle.missing-file" and finding["level"] == "FAIL"
    assert "Errno" not in res.stdout and "No such file" not in res.stdout


def _set_bag_info(bag: Path, label: str, value: str | None) -> None:
    """Replace (or with None remove) a bag-info.txt label, then re-make the tag manifest."""
    info = bag / "bag-info.txt"
    lines = [ln for ln in info.read_text().splitlines() if not ln.startswith(f"{label}:")]
    if value is not None:
        lines.append(f"{label}: {value}")
    info.write_text("".join(ln + "\n" for ln in lines))
    rewrite_tagmanifest(bag)


def _mismatches(bag: Path, code: str = "bundle.export-mismatch") -> list[str]:
    report = verify_bundle(bag)
    return [f"{f.subject}: {f.message}" for f in report.failures if f.code == code]


def test_source_organization_must_be_the_signed_vault_name(cli: Cli, bag: Path, tmp_path: Path) -> None:
    """bag-info.txt is unsigned: a Source-Organization other than the name the signed vault.created line
    gives is a FAIL (and import, refusing the bag, records nothing)."""
    assert "Source-Organization: test vault\n" in (bag / "bag-info.txt").read_text()
    _set_bag_info(bag, "Source-Organization", "Trusted Police Lab")
    resign_as_exporter(bag)  # even the exporter cannot make bag-info.txt say another name
    assert _mismatches(bag) == [
        "bag-info.txt: Source-Organization is 'Trusted Police Lab', not the vault name the signed "
        "vault.created line gives ('test vault')"
    ]
    code, found = check(cli, bag)
    assert code == 1 and found == {"bundle.export-mismatch"}
    other = tmp_path / "receiving"
    assert cli("init", other).code == 0
    before = (other / "log.jsonl").read_bytes()
    res = cli("--vault", other, "import", bag)
    assert res.code == 1 and "bundle.export-mismatch" in res.stderr, res.stderr
    assert (other / "log.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    ("label", "value", "expected"),
    [
        ("Contact-Name", "Det. Smith, Trusted Police Lab", "label 'Contact-Name' is not one"),
        ("External-Description", "certified authentic", "External-Description is 'certified authentic'"),
        ("External-Identifier", None, "External-Identifier is there 0 times"),
        ("Internal-Sender-Identifier", "another-export", "Internal-Sender-Identifier is 'another-export'"),
        ("Bag-Count", "1 of 2", "Bag-Count is '1 of 2'"),
        ("Bagging-Date", "certified 2020", "Bagging-Date 'certified 2020' is no date"),
    ],
)
def test_every_bag_info_label_is_checked(bag: Path, label: str, value: str | None, expected: str) -> None:
    _set_bag_info(bag, label, value)
    found = _mismatches(bag)
    assert len(found) == 1 and found[0].startswith(f"bag-info.txt: {expected}"), found


def test_import_takes_the_sender_from_the_signed_log(
    cli: Cli, filled_vault: Path, tmp_path: Path, identity: str
) -> None:
    """vault.json's name is unsigned too: export writes the name the signed vault.created line gives, and
    import records the sender from the verified log."""
    config = filled_vault / "vault.json"
    doc = json.loads(config.read_text())
    doc["name"] = "Trusted Police Lab"
    config.write_text(json.dumps(doc))
    out = tmp_path / "bag"
    assert cli("--vault", filled_vault, "export", "--all", "--out", out).code == 0
    assert "Source-Organization: test vault\n" in (out / "bag-info.txt").read_text()
    assert json.loads((out / "evidence" / "export.json").read_text())["vault_name"] == "test vault"
    other = tmp_path / "receiving"
    assert cli("init", other).code == 0
    res = cli("--vault", other, "import", out, "--trust", identity, "--json")
    assert res.code == 0, res.stderr
    assert res.json()["source"] == f"bag {doc['vault_id']} from test vault"


def test_fingerprints_txt_lists_exactly_the_signers(bag: Path) -> None:
    """export.md: fingerprints.txt lists exactly the keys that signed (with the role and name the log
    gives them); an extra line, or a name changed, is a FAIL."""
    path = bag / "evidence" / "keys" / "fingerprints.txt"
    honest = path.read_text()
    path.write_text(honest + "SHA256:" + "A" * 43 + "  admin  Trusted Police Lab\n")
    rewrite_tagmanifest(bag)
    found = _mismatches(bag, "bundle.keys-mismatch")
    assert len(found) == 1 and found[0].startswith("evidence/keys/fingerprints.txt: is not exactly"), found
    assert "Trusted Police Lab" in found[0]
    path.write_text(honest.replace("Alice Custodian", "Trusted Police Lab"))
    rewrite_tagmanifest(bag)
    assert [f.split(":")[0] for f in _mismatches(bag, "bundle.keys-mismatch")] == [
        "evidence/keys/fingerprints.txt"
    ]


def _edit_export(bag: Path, change: Any) -> None:
    path = bag / "evidence" / "export.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1))
    rewrite_tagmanifest(bag)


EXPORT_EDITS: dict[str, tuple[Any, str]] = {
    "genesis_key": (lambda d: d.update(genesis_key="SHA256:" + "A" * 43), "field 'genesis_key' is"),
    "vault_name": (lambda d: d.update(vault_name="Trusted Police Lab"), "field 'vault_name' is"),
    "vault_id": (lambda d: d.update(vault_id="00000000-0000-4000-8000-000000000000"), "field 'vault_id' is"),
    "log_size": (lambda d: d.update(log_size=d["log_size"] + 1), "field 'log_size' is"),
    "log_size true": (lambda d: d.update(log_size=True), "field 'log_size' is"),
    "checkpoints": (lambda d: d.update(checkpoints=d["checkpoints"][:1]), "field 'checkpoints' is"),
    "redacted_fields": (lambda d: d.update(redacted_fields=["gps_lat"]), "field 'redacted_fields' is"),
    "created": (lambda d: d.update(created="certified"), "field 'created' is 'certified', not a time"),
    "extra field": (lambda d: d.update(certified_by="Police"), "fields 'certified_by' are not ones"),
    "field removed": (lambda d: d.pop("vault_name"), "lacks the fields vault_name"),
    "item size": (lambda d: d["items"][0].update(size=1), "field 'items' entry 0 (sha256:"),
    "item media_type": (
        lambda d: d["items"][0].update(media_type="video/mp4"),
        "'media_type' is 'video/mp4'",
    ),
    "item ingest_seq": (lambda d: d["items"][0].update(ingest_seq=0), "'ingest_seq' is 0, not"),
    "item extra field": (
        lambda d: d["items"][0].update(note="x"),
        "entry 0 does not have exactly the fields",
    ),
    "item removed": (lambda d: d["items"].pop(), "field 'items' lacks item sha256:"),
    "item twice": (lambda d: d["items"].append(dict(d["items"][0])), "is listed twice"),
}


@pytest.mark.parametrize("edit", sorted(EXPORT_EDITS))
def test_export_json_says_what_the_verified_log_does(bag: Path, edit: str) -> None:
    """Every export.json field the verified log and evidence determine is checked; the finding names it."""
    change, expected = EXPORT_EDITS[edit]
    _edit_export(bag, change)
    found = [f for f in _mismatches(bag) if f.startswith("evidence/export.json: ")]
    assert len(found) == 1 and expected in found[0], found


ZEROS = "0" * 64


@pytest.mark.parametrize(
    "rel",
    [
        f"evidence/metadata/{ZEROS}.json",
        f"evidence/openings/{ZEROS}.json",
        "evidence/extra.txt",
        "evidence/keys/notes.txt",
        "evidence/proofs/extra.json",
        "evidence/notes/certificate.txt",
        "CERTIFICATE.txt",
        "checkpoint file",
    ],
)
def test_a_file_the_export_does_not_write_is_a_fail(bag: Path, rel: str) -> None:
    """Nothing checks a file the export does not write, so it could claim anything: FAIL naming it
    (listed in the tag manifest or not)."""
    if rel == "checkpoint file":
        rel = _first_checkpoint(bag).relative_to(bag).as_posix() + "/tsa-x.json"
    (bag / rel).parent.mkdir(parents=True, exist_ok=True)
    (bag / rel).write_text('{"certified_by": "Trusted Police Lab"}\n')
    rewrite_tagmanifest(bag)
    with (bag / "tagmanifest-sha256.txt").open("a") as f:
        f.write(f"{hashlib.sha256((bag / rel).read_bytes()).hexdigest()}  {rel}\n")
    assert _mismatches(bag, "bundle.unexpected-file") == [
        f"{rel}: not a file an evidence-vault export writes: nothing checks what it says"
    ]


def test_a_symbolic_link_inside_the_bag_is_a_fail(cli: Cli, bag: Path) -> None:
    """An export writes no link: one inside the bag (which BagIt only warns about) is a FAIL too."""
    keys = bag / "evidence" / "keys"
    (bag / "allowed_signers").write_bytes((keys / "allowed_signers").read_bytes())
    (keys / "allowed_signers").unlink()
    (keys / "allowed_signers").symlink_to("../../allowed_signers")
    report = verify_bundle(bag)
    assert ("bag.path.symlink", "WARN") in {(f.code, f.level) for f in report.findings}
    assert [(f.subject, f.message) for f in report.failures if f.code == "bundle.unexpected-file"] == [
        ("allowed_signers", "not a file an evidence-vault export writes: nothing checks what it says"),
        ("evidence/keys/allowed_signers", "a symbolic link: an export writes none"),
    ]


def test_a_bag_without_its_tag_manifest_fails_and_is_not_imported(
    cli: Cli, bag: Path, tmp_path: Path
) -> None:
    """BagIt makes a tag manifest optional; an evidence-vault bag always has one, and it is what binds
    evidence/ to the bag: without it verify-bundle FAILs (as the stdlib script does), and import refuses
    the bag with exit 1 and one line."""
    (bag / "tagmanifest-sha256.txt").unlink()
    assert _mismatches(bag, "bundle.missing-file") == [
        "tagmanifest-sha256.txt: tagmanifest-sha256.txt is missing: the tag manifest, which binds evidence/ "
        "(log, keys, proofs) to the bag"
    ]
    code, found = check(cli, bag)
    assert code == 1 and found == {"bundle.missing-file"}
    assert _stdlib_script(bag).returncode == 1
    other = tmp_path / "receiving"
    assert cli("init", other).code == 0
    before = (other / "log.jsonl").read_bytes()
    res = cli("--vault", other, "import", bag)
    assert res.code == 1, res.stderr
    assert res.stderr.count("\n") == 1 and "bundle.missing-file" in res.stderr, res.stderr
    assert "nothing imported" in res.stderr and (other / "log.jsonl").read_bytes() == before


def _link_out(bag: Path, rel: str, tmp_path: Path) -> None:
    """Move ``rel`` out of the bag (an identical copy) and leave a symbolic link to it in its place."""
    outside = tmp_path / "outside" / rel.replace("/", "_")
    outside.parent.mkdir(exist_ok=True)
    shutil.move(bag / rel, outside)
    (bag / rel).symlink_to(outside)


@pytest.mark.parametrize("what", ["payload file", "data directory", "log", "fifo"])
def test_stdlib_script_refuses_links_and_special_files(bag: Path, tmp_path: Path, what: str) -> None:
    """The script followed links out of the bag: a payload file, data/ or the log replaced by a link to
    an identical copy outside passed. Now any link or special file is a FAIL, and nothing is read."""
    assert _stdlib_script(bag).returncode == 0
    if what == "payload file":
        rel = next((bag / "data").iterdir()).relative_to(bag).as_posix()
        _link_out(bag, rel, tmp_path)
    elif what == "data directory":
        rel = "data"
        _link_out(bag, rel, tmp_path)
    elif what == "log":
        rel = "evidence/log.jsonl"
        _link_out(bag, rel, tmp_path)
    else:
        rel = "evidence/pipe"
        os.mkfifo(bag / rel)
    res = _stdlib_script(bag)  # a FIFO read would block: the timeout catches that
    assert res.returncode == 1, res.stdout
    kind = "is not a regular file" if what == "fifo" else "is a symbolic link"
    assert f"FAIL {rel} {kind}" in res.stdout, res.stdout
    assert res.stdout.rstrip().splitlines()[-1].startswith("FAIL ("), res.stdout
    assert verify_bundle(bag).exit_code() == 1


def test_stdlib_script_finds_an_item_missing_from_data(bag: Path) -> None:
    """A payload file removed, and the manifests and Payload-Oxum made to match: the script checks that
    every item of the revealed log (and of export.json) is in data/, as verify-bundle does."""
    victim = next((bag / "data").iterdir())
    rel = victim.relative_to(bag).as_posix()
    item = "sha256:" + hashlib.sha256(victim.read_bytes()).hexdigest()
    victim.unlink()
    manifest = bag / "manifest-sha256.txt"
    manifest.write_text(
        "".join(ln + "\n" for ln in manifest.read_text().splitlines() if not ln.endswith(rel))
    )
    payload = list((bag / "data").iterdir())
    oxum = f"{sum(p.stat().st_size for p in payload)}.{len(payload)}"
    info = bag / "bag-info.txt"
    info.write_text(re.sub(r"Payload-Oxum: .*", f"Payload-Oxum: {oxum}", info.read_text()))
    rewrite_tagmanifest(bag)
    res = _stdlib_script(bag)
    assert res.returncode == 1, res.stdout
    assert f"FAIL item {item} is ingested in the revealed log, but no file in data/ holds it" in res.stdout
    assert f"FAIL evidence/export.json: '{rel}' is not a file in data/ holding item {item}" in res.stdout
    report = verify_bundle(bag)
    assert {"bundle.item-missing", "bundle.export-mismatch"} <= {f.code for f in report.failures}


def _long_name_zip(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "long.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bag/bagit.txt", "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
        zf.writestr(name, b"x")
    return path


def test_a_zip_entry_name_too_long_to_extract_is_one_short_line_and_exit_2(
    cli: Cli, vault: Path, tmp_path: Path
) -> None:
    """A 300-byte path component cannot be written (ENAMETOOLONG): no verdict on the bag, exit 2 as
    docs/exit-codes.md says, from verify-bundle and import alike (import said exit 1, "bag rejected").
    The name, printed twice, is cut to 100 characters each time: one short line, not kilobytes."""
    long = "a" * 300
    z = _long_name_zip(tmp_path, f"bag/data/{long}.jpg")
    before = (vault / "log.jsonl").read_bytes()
    for args in (("verify-bundle", z), ("--vault", vault, "import", z)):
        res = cli(*args)
        assert res.code == 2, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and len(res.stderr) < 400, res.stderr
        assert "a" * 100 + "…" in res.stderr and "a" * 101 not in res.stderr
        assert res.stderr.endswith("from long.zip: File name too long\n"), res.stderr
    assert (vault / "log.jsonl").read_bytes() == before


def test_a_finding_about_a_long_name_is_one_short_line(cli: Cli, tmp_path: Path) -> None:
    """A zip entry name can be 64 KB: the finding line that names it is cut too (--json keeps it)."""
    z = _long_name_zip(tmp_path, "bag/../" + "b" * 5000)
    res = cli("verify-bundle", z)
    assert res.code == 1
    (line,) = [ln for ln in res.stderr.splitlines() if "bundle.unsafe-zip" in ln]
    assert len(line) < 400 and "b" * 100 + "…" in line, line
    assert "b" * 5000 in cli("verify-bundle", z, "--json").stdout


@pytest.mark.parametrize("edit", ["name", "date", "verdict", "removed"])
def test_report_html_is_rendered_again_and_compared(cli: Cli, bag: Path, edit: str) -> None:
    """report.html was never checked: names or dates edited in it still verified. verify-bundle now
    renders it again from the verified evidence and fails it when it differs (or is missing)."""
    path = bag / "report.html"
    html = path.read_text()
    created = json.loads((bag / "evidence" / "export.json").read_text())["created"]
    assert f"report made {created}." in html and "Alice Custodian" in html
    if edit == "removed":
        path.unlink()
    else:
        old, new = {
            "name": ("Alice Custodian", "Trusted Police Lab"),
            "date": (created, "2019-01-01T00:00:00.000Z"),
            "verdict": ('class="outcome-WARN">WARN', 'class="outcome-PASS">PASS'),
        }[edit]
        assert old in html
        path.write_text(html.replace(old, new))
    rewrite_tagmanifest(bag)
    resign_as_exporter(bag)
    code, found = check(cli, bag)
    assert code == 1 and found == {"bundle.missing-file" if edit == "removed" else "bundle.report-mismatch"}


def test_report_html_of_a_stamped_bag_checks_on_any_machine(
    cli: Cli, stamped_bag: Path, home: Path, tmp_path: Path
) -> None:
    """The shipped report states what the bag proves by itself (no TSA root of the exporting machine
    counts), so it renders the same on the machine that pinned the TSA root, on a lawyer's, and with
    --tsa-ca; it says that the token checks only against the root shipped with it."""
    html = (stamped_bag / "report.html").read_text()
    assert "RFC 3161 token(s) that check only against the TSA root shipped with them" in html
    shipped = next(stamped_bag.glob("evidence/checkpoints/*/tsa-*.ca.pem"))
    for args in ((), ("--tsa-ca", shipped)):
        res = cli("verify-bundle", stamped_bag, "--json", *args)  # the stamping machine: root pinned
        assert res.code == 0 and "bundle.report-mismatch" not in res.stdout, res.stdout
    (home / "vaults.json").unlink()  # a lawyer's machine
    res = cli("verify-bundle", stamped_bag, "--json")
    assert res.code == 0 and "bundle.report-mismatch" not in res.stdout, res.stdout
    (stamped_bag / "report.html").write_text(html.replace("Alice Custodian", "Trusted Police Lab"))
    rewrite_tagmanifest(stamped_bag)
    resign_as_exporter(stamped_bag)
    assert check(cli, stamped_bag) == (1, {"bundle.report-mismatch"})


def test_a_data_link_is_not_walked(bag: Path, tmp_path: Path) -> None:
    """data/ as a symbolic link to a directory outside the bag (/, say) is reported, never walked:
    verify-bundle hashed every file under it and named each in a finding."""
    outside = tmp_path / "elsewhere"
    shutil.move(bag / "data", outside)
    (outside / "private-letter.txt").write_text("not part of the bag\n")
    (bag / "data").symlink_to(outside)
    report = verify_bundle(bag)
    assert {"bag.payload.missing-dir", "bundle.unexpected-file", "bundle.item-missing"} <= {
        f.code for f in report.failures
    }
    assert not [f for f in report.findings if "private-letter" in f.subject + f.message]


# -- the exporter signs the bag ------------------------------------------------------------------------

PHOTO = CORPUS / "images" / "Canon_40D.jpg"


@pytest.fixture
def custody_bag(cli: Cli, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Alice (genesis) takes a photo in, adds Bob and Carol, transfers the photo to Bob, who accepts it;
    Carol, who signed no line the bag reveals, exports it."""
    fps = {}
    for name in ("Alice", "Bob", "Carol"):
        res = cli("key", "new", "--name", name, "--json")
        assert res.code == 0, res.stderr
        fps[name] = res.json()["fingerprint"]
    vault = tmp_path / "vault"
    assert cli("--key", fps["Alice"], "init", vault).code == 0

    def run(who: str, *args: Any) -> Any:
        return cli("--vault", vault, "--key", fps[who], *args)

    assert run("Alice", "add", PHOTO).code == 0
    for who in ("Bob", "Carol"):
        pub = cli("key", "export-public", fps[who]).stdout.strip()
        assert run("Alice", "key", "add", pub, "--role", "custodian").code == 0
    res = run("Alice", "transfer", PHOTO, "--to", fps["Bob"], "--reason", "to the lab", "--json")
    assert res.code == 0, res.stderr
    assert run("Bob", "accept", res.json()["transfer_id"]).code == 0
    assert run("Alice", "checkpoint").code == 0
    out = tmp_path / "bag"
    assert run("Carol", "export", "--all", "--out", out).code == 0
    return out, fps


def _courier_hides(bag: Path, who: str) -> list[int]:
    """What anyone handling the bag could do with no key: turn the revealed lines ``who`` signed (a
    custody transfer accepted) into withheld stubs, drop their files and ``who``'s key files, render
    report.html again from what is left and make the tag manifest again."""
    from evidence_vault.bundle_verify import key_file_name, withheld_stub
    from evidence_vault.custody_report import bag_report

    lines = log_lines(bag)
    hidden = [n for n, line in enumerate(lines) if b'"custody.' in line and b'"withheld"' not in line]
    assert len(hidden) == 2  # the transfer and its acceptance
    for n in hidden:
        lines[n] = withheld_stub(n, lines[n])
        (bag / "evidence" / "events" / f"{n}.json").unlink()
        (bag / "evidence" / "events" / f"{n}.json.sig").unlink()
    write_log(bag, lines)
    keys = bag / "evidence" / "keys"
    (keys / key_file_name(who)).unlink()
    for path in (keys / "allowed_signers", keys / "fingerprints.txt", bag / "VERIFY.md"):
        path.write_text("".join(ln for ln in path.read_text().splitlines(True) if who not in ln))
    export = json.loads((bag / "evidence" / "export.json").read_text())
    names = {e["id"]: e["path"] for e in export["items"]}
    thumbs = {i: bag / p for i, p in names.items()}
    (bag / "report.html").write_bytes(bag_report(bag, thumbs, names=names, made=export["created"]))
    rewrite_tagmanifest(bag)
    return hidden


def test_a_signed_export_verifies_with_the_exporter_named(
    cli: Cli, custody_bag: tuple[Path, dict[str, str]]
) -> None:
    """The exporter signs tagmanifest-sha256.txt; bag-info.txt names it; its key ships even though it
    signed no revealed line. verify-bundle, the stdlib script and VERIFY.md's ssh-keygen command pass."""
    bag, fps = custody_bag
    assert f"Evidence-Vault-Exporter: {fps['Carol']}\n" in (bag / "bag-info.txt").read_text()
    assert "tagmanifest-sha256.txt.sig" not in (bag / "tagmanifest-sha256.txt").read_text()
    keys = bag / "evidence" / "keys"
    assert fps["Carol"] in (keys / "allowed_signers").read_text()
    assert fps["Carol"] in (keys / "fingerprints.txt").read_text()
    res = cli("verify-bundle", bag, "--json", "--trust", fps["Alice"])
    assert res.code == 0, res.stdout
    (signed,) = [f for f in res.json()["findings"] if f["code"] == "bundle.signed"]
    assert signed["level"] == "INFO" and fps["Carol"] in signed["message"], signed
    script = _stdlib_script(bag)
    assert script.returncode == 0 and "PASS" in script.stdout, script.stdout
    assert f"exporter {fps['Carol']}" in script.stdout and "ssh-keygen" in script.stdout
    command = (
        f"ssh-keygen -Y verify -f evidence/keys/allowed_signers -I {fps['Carol']} -n evidence-vault "
        "-s tagmanifest-sha256.txt.sig < tagmanifest-sha256.txt"
    )
    assert command in (bag / "VERIFY.md").read_text()
    done = subprocess.run(["sh", "-c", command], cwd=bag, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and 'Good "evidence-vault" signature' in done.stdout + done.stderr, done
    (bag / "tagmanifest-sha256.txt").write_text((bag / "tagmanifest-sha256.txt").read_text() + "\n")
    done = subprocess.run(["sh", "-c", command], cwd=bag, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_a_courier_cannot_withhold_more_lines(
    cli: Cli, custody_bag: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Turning revealed lines into stubs (a custody transfer, and the receiver's keys) left a bag that
    verified, with only a larger withheld-lines count: the exporter's signature no longer checks."""
    bag, fps = custody_bag
    _courier_hides(bag, fps["Bob"])
    assert check(cli, bag) == (1, {"bundle.bad-signature"})  # nothing else tells
    assert _stdlib_script(bag).returncode == 0  # it cannot check Ed25519: it says so
    other = tmp_path / "receiving"
    assert cli("init", other).code == 0
    before = (other / "log.jsonl").read_bytes()
    res = cli("--vault", other, "import", bag, "--trust", fps["Alice"])
    assert res.code == 1 and "bundle.bad-signature" in res.stderr, res.stderr
    assert (other / "log.jsonl").read_bytes() == before


def test_a_bag_without_the_exporter_signature_fails(
    cli: Cli, custody_bag: tuple[Path, dict[str, str]]
) -> None:
    bag, fps = custody_bag
    _courier_hides(bag, fps["Bob"])
    (bag / "tagmanifest-sha256.txt.sig").unlink()
    assert check(cli, bag) == (1, {"bundle.unsigned"})
    script = _stdlib_script(bag)
    assert script.returncode == 1 and "not signed by its exporter" in script.stdout, script.stdout
    _set_bag_info(bag, "Evidence-Vault-Exporter", None)  # the label gone too
    code, found = check(cli, bag)
    assert code == 1 and "bundle.unsigned" in found, found


def test_a_bag_signed_again_by_a_key_the_vault_never_authorized_fails(
    cli: Cli, custody_bag: tuple[Path, dict[str, str]]
) -> None:
    from evidence_vault.signing import generate

    bag, fps = custody_bag
    _courier_hides(bag, fps["Bob"])
    mallory = generate()

    def sign() -> None:
        manifest = (bag / "tagmanifest-sha256.txt").read_bytes()
        (bag / "tagmanifest-sha256.txt.sig").write_text(armor(mallory.sign(manifest)))

    sign()  # over the bag as the courier left it, still naming Carol
    assert check(cli, bag) == (1, {"bundle.bad-signature"})
    _set_bag_info(bag, "Evidence-Vault-Exporter", mallory.fingerprint)  # and naming itself
    sign()
    code, found = check(cli, bag)
    assert code == 1 and "bundle.exporter-unauthorized" in found, found
    assert "bundle.signed" not in cli("verify-bundle", bag, "--json").stdout


def test_a_hand_made_ingest_line_naming_no_item_string_is_a_finding(cli: Cli, bag: Path) -> None:
    """An item.ingested line whose ``item`` is a list (any JSON, in a hand-made bag) stopped the custody
    report's rendering with an internal error (exit 2): it is a FAIL like any bad line."""
    lines = log_lines(bag)
    event = json.loads(lines[0])
    event.update(type="item.ingested", data={**event["data"], "size": None, "item": []})
    lines[0] = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    write_log(bag, lines)
    rewrite_tagmanifest(bag)
    code, found = check(cli, bag)
    assert code == 1 and found, found
