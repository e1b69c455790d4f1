"""docs/cli.md from the CLI itself: every command's help, usage and options (``make docs`` writes it;
``tests/test_docs.py`` checks it is up to date). Everything above ``## Global options`` is written by hand.

Run: ``python -m tests.cli_reference`` (prints) or ``python -m tests.cli_reference --write``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CLI_MD = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
MARKER = "## Global options"
# What the page adds to an option's help (links are no use in --help).
DOC_ONLY = {
    ("verify", "--incremental"): " See [ci.md](ci.md).",
}


def commands() -> Iterator[tuple[list[str], Any]]:
    """(path, click command) of the CLI and every command below it, in the order they are listed."""
    import typer.main

    from evidence_vault.cli.app import app

    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _row(path: list[str], param: Any) -> str | None:
    if param.param_type_name == "argument":
        return f"| {param.name.upper()} | {_cell(param.help or '')} |"
    opts = [o for o in [*param.opts, *param.secondary_opts] if o.startswith("-")]
    if any("completion" in o for o in opts):
        return None
    name = ", ".join(f"`{o}`" for o in opts)
    if not param.is_flag:
        name += f" {param.name.upper()}"
    text = _cell(param.help or "")
    extras = []
    if param.default not in (None, False, (), []) and not param.is_flag:
        extras.append(f"Default: `{param.default}`.")
    if param.envvar:
        extras.append(f"Env: `{param.envvar}`.")
    if param.multiple and "repeatable" not in text.lower():
        extras.append("Repeatable.")
    if param.required:
        extras.append("Required.")
    if extras and text and not text.endswith("."):
        text += "."
    text = " ".join([text, *extras]) + DOC_ONLY.get((" ".join(path), opts[0]), "")
    return f"| {name} | {text.strip()} |"


def _usage(path: list[str], cmd: Any) -> str:
    args = []
    for p in cmd.params:
        if p.param_type_name == "argument":
            word = p.name.upper() + ("..." if p.nargs == -1 else "")
            args.append(word if p.required else f"[{word}]")
    return " ".join(["evidence-vault", *path, "[OPTIONS]", *args])


def reference() -> str:
    """The generated part of docs/cli.md, from ``## Global options`` to the end."""
    out: list[str] = []
    for path, cmd in commands():
        if not path:
            out += [MARKER, ""]
        else:
            paragraphs = [" ".join(p.split()) for p in (cmd.help or "").split("\n\n") if p.strip()]
            out += [f"### `{' '.join(['evidence-vault', *path])}`", ""]
            for paragraph in paragraphs:
                out += [paragraph, ""]
            if getattr(cmd, "commands", None):
                continue  # a group: its commands follow
            out += ["```", _usage(path, cmd), "```", ""]
        out += ["| argument / option | meaning |", "|---|---|"]
        out += [row for p in cmd.params if (row := _row(path, p)) is not None]
        out += ["| `--help`, `-h` | Show the help and exit. |", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def page() -> str:
    """docs/cli.md as it should be: its hand-written head, then :func:`reference`."""
    head = CLI_MD.read_text("utf-8").split(MARKER)[0]
    return head + reference()


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        CLI_MD.write_text(page(), "utf-8")
    else:
        sys.stdout.write(page())
