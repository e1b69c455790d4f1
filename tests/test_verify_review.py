"""Review findings in verify, doctor, import and the report formats: each test reproduces one defect."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.conftest import Cli


def test_doctor_keeps_a_copy_of_each_line_set_aside_in_the_same_millisecond(
    cli: Cli, filled_vault: Path, monkeypatch: Any
) -> None:
    from evidence_vault import doctor as doctor_module

    log = filled_vault / "log.jsonl"
    good = log.read_bytes()
    last = good.splitlines(keepends=True)[-1].replace(b'"seq":4,', b'"seq":5,')
    # Three lines after the head this machine saw that nobody wrote there (each chained wrongly),
    # set aside one after the other.
    extra = [re.sub(rb'\d\d\dZ"', b'%03dZ"' % i, last) for i in range(3)]
    log.write_bytes(good + b"".join(extra))
    monkeypatch.setattr(doctor_module, "utc_now", lambda: "2026-01-01T00:00:00.000Z")
    res = cli("--vault", filled_vault, "doctor", "--repair")
    assert res.code == 0, res.stderr
    assert log.read_bytes() == good
    kept = sorted((filled_vault / "quarantine").iterdir())
    assert len(kept) == 3
    assert sorted(p.read_bytes() for p in kept) == sorted(extra)
