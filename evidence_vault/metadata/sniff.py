"""Media type detection from magic bytes, with the file extension as fallback."""

from __future__ import annotations

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2", b"heif"}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_SEGMENT_ATOMS = {b"styp", b"moof", b"sidx"}
_BMP_HEADERS = {12, 40, 52, 56, 64, 108, 124}

_BY_EXTENSION = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "dng": "image/x-adobe-dng",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
    "jxl": "image/jxl",
    "mov": "video/quicktime",
    "qt": "video/quicktime",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "m4s": "video/mp4",
    "3gp": "video/3gpp",
    "3g2": "video/3gpp2",
    "mts": "video/mp2t",
    "m2ts": "video/mp2t",
    "ts": "video/mp2t",
    "flv": "video/x-flv",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
    "mpg": "video/mpeg",
    "mpeg": "video/mpeg",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "amr": "audio/amr",
}


def _isobmff(head: bytes) -> str | None:
    box = head[4:8]
    if box == b"ftyp":
        size = int.from_bytes(head[0:4], "big")
        major = head[8:12]
        compat = {head[i : i + 4] for i in range(16, min(max(size, 16), len(head), 256), 4)}
        brands = {major} | compat
        if major in _AVIF_BRANDS:
            return "image/avif"
        if major in _HEIC_BRANDS:
            return "image/heic"
        if major in _HEIF_BRANDS:
            if brands & _AVIF_BRANDS:
                return "image/avif"
            if brands & _HEIC_BRANDS:
                return "image/heic"
            return "image/heif"
        if major == b"qt  ":
            return "video/quicktime"
        if major.startswith(b"3g2"):
            return "video/3gpp2"
        if major.startswith(b"3gp") or major.startswith(b"3ge") or major.startswith(b"3gg"):
            return "video/3gpp"
        if major == b"crx ":
            return "image/x-canon-cr3"
        if major in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if major == b"jxl ":
            return "image/jxl"
        return "video/mp4"
    if box in _SEGMENT_ATOMS:
        return "video/mp4"
    if box in _QT_ATOMS and int.from_bytes(head[0:4], "big") >= 8:
        return "video/quicktime"
    return None


def sniff_media_type(head: bytes, name: str) -> str:
    """MIME type from the first bytes of a file (a few KiB suffice), else from ``name``'s extension."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n") or head.startswith(b"\xff\x0a"):
        return "image/jxl"
    if head[:4] == b"RIFF" and len(head) >= 12:
        kind = head[8:12]
        if kind == b"WEBP":
            return "image/webp"
        if kind == b"AVI ":
            return "video/x-msvideo"
        if kind == b"WAVE":
            return "audio/wav"
    if len(head) >= 12:
        iso = _isobmff(head)
        if iso:
            return iso
    if head[:3] == b"FLV":
        return "video/x-flv"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video/mp2t"
    if len(head) > 196 and head[4] == 0x47 and head[196] == 0x47:
        return "video/mp2t"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video/mpeg"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:3] == b"ID3":
        return "audio/mpeg"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    if head[:2] == b"BM" and len(head) >= 26 and int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return "image/bmp"
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return _BY_EXTENSION.get(ext, "application/octet-stream")
