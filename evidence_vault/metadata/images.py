"""Still images: cheap header parsing for dimensions plus EXIF through exifread (no pixel decoding)."""

from __future__ import annotations

import functools
import io
import logging
import struct
import threading
from fractions import Fraction
from types import ModuleType
from typing import Any, BinaryIO, cast

from ._values import clean_str, decimal_str, exif_datetime, utc_offset, valid_lat_lon

MAX_JPEG_SEGMENTS = 1024
MAX_READ = 16 << 20
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


# Reads and seeks one exifread parse may make. A real image needs a few thousand; exifread's HEIC
# reader loops for ever on a box whose size is 0 (a 52-byte file does it, exifread 3.5.1), re-reading
# the same header: the parse stops here instead, and the file is added with an extraction error.
MAX_CALLS = 200_000


class _CappedReader:
    """File wrapper that caps every single read, so a hostile tag count cannot allocate unbounded memory,
    and the number of reads and seeks, so a parser looping on a hostile file stops."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._calls = 0

    def _count(self) -> None:
        self._calls += 1
        if self._calls > MAX_CALLS:
            raise ValueError(f"parse stopped after {MAX_CALLS} reads and seeks (a box that never ends?)")

    def read(self, n: int = -1) -> bytes:
        self._count()
        return self._fh.read(MAX_READ if n is None or n < 0 or n > MAX_READ else n)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._count()
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


class _WarningCollector(logging.Handler):
    """Collects exifread's log warnings per thread (they describe corrupt input, not our failures)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        bucket = getattr(self.local, "bucket", None)
        if bucket is not None and len(bucket) < 20:
            bucket.append(clean_str(record.getMessage()).replace("\n", " ")[:300])


_COLLECTOR = _WarningCollector()
logging.getLogger("exifread").addHandler(_COLLECTOR)


@functools.cache
def _exifread() -> ModuleType:
    """exifread, imported on first use: about 15 ms that an ``add`` of non-image files never needs."""
    import exifread

    return exifread


def exifread_version() -> str:
    return f"exifread {getattr(_exifread(), '__version__', 'unknown')}"


def run_exifread(fh: BinaryIO | io.BytesIO) -> tuple[dict[str, Any], list[str]]:
    """exifread tags (IfdTag objects) and its warnings; raises whatever exifread raises."""
    _COLLECTOR.local.bucket = []
    try:
        capped = cast(BinaryIO, _CappedReader(fh))
        tags = _exifread().process_file(
            capped, details=False, strict=False, extract_thumbnail=False, truncate_tags=False
        )
    finally:
        warnings: list[str] = _COLLECTOR.local.bucket
        _COLLECTOR.local.bucket = None
    # "no EXIF in this file" is a plain fact about a file, not an extraction problem.
    real = [w for w in warnings if "does not have exif" not in w.lower() and "no exif" not in w.lower()]
    return dict(tags or {}), [f"exifread: {w}" for w in real]


def scan_jpeg(fh: BinaryIO) -> tuple[tuple[int, int] | None, bytes | None]:
    """(width, height) from the first SOF marker and the TIFF bytes of the first Exif APP1 segment.

    Walks segment headers only, up to the first SOS, so the cost does not depend on image size. The Exif
    APP1 does not have to be the first APP1 (XMP often comes first).
    """
    size: tuple[int, int] | None = None
    exif: bytes | None = None
    pos = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        fh.seek(pos)
        header = fh.read(4)
        if len(header) < 2 or header[0] != 0xFF:
            break
        marker = header[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA) or len(header) < 4:
            break
        length = struct.unpack(">H", header[2:4])[0]
        if length < 2:
            break
        if marker in _SOF and size is None:
            sof = fh.read(5)
            if len(sof) == 5:
                height, width = struct.unpack(">HH", sof[1:5])
                size = (width, height)
        elif marker == 0xE1 and exif is None and length > 14:
            payload = fh.read(length - 2)
            if payload.startswith(b"Exif\x00"):
                exif = payload[6:]
        pos += 2 + length
    return size, exif


def header_size(media_type: str, head: bytes) -> tuple[int, int] | None:
    """Pixel dimensions from the fixed header of PNG, GIF, BMP and WebP files."""
    if media_type == "image/png" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if media_type == "image/gif" and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if media_type == "image/bmp" and len(head) >= 26:
        if int.from_bytes(head[14:18], "little") == 12:
            return struct.unpack("<HH", head[18:22])
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if media_type == "image/webp" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", head[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and head[20] == 0x2F:
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def exif_raw(tags: dict[str, Any]) -> dict[str, str]:
    """Printable value of every tag (exact: ratios stay ``n/d``)."""
    return {str(name): clean_str(str(tag)) for name, tag in tags.items()}


def _text(tags: dict[str, Any], *names: str) -> str | None:
    for name in names:
        tag = tags.get(name)
        if tag is None:
            continue
        value = tag.values if isinstance(tag.values, str) else str(tag)
        value = clean_str(value)
        if value:
            return value
    return None


def _int(tags: dict[str, Any], name: str) -> int | None:
    tag = tags.get(name)
    values = getattr(tag, "values", None)
    if isinstance(values, list) and values and isinstance(values[0], int) and values[0] >= 0:
        return int(values[0])
    return None


def _dms(tag: Any) -> Fraction | None:
    values = getattr(tag, "values", None)
    if not isinstance(values, list) or not 1 <= len(values) <= 3:
        return None
    parts = [Fraction(v) for v in values]  # Ratio is a Fraction; ints pass too
    total = Fraction(0)
    for part, scale in zip(parts, (1, 60, 3600), strict=False):
        total += part / scale
    return total


def exif_gps(tags: dict[str, Any], errors: list[str], notes: list[str]) -> dict[str, str]:
    """Signed decimal degrees from the GPS IFD.

    A GPS IFD whose latitude and longitude are both exactly zero is treated as "no fix" and omitted: phones
    write that when they had no position, and 0,0 ("null island") is never a plausible capture location.
    The omission is recorded in ``notes``; out-of-range values are omitted and recorded in ``errors``.
    """
    lat_tag, lon_tag = tags.get("GPS GPSLatitude"), tags.get("GPS GPSLongitude")
    if lat_tag is None or lon_tag is None:
        return {}
    lat, lon = _dms(lat_tag), _dms(lon_tag)
    if lat is None or lon is None:
        errors.append("gps: latitude/longitude not in degrees-minutes-seconds form")
        return {}
    if (_text(tags, "GPS GPSLatitudeRef") or "N").upper().startswith("S"):
        lat = -lat
    if (_text(tags, "GPS GPSLongitudeRef") or "E").upper().startswith("W"):
        lon = -lon
    if lat == 0 and lon == 0:
        notes.append("gps: all-zero GPS position treated as no fix and omitted")
        return {}
    if not valid_lat_lon(lat, lon):
        errors.append(f"gps: position out of range ({decimal_str(lat)}, {decimal_str(lon)})")
        return {}
    out = {"gps_lat": decimal_str(lat), "gps_lon": decimal_str(lon)}
    alt_tag = tags.get("GPS GPSAltitude")
    alt_values = getattr(alt_tag, "values", None)
    if isinstance(alt_values, list) and len(alt_values) == 1:
        alt = Fraction(alt_values[0])
        if _int(tags, "GPS GPSAltitudeRef") == 1:
            alt = -alt
        out["gps_alt"] = decimal_str(alt, 3)
    return out


def normalize_exif(tags: dict[str, Any], errors: list[str], notes: list[str]) -> dict[str, str | int]:
    """The normalized keys that EXIF can supply."""
    out: dict[str, str | int] = {}
    for key, names in (
        ("make", ("Image Make",)),
        ("model", ("Image Model",)),
        ("software", ("Image Software",)),
        ("serial", ("EXIF BodySerialNumber", "Image CameraSerialNumber", "EXIF SerialNumber")),
        ("lens_model", ("EXIF LensModel",)),
        ("artist", ("Image Artist",)),
    ):
        value = _text(tags, *names)
        if value:
            out[key] = value
    for key, dt_name, off_name in (
        ("captured_at", "EXIF DateTimeOriginal", "EXIF OffsetTimeOriginal"),
        ("modified_at", "Image DateTime", "EXIF OffsetTime"),
    ):
        raw = _text(tags, dt_name)
        if raw is None:
            continue
        value = exif_datetime(raw)
        if value is None:
            errors.append(f"exif: {dt_name} is not a valid date-time: {raw[:40]!r}")
            continue
        offset_raw = _text(tags, off_name)
        offset = utc_offset(offset_raw) if offset_raw else None
        out[key] = value + (offset if offset and offset != "Z" else "+00:00" if offset == "Z" else "")
    orientation = _int(tags, "Image Orientation")
    if orientation is not None and 1 <= orientation <= 8:
        out["orientation"] = orientation
    try:
        out.update(exif_gps(tags, errors, notes))
    except (ValueError, ZeroDivisionError, TypeError) as exc:
        errors.append(f"gps: {type(exc).__name__}: {exc}")
    dims: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("width", ("EXIF ExifImageWidth", "Image ImageWidth")),
        ("height", ("EXIF ExifImageLength", "Image ImageLength")),
    )
    for key, dim_names in dims:
        for name in dim_names:
            number = _int(tags, name)
            if number:
                out[f"exif_{key}"] = number
                break
    return out
