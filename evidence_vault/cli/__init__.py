"""The ``evidence-vault`` command line: a thin layer over the library (the only place that prints).

Importing this package is cheap: ``main`` answers ``--version`` before typer is imported, and the Typer
application (``evidence_vault.cli.app``, importable as ``from evidence_vault.cli import app``) is loaded on
first use.
"""

from __future__ import annotations

import gc
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
    from . import early

    early.start(sys.argv[1:])  # verify: small objects are re-hashed meanwhile, on the idle core
    from .app import run

    try:
        run()
    finally:
        early.stop()
        # The process ends here. Frozen objects are left out of the interpreter's last garbage
        # collections, which otherwise walk everything typer, rich and the vault code allocated (about
        # 0.1 s of `add`). atexit handlers, weakref finalizers and the flushing of stdout and stderr
        # still run; only objects in reference cycles are not freed, and the OS takes their memory back.
        gc.freeze()


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
