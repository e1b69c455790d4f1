"""Stamping a test vault through the stand-in servers (anchoring, export and no-network tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import Cli, CliResult


def stamp_vault(
    cli: Cli, vault: Path, calendars: Sequence[str], tsa: Any, tmp_path: Path, *extra: str
) -> CliResult:
    """``stamp`` with these calendar URLs and the local TSA, whose CA is written to
    ``tmp_path / "tsa-ca.pem"``; asserts it succeeded."""
    ca = tmp_path / "tsa-ca.pem"
    ca.write_bytes(tsa.ca_pem)
    args: list[Any] = ["--vault", vault, "stamp"]
    for url in calendars:
        args += ["--calendar", url]
    res = cli(*args, "--tsa", tsa.url, "--tsa-ca", ca, *extra)
    assert res.code == 0, res.stderr
    return res
