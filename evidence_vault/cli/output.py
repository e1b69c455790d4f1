"""Console helpers: human output on stderr (rich), machine output on stdout (JSON)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def emit_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """One line: ``evidence-vault: error: <message>``."""
    err.print(f"[bold red]evidence-vault: error:[/] {escape(one_line(message))}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(one_line(message))}")


def info(message: str) -> None:
    err.print(escape(message))


def one_line(text: str) -> str:
    """Control characters (newlines in hostile file names) shown escaped, never as raw bytes."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
