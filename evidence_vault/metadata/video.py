"""Audio/video containers (and images exifread cannot size) through libmediainfo via pymediainfo."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, BinaryIO

from ..errors import MediaError
from . import mediainfo_process
from ._values import (
    clean_str,
    decimal_str,
    json_safe,
    local_datetime,
    parse_iso6709,
    utc_datetime,
    valid_lat_lon,
)

# Containers whose header duration may include timed-metadata tracks; use the longest A/V track instead,
# which is what ffprobe reports. MPEG-TS has no header duration at all (MediaInfo estimates it).
_TRACK_DURATION_FORMATS = {"MPEG-4", "QuickTime", "BDAV", "MPEG-TS"}
_UNSET_DATES = {"1904-01-01T00:00:00Z", "1970-01-01T00:00:00Z"}
# libmediainfo can spin for minutes inside one C call on hostile input (seen with a bit-flipped 3GP); its
# helper process is killed after this many seconds.
MEDIAINFO_TIMEOUT_S = 10.0


def mediainfo_version() -> str:
    """``mediainfo <libmediainfo version>``, or ``mediainfo unknown`` if it cannot be loaded."""
    try:
        return mediainfo_process.version()
    except MediaError:  # run_mediainfo reports the real error
        return "mediainfo unknown"


def run_mediainfo(fh: BinaryIO) -> list[dict[str, Any]]:
    """All tracks as plain dicts (human-readable ``other_*`` duplicates and file-system fields dropped),
    parsed in a helper process (see :mod:`.mediainfo_process`)."""
    return [json_safe(track) for track in mediainfo_process.parse(fh.fileno(), MEDIAINFO_TIMEOUT_S)]


def _ms(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        dec = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not dec.is_finite() or dec < 0:
        return None
    return int(dec.to_integral_value())


def _str(track: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = track.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = clean_str(str(value))
            if text:
                return text
    return None


def normalize_tracks(tracks: list[dict[str, Any]], errors: list[str]) -> dict[str, Any]:
    """Normalized keys from MediaInfo tracks."""
    out: dict[str, Any] = {}
    general = next((t for t in tracks if t.get("track_type") == "General"), {})
    videos = [t for t in tracks if t.get("track_type") == "Video"]
    audios = [t for t in tracks if t.get("track_type") == "Audio"]
    images = [t for t in tracks if t.get("track_type") == "Image"]
    container = _str(general, "format")
    if container:
        out["container"] = container
    for track in videos or images:
        width, height = _ms(track.get("width")), _ms(track.get("height"))
        if width and height:
            out["width"], out["height"] = width, height
            break
    codecs: list[str] = []
    for track in videos + audios:
        fmt = _str(track, "format")
        if fmt and fmt not in codecs:
            codecs.append(fmt)
    if codecs:
        out["codecs"] = codecs
    av = [d for d in (_ms(t.get("duration")) for t in videos + audios) if d is not None]
    general_duration = _ms(general.get("duration"))
    if av and (container in _TRACK_DURATION_FORMATS or general_duration is None):
        out["duration_ms"] = max(av)
    elif general_duration is not None:
        out["duration_ms"] = general_duration
    for source in (general, *videos):
        encoded = _str(source, "encoded_date")
        created = utc_datetime(encoded) if encoded else None
        if created and created not in _UNSET_DATES:
            out["created_utc"] = created
            break
    for key, names in (
        ("make", ("comapplequicktimemake", "encoded_application_companyname", "make")),
        ("model", ("comapplequicktimemodel", "encoded_application_name", "model")),
        ("software", ("comapplequicktimesoftware",)),
    ):
        value = _str(general, *names)
        if value:
            out[key] = value
    for name in ("comapplequicktimecreationdate", "recorded_date"):
        raw = _str(general, name)
        captured = local_datetime(raw) if raw else None
        if captured:
            out["captured_at"] = captured
            break
    for name in ("comapplequicktimelocationiso6709", "xyz"):
        raw = _str(general, name)
        if raw:
            out.update(location_from_iso6709(raw, errors))
            if "gps_lat" in out:
                break
    return out


def location_from_iso6709(text: str, errors: list[str]) -> dict[str, str]:
    """gps_lat / gps_lon (/ gps_alt) from an ISO 6709 string; an all-zero position means no fix."""
    parsed = parse_iso6709(text)
    if parsed is None:
        errors.append(f"location: unparsable ISO 6709 string {text[:40]!r}")
        return {}
    return location(*parsed, errors=errors)


def location(lat: Fraction, lon: Fraction, alt: Fraction | None, *, errors: list[str]) -> dict[str, str]:
    if lat == 0 and lon == 0:
        return {}
    if not valid_lat_lon(lat, lon):
        errors.append(f"location: position out of range ({decimal_str(lat)}, {decimal_str(lon)})")
        return {}
    out = {"gps_lat": decimal_str(lat), "gps_lon": decimal_str(lon)}
    if alt is not None:
        out["gps_alt"] = decimal_str(alt, 3)
    return out
