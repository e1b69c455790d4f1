"""Vault commands: init, add, ls, show, log, verify, doctor."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from . import output
from .context import (
    fingerprints,
    nonblank_filter,
    nonblank_text,
    read_tsa_roots,
    refuse_inside_vault,
    signing_state,
    state,
    utf8_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import Progress

    from ..events import Event
    from ..prehash import Prehash
    from ..report import Report
    from ..vault import Vault

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
NoteOpt = Annotated[
    str | None, typer.Option("--note", callback=utf8_text, help="Free text (signed as a commitment).")
]
TagsOpt = Annotated[
    list[str] | None, typer.Option("--tag", callback=nonblank_text, help="A tag (repeatable).")
]


class _NoProgress:
    """Stands in for a progress bar that would not be shown (small total, or stderr not a terminal)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> Any:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None


class _LateProgress:
    """A progress bar whose total is known only part of the way through (verify learns it from the log
    pass): shown from then on, with what was done before, if the total is big enough and stderr is a
    terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.done = 0
        self.bar: Progress | _NoProgress | None = None
        self.task: Any = None

    def start(self, total: int) -> None:
        self.bar = _progress(total, self.label)
        self.bar.__enter__()
        self.task = self.bar.add_task(self.label, total=total or None)
        self.bar.advance(self.task, self.done)

    def advance(self, n: int) -> None:
        if self.bar is None:
            self.done += n
        else:
            self.bar.advance(self.task, n)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _progress(total: int, label: str) -> Progress | _NoProgress:
    if total < 64 * 1024 * 1024 or output.plain():
        return _NoProgress()  # rich.progress costs 60 ms of start-up
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=output.err,
        transient=True,
    )


def _file_size(path: str) -> int:
    """The size of a regular file, for the progress bar; 0 if it is none or cannot be read (``add``
    then reports that path as failed or skipped, and adds the others)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def init(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Directory for the new vault.")] = Path("."),
    name: Annotated[
        str | None, typer.Option("--name", callback=utf8_text, help="A name for the vault.")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Genesis key fingerprint (default: your default key).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a vault whose genesis event names your key, and pin that key on this machine."""
    from ..vault import Vault

    st = state(ctx)
    if key:
        st.key = key
    signer, signer_name = st.signer_and_name()
    vault = Vault.init(path, name=name, signer=signer, signer_name=signer_name)
    result = {
        "path": str(path.resolve()),
        "vault_id": vault.config.vault_id,
        "name": vault.config.name,
        "genesis_key": signer.fingerprint,
    }
    if json_out:
        output.emit_json(result)
    else:
        output.info(f"created vault {vault.config.name!r} at {result['path']}")
        output.info(f"genesis key {signer.fingerprint} (pinned on this machine)")


def add(
    ctx: typer.Context,
    # str, not Path: results name each path as given (pathlib would turn "./a//b/" into "a/b").
    paths: Annotated[list[str], typer.Argument(help="Files (or directories with --recursive).")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into directories.")] = False,
    follow_symlinks: Annotated[
        bool, typer.Option("--follow-symlinks", help="Follow symbolic links.")
    ] = False,
    source: Annotated[
        str | None, typer.Option("--source", callback=utf8_text, help="Where the files came from.")
    ] = None,
    captured_by: Annotated[
        str | None, typer.Option("--captured-by", callback=utf8_text, help="Who captured them.")
    ] = None,
    note: NoteOpt = None,
    tag: TagsOpt = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Fail at once if another writer holds the vault.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Ingest files: keep the original read-only, extract metadata, sign one event per file."""
    st = signing_state(ctx)  # the key's KDF runs on another core while the vault code loads
    from ..vault import AddOptions, AddResult, display_name

    vault = st.open_vault()
    opts = AddOptions(
        recursive=recursive,
        follow_symlinks=follow_symlinks,
        source=source,
        captured_by=captured_by,
        note=note,
        tags=tuple(tag or ()),
        wait=not no_wait,
    )
    total = sum(map(_file_size, paths))
    counts = {"added": 0, "duplicate": 0, "failed": 0, "skipped": 0}
    named = {display_name(p) for p in paths}
    named_skipped = 0  # a path the user named was not added (a directory without -r, say): exit 1, as cp does

    def on_result(res: AddResult) -> None:
        nonlocal named_skipped
        counts[res.status] = counts.get(res.status, 0) + 1
        named_skipped += res.status == "skipped" and res.path in named
        if json_out:
            output.emit_json_line(res.to_dict())
            return
        short = res.id[7:19] if res.id else ""
        if res.status == "added":
            extra = f" (metadata: {res.metadata_errors[0]})" if res.metadata_errors else ""
            output.status("added", "green", f"{short}  {res.path}{extra}")
        elif res.status == "duplicate":
            said = (res.message or "").removeprefix("already in the vault: nothing recorded")  # restored?
            text = f"{short}  {res.path}: already in the vault, nothing recorded{said}"
            output.status("duplicate", "cyan", text)
        else:
            output.status(res.status, "red", f"{res.path}: {res.message or ''}")

    with _progress(total, "adding") as progress:
        task = progress.add_task("add", total=total or None)
        vault.add(
            paths,
            st.signer,
            opts,
            on_progress=lambda n: progress.advance(task, n),
            on_result=on_result,
            on_wait=lambda: output.info(
                "waiting for another evidence-vault process to release the vault lock…"
            ),
            ready_first=st.unlocking,  # while the key unlocks (with a prompt, the prompt comes first)
        )
    vault.close()
    if not json_out:
        output.info(
            f"{counts['added']} added, {counts['duplicate']} already present, "
            f"{counts['failed']} failed, {counts['skipped']} skipped"
        )
    if counts["failed"] or named_skipped:
        raise typer.Exit(1)


def ls(
    ctx: typer.Context,
    tag: Annotated[
        str | None, typer.Option("--tag", callback=nonblank_filter, help="Only items with this tag.")
    ] = None,
    custodian: Annotated[str | None, typer.Option("--custodian", help="Only items held by this key.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only items added on or after this date.")
    ] = None,
    media: Annotated[str | None, typer.Option("--type", help="image | video | audio")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the items in the vault."""
    vault = state(ctx).open_vault()
    if custodian:
        from ..signing import fingerprint_prefix

        custodian = fingerprint_prefix(custodian)
    items = vault.items(
        tag=tag, custodian=custodian, since=since, media_prefix=f"{media}/" if media else None
    )
    if json_out:
        output.emit_json([i.to_dict() for i in items])
        return
    header = ("id", "name", "type", "size", "added", "tags")
    rows = [
        (
            i.id[7:23],
            output.one_line(i.name or ""),
            output.one_line(i.media_type or ""),
            output.human_size(i.size),
            i.time,
            output.one_line(", ".join(i.tags)),
        )
        for i in items
    ]
    output.columns(header, rows)  # ids are copied from here: never cut to fit (rich's table did)
    output.info(_count(len(items), "item"))


def show(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="Item id prefix (8+ hex digits) or a path to a file.")],
    json_out: JsonOpt = False,
) -> None:
    """Show one item: hashes, metadata, events. A path looks the file up by its hash."""
    from rich.markup import escape

    vault = state(ctx).open_vault()
    detail = vault.describe(vault.resolve(item))
    if json_out:
        output.emit_json(detail)
        return
    output.err.print(f"[bold]{escape(detail['id'])}[/]")
    for key in ("name", "media_type", "size", "added", "actor", "tags", "object", "derived_from"):
        if detail.get(key):
            output.info(f"  {key:12} {output.one_line(str(detail[key]))}")
    output.err.print("  [bold]metadata[/]")
    for k, v in detail["metadata"].items():
        output.info(f"    {k:14} {output.one_line(str(v))}")
    if detail["extraction_errors"]:
        output.warn("metadata extraction: " + "; ".join(detail["extraction_errors"]))
    output.err.print("  [bold]events[/]")
    for e in detail["events"]:
        output.info(f"    seq {e['seq']:>6}  {e['time']}  {e['type']:22} {e['actor']}")


def log(
    ctx: typer.Context,
    item: Annotated[str | None, typer.Option("--item", help="Only events about this item.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the custody log (all events, or one item's)."""
    vault = state(ctx).open_vault()
    events = vault.iter_events_for(vault.resolve(item).id) if item else _log_events(vault)
    for e in events:
        if json_out:
            output.emit_json_line(e.to_dict())
        else:
            subject = e.data.get("item") or e.data.get("name") or ""
            # A hand-made line can carry control characters (terminal escapes): shown escaped.
            output.info(output.one_line(f"{e.seq:>6}  {e.time}  {e.type:22} {e.actor}  {subject}"))


def _log_events(vault: Vault) -> Iterator[Event]:
    """Every complete line of the log, parsed; a damaged one stops with an error naming its line."""
    from ..errors import IntegrityError
    from ..events import parse_line

    for index, raw in enumerate(vault.log.iter_raw()):
        if not raw.complete:
            return  # a torn last line: `verify` and `doctor` say so
        try:
            yield parse_line(raw.data)[0]
        except IntegrityError as exc:
            raise IntegrityError(
                f"line {index + 1} is damaged ({exc.message}); run `evidence-vault verify` for details",
                path=vault.log.path,
            ) from None


def verify(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="Report format: json, junit, markdown or text (default). Without --output, text goes to "
            "stderr, the others to stdout.",
        ),
    ] = "text",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Write the report to FILE (the summary still goes to stderr). A FILE inside the vault is "
            "refused (exit 2): verify writes nothing there.",
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    trust: Annotated[
        list[str] | None,
        typer.Option(
            "--trust", callback=fingerprints, help="Fingerprint of the genesis key you trust (repeatable)."
        ),
    ] = None,
    tsa_ca: Annotated[
        list[Path] | None, typer.Option("--tsa-ca", help="Your own trust anchor for RFC 3161 tokens (PEM).")
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental", help="Check only what changed since the last clean verify on this machine."
        ),
    ] = False,
    rehash: Annotated[
        bool,
        typer.Option(
            "--rehash",
            help="With --incremental: re-hash every object all the same; only the log lines verified "
            "before are not checked again (a nightly check for changed files).",
        ),
    ] = False,
) -> None:
    """Re-hash every object and check the whole log and its anchors; exit 0 PASS/WARN, 1 FAIL, 2 error."""
    from ..prehash import Prehash
    from ..report_formats import FORMATS
    from ..report_formats import render as render_report
    from .early import claim as claim_early

    if json_out and fmt.lower() not in ("json", "text"):  # "text" is also what no --format gives
        raise UsageError(f"--json and --format {fmt} ask for two formats: give one")
    fmt = "json" if json_out else fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = state(ctx).vault_root()
    if out_file is not None:
        refuse_inside_vault(out_file, root, "--output")
    # Forked before verify's code is imported (by main, before typer loaded, when it could tell the
    # vault): small objects are re-hashed on the idle core meanwhile.
    if rehash and not incremental:
        raise UsageError(
            "--rehash goes with --incremental (a verify without it re-hashes every object anyway)"
        )
    early = None if incremental and not rehash else (claim_early(root) or Prehash.start(root))
    with early if early is not None else contextlib.nullcontext():
        report = _verify(ctx, root, early, trust, tsa_ca, incremental, rehash)
    if out_file is not None:
        try:
            out_file.write_text(render_report(report, fmt), encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            raise UsageError(f"cannot write the report: {exc.strerror}", path=out_file) from None
        print_report(report)
        output.info(f"{fmt} report written to {out_file}")
    elif fmt == "json":
        output.emit_json(report.to_dict())
    elif fmt == "text":
        print_report(report)
    else:
        sys.stdout.write(render_report(report, fmt))
        sys.stdout.flush()
    raise typer.Exit(report.exit_code(strict))


def _verify(
    ctx: typer.Context,
    root: Path,
    early: Prehash | None,
    trust: list[str] | None,
    tsa_ca: list[Path] | None,
    incremental: bool,
    rehash: bool,
) -> Report:
    """Run the verification of ``verify`` (its progress bar on a terminal)."""
    from ..verify import verify_vault

    vault = state(ctx).open_vault(root)
    roots = read_tsa_roots(tsa_ca)
    bar = _LateProgress("verifying")  # sized once the log pass has named every item
    try:
        report = verify_vault(
            vault,
            trusted=trust or (),
            tsa_roots=roots,
            incremental=incremental,
            rehash=rehash,
            on_progress=bar.advance,
            on_total=None if output.plain() else bar.start,  # no bar: no total to add up
            prehashed=early,
        )
    finally:
        bar.stop()
    vault.close()
    return report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def print_report(report: Report) -> None:
    """The report on stderr: findings as a table on a terminal, one whole line each otherwise (a CI log
    must show every code and fingerprint uncut), then the summary. Finding lines are indented: only the
    summary line starts with PASS, WARN or FAIL, for scripts that look for it."""
    if report.findings and (output.plain() or len(report.findings) > output.TABLE_MAX):
        for f in report.findings:
            where, what = output.message_line(f.subject), output.message_line(f.message)
            sys.stderr.write(f"  {f.level:<5} {f.code}  {where}: {what}\n")
    elif report.findings:
        from rich.markup import escape
        from rich.table import Table

        table = Table("level", "code", "where", "finding")
        for f in report.findings:
            color = {"FAIL": "red", "WARN": "yellow"}.get(f.level, "white")
            table.add_row(
                f"[{color}]{f.level}[/]",
                f.code,
                escape(output.message_line(f.subject)),
                escape(output.message_line(f.message)),
            )
        output.err.print(table)
    stats = report.stats
    summary = (
        f"{_count(stats.get('events', 0), 'event')}, {_count(stats.get('items', 0), 'item')}, "
        f"{output.human_size(stats.get('bytes_hashed', 0))} re-hashed; "
        f"{_count(len(report.failures), 'failure')}, {_count(len(report.warnings), 'warning')}"
    )
    if output.plain():
        sys.stderr.write(f"{report.outcome}  {summary}\n")
    else:
        color = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}[report.outcome]
        output.err.print(f"[bold {color}]{report.outcome}[/]  {summary}")
    if report.genesis_key:
        if report.genesis_pinned:
            pinned = "pinned"
        elif report.failures_for("trust.genesis-mismatch"):
            pinned = "NOT the key you trust"
        else:
            pinned = "NOT pinned"
        output.info(f"genesis key {report.genesis_key} ({pinned})")
    proven = [i for i in report.items if i.get("proven_since")]
    if report.items:
        total = _count(len(report.items), "item")
        output.info(f"{len(proven)} of {total} proven to exist at a point in time")
        for i in proven[:20]:
            output.info(
                f"  {i['id'][7:19]}  since {i['proven_since']}  ({i['proof']}, checkpoint {i['checkpoint']})"
            )
        if len(proven) > 20:
            output.info(f"  … {len(proven) - 20} more (use --json)")


def doctor(
    ctx: typer.Context,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Set aside a torn last line (or add the newline a whole last event lacks), and last lines "
            "no authorized key wrote (a copy is kept).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Find what an interrupted write or a hand-made line left at the end of the log; with --repair,
    set it aside.

    Exit 1 when it finds something: what --repair fixes, or what it never touches (a log cut shorter
    than this machine saw, an emptied or deleted log: restore the vault from a copy).
    """
    from ..doctor import doctor as run_doctor

    vault = state(ctx).open_vault()
    result = run_doctor(vault, repair=repair)
    if json_out:
        output.emit_json(result.to_dict())
    else:
        if result.torn_complete:
            output.warn(
                f"{'completed' if repair else 'found'} a last log line that lacks only its newline "
                f"({result.torn_bytes} bytes of a whole event)"
            )
        elif result.torn_bytes:
            verb = "set aside" if repair else "found"
            output.warn(
                f"{verb} a torn last log line ({result.torn_bytes} bytes)"
                + (f", copy kept at {result.torn_saved_to}" if result.torn_saved_to else "")
            )
        if result.temp_files:
            verb = "removed" if repair else "found"
            output.info(f"{verb} {len(result.temp_files)} leftover temporary object file(s)")
        for line in result.unsound_lines:
            where = (
                f"log line seq {line.seq}" if line.seq is not None else f"the log line at byte {line.offset}"
            )
            if line.saved_to:
                output.warn(f"set aside {where}: it {line.problem}; copy kept at {line.saved_to}")
            elif line.repairable:
                output.warn(f"found {where}: it {line.problem}")
            else:
                output.warn(
                    f"{where} {line.problem}; `doctor --repair` never cuts the first line or a line this "
                    "machine saw: run `evidence-vault verify`, and restore the vault from a copy"
                )
        if result.log_problem:
            output.warn(
                f"{result.log_problem}; `doctor --repair` cannot bring events back: run "
                "`evidence-vault verify`, and restore the vault from a copy"
            )
        if result.healthy:
            output.info("the log ends cleanly; nothing to repair")
        elif not repair and result.repairable:
            # Only when --repair would do something: it never touches a cut or missing log.
            fix = (
                "to fix"
                if not result.log_problem and all(u.repairable for u in result.unsound_lines)
                else "to set aside what it may (not what this machine saw)"
            )
            output.info(
                f"run `evidence-vault verify` for the whole log; `evidence-vault doctor --repair` {fix}"
            )
        elif not repair:
            output.info("run `evidence-vault verify` for the whole log")
    if result.unrepaired:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    for fn in (init, add, ls, show, log, verify, doctor):
        app.command(fn.__name__)(fn)
