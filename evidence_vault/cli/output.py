"""Console helpers: human output on stderr (rich), machine output on stdout (JSON)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_console: Console | None = None


def console() -> Console:
    """The stderr console, created on first use (importing rich costs start-up time)."""
    global _console
    if _console is None:
        from rich.console import Console

        class _Console(Console):
            def on_broken_pipe(self) -> None:
                # rich would exit 1 (FAIL, for verify): the CLI's handler makes it the quiet 141.
                raise BrokenPipeError(errno.EPIPE, "the reader of the output left")

        _console = _Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def __getattr__(name: str) -> Any:
    if name == "err":  # ``output.err``: the stderr console, created on first use
        return console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


READER_GONE = 141  # 128 + SIGPIPE: what a shell reports for `cat` when the reader of its output left


def reader_gone() -> bool:
    """Has the reader of stdout or stderr gone (``evidence-vault log --json | head -1``)? Then both are
    pointed at /dev/null, so that nothing more is written there and the exit is quiet, like ``cat``'s."""
    import select

    gone = False
    for stream in (sys.stdout, sys.stderr):
        try:
            poller = select.poll()
            poller.register(stream.fileno(), select.POLLOUT)
            gone = gone or any(ev & select.POLLERR for _fd, ev in poller.poll(0))
        except (AttributeError, ValueError, OSError):
            continue
    if gone:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                os.dup2(devnull, stream.fileno())
        os.close(devnull)
    return gone


def escape(text: str) -> str:
    """Rich markup escaped (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def plain() -> bool:
    """Is stderr not a terminal? Then messages are written as plain text, without importing rich (35 ms
    of start-up) and without its markup (~0.4 ms a line): what rich would print there anyway."""
    if _console is not None:
        return not _console.is_terminal
    try:
        return (
            not sys.stderr.isatty()
            and not os.environ.get("FORCE_COLOR")
            and not os.environ.get("TTY_COMPATIBLE")
        )
    except (AttributeError, ValueError):
        return True


def status(word: str, color: str, rest: str) -> None:
    """One per-file status line on stderr (``added     <id>  <name>``), colored on a terminal."""
    if plain():
        sys.stderr.write(f"{word:9} {one_line(rest)}\n")
    else:
        console().print(f"[{color}]{word:9}[/] {escape(one_line(rest))}")


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def emit_text(text: str) -> None:
    """Text on stdout, as given (a report format such as Markdown, written piece by piece)."""
    sys.stdout.write(text)


def emit_json_document(head: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """``emit_json({**head, key: list(items)})``, the same bytes, written one item at a time (flat memory
    for a list of a hundred thousand entries)."""
    start = json.dumps({**head, key: []}, ensure_ascii=False, indent=2)
    write = sys.stdout.write
    first = True
    for item in items:
        if first:
            write(start[: -len("[]\n}")] + "[\n    ")  # the document up to the list's first item
            first = False
        else:
            write(",\n    ")
        write(json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n    "))
    write(start + "\n" if first else "\n  ]\n}\n")
    sys.stdout.flush()


def emit_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """One line: ``evidence-vault: error: <message>``."""
    if plain():
        sys.stderr.write(f"evidence-vault: error: {message_line(message)}\n")
    else:
        console().print(f"[bold red]evidence-vault: error:[/] {escape(message_line(message))}")


def warn(message: str) -> None:
    if plain():
        sys.stderr.write(f"warning: {message_line(message)}\n")
    else:
        console().print(f"[yellow]warning:[/] {escape(message_line(message))}")


def info(message: str) -> None:
    if plain():
        sys.stderr.write(message + "\n")
    else:
        console().print(escape(message))


def one_line(text: str) -> str:
    """Control characters (newlines in hostile file names) shown escaped, never as raw bytes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


#: A name in a message is cut after this many characters (a zip entry or file name can be 64 KB long).
NAME_LIMIT = 100
_LONG_NAME = re.compile(r"[^/:\s'\"]{" + str(NAME_LIMIT + 1) + ",}")


def message_line(text: str) -> str:
    """:func:`one_line`, with every name in it (a run of characters without a slash, colon, space or quote)
    longer than ``NAME_LIMIT`` cut to its first ``NAME_LIMIT`` characters and "…": an error or finding
    stays one readable line, however long the file name it is about."""
    return _LONG_NAME.sub(lambda m: m[0][:NAME_LIMIT] + "…", one_line(text))


#: More findings than this are written as plain lines on a terminal too: rich lays a table out cell by
#: cell (about 0.7 ms a row: 7 s for 10,000 rows), and nobody reads that many rows in a box.
TABLE_MAX = 200


def columns(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Rows as plain, aligned columns on stderr, each value whole (rich's table cut values to the
    terminal's width: ids that are copied from the listing, names), and fast for 10,000 rows."""
    widths = [min(40, max([len(h), *(len(r[k]) for r in rows)])) for k, h in enumerate(header)]

    def line(values: tuple[str, ...]) -> str:
        cells = [v.ljust(w) for v, w in zip(values[:-1], widths, strict=False)]
        return "  ".join([*cells, values[-1]]).rstrip() + "\n"

    sys.stderr.write("".join([line(header), *(line(r) for r in rows)]))


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
