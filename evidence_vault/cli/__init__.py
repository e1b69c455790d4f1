"""The ``evidence-vault`` command line: a thin layer over the library (the only place that prints)."""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
