"""Regression tests for ingest defects found in review: what an interrupted or damaged add must not lose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evidence_vault.custody_log import CustodyLog
from evidence_vault.vault import Vault
from evidence_vault.verify import verify_vault
from tests.conftest import SAMPLE_FILES, Cli


def _ingest_lines(vault: Path) -> list[dict[str, Any]]:
    lines = (vault / "log.jsonl").read_bytes().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == "item.ingested"]


def test_interrupt_after_append_keeps_metadata_objects(
    cli: Cli, vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C arriving after the log append returned: the appended lines' metadata objects stay."""
    real_append = CustodyLog.append

    def append_then_interrupt(self: CustodyLog, *args: Any, **kwargs: Any) -> Any:
        real_append(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(CustodyLog, "append", append_then_interrupt)
    res = cli("--vault", vault, "add", *SAMPLE_FILES[:2])
    assert res.code == 130, res.stderr
    monkeypatch.undo()
    ingested = _ingest_lines(vault)
    assert len(ingested) == 2
    v = Vault(vault)
    try:
        for event in ingested:
            assert v.objects.exists(event["data"]["metadata"].removeprefix("sha256:"))
        report = verify_vault(v, trusted=[identity], record_head=False)
    finally:
        v.close()
    assert report.outcome != "FAIL", [f.to_dict() for f in report.failures]


def test_refused_append_discards_metadata_objects(
    cli: Cli, vault: Path, identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing appended (interrupted before the append): the batch's metadata objects are removed."""

    def interrupt(self: CustodyLog, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(CustodyLog, "append", interrupt)
    res = cli("--vault", vault, "add", SAMPLE_FILES[0])
    assert res.code == 130, res.stderr
    monkeypatch.undo()
    assert _ingest_lines(vault) == []
    v = Vault(vault)
    try:
        stored = list(v.objects.list())
    finally:
        v.close()
    assert len(stored) == 1  # the original only (an orphan until a re-run adds it)
