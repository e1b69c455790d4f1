"""`verify` of a stamped vault and `verify-proof` of a `prove` output make no network connection at all.

Two independent proofs: in-process with every way of opening a connection or resolving a name patched
to raise (and the result still correct), and as a real process in a new network namespace
(``unshare -n``, root as in CI; the util-linux package) giving the same report as with the network.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_FILES, Cli
from tests.servers.ots_calendar import CalendarServer
from tests.servers.tsa import LocalTSA
from tests.stamping import stamp_vault


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def stamped(cli: Cli, filled_vault: Path, tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A vault stamped by a stand-in calendar and the local TSA, plus a `prove` output of one item."""
    with CalendarServer() as cal, LocalTSA() as tsa:
        stamp_vault(cli, filled_vault, [cal.url], tsa, tmp_path, "--min-calendars", "1", "--json")
        ca = tmp_path / "tsa-ca.pem"
    proof = tmp_path / "proof"
    res = cli("--vault", filled_vault, "prove", SAMPLE_FILES[1], "--out", proof, "--json")
    assert res.code == 0, res.stderr
    yield filled_vault, proof, ca


def _no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def fn(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
            raise NetworkUsed(f"network used: {what}")

        return fn

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket.socket, "sendto", refuse("socket.sendto"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", refuse("gethostbyname"))
    return attempts


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("started", "finished")}


def test_verify_and_verify_proof_in_process_without_network(
    cli: Cli, stamped: tuple[Path, Path, Path], identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault, proof, ca = stamped
    online = cli("--vault", vault, "verify", "--json", "--trust", identity, "--tsa-ca", ca)
    online_proof = cli("verify-proof", proof, "--file", SAMPLE_FILES[1], "--trust", identity, "--json")
    with monkeypatch.context() as m:
        attempts = _no_network(m)
        offline = cli("--vault", vault, "verify", "--json", "--trust", identity, "--tsa-ca", ca)
        offline_proof = cli("verify-proof", proof, "--file", SAMPLE_FILES[1], "--trust", identity, "--json")
    assert attempts == []
    assert offline.code == online.code == 0, offline.stdout
    report = offline.json()
    assert _stable(report) == _stable(online.json())
    assert report["stats"]["items"] == 4
    assert any(i.get("proven_since") for i in report["items"]), "the TSA token must prove a time offline"
    assert not [f for f in report["findings"] if f["level"] == "FAIL"]
    assert offline_proof.code == online_proof.code == 0, offline_proof.stdout
    assert _stable(offline_proof.json()) == _stable(online_proof.json())
    # The patch really bites: anything that tries to connect is stopped.
    with monkeypatch.context() as m:
        _no_network(m)
        with pytest.raises(NetworkUsed):
            socket.create_connection(("127.0.0.1", 9))


def _command() -> list[str]:
    script = Path(sys.executable).with_name("evidence-vault")
    return [str(script)] if script.exists() else [sys.executable, "-m", "evidence_vault.cli"]


def _run(prefix: list[str], *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *_command(), *(os.fspath(a) for a in args)], capture_output=True, text=True, timeout=120
    )


def test_verify_in_a_network_namespace_gives_the_same_report(
    stamped: tuple[Path, Path, Path], identity: str
) -> None:
    vault, proof, ca = stamped
    unshare = shutil.which("unshare")
    assert unshare, "needs unshare(1) from the Debian package util-linux"
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
    # Needs root or CAP_SYS_ADMIN (as in CI); the in-process test above covers machines without it.
    assert probe.returncode == 0, f"cannot create a network namespace: {probe.stderr.decode().strip()}"
    # Inside the namespace there is not even a loopback interface up: any connect fails.
    inside = subprocess.run(
        [
            unshare,
            "-n",
            sys.executable,
            "-c",
            "import socket; socket.create_connection(('127.0.0.1', 9), timeout=2)",
        ],
        capture_output=True,
        text=True,
    )
    assert inside.returncode != 0 and "unreachable" in inside.stderr.lower()
    args = ("--vault", vault, "verify", "--json", "--trust", identity, "--tsa-ca", ca)
    online = _run([], *args)
    offline = _run([unshare, "-n"], *args)
    assert offline.returncode == online.returncode == 0, offline.stderr
    assert _stable(json.loads(offline.stdout)) == _stable(json.loads(online.stdout))
    pargs = ("verify-proof", proof, "--file", SAMPLE_FILES[1], "--trust", identity, "--json")
    online_p = _run([], *pargs)
    offline_p = _run([unshare, "-n"], *pargs)
    assert offline_p.returncode == online_p.returncode == 0, offline_p.stderr
    assert _stable(json.loads(offline_p.stdout)) == _stable(json.loads(online_p.stdout))
