"""Shared fixtures: an isolated EVIDENCE_VAULT_HOME, CLI runners (in-process and real process), a vault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evidence_vault.cli import app
from evidence_vault.keystore import KeyStore
from evidence_vault.signing import Signer
from tests.paths import CORPUS

PASSPHRASE = "correct horse battery staple"

#: Corpus files used by the end-to-end tests (names with spaces and parentheses on purpose).
SAMPLE_FILES = (
    CORPUS / "images" / "Apple iPhone 4.jpg",
    CORPUS / "images" / "Samsung GT-I9000 (Galaxy S).jpg",
    CORPUS / "images" / "Canon_40D.jpg",
    CORPUS / "video" / "with-gps.mov",
)


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


Cli = Callable[..., CliResult]


@pytest.fixture(autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh EVIDENCE_VAULT_HOME per test, a passphrase in the environment, no inherited vault or key."""
    path = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("EVIDENCE_VAULT_HOME", str(path))
    monkeypatch.setenv("EVIDENCE_VAULT_PASSPHRASE", PASSPHRASE)
    for var in ("EVIDENCE_VAULT", "EVIDENCE_VAULT_KEY", "EVIDENCE_VAULT_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run ``evidence-vault ARGS`` in-process (typer CliRunner); stdout and stderr are kept apart.

    Exceptions other than a normal exit are re-raised, so a traceback fails the test loudly.
    """

    def invoke(
        *args: str | os.PathLike[str],
        cwd: Path | None = None,
        input: str | None = None,
        env: dict[str, str | None] | None = None,
    ) -> CliResult:
        with monkeypatch.context() as m:
            if cwd is not None:
                m.chdir(cwd)
            result = CliRunner().invoke(app, [os.fspath(a) for a in args], input=input, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


def _command() -> list[str]:
    script = Path(sys.executable).with_name("evidence-vault")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from evidence_vault.cli import main; main()"]


@pytest.fixture
def run() -> Cli:
    """Run ``evidence-vault ARGS`` as a real process (environment inherited from the monkeypatched one)."""

    def execute(
        *args: str | os.PathLike[str],
        cwd: Path | None = None,
        input: str | None = None,
        env: dict[str, str | None] | None = None,
        timeout: float = 120,
    ) -> CliResult:
        environ = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                environ.pop(k, None)
            else:
                environ[k] = v
        proc = subprocess.run(
            [*_command(), *(os.fspath(a) for a in args)],
            cwd=cwd,
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=environ,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return execute


@pytest.fixture
def identity(cli: Cli) -> str:
    """Fingerprint of a new passphrase-protected default identity."""
    res = cli("key", "new", "--name", "Alice Custodian", "--json")
    assert res.code == 0, res.stderr
    fp: str = res.json()["fingerprint"]
    return fp


@pytest.fixture
def vault(cli: Cli, identity: str, tmp_path: Path) -> Path:
    """An empty vault whose genesis key is ``identity`` (pinned in this EVIDENCE_VAULT_HOME)."""
    path = tmp_path / "vault"
    res = cli("init", path, "--name", "test vault")
    assert res.code == 0, res.stderr
    return path


@pytest.fixture
def filled_vault(cli: Cli, vault: Path) -> Path:
    """``vault`` holding SAMPLE_FILES (four items, log seq 0..4)."""
    res = cli("--vault", vault, "add", *SAMPLE_FILES)
    assert res.code == 0, res.stderr
    return vault


@pytest.fixture
def big_vault(cli: Cli, vault: Path, tmp_path: Path) -> Path:
    """A vault whose log passes 512 KB: verify checks signatures and small objects in worker
    processes, and starts its re-hashing child (620 originals of 68 bytes, and their metadata)."""
    src = tmp_path / "many"
    src.mkdir()
    for i in range(620):
        (src / f"photo{i:04d}.bin").write_bytes(os.urandom(64) + i.to_bytes(4, "big"))
    res = cli("--vault", vault, "add", "-r", src)
    assert res.code == 0, res.stderr
    assert (vault / "log.jsonl").stat().st_size > 512 * 1024
    return vault


@pytest.fixture
def log_lines() -> Callable[[Path], list[bytes]]:
    def read(vault: Path) -> list[bytes]:
        return (vault / "log.jsonl").read_bytes().splitlines()

    return read


def signer_of(home: Path, fingerprint: str) -> Signer:
    """The unlocked signer of an identity in ``home`` (to write signed lines by hand)."""
    store = KeyStore(home)
    return store.signer(store.find(fingerprint), lambda _: PASSPHRASE.encode())


def object_path(vault: Path, item_id: str) -> Path:
    hex_digest = item_id.removeprefix("sha256:")
    return vault / "objects" / "sha256" / hex_digest[:2] / hex_digest


@pytest.fixture
def items(cli: Cli) -> Callable[[Path], list[dict[str, Any]]]:
    def listing(vault: Path) -> list[dict[str, Any]]:
        res = cli("--vault", vault, "ls", "--json")
        assert res.code == 0, res.stderr
        value: list[dict[str, Any]] = res.json()
        return value

    return listing


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "scratch"
    path.mkdir()
    yield path


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the shared corpus must be there: its tests must run, never skip."""
    if os.environ.get("CI") and not (CORPUS / "expected.json").is_file():
        pytest.exit(f"CI: the shared corpus is missing at {CORPUS}", returncode=1)
