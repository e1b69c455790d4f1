"""Value normalization: clean strings, exact decimal degrees, dates, JSON-safe dumps (no floats, no bytes)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

MAX_RAW_STRING = 4096
MAX_RAW_ITEMS = 1024


def clean_str(value: str) -> str:
    """Strip NUL bytes, other C0 controls at the ends and surrounding whitespace."""
    return value.replace("\x00", "").strip()


MAX_SAFE_INT = 2**53 - 1


def json_safe(value: Any, depth: int = 0) -> Any:
    """Convert ``value`` into str/int/bool/None/list/dict with str keys; floats become decimal strings."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # RFC 8785 (I-JSON) allows integers up to 2**53 - 1 only: larger ones (Matroska UIDs) become text.
        return value if abs(value) <= MAX_SAFE_INT else str(value)
    if isinstance(value, str):
        text = clean_str(value)
        if len(text) > MAX_RAW_STRING:
            text = f"{text[:MAX_RAW_STRING]}...[{len(text) - MAX_RAW_STRING} more chars]"
        return text
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return data[:MAX_RAW_STRING].hex() + ("..." if len(data) > MAX_RAW_STRING else "")
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if depth > 8:
        return clean_str(str(value))[:MAX_RAW_STRING]
    if isinstance(value, dict):
        return {clean_str(str(k)): json_safe(v, depth + 1) for k, v in list(value.items())[:MAX_RAW_ITEMS]}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value[:MAX_RAW_ITEMS]]
    return json_safe(str(value), depth + 1)


def format_float(value: float) -> str:
    """Shortest round-trip decimal string of a float (``repr``), never exponent notation for finite values."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return format(Decimal(repr(value)), "f")


def decimal_str(value: Fraction | Decimal, places: int = 6) -> str:
    """Exact value rounded half-even to ``places`` decimals, e.g. ``-3.763741``."""
    scaled = round(Fraction(value) * 10**places)
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}" if places else f"{sign}{digits}"


def to_fraction(text: str) -> Fraction | None:
    """Parse a decimal string such as ``+034.8620`` exactly; None when it is not a number."""
    try:
        dec = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not dec.is_finite():
        return None
    return Fraction(dec)


def valid_lat_lon(lat: Fraction, lon: Fraction) -> bool:
    return -90 <= lat <= 90 and -180 <= lon <= 180


_ISO6709 = re.compile(r"^\s*([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?")


def parse_iso6709(text: str) -> tuple[Fraction, Fraction, Fraction | None] | None:
    """Parse the decimal-degree form of ISO 6709 (``+32.0929+034.8620+028.516/``) into lat, lon, alt."""
    match = _ISO6709.match(text)
    if not match:
        return None
    lat_s, lon_s, alt_s = match.groups()
    # Only the +DD.DDDD+DDD.DDDD form is accepted; the DDMM / DDDMMSS variants are rare in media files.
    if len(lat_s.split(".")[0]) != 3 or len(lon_s.split(".")[0]) != 4:
        return None
    lat, lon = to_fraction(lat_s), to_fraction(lon_s)
    alt = to_fraction(alt_s) if alt_s else None
    if lat is None or lon is None:
        return None
    return lat, lon, alt


_EXIF_DT = re.compile(r"^(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def exif_datetime(text: str) -> str | None:
    """``2011:01:13 14:33:39`` -> ``2011-01-13T14:33:39``; None when not a real calendar date-time."""
    match = _EXIF_DT.match(clean_str(text))
    if not match:
        return None
    y, mo, d, h, mi, s = (int(g) for g in match.groups())
    try:
        datetime(y, mo, d, h, mi, s)
    except ValueError:
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"


def utc_offset(text: str) -> str | None:
    """``+0300`` / ``+03:00`` -> ``+03:00`` (``Z`` for UTC); None when malformed."""
    text = clean_str(text)
    if text in ("Z", "UTC"):
        return "Z"
    match = _OFFSET.match(text)
    if not match:
        return None
    sign, hh, mm = match.groups()
    if int(hh) > 23 or int(mm) > 59:
        return None
    return f"{sign}{hh}:{mm}"


def local_datetime(text: str) -> str | None:
    """Date-time with optional trailing offset (``2019-07-24T11:25:40+0300``) as ISO 8601."""
    text = clean_str(text)
    base = exif_datetime(text)
    if base is None:
        return None
    rest = text[19:].strip()
    if rest.startswith("."):  # fractional seconds are dropped: devices disagree on their meaning
        rest = re.sub(r"^\.\d+", "", rest).strip()
    rest = rest.split(" ")[0] if rest else ""
    offset = utc_offset(rest) if rest else None
    return base + (offset or "")


def utc_datetime(text: str) -> str | None:
    """MediaInfo's ``2019-07-24 08:25:57 UTC`` -> ``2019-07-24T08:25:57Z``."""
    text = clean_str(text)
    if text.startswith("UTC "):
        text = text[4:] + " UTC"
    if not (text.endswith("UTC") or text.endswith("Z")):
        return None
    base = exif_datetime(text)
    return base + "Z" if base else None
