"""Hypothesis strategies for hand-made log lines: any JSON, with what real tools trip over."""

from __future__ import annotations

from hypothesis import strategies as st

# The data fields events use (a fuzzed line fills some of them with anything).
FIELDS = (
    "item", "size", "metadata", "committed", "openings", "derived_from", "original", "derived", "items",
    "to", "transfer_id", "key", "role", "fingerprint", "rotates", "tags", "origin", "root", "signature",
    "provenance", "reason", "vault_id", "purpose", "note",
)  # fmt: skip
_ODD_TEXT = st.sampled_from(
    ["\ud800", "x\udfff", "é", "a\x00b", "../../x", "/dev/zero", "sha256:/dev/zero", ""]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=8)
    | _ODD_TEXT
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | _ODD_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
