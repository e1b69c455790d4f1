"""The signing key is unlocked beside the command (its KDF on another core), without changing what a
user sees: the same errors in the same order, nothing copied under a wrong passphrase, and the process
still cleans up after itself although its last garbage collections are skipped (``gc.freeze``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import typer

from evidence_vault import signing
from evidence_vault.cli.app import app
from evidence_vault.cli.context import State, signing_state
from evidence_vault.errors import KeyStoreError, PassphraseError
from evidence_vault.keystore import KeyStore
from tests.conftest import PASSPHRASE, Cli
from tests.test_cli_core import IPHONE, one_error_line


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_unlock_runs_in_another_thread(identity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    load = signing.load_private_openssh

    def spy(data: bytes, passphrase: bytes | None) -> signing.Signer:
        threads.append(threading.current_thread())
        return load(data, passphrase)

    monkeypatch.setattr(signing, "load_private_openssh", spy)
    st = State()
    st.begin_unlock()
    assert st.signer().fingerprint == identity
    assert st.signer().fingerprint == identity  # asked twice: one unlock
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


def test_unlock_errors_are_raised_by_signer(identity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDENCE_VAULT_PASSPHRASE", "wrong")
    st = State()
    st.begin_unlock()  # raises nothing itself: the command may fail on something else first
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        st.signer()
    st = State(key="nobody")
    st.begin_unlock()
    with pytest.raises(KeyStoreError):
        st.signer()


def test_no_background_unlock_when_a_prompt_may_be_needed(
    identity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVIDENCE_VAULT_PASSPHRASE")
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked: list[str] = []

    def prompt(text: str, **_kw: object) -> str:
        asked.append(text)
        assert threading.current_thread() is threading.main_thread()
        return PASSPHRASE

    monkeypatch.setattr(typer, "prompt", prompt)
    st = State()
    st.begin_unlock()
    assert asked == []  # not yet: the prompt comes when the key is needed, after the vault opened
    assert st.signer().fingerprint == identity
    assert len(asked) == 1
    assert identity in asked[0]  # the fingerprint as it is (base64 is case-sensitive)
    assert asked[0].startswith("Passphrase for ")


def test_passphrase_file_is_read_before_the_thread(
    identity: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EVIDENCE_VAULT_PASSPHRASE")
    secret = tmp_path / "pass"
    secret.write_text(PASSPHRASE + "\n")
    st = State(passphrase_file=secret)
    st.begin_unlock()
    secret.unlink()  # what the thread needs was read in begin_unlock
    assert st.signer().fingerprint == identity


def test_unlocker_asks_for_the_passphrase_at_once(identity: str) -> None:
    store = KeyStore()
    asked: list[str] = []

    def source(what: str) -> bytes:
        asked.append(what)
        return PASSPHRASE.encode()

    unlock = store.unlocker(store.find(None), source)
    assert len(asked) == 1
    assert unlock().fingerprint == identity
    assert len(asked) == 1


def test_signing_state_starts_the_unlock(identity: str) -> None:
    ctx = typer.Context(typer.main.get_command(app))
    st = signing_state(ctx)
    assert st._unlocking is not None
    assert st is signing_state(ctx)
    assert st.signer().fingerprint == identity


def test_wrong_passphrase_copies_nothing(run: Cli, vault: Path) -> None:
    before = {name: (vault / name).read_bytes() for name in _files(vault) if name.startswith("log")}
    objects = _files(vault / "objects")
    res = run("--vault", vault, "add", IPHONE, env={"EVIDENCE_VAULT_PASSPHRASE": "wrong"})
    assert res.code == 2
    assert "wrong passphrase" in one_error_line(res.stderr)
    assert _files(vault / "objects") == objects
    assert {name: (vault / name).read_bytes() for name in before} == before


def test_vault_errors_still_come_before_key_errors(run: Cli, identity: str, tmp_path: Path) -> None:
    res = run("--vault", tmp_path / "nowhere", "--key", "nobody", "add", IPHONE)
    assert res.code == 2
    assert "nowhere" in one_error_line(res.stderr)
    res = run("--vault", tmp_path / "nowhere", "add", IPHONE, env={"EVIDENCE_VAULT_PASSPHRASE": "wrong"})
    assert res.code == 2
    assert "nowhere" in one_error_line(res.stderr)


def test_exit_still_cleans_up(run: Cli, vault: Path, tmp_path: Path) -> None:
    """Skipping the last garbage collections must not skip what the process cleans up at exit: the
    verify scratch directory (a weakref finalizer), the index's write-ahead log (closed explicitly)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    res = run("--vault", vault, "add", IPHONE, env={"TMPDIR": str(tmp)})
    assert res.code == 0, res.stderr
    res = run("--vault", vault, "verify", "--json", env={"TMPDIR": str(tmp)})
    assert res.code == 0, res.stderr
    assert res.json()["outcome"] == "PASS"
    assert list(tmp.iterdir()) == []
    assert not (vault / "cache" / "index.sqlite-wal").exists()


def test_unlocking_says_whether_a_thread_runs(identity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`add` catches up the index beside the unlock only while a thread runs it: with a prompt to come,
    the prompt comes first."""
    release = threading.Event()
    load = signing.load_private_openssh

    def slow(data: bytes, passphrase: bytes | None) -> signing.Signer:
        assert release.wait(30)
        return load(data, passphrase)

    monkeypatch.setattr(signing, "load_private_openssh", slow)
    st = State()
    assert not st.unlocking
    st.begin_unlock()
    assert st.unlocking
    release.set()
    assert st.signer().fingerprint == identity
    assert not st.unlocking
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.delenv("EVIDENCE_VAULT_PASSPHRASE")
    st = State()
    st.begin_unlock()
    assert not st.unlocking
