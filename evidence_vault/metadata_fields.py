"""The names of the normalized metadata fields the extractors can give (outside the `metadata` package,
whose import loads the extractors: the vault and the export need only the names)."""

from __future__ import annotations

#: Normalized metadata that is signed in the clear.
PUBLIC_FIELDS = frozenset(
    {
        "media_type",
        "width",
        "height",
        "make",
        "model",
        "software",
        "captured_at",
        "created_utc",
        "duration_ms",
        "codecs",
        "orientation",
    }
)
#: Normalized metadata signed as salted commitments, so that an export can withhold it.
PRIVATE_FIELDS = frozenset(
    {"serial", "lens_model", "artist", "modified_at", "container", "gps_lat", "gps_lon", "gps_alt"}
)
#: Every key :func:`~evidence_vault.metadata.extract_metadata` may put in ``normalized`` (a test runs
#: the extractors on the corpus and checks they give no other).
NORMALIZED_FIELDS = PUBLIC_FIELDS | PRIVATE_FIELDS
