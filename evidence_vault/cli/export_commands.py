"""Export commands: export, verify-bundle, import, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from . import output
from .context import (
    fingerprints,
    nonblank_filter,
    read_tsa_roots,
    refuse_inside_vault,
    signing_state,
    state,
    utf8_text,
)
from .vault_commands import JsonOpt, print_report

TrustOpt = Annotated[
    list[str] | None,
    typer.Option("--trust", callback=fingerprints, help="Fingerprint of the genesis key you trust."),
]
TsaCaOpt = Annotated[
    list[Path] | None, typer.Option("--tsa-ca", help="Your own trust anchor for RFC 3161 (PEM).")
]


def export(
    ctx: typer.Context,
    items: Annotated[list[str] | None, typer.Argument(help="Item id prefixes or files.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Bag directory (or .zip with --zip) to create, not inside the vault; a name ending in .zip "
            "needs --zip.",
        ),
    ] = None,
    all_items: Annotated[bool, typer.Option("--all", help="Export every item.")] = False,
    tag: Annotated[
        str | None, typer.Option("--tag", callback=nonblank_filter, help="Only items with this tag.")
    ] = None,
    as_zip: Annotated[
        bool, typer.Option("--zip", help="Write one .zip file instead of a directory.")
    ] = False,
    redact: Annotated[
        str | None,
        typer.Option(
            "--redact-metadata",
            help="Comma-separated signed metadata fields to withhold (gps, serial, original_path, ...); "
            "the original files still ship unchanged, with their own EXIF.",
        ),
    ] = None,
    recipient: Annotated[
        str | None,
        typer.Option("--recipient", callback=utf8_text, help="Who receives it (committed, not public)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export items as a BagIt bag a third party can check; other items are withheld (hashes only)."""
    from ..export import export as do_export
    from ..export import select_items

    if out is None:
        raise UsageError("give --out PATH")
    if not as_zip and out.suffix.lower() == ".zip":  # else a directory named x.zip would be made
        raise UsageError("--out ends in .zip: add --zip for a zip file", path=out)
    st = signing_state(ctx)
    root = st.vault_root()
    refuse_inside_vault(out, root, "--out")
    vault = st.open_vault(root)
    ids = select_items(vault, items or [], all_items=all_items, tag=tag)
    words = [w for w in (redact or "").split(",") if w.strip()]
    result = do_export(vault, st.signer(), ids, out, as_zip=as_zip, redact=words, recipient=recipient)
    vault.close()
    if json_out:
        output.emit_json(result.to_dict())
        return
    output.info(
        f"exported {len(result.items)} item(s) to {result.out} ({result.revealed} log lines revealed, "
        f"{result.withheld} withheld)"
    )
    if result.redacted:
        output.info(
            "withheld the signed metadata fields " + ", ".join(result.redacted) + ": their values are not "
            "in the bag's log, openings or report, but the original files ship unchanged (they are the "
            "evidence) and still hold whatever they contain, such as EXIF GPS. A redacted working copy "
            "(`evidence-vault derive`) can be made, but a bag holds it only together with its original"
        )
    output.info(
        f"recorded as item.exported at seq {result.seq}; check it with: evidence-vault verify-bundle {out}"
    )


def verify_bundle_cmd(
    path: Annotated[Path, typer.Argument(help="Bag directory or .zip.")],
    trust: TrustOpt = None,
    tsa_ca: TsaCaOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check an exported bag without any vault; exit 0 PASS/WARN, 1 FAIL, 2 error."""
    from ..bundle_verify import verify_bundle

    report = verify_bundle(path, trusted=trust or (), tsa_roots=read_tsa_roots(tsa_ca))
    if json_out:
        output.emit_json(report.to_dict())
    else:
        print_report(report)
    raise typer.Exit(report.exit_code(strict))


def import_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Received bag directory or .zip.")],
    trust: TrustOpt = None,
    tsa_ca: TsaCaOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse bags with warnings too.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Take custody of a received bag (only if it verifies): ingest its files with their provenance."""
    from ..import_bag import import_bag

    st = signing_state(ctx)
    vault = st.open_vault()
    result = import_bag(
        vault, path, st.signer(), trusted=trust or (), tsa_roots=read_tsa_roots(tsa_ca), strict=strict
    )
    vault.close()
    failed = any(r.status == "failed" for r in result.results)
    if json_out:
        output.emit_json(result.to_dict())
        raise typer.Exit(1 if failed else 0)
    for f in result.report.warnings:  # imported anyway (not --strict): the receiver must still see them
        output.warn(f"bag: {f.code}  {f.subject}: {f.message}")
    for r in result.results:
        output.info(f"{r.status:9} {r.id or ''}  {r.path}" + (f"  ({r.message})" if r.message else ""))
    if any(r.status == "added" for r in result.results):
        output.info(
            f"source: {result.source}; bag tag files kept as object {result.provenance.get('bundle_object')}"
        )
    else:
        output.info(f"source: {result.source}; nothing added")
    raise typer.Exit(1 if failed else 0)


def report_cmd(
    ctx: typer.Context,
    items: Annotated[
        list[str] | None, typer.Argument(help="Item id prefixes or files (default: all).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file to write (default: stdout); not inside the vault.")
    ] = None,
) -> None:
    """Write the HTML custody report of the vault's items (or the ones given)."""
    from ..custody_report import vault_report
    from ..export import select_items

    st = state(ctx)
    root = st.vault_root()
    if out is not None:
        refuse_inside_vault(out, root, "--out")
    vault = st.open_vault(root)
    ids = select_items(vault, items or [], all_items=not items, verb="report on")
    html = vault_report(vault, ids)
    vault.close()
    if out is None:
        typer.echo(html, nl=False)
        return
    try:
        out.write_text(html, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror}", path=out) from None
    output.info(f"custody report of {len(ids)} item(s) written to {out}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("verify-bundle")(verify_bundle_cmd)
    app.command("import")(import_cmd)
    app.command("report")(report_cmd)
