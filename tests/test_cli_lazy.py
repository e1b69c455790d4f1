"""The CLI builds only the command being run: the table of command names must match the full app."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import exifread
import typer.main

from evidence_vault.cli.app import _COMMANDS, app, build_app, command_of
from evidence_vault.metadata.extract import extract_metadata
from tests.paths import CORPUS


def test_command_table_matches_the_registered_commands() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == {name for names in _COMMANDS.values() for name in names}


def test_command_of_skips_global_options() -> None:
    assert command_of(["--vault", "v", "--key=SHA256:x", "add", "f"]) == "add"
    assert command_of(["--passphrase-file", "add", "verify"]) == "verify"  # the file is called "add"
    assert command_of(["-h"]) is None
    assert command_of(["nosuch", "x"]) is None
    assert command_of(["key", "list"]) == "key"


def test_single_command_app_has_just_that_command() -> None:
    group = typer.main.get_command(build_app("verify"))
    assert isinstance(group, typer.core.TyperGroup)
    assert list(group.commands) == ["verify"]
    keys = typer.main.get_command(build_app("key"))
    assert isinstance(keys, typer.core.TyperGroup)
    assert list(keys.commands) == ["key"]


def _modules_after(*args: object) -> set[str]:
    """The modules a fresh process has imported once the CLI ran ``args`` (exit status checked)."""
    code = (
        "import sys\n"
        "from evidence_vault.cli import main\n"
        f"sys.argv = ['evidence-vault', *{[str(a) for a in args]!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_add_imports_exifread_only_for_images(vault: Path, tmp_path: Path) -> None:
    """exifread costs about 15 ms of start-up: an add of other files (the 1M-event bench's) skips it."""
    other = tmp_path / "notes.bin"
    other.write_bytes(b"\x00" * 100)
    assert "exifread" not in _modules_after("--vault", vault, "add", other)
    assert "exifread" in _modules_after("--vault", vault, "add", CORPUS / "images" / "Canon_40D.jpg")
    extractors = extract_metadata(CORPUS / "images" / "Canon_40D.jpg").extractors
    assert f"exifread {exifread.__version__}" in extractors, extractors


def test_commands_that_sign_nothing_skip_cryptography(vault: Path, tmp_path: Path) -> None:
    """cryptography costs about 18 ms of start-up: verify and ls check signatures with libsodium and
    read no private key, so they do without it; add signs, so it loads it."""
    item = tmp_path / "notes.bin"
    item.write_bytes(b"\x01" * 100)
    assert "cryptography" in _modules_after("--vault", vault, "add", item)
    item_id = hashlib.sha256(item.read_bytes()).hexdigest()[:12]
    for args in (("verify",), ("ls",), ("show", item_id)):
        loaded = _modules_after("--vault", vault, *args)
        assert "cryptography" not in loaded, args
    assert "evidence_vault.signing" in _modules_after("--vault", vault, "verify")
