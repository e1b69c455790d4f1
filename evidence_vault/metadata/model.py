"""The result object of metadata extraction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NormalizedValue = str | int | list[str]


@dataclass(frozen=True)
class MediaMetadata:
    """Metadata of one media file.

    ``normalized`` holds a small, stable set of keys (only those the file has); ``raw`` the full dump of
    every extractor. Both contain only str/int/list/dict/bool/None values (no floats, no bytes) so the
    object can be serialized as RFC 8785 canonical JSON, hashed and signed.
    """

    normalized: dict[str, NormalizedValue]
    raw: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    extractors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (copies, safe to mutate)."""
        return {
            "normalized": {k: list(v) if isinstance(v, list) else v for k, v in self.normalized.items()},
            "raw": _copy(self.raw),
            "errors": list(self.errors),
            "extractors": list(self.extractors),
        }


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
