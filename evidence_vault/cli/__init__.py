"""The ``evidence-vault`` command line: a thin layer over the library (the only place that prints).

Importing this package is cheap: ``main`` answers ``--version`` before typer is imported, and the Typer
application (``evidence_vault.cli.app``, importable as ``from evidence_vault.cli import app``) is loaded on
first use.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        from .. import __version__

        sys.stdout.write(f"evidence-vault {__version__}\n")
        return
    from .app import run

    run()


class _Package(types.ModuleType):
    """``evidence_vault.cli.app`` is both a submodule and the Typer app: the attribute is the app."""

    @property
    def app(self) -> typer.Typer:
        from .app import app as typer_app

        return typer_app

    @app.setter
    def app(self, value: Any) -> None:
        # The import system binds the submodule ``evidence_vault.cli.app`` here; keep the attribute the app.
        pass


sys.modules[__name__].__class__ = _Package
