"""The revealed lines of a bag, kept on disk past a threshold: the same events back, by seq and in order."""

from __future__ import annotations

import pytest

from evidence_vault.events import Event, parse_line
from evidence_vault.revealed import RevealedLines


def _line(seq: int, note: str) -> bytes:
    event = Event(
        seq=seq,
        time="2026-12-04T06:00:00.000Z",
        type="item.annotated",
        actor="SHA256:" + "A" * 43,
        prev="sha256:" + "0" * 64,
        data={"item": "sha256:" + "ab" * 32, "note": note},
    )
    return event.line()


@pytest.mark.parametrize("spill_at", [0, 1 << 20])  # every line on disk at once / all in memory
def test_lines_come_back_by_seq_and_in_order(spill_at: int) -> None:
    seqs = [0, 3, 4, 9, 120]
    lines = {seq: _line(seq, f"note {seq} ünïcode " * (seq % 5)) for seq in seqs}
    revealed = RevealedLines(spill_at=spill_at)
    for seq in seqs:
        revealed.add(seq, lines[seq])
    assert len(revealed) == 5 and list(revealed) == seqs
    assert 4 in revealed and 5 not in revealed and "4" not in revealed
    assert list(revealed.lines()) == [(seq, lines[seq]) for seq in seqs]
    assert [(seq, e) for seq, e in revealed.items()] == [(seq, parse_line(lines[seq])[0]) for seq in seqs]
    assert revealed.get(9) == parse_line(lines[9])[0] and revealed.get(10) is None
    # Reading one line in between does not disturb an iteration in progress.
    it = revealed.lines()
    assert next(it)[0] == 0
    assert revealed.get(120) is not None
    assert [seq for seq, _ in it] == [3, 4, 9, 120]
    revealed.close()


def test_lines_must_come_in_log_order() -> None:
    revealed = RevealedLines()
    revealed.add(5, _line(5, "a"))
    with pytest.raises(ValueError, match="log order"):
        revealed.add(5, _line(5, "b"))
