"""The reader of our output goes away (``evidence-vault log --json | head -1``): a quiet exit 141, as
``cat`` gets from the shell, and nothing recorded is lost."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import SAMPLE_FILES, Cli, _command


def _with_closed_reader(*args: str | os.PathLike[str]) -> tuple[int, str]:
    """Run the command with stdout a pipe whose reader has already gone; exit code and stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [*_command(), *(os.fspath(a) for a in args)],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


def test_reading_commands_exit_quietly(vault: Path, cli: Cli) -> None:
    assert cli("--vault", vault, "add", *SAMPLE_FILES[:2]).code == 0
    timeline = ("timeline", os.fspath(SAMPLE_FILES[0]))
    for args in (
        ("log", "--json"),
        ("ls", "--json"),
        ("verify", "--json"),
        (*timeline, "--json"),  # written entry by entry
        (*timeline, "--format", "markdown"),
    ):
        code, err = _with_closed_reader("--vault", vault, *args)
        assert (code, err) == (141, ""), args


def test_add_stops_at_the_closed_pipe_and_keeps_what_it_recorded(vault: Path, cli: Cli) -> None:
    code, err = _with_closed_reader("--vault", vault, "add", "--json", *SAMPLE_FILES[:3])
    assert (code, err) == (141, "")
    check = cli("--vault", vault, "verify", "--json")
    assert check.code == 0 and check.json()["outcome"] == "PASS", check.stdout
    events = cli("--vault", vault, "log", "--json").json_lines()
    assert [e["type"] for e in events][:2] == ["vault.created", "item.ingested"]
    again = cli("--vault", vault, "add", "--json", *SAMPLE_FILES[:3])  # the rest is added on a re-run
    assert again.code == 0
    assert {d["status"] for d in again.json_lines()} <= {"added", "duplicate"}
    assert len(cli("--vault", vault, "ls", "--json").json()) == 3


def test_human_output_on_stderr_to_a_closed_pipe_is_141_too(vault: Path, cli: Cli) -> None:
    """``evidence-vault show ITEM 2>&1 | head -2``: the text goes to stderr through rich, whose own
    broken-pipe handling exits 1 (FAIL, elsewhere); it is the same quiet 141 as the JSON commands'."""
    assert cli("--vault", vault, "add", *SAMPLE_FILES[:2]).code == 0
    item = cli("--vault", vault, "ls", "--json").json()[0]["id"]
    for args in (("show", item), ("ls",), ("timeline", item), ("key", "list")):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = subprocess.run(
                [*_command(), "--vault", os.fspath(vault), *args],
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                timeout=120,
            )
        finally:
            os.close(write_end)
        assert proc.returncode == 141, args
