"""Minimal, bounded ISO BMFF (MP4/MOV/HEIF) box reading for facts MediaInfo does not expose.

Only box headers are read while walking; payloads are read only for small boxes we need (HEIF ``meta``,
``udta`` children). Every loop is bounded by box count and nesting depth.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from fractions import Fraction
from typing import BinaryIO

MAX_BOXES = 4096
MAX_META_BYTES = 4 << 20
MAX_UDTA_CHILD = 1 << 20


def iter_boxes(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload start, payload end) of the boxes between ``start`` and ``end``."""
    pos = start
    for _ in range(MAX_BOXES):
        if pos + 8 > end:
            return
        fh.seek(pos)
        header = fh.read(16)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header[:8])
        header_len = 8
        if size == 1:
            if len(header) < 16:
                return
            size = struct.unpack(">Q", header[8:16])[0]
            header_len = 16
        elif size == 0:
            size = end - pos
        if size < header_len or pos + size > end:
            # a box running past its parent: yield what is there, then stop
            if size >= header_len:
                yield kind, pos + header_len, end
            return
        yield kind, pos + header_len, pos + size
        pos += size


def iter_bytes_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """Same as :func:`iter_boxes` over an in-memory buffer."""
    end = len(data) if end is None else min(end, len(data))
    pos = start
    for _ in range(MAX_BOXES):
        if pos + 8 > end:
            return
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header_len = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header_len = 16
        elif size == 0:
            size = end - pos
        if size < header_len or pos + size > end:
            return
        yield kind, pos + header_len, pos + size
        pos += size


def _find(fh: BinaryIO, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for box, payload, box_end in iter_boxes(fh, start, end):
        if box == kind:
            return payload, box_end
    return None


def heif_primary_size(fh: BinaryIO, file_size: int) -> tuple[int, int] | None:
    """Width and height (``ispe``) of the primary item of a HEIF/AVIF file."""
    meta = _find(fh, 0, file_size, b"meta")
    if meta is None or meta[1] - meta[0] > MAX_META_BYTES:
        return None
    fh.seek(meta[0])
    data = fh.read(meta[1] - meta[0])
    primary: int | None = None
    props: list[tuple[bytes, int, int]] = []
    assoc: dict[int, list[int]] = {}
    for kind, start, end in iter_bytes_boxes(data, 4):  # meta is a FullBox
        if kind == b"pitm" and end - start >= 6:
            primary = (
                struct.unpack(">H", data[start + 4 : start + 6])[0]
                if data[start] == 0
                else struct.unpack(">I", data[start + 4 : start + 8].rjust(4, b"\0"))[0]
            )
        elif kind == b"iprp":
            for sub, s2, e2 in iter_bytes_boxes(data, start, end):
                if sub == b"ipco":
                    props = list(iter_bytes_boxes(data, s2, e2))
                elif sub == b"ipma":
                    assoc.update(_parse_ipma(data[s2:e2]))
    sizes: list[tuple[int, int]] = []
    for kind, start, end in props:
        if kind == b"ispe" and end - start >= 12:
            sizes.append(struct.unpack(">II", data[start + 4 : start + 12]))
        else:
            sizes.append((-1, -1))
    if primary is not None and primary in assoc:
        for index in assoc[primary]:
            if 0 < index <= len(props) and props[index - 1][0] == b"ispe" and sizes[index - 1][0] >= 0:
                return sizes[index - 1]
    valid = [s for s in sizes if s[0] >= 0]
    return max(valid, key=lambda s: s[0] * s[1]) if valid else None


def _parse_ipma(box: bytes) -> dict[int, list[int]]:
    if len(box) < 8:
        return {}
    version, flags = box[0], int.from_bytes(box[1:4], "big")
    count = struct.unpack(">I", box[4:8])[0]
    pos, out = 8, {}
    for _ in range(min(count, MAX_BOXES)):
        id_len = 2 if version < 1 else 4
        if pos + id_len + 1 > len(box):
            break
        item = int.from_bytes(box[pos : pos + id_len], "big")
        n = box[pos + id_len]
        pos += id_len + 1
        wide = flags & 1
        indices = []
        for _ in range(n):
            if wide:
                if pos + 2 > len(box):
                    break
                indices.append(int.from_bytes(box[pos : pos + 2], "big") & 0x7FFF)
                pos += 2
            else:
                if pos + 1 > len(box):
                    break
                indices.append(box[pos] & 0x7F)
                pos += 1
        out[item] = indices
    return out


def movie_user_data(fh: BinaryIO, file_size: int) -> dict[str, object]:
    """Facts from ``moov/udta``: 3GPP ``loci`` location, ``©xyz`` string, GoPro ``GPMF`` model/serial."""
    out: dict[str, object] = {}
    moov = _find(fh, 0, file_size, b"moov")
    if moov is None:
        return out
    udta = _find(fh, moov[0], moov[1], b"udta")
    if udta is None:
        return out
    for kind, start, end in iter_boxes(fh, udta[0], udta[1]):
        if end - start > MAX_UDTA_CHILD:
            continue
        if kind == b"loci":
            fh.seek(start)
            loci = _parse_loci(fh.read(end - start))
            if loci:
                out["loci"] = loci
        elif kind == b"\xa9xyz":
            fh.seek(start)
            payload = fh.read(end - start)
            if len(payload) > 4:
                out["xyz"] = payload[4 : 4 + int.from_bytes(payload[0:2], "big")].decode("latin-1")
        elif kind == b"GPMF":
            fh.seek(start)
            gpmf = _parse_gpmf(fh.read(end - start))
            if gpmf:
                out["gpmf"] = gpmf
    return out


def _parse_loci(box: bytes) -> dict[str, object] | None:
    # FullBox(4) language(2) name(UTF-8, NUL) role(1) lon lat alt (signed 16.16 fixed) body notes
    pos = 6
    nul = box.find(b"\x00", pos)
    if nul < 0 or nul + 14 > len(box):
        return None
    name = box[pos:nul].decode("utf-8", "replace")
    role = box[nul + 1]
    lon, lat, alt = struct.unpack(">iii", box[nul + 2 : nul + 14])
    body_end = box.find(b"\x00", nul + 14)
    body = box[nul + 14 : body_end if body_end >= 0 else len(box)].decode("utf-8", "replace")
    return {
        "name": name,
        "role": role,
        "lat": Fraction(lat, 65536),
        "lon": Fraction(lon, 65536),
        "alt": Fraction(alt, 65536),
        "body": body,
    }


_GPMF_STRINGS = {b"MINF": "model", b"CASN": "serial", b"FMWR": "firmware", b"DVNM": "device_name"}


def _parse_gpmf(data: bytes, depth: int = 0) -> dict[str, str]:
    """Top-level string keys of a GoPro GPMF KLV stream (nested containers up to depth 3)."""
    out: dict[str, str] = {}
    pos = 0
    for _ in range(MAX_BOXES):
        if pos + 8 > len(data):
            break
        key, kind, size, repeat = data[pos : pos + 4], data[pos + 4], data[pos + 5], data[pos + 6 : pos + 8]
        length = size * int.from_bytes(repeat, "big")
        payload = data[pos + 8 : pos + 8 + length]
        if kind == 0 and depth < 3:
            for k, v in _parse_gpmf(payload, depth + 1).items():
                out.setdefault(k, v)
        elif kind == ord("c") and key in _GPMF_STRINGS:
            text = payload.split(b"\x00")[0].decode("latin-1").strip()
            if text:
                out.setdefault(_GPMF_STRINGS[key], text)
        pos += 8 + ((length + 3) & ~3)
    return out
