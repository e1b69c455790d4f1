"""``evidence-vault key ...``: personal identities (private keys under EVIDENCE_VAULT_HOME)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .. import signing
from . import output
from .context import state

app = typer.Typer(help="Create and inspect your signing identities.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


@app.command("new")
def new(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Your name as custodian.")],
    email: Annotated[str | None, typer.Option("--email")] = None,
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Store the private key unencrypted (not recommended).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create an Ed25519 identity and print its fingerprint."""
    st = state(ctx)
    passphrase = None if no_passphrase else st.require_passphrase("passphrase for the new key")
    ident = st.keystore().add_identity(signing.generate(), name=name, email=email, passphrase=passphrase)
    if json_out:
        output.emit_json(ident.to_dict())
        return
    output.info(f"created identity {ident.name} ({'encrypted' if ident.encrypted else 'UNENCRYPTED'})")
    print(ident.fingerprint)


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List your identities."""
    idents = state(ctx).keystore().identities()
    if json_out:
        output.emit_json([i.to_dict() for i in idents])
        return
    if not idents:
        output.info("no identities yet: `evidence-vault key new --name NAME`")
        return
    table = Table("", "fingerprint", "name", "email", "created", "encrypted")
    for i in idents:
        table.add_row("*" if i.default else "", i.fingerprint, i.name, i.email or "", i.created,
                      "yes" if i.encrypted else "NO")  # fmt: skip
    output.err.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    fingerprint: Annotated[str | None, typer.Argument(help="Fingerprint (default: the default identity).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one identity."""
    ident = state(ctx).keystore().find(fingerprint)
    if json_out:
        output.emit_json(ident.to_dict())
        return
    for k, v in ident.to_dict().items():
        output.info(f"{k:12} {v}")


@app.command("export-public")
def export_public(
    ctx: typer.Context,
    fingerprint: Annotated[str | None, typer.Argument(help="Fingerprint (default: the default identity).")] = None,
) -> None:
    """Print the OpenSSH one-line public key."""
    ident = state(ctx).keystore().find(fingerprint)
    comment = f"{ident.name} <{ident.email}>" if ident.email else ident.name
    print(f"{ident.public_key} {comment}")
