"""The names of the normalized metadata fields the extractors can give (outside the `metadata` package,
whose import loads the extractors: the vault and the export need only the names)."""

from __future__ import annotations

#: Every key :func:`~evidence_vault.metadata.extract_metadata` may put in ``normalized`` (a test runs
#: the extractors on the corpus and checks they give no other).
NORMALIZED_FIELDS = frozenset(
    {
        "media_type",
        "width",
        "height",
        "make",
        "model",
        "software",
        "serial",
        "lens_model",
        "artist",
        "orientation",
        "captured_at",
        "modified_at",
        "created_utc",
        "gps_lat",
        "gps_lon",
        "gps_alt",
        "duration_ms",
        "codecs",
        "container",
    }
)
