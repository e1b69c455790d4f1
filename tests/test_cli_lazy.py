"""The CLI builds only the command being run: the table of command names must match the full app."""

from __future__ import annotations

import typer.main

from evidence_vault.cli.app import _COMMANDS, app, build_app, command_of


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
