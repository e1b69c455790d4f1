"""``timeline`` and ``log --item`` write an item's events as they are read (an item can have a hundred
thousand events: memory stays flat), with the same bytes a whole document would have had."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import custody_ops
from evidence_vault.cli import output
from evidence_vault.vault import Vault
from tests.conftest import SAMPLE_FILES, Cli

DOCUMENTS: list[list[Any]] = [
    [],
    [{"seq": 1}],
    [{"seq": 1, "summary": 'annotated, tags ünïcode, "quoted"\n'}, {"nested": {"a": [1, 2, {"b": None}]}}, 3],
]


@pytest.mark.parametrize("events", DOCUMENTS)
def test_streamed_json_document_is_the_whole_document(
    events: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    head = {"item": "sha256:" + "ab" * 32, "name": "Zeugenaussage – 1.mp4"}
    output.emit_json({**head, "events": events})
    whole = capsys.readouterr().out
    output.emit_json_document(head, "events", iter(events))
    assert capsys.readouterr().out == whole


def test_timeline_streams_every_event_in_order_with_its_checkpoint(vault: Path, cli: Cli) -> None:
    photo = SAMPLE_FILES[0]
    assert cli("--vault", vault, "add", photo).code == 0
    for i in range(3):
        assert cli("--vault", vault, "annotate", photo, "--note", f"before {i}").code == 0
    assert cli("--vault", vault, "checkpoint").code == 0  # seq 5: a tree of the 5 lines 0..4
    for i in range(2):
        assert cli("--vault", vault, "annotate", photo, "--note", f"between {i}").code == 0
    assert cli("--vault", vault, "checkpoint").code == 0  # seq 8: the 8 lines 0..7
    assert cli("--vault", vault, "annotate", photo, "--note", "after").code == 0

    v = Vault(vault)
    item = v.resolve(str(photo)).id
    entries = custody_ops.timeline(v, item)
    assert iter(entries) is entries  # an iterator: entries are made as they are written, not listed first
    doc = cli("--vault", vault, "timeline", photo, "--json")
    assert doc.code == 0, doc.stderr
    events = doc.json()["events"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 6, 7, 9]
    assert events == [e.to_dict() for e in entries]
    proofs = [e["proof"] for e in events]
    assert proofs[:4] == ["checkpointed, not yet stamped (checkpoint 8)"] * 4  # the latest covering one
    assert proofs[4:6] == ["checkpointed, not yet stamped (checkpoint 8)"] * 2
    assert proofs[6] == "not yet in a checkpoint"

    md = cli("--vault", vault, "timeline", photo, "--format", "markdown")
    rows = [line for line in md.stdout.splitlines() if line.startswith("| ") and not line.startswith("| seq")]
    assert [int(r.split(" | ")[0].removeprefix("| ")) for r in rows] == [e["seq"] for e in events]
    assert md.stdout.endswith("| not yet in a checkpoint |\n")

    text = cli("--vault", vault, "timeline", photo)
    assert text.stdout == "" and len(text.stderr.splitlines()) == 1 + 3 * len(events)

    lines = cli("--vault", vault, "log", "--item", photo, "--json").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [e["seq"] for e in events]
