"""Media metadata adapter: EXIF via exifread for images, container metadata via pymediainfo for video.

Public interface: :class:`MediaMetadata`, :func:`extract_metadata`, :func:`sniff_media_type`.

Normalized keys (present only when the file has them): ``media_type`` (always), ``width``, ``height``,
``make``, ``model``, ``software``, ``serial``, ``lens_model``, ``artist``, ``orientation`` (EXIF 1-8),
``captured_at`` (device-local time as recorded, ``2011-01-13T14:33:39``, with ``+03:00`` when the file
states the offset), ``modified_at`` (EXIF DateTime), ``created_utc`` (container creation time,
``...Z``), ``gps_lat`` / ``gps_lon`` (signed decimal degrees, 6 decimals, as strings), ``gps_alt``
(metres, 3 decimals), ``duration_ms``, ``codecs``, ``container``.

An all-zero GPS position is treated as "no fix" and omitted (noted in ``raw["notes"]``).
"""

from __future__ import annotations

from .extract import extract_metadata
from .model import MediaMetadata
from .sniff import sniff_media_type

__all__ = ["MediaMetadata", "extract_metadata", "sniff_media_type"]
