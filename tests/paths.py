"""Where the shared corpus lives: ../shared/corpus beside the checkout (override: EVIDENCE_VAULT_CORPUS)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("EVIDENCE_VAULT_CORPUS", REPO.parent / "shared" / "corpus"))
