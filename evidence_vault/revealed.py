"""The revealed lines of a bag's log, for the checks that follow the log pass: kept in a temporary file
once past a few MB (a bag can reveal a hundred thousand events; each parsed event costs kilobytes of
memory), with their seqs and offsets in compact arrays. Events are parsed again when read."""

from __future__ import annotations

import bisect
import tempfile
from array import array
from collections.abc import Iterator

from .events import Event, parse_line

SPILL_AT = 8 << 20  # bytes of lines kept in memory before they go to the temporary file


class RevealedLines:
    """Lines added in increasing seq order (the log's); read back by seq or in that order."""

    def __init__(self, spill_at: int = SPILL_AT) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=spill_at)  # noqa: SIM115 (close(), or when collected)
        self._seqs = array("q")
        self._offsets = array("q", [0])  # line k is bytes offsets[k]..offsets[k + 1]

    def add(self, seq: int, line: bytes) -> None:
        """A revealed line that parsed (``parse_line``); seqs must increase."""
        if self._seqs and seq <= self._seqs[-1]:
            raise ValueError(f"revealed lines must come in log order ({seq} after {self._seqs[-1]})")
        self._file.seek(self._offsets[-1])
        self._file.write(line)
        self._seqs.append(seq)
        self._offsets.append(self._offsets[-1] + len(line))

    def __len__(self) -> int:
        return len(self._seqs)

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self._index(seq) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(self._seqs)

    def _index(self, seq: int) -> int | None:
        k = bisect.bisect_left(self._seqs, seq)
        return k if k < len(self._seqs) and self._seqs[k] == seq else None

    def _line(self, k: int) -> bytes:
        self._file.seek(self._offsets[k])
        return self._file.read(self._offsets[k + 1] - self._offsets[k])

    def get(self, seq: int) -> Event | None:
        k = self._index(seq)
        return None if k is None else parse_line(self._line(k))[0]

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(seq, line) in log order."""
        for k, seq in enumerate(self._seqs):
            yield seq, self._line(k)

    def items(self) -> Iterator[tuple[int, Event]]:
        """(seq, event) in log order."""
        for seq, line in self.lines():
            yield seq, parse_line(line)[0]

    def values(self) -> Iterator[Event]:
        for _, event in self.items():
            yield event

    def close(self) -> None:
        self._file.close()
