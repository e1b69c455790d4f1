"""Custody commands: transfer, accept, annotate, access, open, derive, timeline, find."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import nonblank_text, read_tsa_roots, signing_state, state, utf8_text
from .vault_commands import JsonOpt, NoteOpt, TagsOpt


def transfer(
    ctx: typer.Context,
    items: Annotated[list[str], typer.Argument(help="Item ids (prefixes) or paths.")],
    to: Annotated[str, typer.Option("--to", help="Fingerprint of the receiving key.")],
    reason: Annotated[
        str | None, typer.Option("--reason", callback=nonblank_text, help="Why (signed as a commitment).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Hand items over to another custodian (pending until they accept)."""
    from .. import custody_ops

    st = signing_state(ctx)
    vault = st.open_vault()
    ids = [vault.resolve(i).id for i in items]
    tid, events = custody_ops.transfer(vault, st.signer(), ids, to, reason=reason)
    if json_out:
        output.emit_json(
            {"transfer_id": tid, "to": events[0].data["to"], "items": ids, "seqs": [e.seq for e in events]}
        )
    else:
        output.info(
            f"transfer {tid} of {len(ids)} item(s) to {events[0].data['to']} is pending their acceptance"
        )
        print(tid)


def accept(
    ctx: typer.Context,
    transfer_id: Annotated[str | None, typer.Argument(help="Transfer id (or a prefix).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Accept every transfer pending to you.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Countersign a transfer addressed to you: custody moves to your key."""
    from .. import custody_ops

    st = signing_state(ctx)
    events = custody_ops.accept(st.open_vault(), st.signer(), transfer_id, all_pending=all_)
    if json_out:
        output.emit_json([e.to_dict() for e in events])
    else:
        for e in events:
            output.info(f"accepted {e.data['item']} (transfer {e.data['transfer_id']}), seq {e.seq}")


def annotate(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="Item id prefix or path.")],
    note: NoteOpt = None,
    tag: TagsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a note or tags (a new event; earlier events are never edited)."""
    from .. import custody_ops

    st = signing_state(ctx)
    vault = st.open_vault()
    e = custody_ops.annotate(vault, st.signer(), vault.resolve(item).id, note=note, tags=tag or [])
    output.emit_json(e.to_dict()) if json_out else output.info(f"annotated, seq {e.seq}")


def access(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="Item id prefix or path.")],
    purpose: Annotated[
        str, typer.Option("--purpose", callback=nonblank_text, help="Why the original was viewed or copied.")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Record that someone viewed or copied the original."""
    from .. import custody_ops

    st = signing_state(ctx)
    vault = st.open_vault()
    e = custody_ops.access(vault, st.signer(), vault.resolve(item).id, purpose=purpose)
    output.emit_json(e.to_dict()) if json_out else output.info(f"access recorded, seq {e.seq}")


def open_(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="Item id prefix or path.")],
    purpose: Annotated[
        str, typer.Option("--purpose", callback=nonblank_text, help="Why it is opened.")
    ] = "opened for viewing",
    json_out: JsonOpt = False,
) -> None:
    """Make a read-only working copy in a temporary directory (recorded as an access)."""
    from .. import custody_ops

    st = signing_state(ctx)
    vault = st.open_vault()
    path = custody_ops.open_copy(vault, st.signer(), vault.resolve(item).id, purpose=purpose)
    if json_out:
        output.emit_json({"path": str(path)})
    else:
        output.info("read-only working copy (the original stays in the vault):")
        print(path)


def derive(
    ctx: typer.Context,
    original: Annotated[str, typer.Argument(help="The original: item id prefix or path.")],
    derived: Annotated[Path, typer.Argument(help="The working copy file (redacted, transcoded, ...).")],
    action: Annotated[
        str, typer.Option("--action", callback=nonblank_text, help="redact | transcode | crop | extract")
    ],
    tool: Annotated[str, typer.Option("--tool", callback=nonblank_text, help="Tool and version used.")],
    note: Annotated[
        str | None, typer.Option("--note", callback=utf8_text, help="Free text (signed as a commitment).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest a working copy linked to its original.

    A file already in the vault is refused (exit 2), unless it is already this original's working copy:
    then it is reported as a duplicate and nothing is recorded.
    """
    from .. import custody_ops

    st = signing_state(ctx)
    vault = st.open_vault()
    derived_id, events = custody_ops.derive(
        vault, st.signer(), vault.resolve(original).id, derived, action=action, tool=tool, note=note
    )
    status = "added" if events else "duplicate"
    if json_out:
        output.emit_json({"id": derived_id, "status": status, "events": [e.to_dict() for e in events]})
    elif events:
        output.info(f"working copy {derived_id} linked to its original")
    else:
        output.info(f"working copy {derived_id} is already linked to this original: nothing recorded")


TIMELINE_FORMATS = ("text", "json", "markdown")


def timeline(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="Item id prefix or path.")],
    fmt: Annotated[str, typer.Option("--format", help="text | json | markdown")] = "text",
    tsa_ca: Annotated[
        list[Path] | None,
        typer.Option("--tsa-ca", help="Your own trust anchor for RFC 3161 tokens (PEM), as for verify."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every event of an item in order: who, when, what, and how that time is proven (as verify
    proves it)."""
    from .. import custody_ops
    from ..errors import UsageError

    fmt = fmt.lower()
    if fmt not in TIMELINE_FORMATS:
        raise UsageError(f"unknown --format {fmt!r}: use one of {', '.join(TIMELINE_FORMATS)}")
    if json_out and fmt not in ("json", "text"):  # "text" is also what no --format gives
        raise UsageError(f"--json and --format {fmt} ask for two formats: give one")
    roots = read_tsa_roots(tsa_ca)
    vault = state(ctx).open_vault()
    it = vault.resolve(item)
    entries = custody_ops.timeline(vault, it.id, tsa_roots=roots)
    # Written as the entries come (an item can have a hundred thousand events): memory stays flat.
    if json_out or fmt == "json":
        output.emit_json_document({"item": it.id, "name": it.name}, "events", (e.to_dict() for e in entries))
    elif fmt == "markdown":
        from ..report_formats import md_cell

        output.emit_text(
            f"# Custody timeline of `{it.id}`\n\nName: {md_cell(it.name or '-')}\n\n"
            "| seq | time (UTC) | who | what | proven |\n|---|---|---|---|---|\n"
        )
        for e in entries:
            cells = [str(e.seq), e.time, f"{e.actor_name} ({e.actor})", e.summary, e.proof]
            output.emit_text("| " + " | ".join(md_cell(c) for c in cells) + " |\n")
    else:
        # Lines, not a table: a time or a fingerprint cut to fit a narrow terminal would be no record.
        output.info(f"custody timeline of {output.one_line(it.name or '-')} {it.id}")
        for e in entries:
            output.info(f"seq {e.seq:<5} {e.time}  {output.one_line(e.actor_name)} ({e.actor})")
            output.info(f"          {output.one_line(e.summary)}")
            output.info(f"          proven: {output.one_line(e.proof)}")


def find(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Files received from elsewhere.")],
    json_out: JsonOpt = False,
) -> None:
    """Is each file in the vault (exact SHA-256)? Exit 1 if any is not."""
    from .. import custody_ops

    results = custody_ops.find(state(ctx).open_vault(), files)
    if json_out:
        output.emit_json(results)
    else:
        for r in results:
            if r["in_vault"]:
                output.info(f"in vault   {r['id']}  {output.one_line(r['path'])}")
            elif r["in_vault"] is None:
                output.error(f"{r['path']}: cannot read: {r['error']}")
            else:
                output.info(f"NOT in vault  {r['id']}  {output.one_line(r['path'])}")
    if any(not r["in_vault"] for r in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    for name, fn in (
        ("transfer", transfer),
        ("accept", accept),
        ("annotate", annotate),
        ("access", access),
        ("open", open_),
        ("derive", derive),
        ("timeline", timeline),
        ("find", find),
    ):
        app.command(name)(fn)
