"""extract_metadata: pick the extractors for a file's sniffed type and merge their results."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO

from . import images, isobmff, video
from ._values import clean_str, json_safe
from .model import MediaMetadata
from .sniff import sniff_media_type

HEAD_BYTES = 4096
PARSER_VERSION = "evidence_vault.metadata 1"
_EXIFREAD_TYPES = {"image/jpeg", "image/tiff", "image/png", "image/webp", "image/jxl", "image/x-adobe-dng"}
_EXIFREAD_TYPES |= {"image/heic", "image/heif", "image/avif"}
_HEIF_TYPES = {"image/heic", "image/heif", "image/avif"}
_ISOBMFF_TYPES = {"video/mp4", "video/quicktime", "video/3gpp", "video/3gpp2", "audio/mp4"}
# Images whose headers we size ourselves; MediaInfo is only a fallback for other images.
_SELF_SIZED = {"image/jpeg", "image/png", "image/gif", "image/bmp", "image/webp", "image/tiff"}


def wants_mediainfo_for(media_type: str) -> bool:
    """libmediainfo runs only on what it can read: audio/video and their containers (sniffed by magic bytes or
    extension). Plain binary files (``application/octet-stream``) cost 60-120 ms each in it for nothing."""
    return media_type.startswith(("video/", "audio/"))


def _error(stage: str, exc: BaseException) -> str:
    message = clean_str(str(exc)).replace("\n", " ")[:300]
    return f"{stage}: {type(exc).__name__}: {message}" if message else f"{stage}: {type(exc).__name__}"


def extract_metadata(path: Path, name: str | None = None) -> MediaMetadata:
    """Extract normalized and raw metadata of one media file. ``name``: the file's original name, whose
    extension types content no signature identifies (default: ``path``'s own name).

    Never raises for bad media content (problems are listed in ``errors``); only an ``OSError`` from opening
    or first reading the file propagates. Reads bounded amounts and never decodes pixels or samples.
    """
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        size = os.fstat(fh.fileno()).st_size
        media_type = sniff_media_type(head, Path(path).name if name is None else name)
        return _extract(fh, head, size, media_type)


def _extract(fh: BinaryIO, head: bytes, size: int, media_type: str) -> MediaMetadata:
    normalized: dict[str, Any] = {"media_type": media_type}
    raw: dict[str, Any] = {"media_type": media_type, "size": size}
    errors: list[str] = []
    notes: list[str] = []
    extractors = [PARSER_VERSION]
    is_image = media_type.startswith("image/")

    if is_image:
        dims: tuple[int, int] | None = None
        exif_source: BinaryIO | io.BytesIO | None = fh
        try:
            if media_type == "image/jpeg":
                dims, tiff = images.scan_jpeg(fh)
                if tiff is None:
                    exif_source = None
                elif tiff[:4] in (b"II*\x00", b"MM\x00*"):
                    exif_source = io.BytesIO(tiff)  # Exif APP1 anywhere (also after XMP), bounded to 64 KiB
                # else: a damaged TIFF header; let exifread try its own recovery on the whole file
            elif media_type in _HEIF_TYPES:
                dims = isobmff.heif_primary_size(fh, size)
            else:
                dims = images.header_size(media_type, head)
        except Exception as exc:
            errors.append(_error("header", exc))
        if dims and dims[0] > 0 and dims[1] > 0:
            normalized["width"], normalized["height"] = int(dims[0]), int(dims[1])
        if media_type in _EXIFREAD_TYPES and exif_source is not None:
            extractors.append(images.exifread_version())
            try:
                fh.seek(0)
                tags, warnings = images.run_exifread(exif_source)
                errors.extend(warnings)
                if tags:
                    raw["exif"] = images.exif_raw(tags)
                    exif = images.normalize_exif(tags, errors, notes)
                    _merge_exif_size(normalized, exif)
                    for key, value in exif.items():
                        normalized.setdefault(key, value)
            except Exception as exc:
                errors.append(_error("exifread", exc))

    wants_mediainfo = wants_mediainfo_for(media_type) or (
        is_image and media_type not in _SELF_SIZED and "width" not in normalized
    )
    if wants_mediainfo:
        extractors.append(video.mediainfo_version())
        try:
            tracks = video.run_mediainfo(fh)
            raw["mediainfo"] = tracks
            for key, value in video.normalize_tracks(tracks, errors).items():
                if key == "container" and is_image:
                    continue
                normalized.setdefault(key, value)
        except Exception as exc:
            errors.append(_error("mediainfo", exc))

    if media_type in _ISOBMFF_TYPES:
        try:
            udta = isobmff.movie_user_data(fh, size)
            if udta:
                raw["udta"] = json_safe(udta)
            _merge_udta(normalized, udta, errors)
        except Exception as exc:
            errors.append(_error("isobmff", exc))

    if notes:
        raw["notes"] = notes
    return MediaMetadata(
        normalized=json_safe(normalized),
        raw=json_safe(raw),
        errors=[e[:400] for e in errors],
        extractors=extractors,
    )


def _merge_exif_size(normalized: dict[str, Any], exif: dict[str, Any]) -> None:
    width, height = exif.pop("exif_width", None), exif.pop("exif_height", None)
    if "width" not in normalized and width and height:
        normalized["width"], normalized["height"] = width, height


def _merge_udta(normalized: dict[str, Any], udta: dict[str, Any], errors: list[str]) -> None:
    if "gps_lat" not in normalized:
        xyz = udta.get("xyz")
        loci = udta.get("loci")
        if isinstance(xyz, str):
            normalized.update(video.location_from_iso6709(xyz, errors))
        elif isinstance(loci, dict):
            normalized.update(video.location(loci["lat"], loci["lon"], loci["alt"], errors=errors))
    gpmf = udta.get("gpmf")
    if isinstance(gpmf, dict):
        for key in ("model", "serial"):
            if key in gpmf:
                normalized.setdefault(key, gpmf[key])
