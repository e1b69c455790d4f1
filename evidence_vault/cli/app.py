"""Typer application, global options, and the one place errors become exit codes."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import EvidenceVaultError
from . import output
from .context import State


class ErrorHandlingGroup(TyperGroup):
    """Turns library errors into one line and a documented exit code; never a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EvidenceVaultError as exc:
            output.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.error("interrupted")
            raise typer.Exit(130) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            output.error(f"{where}{exc.strerror or exc}")
            raise typer.Exit(2) from None
        except sqlite3.Error as exc:
            # Only the derived index cache uses SQLite: nothing recorded is affected.
            output.error(f"index cache (cache/index.sqlite): {exc}; free disk space or delete the cache file")
            raise typer.Exit(2) from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("typer", "click") or os.environ.get(
                "EVIDENCE_VAULT_DEBUG"
            ):
                raise
            output.error(
                f"internal error: {type(exc).__name__}: {exc} (set EVIDENCE_VAULT_DEBUG=1 for details)"
            )
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=ErrorHandlingGroup,
    name="evidence-vault",
    help="Keep photos and videos as legal evidence: hashed originals, a signed custody log, verification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # plain click help: typer's rich help formatter costs ~0.2 s of start-up
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"evidence-vault {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    vault: Annotated[
        str | None, typer.Option("--vault", envvar="EVIDENCE_VAULT", help="Vault directory.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="EVIDENCE_VAULT_KEY", help="Fingerprint of the acting identity."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help="Read the key passphrase from this file (CI, tests)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """evidence-vault: photos and videos as evidence, with a signed chain of custody."""
    ctx.obj = State(vault=vault, key=key, passphrase_file=passphrase_file)


def _register() -> None:
    from . import anchor_commands, custody_commands, export_commands, keys, vault_commands

    app.add_typer(keys.app, name="key")
    vault_commands.register(app)
    anchor_commands.register(app)
    custody_commands.register(app)
    export_commands.register(app)


_register()


def run() -> None:
    """Run the Typer application (``evidence_vault.cli.main`` answers ``--version`` before this)."""
    app(prog_name="evidence-vault")


def main() -> None:
    """Console-script entry point."""
    from . import main as entry

    entry()
