"""Hand-made log lines with values no signer writes: `verify` reports them, never stops.

Anyone who can write to the vault can append such a line; it needs no key. Before this test, most of
these made `verify` end with "internal error" (SQLite refused to store the value), so the report that
names the damage was never written; an object id naming a path outside the store was read from there.
The index behind `ls` and `add` lists such lines or refuses them with one line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence_vault import events as ev
from evidence_vault.errors import EvidenceVaultError
from evidence_vault.events import line_hash
from evidence_vault.vault import Vault
from evidence_vault.verify import verify_vault
from tests.conftest import Cli
from tests.hostile_json import FIELDS, JSON

ITEM = "sha256:" + "c" * 64
CASES: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    "size beyond 64 bits": ("item.ingested", {"item": ITEM, "size": 2**70}, {"log.bad-item"}),
    "negative size": ("item.ingested", {"item": ITEM, "size": -1}, {"log.bad-item"}),
    "derived_from an object": (
        "item.ingested",
        {"item": ITEM, "size": 1, "derived_from": {"a": 1}},
        {"log.custody-violation"},
    ),
    "derived_from a lone surrogate": (
        "item.ingested",
        {"item": ITEM, "size": 1, "derived_from": "\ud800"},
        {"log.custody-violation"},
    ),
    "metadata a lone surrogate": (
        "item.ingested",
        {"item": ITEM, "size": 1, "metadata": "\ud800", "committed": {"\ud801": "\ud802"}},
        {"object.missing"},
    ),
    # Read whole by `ls` and `show`: until object ids were checked, `ls` read /dev/zero until memory ran out.
    "metadata /dev/zero": (
        "item.ingested",
        {"item": ITEM, "size": 1, "metadata": "sha256:/dev/zero"},
        {"object.missing"},
    ),
    "metadata outside the store": (
        "item.ingested",
        {"item": ITEM, "size": 1, "metadata": "sha256:../../../../../../../../etc/hostname"},
        {"object.missing"},
    ),
    "openings /dev/zero": (
        "item.annotated",
        {"item": ITEM, "openings": "sha256:/dev/zero"},
        {"object.missing"},
    ),
    "annotation of a lone surrogate": ("item.annotated", {"item": "\ud800x"}, {"log.custody-violation"}),
    "transfer of a lone surrogate": (
        "custody.transferred",
        {"item": "\udfff", "to": "\ud800", "transfer_id": "\ud800"},
        {"log.custody-violation"},
    ),
    "export of odd values": (
        "item.exported",
        {"items": [{"x": 1}, "\udfff", 2**80]},
        {"log.custody-violation"},
    ),
}


def _append(vault: Path, etype: str, data: dict[str, Any], *, seq: int | None = None) -> None:
    """A line chained to the last one, in key order, with the last line's (now wrong) signature."""
    log = vault / "log.jsonl"
    last = log.read_bytes().splitlines()[-1]
    event = json.loads(last)
    event.update(seq=event["seq"] + 1 if seq is None else seq, prev=line_hash(last), type=etype, data=data)
    with open(log, "ab") as fh:
        fh.write(json.dumps(event, separators=(",", ":"), sort_keys=True).encode() + b"\n")


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_reports_hand_made_values(cli: Cli, filled_vault: Path, case: str) -> None:
    etype, data, expected = CASES[case]
    _append(filled_vault, etype, data)
    res = cli("--vault", filled_vault, "verify", "--json")  # an exception here fails the test
    assert res.code == 1, res.stderr
    report = res.json()
    fails = {f["code"] for f in report["findings"] if f["level"] == "FAIL"}
    assert "log.bad-signature" in fails and expected <= fails, fails
    for f in report["findings"]:
        if f["code"] in expected and f["code"].startswith("log."):
            assert f["seq"] == 5, f  # the hand-made line
    assert "internal error" not in res.stderr
    listing = cli("--vault", filled_vault, "ls", "--json")
    if listing.code:  # the index refuses the line: one line naming the log and where
        assert listing.stderr.count("\n") == 1 and "log.jsonl" in listing.stderr, listing.stderr
        assert "byte" in listing.stderr and "internal error" not in listing.stderr
    else:
        assert len(listing.json()) >= 4


def test_seq_beyond_64_bits_is_reported(cli: Cli, filled_vault: Path) -> None:
    _append(filled_vault, "item.annotated", {"item": ITEM}, seq=2**70)
    res = cli("--vault", filled_vault, "verify", "--json")
    assert res.code == 1
    assert "log.seq-mismatch" in {f["code"] for f in res.json()["findings"]}
    listing = cli("--vault", filled_vault, "ls")
    assert listing.code == 1 and "impossible seq" in listing.stderr and "log.jsonl" in listing.stderr


# -- fuzzed: any JSON in any field of any event type ----------------------------------------------------


@pytest.fixture
def fuzz_base(cli: Cli, filled_vault: Path, identity: str) -> tuple[Path, str, list[str]]:
    items = [i["id"] for i in cli("--vault", filled_vault, "ls", "--json").json()]
    assert cli("--vault", filled_vault, "checkpoint").code == 0
    return filled_vault, identity, items


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),  # FUZZ_EXAMPLES=600 ran clean too
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_events_are_reported_never_raised(
    data: st.DataObject,
    fuzz_base: tuple[Path, str, list[str]],
    tmp_path_factory: pytest.TempPathFactory,
    cli: Cli,
) -> None:
    """Whatever an appended line holds, verify returns a report with a FAIL, and the index either
    takes the line or refuses it with an EvidenceVaultError (one line in the CLI)."""
    src, fp, items = fuzz_base
    copy = tmp_path_factory.mktemp("fuzz") / "vault"
    shutil.copytree(src, copy)
    known = st.sampled_from([*items, fp, "sha256:" + "c" * 64])
    log = copy / "log.jsonl"
    lines = log.read_bytes().splitlines()
    event = json.loads(lines[-1])
    for seq in range(len(lines), len(lines) + data.draw(st.integers(1, 3))):
        last = log.read_bytes().splitlines()[-1]
        fields = data.draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True))
        event.update(
            seq=data.draw(st.sampled_from([seq, 2**70, -1, "1"])),
            prev=data.draw(st.sampled_from([line_hash(last), None, "\ud800"])),
            type=data.draw(st.sampled_from([*sorted(ev.EVENT_TYPES), "x"])),
            actor=data.draw(st.sampled_from([fp, "\ud800", ""])),
            time=data.draw(
                st.sampled_from(["2026-01-01T00:00:00.000Z", "2030-01-01T00:00:00.000Z", "\udfff"])
            ),
            data={f: data.draw(known | JSON) for f in fields},
        )
        with open(log, "ab") as fh:
            fh.write(json.dumps(event, separators=(",", ":"), sort_keys=True).encode() + b"\n")
    vault = Vault(copy)
    try:
        report = verify_vault(vault, trusted=[fp], record_head=False)
        assert report.failures, "a hand-made line must fail verification"
        json.dumps(report.to_dict()).encode("utf-8")  # every output can be written
        try:
            list(vault.items())
        except EvidenceVaultError as exc:
            assert "log.jsonl" in str(exc)
    finally:
        vault.close()
    # What a user runs on such a vault: a result or one line, never an exception (cli re-raises them).
    item = items[0][7:19]
    for args in (
        ("ls", "--json"),
        ("show", item, "--json"),
        ("log", "--json"),
        ("timeline", item),
        ("find", "x"),
    ):
        res = cli("--vault", copy, *args)
        assert res.code in (0, 1, 2) and "internal error" not in res.stderr, (args, res.stderr)
        if res.code:
            assert res.stderr.count("\n") == 1, (args, res.stderr)
