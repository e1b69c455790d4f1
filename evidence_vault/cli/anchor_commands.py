"""Anchoring commands: checkpoint, stamp, upgrade, prove, verify-proof."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UsageError
from . import output
from .context import fingerprints, read_tsa_roots, refuse_inside_vault, signing_state, state
from .vault_commands import JsonOpt, print_report


def checkpoint(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Sign a tree head of the log (RFC 9162 Merkle root, C2SP checkpoint) and record it."""
    from .. import anchoring

    st = signing_state(ctx)
    vault = st.open_vault()
    info = anchoring.make_checkpoint(vault, st.signer())
    if json_out:
        output.emit_json(info.to_dict())
    else:
        output.info(f"checkpoint of {info.size} log lines, root {info.root}, recorded at seq {info.seq}")
        output.info(f"text and signature in {info.directory}")


def stamp(
    ctx: typer.Context,
    calendar: Annotated[
        list[str] | None, typer.Option("--calendar", help="OpenTimestamps calendar URL (repeatable).")
    ] = None,
    tsa: Annotated[list[str] | None, typer.Option("--tsa", help="RFC 3161 TSA URL (repeatable).")] = None,
    tsa_ca: Annotated[
        list[Path] | None, typer.Option("--tsa-ca", help="Root certificate of the matching --tsa.")
    ] = None,
    min_calendars: Annotated[
        int | None, typer.Option("--min-calendars", help="Calendars that must answer (m of n).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each network request may take in all.")
    ] = 10.0,
    json_out: JsonOpt = False,
) -> None:
    """Checkpoint if the log grew, then timestamp it (OpenTimestamps and any TSAs); offline: queue.

    Earlier checkpoints with no time proof yet (made by `checkpoint`) get an OpenTimestamps proof too.
    --calendar, --tsa (with --tsa-ca) and --min-calendars are saved in the vault's vault.json: later runs
    use them without being told again."""
    from .. import anchoring

    st = signing_state(ctx)
    vault = st.open_vault()
    if len(tsa_ca or []) > len(tsa or []):
        raise UsageError("each --tsa-ca goes with the --tsa before it: give the TSA's URL with --tsa too")
    cas = read_tsa_roots(tsa_ca)
    tsas = [(url, cas[i] if i < len(cas) else None) for i, url in enumerate(tsa or [])]
    result = anchoring.stamp(
        vault, st.signer(), calendars=calendar or (), tsas=tsas, min_calendars=min_calendars, timeout=timeout
    )
    if json_out:
        output.emit_json(result.to_dict())
        _exit_if_refused(result.refused)
        return
    cp = result.checkpoint
    if cp is not None:
        verb = "new checkpoint" if cp.created else "checkpoint (log unchanged)"
        output.info(f"{verb}: {cp.size} log lines, root {cp.root}")
    for s in result.stamped:
        where = ", ".join(s.get("calendars", [])) or s.get("tsa", "")
        output.info(f"stamped checkpoint {s['size']} with {s['service']} ({where})")
        for url, why in s.get("failed", {}).items():  # m of n answered: say which did not, and why
            output.info(f"  calendar {url} did not answer: {why}")
    for q in result.queued:
        if q in result.refused:
            continue
        output.warn(
            f"queued checkpoint {q['size']} for {q['service']}: {q['reason']}"
            " (the next stamp/upgrade retries)"
        )
    _exit_if_refused(result.refused)


def _exit_if_refused(refused: list[dict[str, Any]]) -> None:
    """A service that answered with something unusable: one error line each, exit 1 (the stamp stays
    queued; retrying without fixing the cause would be refused again)."""
    for q in refused:
        hint = (
            "; if the root is wrong, stamp again with the right --tsa-ca" if "--tsa-ca" in q["reason"] else ""
        )
        output.error(
            f"checkpoint {q['size']} not stamped: {q['reason']} (still queued: the next stamp or upgrade "
            f"asks again{hint})"
        )
    if refused:
        raise typer.Exit(1)


def upgrade(
    ctx: typer.Context,
    headers: Annotated[
        Path | None, typer.Option("--headers", help="JSON file of Bitcoin block headers.")
    ] = None,
    bitcoin_node: Annotated[str | None, typer.Option("--bitcoin-node", help="bitcoind JSON-RPC URL.")] = None,
    explorer: Annotated[
        str | None, typer.Option("--explorer", help="Esplora-style block explorer base URL.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each network request may take in all.")
    ] = 10.0,
    json_out: JsonOpt = False,
) -> None:
    """Fetch completed proofs from allow-listed calendars and keep the block headers they need."""
    from .. import anchoring

    vault = state(ctx).open_vault()
    result = anchoring.upgrade(
        vault, headers_file=headers, bitcoin_node=bitcoin_node, explorer=explorer, timeout=timeout
    )
    if json_out:
        output.emit_json(result.to_dict())
        _exit_if_refused(result.stamps.refused)
        return
    for size, height in sorted(result.complete.items()):
        output.info(f"checkpoint {size}: anchored in Bitcoin block {height}")
    for size, why in sorted(result.rejected.items()):
        output.warn(f"checkpoint {size}: calendar answer refused: {why}")
    for size in result.pending:
        missed = result.unreachable.get(size)
        if missed:
            output.warn(
                f"checkpoint {size}: still pending: calendar not reached: {'; '.join(missed)}"
                " (the next upgrade asks again)"
            )
        else:
            output.warn(f"checkpoint {size}: still pending (not yet in a Bitcoin block: try again later)")
    for height, why in sorted(result.headers_errors.items()):
        output.warn(f"block {height}: header not fetched: {why}")
    if result.headers_missing:
        output.warn(
            "block headers missing for heights "
            + ", ".join(map(str, sorted(set(result.headers_missing))))
            + (
                ": try again when the source is reachable, or give --headers"
                if result.headers_errors
                else ": give --headers, --bitcoin-node or --explorer"
            )
        )
    for q in result.stamps.queued:
        if q not in result.stamps.refused:
            output.warn(f"still queued: checkpoint {q['size']} for {q['service']}: {q['reason']}")
    _exit_if_refused(result.stamps.refused)


def prove(
    ctx: typer.Context,
    item: Annotated[str, typer.Argument(help="Item id prefix or a path to the file.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Directory to write the proof to (default: proof-ID in the current directory); not inside "
            "the vault.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write an inclusion proof of the item in the earliest anchored checkpoint covering it, else the
    latest (checkable alone)."""
    from ..proofs import prove as make_proof

    st = state(ctx)
    root = st.vault_root()
    if out is not None:
        refuse_inside_vault(out, root, "--out")
    vault = st.open_vault(root)
    it = vault.resolve(item)
    target = out or Path(f"proof-{it.id[7:19]}")
    if out is None:  # `cd` into the vault, as the quickstart does: the default lands inside it
        refuse_inside_vault(target, root, "the default --out (proof-ID in the current directory)")
    doc, anchored = make_proof(vault, it.id, target)
    if json_out:
        output.emit_json({"out": str(target), "anchored": anchored, **doc})
    else:
        output.info(f"inclusion proof of {it.id} in checkpoint {doc['tree_size']} written to {target}")
        output.info(f"check it with: evidence-vault verify-proof {target} --file ORIGINAL")
    if not anchored:
        output.warn(
            f"no checkpoint covering this item is anchored in time yet: the proof shows it is in checkpoint "
            f"{doc['tree_size']}, signed, but proves no time; run `evidence-vault stamp` (or `upgrade` for a "
            "pending OpenTimestamps proof), then prove again"
        )


def verify_proof_cmd(
    directory: Annotated[Path, typer.Argument(help="Directory written by `prove`.")],
    file: Annotated[
        Path | None, typer.Option("--file", help="Also check that this file is the item.")
    ] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", callback=fingerprints, help="Trusted signer fingerprint."),
    ] = None,
    tsa_ca: Annotated[
        list[Path] | None, typer.Option("--tsa-ca", help="Your trust anchor for the TSA.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check an inclusion proof offline: event signature, inclusion, checkpoint signature, time proofs."""
    from ..proofs import verify_proof

    if not directory.is_dir():  # a broken proof is a finding; no proof at all is a usage error
        raise UsageError("no such directory" if not directory.exists() else "not a directory", path=directory)
    report = verify_proof(directory, file=file, trusted=trust or (), tsa_roots=read_tsa_roots(tsa_ca))
    if json_out:
        output.emit_json(report.to_dict())
    else:
        print_report(report)
    raise typer.Exit(report.exit_code(strict))


def register(app: typer.Typer) -> None:
    app.command("checkpoint")(checkpoint)
    app.command("stamp")(stamp)
    app.command("upgrade")(upgrade)
    app.command("prove")(prove)
    app.command("verify-proof")(verify_proof_cmd)
