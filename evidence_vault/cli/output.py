"""Console helpers: human output on stderr (rich), machine output on stdout (JSON)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_console: Console | None = None


def console() -> Console:
    """The stderr console, created on first use (importing rich costs start-up time)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def __getattr__(name: str) -> Any:
    if name == "err":  # ``output.err``: the stderr console, created on first use
        return console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def escape(text: str) -> str:
    """Rich markup escaped (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


_plain: bool | None = None


def status(word: str, color: str, rest: str) -> None:
    """One per-file status line on stderr (``added     <id>  <name>``): colored on a terminal, else plain
    text written directly (thousands of lines in a batch: rich's markup costs ~0.4 ms a line)."""
    global _plain
    if _plain is None:
        _plain = not console().is_terminal
    if _plain:
        sys.stderr.write(f"{word:9} {one_line(rest)}\n")
    else:
        console().print(f"[{color}]{word:9}[/] {escape(one_line(rest))}")


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def emit_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """One line: ``evidence-vault: error: <message>``."""
    console().print(f"[bold red]evidence-vault: error:[/] {escape(one_line(message))}")


def warn(message: str) -> None:
    console().print(f"[yellow]warning:[/] {escape(one_line(message))}")


def info(message: str) -> None:
    console().print(escape(message))


def one_line(text: str) -> str:
    """Control characters (newlines in hostile file names) shown escaped, never as raw bytes."""
    if text.isprintable():
        return text
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
