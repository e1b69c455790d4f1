"""The append guard: no signed event is chained onto a last line no authorized key wrote there, and
`doctor --repair` sets such lines aside (a copy kept) without touching what this machine saw.

Anyone who can write the vault can append a line without a key. Before the guard, `add` chained the
next signed event onto it, so the custodian's signature vouched for the hand-made line.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import events as ev
from evidence_vault.events import Event, line_hash
from evidence_vault.signing import Signer, generate
from tests.conftest import Cli, CliResult, signer_of
from tests.paths import CORPUS

NEW_FILE = CORPUS / "images" / "DSCN0010.jpg"  # not among the filled vault's files


def _log(vault: Path) -> Path:
    return vault / "log.jsonl"


def _line(vault: Path, signer: Signer | None, etype: str, data: dict[str, Any], **change: Any) -> bytes:
    """The next line of the log, chained and in canonical form; signed by ``signer``, or carrying the
    last line's signature (which does not verify for it) when ``signer`` is None."""
    last = _log(vault).read_bytes().splitlines()[-1]
    previous = json.loads(last)
    fields = {
        "seq": previous["seq"] + 1,
        "prev": line_hash(last),
        "time": "2030-01-01T00:00:00.000Z",
        "type": etype,
        "actor": signer.fingerprint if signer else previous["actor"],
        "data": data,
    }
    fields.update(change)
    event = Event(**fields)
    sig = base64.b64encode(signer.sign(event.signing_bytes())).decode() if signer else previous["sig"]
    return Event(**{**event.__dict__, "sig": sig}).line() + b"\n"


def _append(vault: Path, line: bytes) -> None:
    with open(_log(vault), "ab") as fh:
        fh.write(line)


def _annotation(cli: Cli, vault: Path) -> dict[str, Any]:
    item = cli("--vault", vault, "ls", "--json").json()[0]["id"]
    return {"item": item, "tags": ["forged"]}


def _refused(res: CliResult, log: Path, before: bytes, needle: str) -> None:
    """One line naming the log and the problem, exit 2, nothing written."""
    assert res.code == 2, (res.stdout, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert str(log) in res.stderr and needle in res.stderr and "nothing recorded" in res.stderr, res.stderr
    assert log.read_bytes() == before


def _doctor(cli: Cli, vault: Path, *args: str) -> tuple[int, dict[str, Any]]:
    res = cli("--vault", vault, "doctor", "--json", *args)
    return res.code, res.json()


def test_add_refuses_after_a_forged_line_and_doctor_sets_it_aside(cli: Cli, filled_vault: Path) -> None:
    log = _log(filled_vault)
    genuine = log.read_bytes()
    forged = _line(filled_vault, None, ev.ITEM_ANNOTATED, _annotation(cli, filled_vault))
    _append(filled_vault, forged)
    before = log.read_bytes()

    res = cli("--vault", filled_vault, "add", NEW_FILE)
    _refused(res, log, before, "was not written there by an authorized key (signature does not verify)")
    assert "doctor --repair" in res.stderr
    item = _annotation(cli, filled_vault)["item"][7:19]
    for args in (("annotate", item, "--note", "x"), ("checkpoint",)):
        _refused(cli("--vault", filled_vault, *args), log, before, "signature does not verify")

    code, found = _doctor(cli, filled_vault)
    assert code == 1 and not found["healthy"] and not found["repaired"]
    (line,) = found["unsound_lines"]
    assert line["seq"] == 5 and line["repairable"] and line["saved_to"] is None
    assert line["offset"] == len(genuine) and log.read_bytes() == before  # doctor alone changes nothing

    code, fixed = _doctor(cli, filled_vault, "--repair")
    assert code == 0 and fixed["repaired"]
    (line,) = fixed["unsound_lines"]
    assert Path(line["saved_to"]).read_bytes() == forged  # the copy kept is exactly the line cut
    assert log.read_bytes() == genuine

    res = cli("--vault", filled_vault, "add", NEW_FILE, "--json")
    assert res.code == 0 and res.json_lines()[0]["status"] == "added", res.stdout
    assert cli("--vault", filled_vault, "verify").code == 0
    code, found = _doctor(cli, filled_vault)
    assert code == 0 and found["healthy"] and not found["unsound_lines"]


def test_doctor_repair_sets_aside_every_forged_line_from_the_end(cli: Cli, filled_vault: Path) -> None:
    log = _log(filled_vault)
    genuine = log.read_bytes()
    data = _annotation(cli, filled_vault)
    forged = []
    for _ in range(3):
        line = _line(filled_vault, None, ev.ITEM_ANNOTATED, data)
        _append(filled_vault, line)
        forged.append(line)
    code, fixed = _doctor(cli, filled_vault, "--repair")
    assert code == 0
    assert [u["seq"] for u in fixed["unsound_lines"]] == [7, 6, 5]
    assert [Path(u["saved_to"]).read_bytes() for u in fixed["unsound_lines"]] == forged[::-1]
    assert log.read_bytes() == genuine


def test_replayed_genuine_line_is_refused(cli: Cli, filled_vault: Path) -> None:
    """A copy of a line a key really signed, appended again: its signature verifies, its place does not."""
    log = _log(filled_vault)
    lines = log.read_bytes().splitlines()
    _append(filled_vault, lines[-1] + b"\n")
    before = log.read_bytes()
    _refused(cli("--vault", filled_vault, "add", NEW_FILE), log, before, "prev is not the hash")


def test_line_signed_by_a_stranger_is_refused(cli: Cli, filled_vault: Path) -> None:
    log = _log(filled_vault)
    _append(filled_vault, _line(filled_vault, generate(), ev.ITEM_ANNOTATED, _annotation(cli, filled_vault)))
    before = log.read_bytes()
    _refused(cli("--vault", filled_vault, "add", NEW_FILE), log, before, "was never authorized")


def test_line_signed_by_a_revoked_key_is_refused(cli: Cli, filled_vault: Path, home: Path) -> None:
    """A stolen key, revoked: a line it signs after its revocation is not chained onto."""
    res = cli("key", "new", "--name", "Bob", "--json")
    bob = res.json()["fingerprint"]
    pub = cli("key", "export-public", bob).stdout.strip()
    assert cli("--vault", filled_vault, "key", "add", pub, "--role", "custodian").code == 0
    padded = bob.removeprefix("SHA256:") + "="  # as a base64 tool prints it: the same key
    assert cli("--vault", filled_vault, "key", "revoke", padded, "--reason", "laptop stolen").code == 0
    log = _log(filled_vault)
    _append(
        filled_vault,
        _line(filled_vault, signer_of(home, bob), ev.ITEM_ANNOTATED, _annotation(cli, filled_vault)),
    )
    before = log.read_bytes()
    _refused(cli("--vault", filled_vault, "add", NEW_FILE), log, before, "was revoked")


def test_forged_key_event_is_refused_by_the_index_and_set_aside(
    cli: Cli, filled_vault: Path, identity: str
) -> None:
    """A key.added in the genesis admin's name with a signature that does not verify: before, the
    index took it, so the key it named counted as authorized for every later check."""
    intruder = generate()
    key = {"fingerprint": intruder.fingerprint, "public_key": intruder.public.openssh(), "name": "x"}
    log = _log(filled_vault)
    genuine = log.read_bytes()
    _append(filled_vault, _line(filled_vault, None, ev.KEY_ADDED, {"key": key, "role": "admin"}))
    res = cli("--vault", filled_vault, "ls")
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "key event that cannot be taken (signature check failed" in res.stderr and str(log) in res.stderr
    code, fixed = _doctor(cli, filled_vault, "--repair")
    assert code == 0, fixed
    (line,) = fixed["unsound_lines"]
    assert line["seq"] == 5 and "signature check failed" in line["problem"]
    assert log.read_bytes() == genuine
    assert cli("--vault", filled_vault, "ls").code == 0


def test_log_cut_below_what_this_machine_saw_is_refused_and_not_repaired(
    cli: Cli, filled_vault: Path
) -> None:
    """The last lines this machine wrote were removed: nothing is chained onto the shorter log, and
    doctor does not cut further."""
    log = _log(filled_vault)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-2]))
    before = log.read_bytes()
    _refused(cli("--vault", filled_vault, "add", NEW_FILE), log, before, "lines were removed from the end")
    code, found = _doctor(cli, filled_vault, "--repair")
    assert code == 1
    (line,) = found["unsound_lines"]
    assert not line["repairable"] and line["saved_to"] is None
    assert log.read_bytes() == before


def test_doctor_on_a_cut_log_does_not_advise_repair(cli: Cli, filled_vault: Path) -> None:
    """A log cut below what this machine saw: doctor's advice says what --repair does not do, and does
    not then tell the user to run it."""
    log = _log(filled_vault)
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:2]))
    res = cli("--vault", filled_vault, "doctor")
    assert res.code == 1
    assert "never cuts" in res.stderr and "doctor --repair` to fix" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "run `evidence-vault verify` for the whole log"


@pytest.mark.parametrize("how", ["emptied", "deleted"])
@pytest.mark.parametrize("pinned", [True, False])
def test_doctor_on_an_emptied_or_deleted_log_finds_it(
    cli: Cli, filled_vault: Path, tmp_path: Path, how: str, pinned: bool
) -> None:
    """`: > log.jsonl` (or rm) removed every event: doctor says so and exits 1, as for a log cut to fewer
    lines, instead of "the log ends cleanly; nothing to repair"; --repair changes nothing."""
    from evidence_vault import schemas

    log = _log(filled_vault)
    if how == "emptied":
        log.write_bytes(b"")
    else:
        log.unlink()
    env = {} if pinned else {"EVIDENCE_VAULT_HOME": str(tmp_path / "other-machine")}
    for args in ((), ("--repair",)):
        res = cli("--vault", filled_vault, "doctor", "--json", *args, env=env)
        assert res.code == 1, (res.stdout, res.stderr)
        found = res.json()
        assert schemas.validate("doctor-result", found)
        assert not found["healthy"] and found["unsound_lines"] == []
        assert ("missing" if how == "deleted" else "empty") in found["log_problem"]
        assert ("this machine saw it up to seq 4" in found["log_problem"]) == pinned
        assert log.exists() == (how == "emptied") and (how == "deleted" or log.read_bytes() == b"")
    res = cli("--vault", filled_vault, "doctor", env=env)
    assert res.code == 1 and "nothing to repair" not in res.stderr
    assert "cannot bring events back" in res.stderr and "doctor --repair` to" not in res.stderr


def test_rewritten_last_line_is_refused_and_not_repaired(cli: Cli, filled_vault: Path) -> None:
    """The last line this machine wrote, replaced by one with other data: doctor keeps it for the
    investigation (it is at the head this machine saw)."""
    log = _log(filled_vault)
    lines = log.read_bytes().splitlines(keepends=True)
    event = json.loads(lines[-1])
    event["data"]["size"] = event["data"]["size"] + 1
    lines[-1] = Event.from_dict(event).line() + b"\n"
    log.write_bytes(b"".join(lines))
    before = log.read_bytes()
    _refused(cli("--vault", filled_vault, "add", NEW_FILE), log, before, "history was rewritten")
    code, found = _doctor(cli, filled_vault, "--repair")
    assert code == 1 and not found["unsound_lines"][0]["repairable"]
    assert log.read_bytes() == before


def test_damaged_last_line_is_set_aside(cli: Cli, filled_vault: Path) -> None:
    log = _log(filled_vault)
    genuine = log.read_bytes()
    _append(filled_vault, b"{not json\n")
    res = cli("--vault", filled_vault, "add", NEW_FILE)
    assert (
        res.code == 2 and "last complete log line is damaged" in res.stderr
    )  # a refusal, as for any unsound last line
    code, fixed = _doctor(cli, filled_vault, "--repair")
    assert code == 0
    (line,) = fixed["unsound_lines"]
    assert line["seq"] is None and "damaged" in line["problem"]
    assert log.read_bytes() == genuine


def test_lines_other_authorized_keys_wrote_are_chained_onto(
    cli: Cli, filled_vault: Path, home: Path, identity: str
) -> None:
    """A second admin's genuine line, written on another machine: it passes the guard."""
    res = cli("key", "new", "--name", "Bob", "--json")
    bob = res.json()["fingerprint"]
    pub = cli("key", "export-public", bob).stdout.strip()
    assert cli("--vault", filled_vault, "key", "add", pub, "--role", "admin").code == 0
    dave = generate()
    key = {"fingerprint": dave.fingerprint, "public_key": dave.public.openssh(), "name": "Dave"}
    _append(
        filled_vault,
        _line(filled_vault, signer_of(home, bob), ev.KEY_ADDED, {"key": key, "role": "custodian"}),
    )
    res = cli("--vault", filled_vault, "--key", identity, "add", NEW_FILE)
    assert res.code == 0, res.stderr
    assert cli("--vault", filled_vault, "verify").code == 0


def _forge_index(vault: Path, intruder: Signer, key_line: object) -> None:
    """Edit the index cache (in the vault, so as writable as the log) to authorize ``intruder``."""
    db = sqlite3.connect(vault / "cache" / "index.sqlite")
    with db:
        authority = json.loads(db.execute("SELECT v FROM meta WHERE k='authority'").fetchone()[0])
        grant = dict(authority["keys"][0])
        grant.update(fingerprint=intruder.fingerprint, public_key=intruder.public.openssh(), role="admin")
        authority["keys"].append(grant)
        db.execute("UPDATE meta SET v=? WHERE k='authority'", (json.dumps(authority),))
        if key_line is not None:
            lines = json.loads(db.execute("SELECT v FROM meta WHERE k='key_lines'").fetchone()[0])
            lines[intruder.fingerprint] = key_line
            db.execute("UPDATE meta SET v=? WHERE k='key_lines'", (json.dumps(lines),))
    db.close()


@pytest.mark.parametrize(
    ("key_line", "needle"),
    [
        (None, "was never authorized"),
        (0, "does not point at the line that brought in key"),
        ("x", "was never authorized"),  # not an offset: left out
        (-1, "was never authorized"),
    ],
)
def test_forged_index_does_not_make_a_strangers_key_count(
    cli: Cli, filled_vault: Path, key_line: object, needle: str
) -> None:
    """The index is in the vault: whoever forges a line can forge it too. The key that signed the
    last line is taken from the log's own key lines, signed back to the pinned genesis key."""
    intruder = generate()
    assert cli("--vault", filled_vault, "ls").code == 0  # the index is current
    log = _log(filled_vault)
    genuine = log.read_bytes()
    _forge_index(filled_vault, intruder, key_line)
    _append(filled_vault, _line(filled_vault, intruder, ev.ITEM_ANNOTATED, _annotation(cli, filled_vault)))
    before = log.read_bytes()
    _refused(cli("--vault", filled_vault, "add", NEW_FILE), log, before, needle)
    # doctor --repair judges with an index read again from the log: the forged grant is gone.
    code, fixed = _doctor(cli, filled_vault, "--repair")
    assert code == 0 and "was never authorized" in fixed["unsound_lines"][0]["problem"]
    assert log.read_bytes() == genuine
    assert cli("--vault", filled_vault, "add", NEW_FILE).code == 0


def test_vault_with_another_genesis_key_than_pinned_is_refused(
    cli: Cli, filled_vault: Path, home: Path
) -> None:
    """The whole log re-signed from a genesis of someone else's (the vault id kept): nothing is
    chained onto it on a machine that pinned the real genesis key."""
    intruder = generate()
    log = _log(filled_vault)
    events = [json.loads(line) for line in log.read_bytes().splitlines()]
    key = {"fingerprint": intruder.fingerprint, "public_key": intruder.public.openssh(), "name": "x"}
    events[0]["data"]["key"] = key
    out, prev = [], None
    for e in events:
        fields = {k: e[k] for k in ("seq", "time", "type", "data")}
        event = Event(**fields, prev=prev, actor=intruder.fingerprint)
        sig = base64.b64encode(intruder.sign(event.signing_bytes())).decode()
        line = Event(**{**event.__dict__, "sig": sig}).line()
        out.append(line + b"\n")
        prev = line_hash(line)
    log.write_bytes(b"".join(out))
    # One line more than this machine saw, so that it is the genesis key that stops the append.
    _append(
        filled_vault, _line(filled_vault, intruder, ev.ITEM_ANNOTATED, {"item": events[1]["data"]["item"]})
    )
    shutil.rmtree(filled_vault / "cache")
    before = log.read_bytes()
    res = cli("--vault", filled_vault, "add", NEW_FILE)
    _refused(res, log, before, "ends a log whose genesis key")
    assert (
        "is not the one this machine pinned" in res.stderr and "restore the vault from a copy" in res.stderr
    )
    code, found = _doctor(cli, filled_vault, "--repair")  # cutting lines would not help: none is cut
    assert code == 1 and not found["unsound_lines"][0]["repairable"]
    assert log.read_bytes() == before


def _objects(vault: Path) -> set[str]:
    return {p.name for p in (vault / "objects").rglob("*") if p.is_file()}


@pytest.mark.parametrize("why", ["unsound last line", "revoked key", "damaged last line"])
def test_add_refused_for_a_known_reason_stores_nothing(
    cli: Cli, filled_vault: Path, tmp_path: Path, why: str
) -> None:
    """A refusal known before any file is read (the log ends with a line no authorized key wrote, or the
    acting key is revoked) said "nothing recorded" but left the file in objects/: the next `verify` warned
    of an orphan (and `verify --strict` failed). Now nothing is stored either."""
    new = tmp_path / "new.bin"
    new.write_bytes(b"a file this vault has never seen " * 100)
    args: tuple[str, ...] = ()
    if why == "revoked key":
        bob = cli("key", "new", "--name", "Bob", "--json").json()["fingerprint"]
        pub = cli("key", "export-public", bob).stdout.strip()
        assert cli("--vault", filled_vault, "key", "add", pub).code == 0
        assert cli("--vault", filled_vault, "key", "revoke", bob, "--reason", "lost").code == 0
        args = ("--key", bob)
    elif why == "damaged last line":  # no JSON at all: a refusal too (it exited 1, the FAIL code)
        _append(filled_vault, b"garbage{\n")
    else:
        _append(filled_vault, _line(filled_vault, None, ev.ITEM_ANNOTATED, _annotation(cli, filled_vault)))
    stored = _objects(filled_vault)
    log = _log(filled_vault)
    before = log.read_bytes()
    res = cli("--vault", filled_vault, *args, "add", new)
    assert res.code == 2, res.stderr
    assert "nothing recorded" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert log.read_bytes() == before
    assert _objects(filled_vault) == stored, "a refused add must not leave the file in the store"
    if why != "revoked key":
        assert "doctor --repair" in res.stderr
        assert cli("--vault", filled_vault, "doctor", "--repair").code == 0
    res = cli("--vault", filled_vault, "verify", "--strict", "--json")
    assert "object.orphan" not in {f["code"] for f in res.json()["findings"]}


def test_import_refused_after_an_unsound_last_line_stores_nothing(
    cli: Cli, filled_vault: Path, identity: str, tmp_path: Path
) -> None:
    """`import` stored the bag's files (and its tag files' object) before its append was refused."""
    bag = tmp_path / "bag.zip"
    assert cli("--vault", filled_vault, "export", "--all", "--out", bag, "--zip").code == 0
    other = tmp_path / "receiving"
    assert cli("init", other).code == 0
    _append(other, _line(other, None, ev.ITEM_ANNOTATED, {"item": "sha256:" + "0" * 64, "tags": ["forged"]}))
    stored = _objects(other)
    before = _log(other).read_bytes()
    res = cli("--vault", other, "import", bag, "--trust", identity)
    _refused(res, _log(other), before, "signature does not verify")
    assert _objects(other) == stored
