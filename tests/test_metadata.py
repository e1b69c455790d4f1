"""Metadata adapter against the real corpus (ground truth: expected.json), hostile input and fuzzing."""

from __future__ import annotations

import json
import struct
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence_vault.metadata import MediaMetadata, extract_metadata, sniff_media_type, video
from tests.paths import CORPUS
from tests.spin_3gp import spinning_3gp

pytestmark = pytest.mark.skipif(not (CORPUS / "expected.json").is_file(), reason="corpus not available")

_NOT_MEDIA = ("LICENSE", "NOTICE", "PATENTS")


def _media_files(*folders: str) -> list[Path]:
    files = []
    for folder in folders:
        files += [
            p
            for p in sorted((CORPUS / folder).iterdir())
            if p.is_file() and not p.name.startswith(_NOT_MEDIA)
        ]
    return files


def _expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
    return data


def _assert_json_safe(value: Any, where: str = "$") -> None:
    """Only str/int/bool/None/list/dict with str keys: what RFC 8785 can hash without float ambiguity."""
    assert not isinstance(value, float), f"float at {where}"
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"non-str key at {where}"
            _assert_json_safe(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _assert_json_safe(item, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, str | int | bool), f"{type(value).__name__} at {where}"
        if isinstance(value, str):
            assert "\x00" not in value, f"NUL byte at {where}"


def _check_result(meta: MediaMetadata) -> None:
    assert isinstance(meta, MediaMetadata)
    assert isinstance(meta.normalized["media_type"], str) and "/" in meta.normalized["media_type"]
    assert meta.extractors, "at least one extractor is named"
    assert all(isinstance(e, str) and "\n" not in e for e in meta.errors)
    as_dict = meta.to_dict()
    _assert_json_safe(as_dict)
    json.dumps(as_dict, allow_nan=False)


def _compare(rel: str, summary: dict[str, Any], norm: dict[str, Any]) -> tuple[int, list[str]]:
    """Number of facts checked and the mismatches, for one corpus file."""
    checked, bad = 0, []

    def check(fact: str, ok: bool, got: Any, want: Any) -> None:
        nonlocal checked
        checked += 1
        if not ok:
            bad.append(f"{rel}: {fact}: got {got!r}, expected {want!r}")

    for key in ("make", "model"):
        if key in summary:
            check(key, norm.get(key) == summary[key], norm.get(key), summary[key])
    for key in ("datetime_original", "creation_date_local"):
        if key in summary:
            want = summary[key][:19].replace(":", "-", 2).replace(" ", "T", 1)
            got = str(norm.get("captured_at", ""))[:19]
            check(key, got == want, norm.get("captured_at"), summary[key])
    if "gps_lat" in summary:
        want_lat, want_lon = Decimal(str(summary["gps_lat"])), Decimal(str(summary["gps_lon"]))
        if want_lat == 0 and want_lon == 0:  # documented rule: an all-zero GPS IFD means "no fix"
            check("gps zero rule", "gps_lat" not in norm and "gps_lon" not in norm, norm.get("gps_lat"), None)
        else:
            for key, want in (("gps_lat", want_lat), ("gps_lon", want_lon)):
                got = norm.get(key)
                ok = (
                    isinstance(got, str)
                    and len(got.split(".")[1]) >= 6
                    and abs(Decimal(got) - want) <= Decimal("1e-5")
                )
                check(key, ok, got, want)
    if "duration_s" in summary:
        want_ms = Decimal(str(summary["duration_s"])) * 1000
        got = norm.get("duration_ms")
        check("duration", isinstance(got, int) and abs(got - want_ms) <= 10, got, summary["duration_s"])
    for key in ("width", "height"):
        if key in summary:
            check(key, norm.get(key) == summary[key], norm.get(key), summary[key])
    if "creation_time_utc" in summary:
        got = norm.get("created_utc")
        ok = isinstance(got, str) and got.endswith("Z") and got[:19] == summary["creation_time_utc"][:19]
        check("created_utc", ok, got, summary["creation_time_utc"])
    return checked, bad


def test_corpus_facts_match_expected() -> None:
    expected = _expected()
    total, mismatches = 0, []
    for path in _media_files("images", "video"):
        rel = path.relative_to(CORPUS).as_posix()
        meta = extract_metadata(path)
        _check_result(meta)
        checked, bad = _compare(rel, expected[rel]["summary"], meta.normalized)
        total += checked
        mismatches += bad
    assert total >= 100, f"only {total} facts compared; is expected.json complete?"
    ratio = (total - len(mismatches)) / total
    report = "\n".join(mismatches)
    assert ratio >= 0.95, f"{ratio:.1%} of {total} facts match; mismatches:\n{report}"
    # Known, accepted: dash1.m4s is a media segment whose size is only defined by dashinit.mp4.
    unexpected = [m for m in mismatches if not m.startswith("video/dash1.m4s:")]
    assert not unexpected, report


def test_extractors_give_only_the_field_names_the_vault_knows() -> None:
    """The vault commits (and an export may withhold) what the extractors give: both read the names from
    one list, which must hold every key any corpus file yields, and the metadata docs name them all."""
    from evidence_vault import metadata
    from evidence_vault.metadata_fields import NORMALIZED_FIELDS, PRIVATE_FIELDS, PUBLIC_FIELDS
    from evidence_vault.vault import COMMITTED_FIELDS

    seen: set[str] = set()
    for path in _media_files("images", "video", "malformed"):
        seen |= set(extract_metadata(path).normalized)
    assert seen <= NORMALIZED_FIELDS, seen - NORMALIZED_FIELDS
    assert {"gps_lat", "serial", "artist", "container", "created_utc"} <= seen  # the list is exercised
    assert not PUBLIC_FIELDS & PRIVATE_FIELDS
    assert PRIVATE_FIELDS | {"original_path", "note"} <= COMMITTED_FIELDS
    assert not COMMITTED_FIELDS & PUBLIC_FIELDS
    doc = metadata.__doc__ or ""
    assert not [k for k in NORMALIZED_FIELDS if f"``{k}``" not in doc]


def test_specific_values() -> None:
    mov = extract_metadata(CORPUS / "video" / "with-gps.mov").normalized
    assert mov["captured_at"] == "2019-07-24T11:25:40+03:00"
    assert mov["created_utc"] == "2019-07-24T08:25:57Z"
    assert (mov["gps_lat"], mov["gps_lon"], mov["gps_alt"]) == ("32.092900", "34.862000", "28.516")
    assert mov["codecs"] == ["AVC", "AAC"]
    assert mov["media_type"] == "video/quicktime"
    # Exif in the second APP1, after XMP (exifread alone finds nothing here).
    no_exif = extract_metadata(CORPUS / "images" / "no_exif.jpg").normalized
    assert no_exif["software"] == "Adobe Photoshop CC (Macintosh)"
    assert no_exif["modified_at"] == "2014-09-22T10:56:35"
    gopro = extract_metadata(CORPUS / "video" / "max-heromode.mp4").normalized
    assert gopro["serial"] == "C3353424500199"
    heif = extract_metadata(CORPUS / "images" / "HMD_Nokia_8.3_5G_hdr.heif")
    assert heif.normalized["gps_lon"] == "-3.763741"  # W reference
    assert "exif" in heif.raw and heif.raw["exif"]["GPS GPSLongitudeRef"] == "W"


@pytest.mark.parametrize("path", _media_files("malformed", "c2pa"), ids=lambda p: p.name)
def test_hostile_and_c2pa_files_never_raise(path: Path) -> None:
    start = time.monotonic()
    meta = extract_metadata(path)
    assert time.monotonic() - start < 5
    _check_result(meta)


def test_hostile_errors_are_recorded() -> None:
    broken = extract_metadata(CORPUS / "malformed" / "broken.png")
    assert any(e.startswith("exifread: UnicodeDecodeError") for e in broken.errors)
    bomb = extract_metadata(CORPUS / "malformed" / "reallybig.bmp").normalized
    assert (bomb["width"], bomb["height"]) == (3000000, 2000000)  # header only, never decoded
    bad_gps = extract_metadata(CORPUS / "malformed" / "exif_gps.jpg").normalized
    assert "gps_lat" not in bad_gps  # latitude 4294967295 is not a position


def test_sniff_media_type() -> None:
    cases = {
        "images/Canon_40D.jpg": "image/jpeg",
        "images/Issue 263 dotnet.heic": "image/heic",
        "images/HMD_Nokia_8.3_5G_hdr.heif": "image/heic",
        "images/mountains.avif": "image/avif",
        "images/test_0001.jxl": "image/jxl",
        "images/Issue 473 (Java).webp": "image/webp",
        "images/png_with_exif_and_gps.png": "image/png",
        "images/tif-with-iptc-icc-xmp.tif": "image/tiff",
        "video/with-gps.mov": "video/quicktime",
        "video/with-gps.mp4": "video/mp4",
        "video/sample.3gp": "video/3gpp",
        "video/Sony ILCE-7M3 (A7M3).mts": "video/mp2t",
        "video/issue55.flv": "video/x-flv",
        "video/bbb_480p_vp9_opus_1second.webm": "video/webm",
        "video/matroska_doctype.mkv": "video/x-matroska",
        "video/dash1.m4s": "video/mp4",
        "malformed/crash-167ecb9d69e6ef44bff716199a9f012a07031c86.fuzzed": "video/mp4",
        "malformed/decompression_bomb.gif": "image/gif",
        "malformed/reallybig.bmp": "image/bmp",
    }
    for rel, want in cases.items():
        path = CORPUS / rel
        with path.open("rb") as fh:
            assert sniff_media_type(fh.read(4096), path.name) == want, rel
    assert sniff_media_type(b"", "clip.MOV") == "video/quicktime"
    assert sniff_media_type(b"\x00" * 64, "unknown.bin") == "application/octet-stream"


# --- GPS sign handling and the zero rule, on synthetic EXIF -------------------------------------------


def _tiff_with_gps(lat_ref: bytes, lat: tuple[int, ...], lon_ref: bytes, lon: tuple[int, ...]) -> bytes:
    """Little-endian TIFF: IFD0 with a GPSInfo pointer, GPS IFD with refs and two DMS rationals."""
    gps_ifd = 26
    data = gps_ifd + 2 + 4 * 12 + 4
    out = b"II*\x00" + struct.pack("<I", 8)
    out += struct.pack("<H", 1) + struct.pack("<HHII", 0x8825, 4, 1, gps_ifd) + struct.pack("<I", 0)
    out += struct.pack("<H", 4)
    out += struct.pack("<HHI", 0x0001, 2, 2) + lat_ref.ljust(4, b"\x00")
    out += struct.pack("<HHII", 0x0002, 5, 3, data)
    out += struct.pack("<HHI", 0x0003, 2, 2) + lon_ref.ljust(4, b"\x00")
    out += struct.pack("<HHII", 0x0004, 5, 3, data + 24)
    out += struct.pack("<I", 0)
    assert len(out) == data
    return out + struct.pack("<6I", *lat) + struct.pack("<6I", *lon)


def _jpeg_with_exif(tiff: bytes, width: int = 40, height: int = 30) -> bytes:
    app1 = b"Exif\x00\x00" + tiff
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xe1"
        + struct.pack(">H", len(app1) + 2)
        + app1
        + b"\xff\xc0"
        + struct.pack(">H", len(sof) + 2)
        + sof
        + b"\xff\xd9"
    )


def test_gps_sign_handling_south_west(tmp_path: Path) -> None:
    # 33 deg 51' 54.5" S, 151 deg 12' 40" W
    tiff = _tiff_with_gps(b"S", (33, 1, 51, 1, 545, 10), b"W", (151, 1, 12, 1, 40, 1))
    path = tmp_path / "sw.jpg"
    path.write_bytes(_jpeg_with_exif(tiff))
    norm = extract_metadata(path).normalized
    assert norm["gps_lat"] == "-33.865139"
    assert norm["gps_lon"] == "-151.211111"
    assert (norm["width"], norm["height"]) == (40, 30)


def test_gps_sign_handling_north_east(tmp_path: Path) -> None:
    tiff = _tiff_with_gps(b"N", (41, 1, 2559, 50, 0, 1), b"E", (12, 1, 2933, 100, 0, 1))
    path = tmp_path / "ne.jpg"
    path.write_bytes(_jpeg_with_exif(tiff))
    norm = extract_metadata(path).normalized
    assert (norm["gps_lat"], norm["gps_lon"]) == ("41.853000", "12.488833")


def test_zero_gps_means_no_fix(tmp_path: Path) -> None:
    tiff = _tiff_with_gps(b"N", (0, 1, 0, 1, 0, 1), b"E", (0, 1, 0, 1, 0, 1))
    path = tmp_path / "zero.jpg"
    path.write_bytes(_jpeg_with_exif(tiff))
    meta = extract_metadata(path)
    assert "gps_lat" not in meta.normalized and "gps_lon" not in meta.normalized
    assert any("no fix" in note for note in meta.raw["notes"])
    assert meta.raw["exif"]["GPS GPSLatitude"] == "[0, 0, 0]"  # still in the raw dump
    samsung = extract_metadata(CORPUS / "images" / "Samsung GT-I9000 (Galaxy S).jpg").normalized
    assert "gps_lat" not in samsung and samsung["model"] == "GT-I9000"


def test_zero_denominator_gps_does_not_raise(tmp_path: Path) -> None:
    tiff = _tiff_with_gps(b"S", (33, 0, 51, 1, 545, 10), b"W", (151, 1, 12, 1, 40, 0))
    path = tmp_path / "zeroden.jpg"
    path.write_bytes(_jpeg_with_exif(tiff))
    _check_result(extract_metadata(path))


# --- fuzzing ------------------------------------------------------------------------------------------

_SEEDS = [
    CORPUS / "images" / "Canon_40D.jpg",
    CORPUS / "images" / "Issue 508.jpg",
    CORPUS / "images" / "png_with_exif_and_gps.png",
    CORPUS / "images" / "Issue 473 (Java).webp",
    CORPUS / "images" / "mountains.avif",
    CORPUS / "images" / "test_0001.jxl",
    CORPUS / "images" / "tif-with-iptc-icc-xmp.tif",
    CORPUS / "video" / "dashinit.mp4",
    CORPUS / "video" / "matroska_doctype.mkv",
    CORPUS / "video" / "issue55.flv",
    CORPUS / "video" / "sample.3gp",
    CORPUS / "malformed" / "empty_gps_ifd.jpg",
]


def _seed_bytes(index: int) -> bytes:
    with _SEEDS[index].open("rb") as fh:
        return fh.read(32768)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=-1, max_value=len(_SEEDS) - 1),
    cut=st.integers(min_value=0, max_value=32768),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=32767), st.integers(1, 255)), max_size=12),
    noise=st.binary(max_size=512),
    name=st.sampled_from(["x.jpg", "x.mp4", "x.heic", "x.png", "x.bin", "x.tif", "x.mkv"]),
)
def test_fuzzed_input_never_raises(
    seed: int, cut: int, flips: list[tuple[int, int]], noise: bytes, name: str
) -> None:
    data = bytearray(noise if seed < 0 else _seed_bytes(seed)[:cut])
    for pos, mask in flips:
        if data:
            data[pos % len(data)] ^= mask
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(bytes(data))
        saved, video.MEDIAINFO_TIMEOUT_S = video.MEDIAINFO_TIMEOUT_S, 2.0
        try:
            start = time.monotonic()
            meta = extract_metadata(path)
        finally:
            video.MEDIAINFO_TIMEOUT_S = saved
        assert time.monotonic() - start < 5
    _check_result(meta)


def test_mediainfo_runaway_is_bounded(tmp_path: Path) -> None:
    """The helper's address-space cap ends the runaway parse long before the timeout; the file still
    gets its metadata record (see test_mediainfo_process for the timeout and crash paths)."""
    path = tmp_path / "spin.3gp"
    path.write_bytes(spinning_3gp())
    start = time.monotonic()
    meta = extract_metadata(path)
    assert time.monotonic() - start < video.MEDIAINFO_TIMEOUT_S
    _check_result(meta)
    assert meta.normalized["media_type"] == "video/3gpp"


def test_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        extract_metadata(tmp_path / "missing.jpg")
