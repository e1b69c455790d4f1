"""Typer application, global options, and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import EvidenceVaultError
from . import output
from .context import State
from .early import split_command


class ErrorHandlingGroup(TyperGroup):
    """Turns library errors into one line and a documented exit code; never a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        _escape_unencodable()
        try:
            return super().invoke(ctx)
        except EvidenceVaultError as exc:
            output.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            if not output.reader_gone():
                raise  # a pipe of our own (a socket, a helper process), not the output
            raise typer.Exit(output.READER_GONE) from None
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


def _escape_unencodable() -> None:
    """Write what the terminal's encoding cannot hold (a lone surrogate from a hand-made log line) as a
    backslash escape: inside JSON output that is the same escape JSON itself uses."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def _new_app() -> typer.Typer:
    return typer.Typer(
        cls=ErrorHandlingGroup,
        name="evidence-vault",
        help=(
            "Keep photos and videos as legal evidence: hashed originals, a signed custody log, verification."
        ),
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


# Top-level command names, by the module that registers them (``key`` is a group of its own).
_COMMANDS = {
    "vault": ("init", "add", "ls", "show", "log", "verify", "doctor"),
    "anchor": ("checkpoint", "stamp", "upgrade", "prove", "verify-proof"),
    "custody": ("transfer", "accept", "annotate", "access", "open", "derive", "timeline", "find"),
    "export": ("export", "verify-bundle", "import", "report"),
    "keys": ("key",),
}


class _Only:
    """What ``register`` functions see: an app that keeps only the wanted command names."""

    def __init__(self, app: typer.Typer, keep: frozenset[str] | None) -> None:
        self._app, self._keep = app, keep

    def command(self, name: str, **kwargs: Any) -> Any:
        if self._keep is None or name in self._keep:
            return self._app.command(name, **kwargs)
        return lambda fn: fn


def build_app(only: str | None = None) -> typer.Typer:
    """The Typer application with every command, or with only the command ``only`` (start-up: Typer
    inspects the signature of every registered command on each run, about 0.1 s for all of them)."""
    from . import anchor_commands, custody_commands, export_commands, keys, vault_commands

    new = _new_app()
    new.callback()(_global)
    keep = frozenset([only]) if only is not None else None
    target = cast(typer.Typer, _Only(new, keep))
    if keep is None or "key" in keep:
        new.add_typer(keys.app, name="key")
    for module in (vault_commands, anchor_commands, custody_commands, export_commands):
        module.register(target)
    return new


def command_of(argv: list[str]) -> str | None:
    """The top-level command an argument list runs, if it names a known one (else None: all of them)."""
    _, command, _ = split_command(argv)
    known = {name for names in _COMMANDS.values() for name in names}
    return command if command in known else None


app = build_app()


def run() -> None:
    """Run the application, built with just the command being run (``evidence_vault.cli.main`` answers
    ``--version`` before this)."""
    only = command_of(sys.argv[1:])
    (build_app(only) if only is not None else app)(prog_name="evidence-vault")


def main() -> None:
    """Console-script entry point."""
    from . import main as entry

    entry()
