"""examples/demo.sh end to end: PASS on the real vault, FAIL with the right finding on tampered copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

DEMO = REPO / "examples" / "demo.sh"
MEDIA = REPO / "examples" / "media"


def _cli_dir() -> Path:
    """The directory of the `evidence-vault` script installed beside this interpreter."""
    return Path(sys.executable).parent


@pytest.fixture(scope="module")
def demo_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def demo_run(demo_tmp: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("bash"), "bash is needed to run examples/demo.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_VAULT")}
    env["PATH"] = f"{_cli_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(demo_tmp)
    env["COLUMNS"] = "200"
    # A stray home or passphrase from the caller must not leak in: the demo sets its own.
    env["EVIDENCE_VAULT_HOME"] = "/nonexistent-should-be-overridden"
    env["EVIDENCE_VAULT_PASSPHRASE"] = "wrong passphrase that must not be used"
    return subprocess.run(
        ["bash", str(DEMO)], env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def test_demo_exits_zero(demo_run: subprocess.CompletedProcess[str]) -> None:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr


def test_demo_shows_each_step(demo_run: subprocess.CompletedProcess[str]) -> None:
    out = demo_run.stdout
    for expected in (
        "created identity Demo Custodian",
        "created vault 'demo-vault'",
        "4 added, 0 already present, 0 failed, 0 skipped",
        "photo-gps.jpg",
        "clip.mp4",
        "make           ExampleCam",
        "gps_lat        52.520008",
        "-> exit code 0: the untouched vault verifies (PASS).",
        "object.hash-mismatch",
        "-> exit code 1: tampering detected.",
        "log.truncated",
        "DEMO OK",
    ):
        assert expected in out, f"missing {expected!r} in demo output:\n{out}"
    # First verify PASSes, the tampered copies FAIL, the original still PASSes at the end.
    outcomes = [line.split()[0] for line in out.splitlines() if line.startswith(("PASS ", "FAIL ", "WARN "))]
    assert outcomes == ["PASS", "FAIL", "FAIL", "PASS"], outcomes


def test_demo_cleans_up(demo_run: subprocess.CompletedProcess[str], demo_tmp: Path) -> None:
    assert demo_run.returncode == 0
    assert list(demo_tmp.iterdir()) == [], "the demo left its temporary directory behind"


def test_sample_media_is_small_and_present() -> None:
    files = {p.name: p.stat().st_size for p in MEDIA.iterdir() if p.is_file()}
    for name in ("photo-gps.jpg", "photo-no-gps.jpg", "screenshot.png", "clip.mp4", "README.md"):
        assert name in files, name
    assert sum(files.values()) < 1_000_000
    assert MEDIA.joinpath("photo-gps.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert MEDIA.joinpath("screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert MEDIA.joinpath("clip.mp4").read_bytes()[4:8] == b"ftyp"
