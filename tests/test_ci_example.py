"""The GitHub Actions example (examples/ci/github-actions-verify.yml) passes on a vault checked out
from git, where every object comes back writable."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import Cli
from tests.paths import REPO

WORKFLOW = REPO / "examples" / "ci" / "github-actions-verify.yml"


def _run_of(step: str) -> str:
    text = WORKFLOW.read_text("utf-8")
    found = re.search(rf"- name: {re.escape(step)}\n\s+run: (.+)\n", text)
    assert found is not None, f"no one-line step {step!r} in {WORKFLOW.name}"
    return found.group(1)


def test_workflow_strict_verify_passes_on_a_git_checkout(run: Cli, filled_vault: Path) -> None:
    genesis = run("--vault", filled_vault, "verify", "--json")
    fingerprint = genesis.json()["genesis_key"]
    for obj in (filled_vault / "objects").rglob("*"):
        if obj.is_file():
            obj.chmod(0o644)  # what a git checkout gives
    strict = ("--vault", filled_vault, "verify", "--trust", fingerprint, "--strict")
    before = run(*strict)
    assert before.code == 1 and "object.writable" in before.stderr
    subprocess.run(
        ["bash", "-c", _run_of("Objects read-only")],
        env={**os.environ, "VAULT": str(filled_vault)},
        check=True,
    )
    after = run(*strict)
    assert after.code == 0, after.stderr
