"""A bit-flipped sample.3gp (found by fuzzing) on which libmediainfo 24.12 spins in one C call, allocating
about 200 MB a second, for minutes if nothing stops it."""

from __future__ import annotations

from tests.paths import CORPUS

_FLIPS = [(425, 94), (787, 63), (1560, 220), (1622, 179), (2643, 234), (3182, 68), (3491, 100)]
_FLIPS += [(3554, 225), (3768, 50), (4142, 184), (5301, 211), (6145, 72), (8113, 71), (8477, 229)]
_FLIPS += [(8658, 181), (12470, 126), (12805, 97), (14983, 210), (15375, 69), (16383, 189)]
_FLIPS += [(19005, 176), (19734, 145), (20079, 45), (20204, 183), (20259, 119)]


def spinning_3gp() -> bytes:
    data = bytearray((CORPUS / "video" / "sample.3gp").read_bytes()[:20333])
    for pos, mask in _FLIPS:
        data[pos] ^= mask
    return bytes(data)
