"""``evidence-vault key ...``: personal identities (private keys under EVIDENCE_VAULT_HOME)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output
from .context import nonblank_text, refuse_inside_vault, signing_state, state, utf8_text

app = typer.Typer(
    help="Create and inspect your signing identities.", no_args_is_help=True, rich_markup_mode=None
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


EmailOpt = Annotated[
    str | None,
    typer.Option(
        "--email",
        callback=utf8_text,
        help="Email address, kept with the identity and in the public key comment.",
    ),
]


@app.command("new")
def new(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", callback=nonblank_text, help="Your name as custodian.")],
    email: EmailOpt = None,
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Store the private key unencrypted (not recommended).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create an Ed25519 identity and print its fingerprint."""
    from .. import signing

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
    """List your identities and, inside a vault, the keys it authorizes (role, since when, revoked)."""
    from ..errors import VaultNotFoundError

    st = state(ctx)
    idents = st.keystore().identities()
    try:
        vault = st.open_vault()
        grants = [g.to_dict() for g in vault.authority().keys.values()]
    except VaultNotFoundError:
        grants = None
    if json_out:
        output.emit_json({"identities": [i.to_dict() for i in idents], "authorized": grants})
        return
    # One line each, never a table: a fingerprint is copied from here, so it is never cut to fit.
    if not idents:
        output.info("no identities yet: `evidence-vault key new --name NAME`")
    else:
        output.info("your identities (* the default):")
        for i in idents:
            who = i.name + (f" <{i.email}>" if i.email else "")
            enc = "encrypted" if i.encrypted else "NOT ENCRYPTED"
            output.info(
                f"{'*' if i.default else ' '} {i.fingerprint}  {output.one_line(who)}  {i.created}  {enc}"
            )
    if grants is not None:
        output.info("keys authorized in this vault:")
        for g in grants:
            name, since = output.one_line(str(g["name"])), f"seq {g['since_seq']} {g['since_time']}"
            line = f"  {g['fingerprint']}  {name}  {g['role']}  since {since}"
            if g["revoked_seq"]:
                reason = output.one_line(str(g["revoked_reason"]))
                line += f"  REVOKED at seq {g['revoked_seq']} {g['revoked_time']}: {reason}"
            output.info(line)


@app.command("show")
def show(
    ctx: typer.Context,
    fingerprint: Annotated[
        str | None, typer.Argument(help="Fingerprint (default: the default identity).")
    ] = None,
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
    fingerprint: Annotated[
        str | None, typer.Argument(help="Fingerprint (default: the default identity).")
    ] = None,
) -> None:
    """Print the OpenSSH one-line public key."""
    ident = state(ctx).keystore().find(fingerprint)
    comment = f"{ident.name} <{ident.email}>" if ident.email else ident.name
    print(f"{ident.public_key} {comment}")


@app.command("add")
def add(
    ctx: typer.Context,
    pubkey: Annotated[str, typer.Argument(help="OpenSSH public key line, or a file holding one.")],
    role: Annotated[str, typer.Option("--role", help="admin or custodian.")] = "custodian",
    name: Annotated[str | None, typer.Option("--name", callback=utf8_text, help="Who holds the key.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Authorize a key in the vault (signed by an admin key)."""
    from pathlib import Path

    from ..custody_ops import key_add
    from ..errors import KeyStoreError
    from ..signing import PublicKey

    st = signing_state(ctx)
    source = Path(pubkey) if Path(pubkey).is_file() else None
    try:
        line = source.read_text("utf-8").strip() if source is not None else pubkey
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise KeyStoreError(f"cannot read the public key: {why}", path=source) from None
    try:
        PublicKey.from_openssh(line)
    except KeyStoreError as exc:
        if source is None and not pubkey.lstrip().startswith("ssh-"):
            raise KeyStoreError(
                f"{pubkey!r} is neither an OpenSSH ssh-ed25519 public key line nor a readable file"
            ) from None
        raise KeyStoreError(exc.message, path=source) from None
    vault = st.open_vault()
    event = key_add(vault, st.signer(), line, role=role, name=name)
    if json_out:
        output.emit_json(event.to_dict())
    else:
        output.info(
            f"authorized {event.data['key']['fingerprint']} ({event.data['key']['name']})"
            f" as {role}, seq {event.seq}"
        )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    fingerprint: Annotated[str, typer.Argument(help="Fingerprint of the key to revoke.")],
    reason: Annotated[
        str, typer.Option("--reason", callback=nonblank_text, help="Why (recorded in the log).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a key: it signs nothing after this point."""
    from ..custody_ops import key_revoke

    st = signing_state(ctx)
    event = key_revoke(st.open_vault(), st.signer(), fingerprint, reason=reason)
    if json_out:
        output.emit_json(event.to_dict())
    else:
        output.info(f"revoked {event.data['fingerprint']} at seq {event.seq}")


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option("--name", callback=utf8_text, help="Name for the new key (default: the old one's)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Replace your key: the old key authorizes a new one, the new one revokes the old (one step).

    The new key becomes your default identity if the old one was.
    """
    from ..custody_ops import key_rotate

    st = state(ctx)
    store = st.keystore()
    old_ident = store.find(st.key)
    old = store.signer(old_ident, st.passphrase)
    # Asked twice at a prompt: a mistyped passphrase would lock the new key while the old one is revoked.
    what = "passphrase for the new key"
    passphrase = st.require_passphrase(what) if old_ident.encrypted else st.passphrase(what, confirm=True)
    new_fp, events = key_rotate(
        st.open_vault(), old, store, passphrase, name=name or old_ident.name, email=old_ident.email
    )
    if json_out:
        output.emit_json({"old": old.fingerprint, "new": new_fp, "events": [e.to_dict() for e in events]})
    else:
        moved = store.find().fingerprint == new_fp
        output.info(f"rotated {old.fingerprint} -> {new_fp}" + (" (now your default key)" if moved else ""))
        print(new_fp)


@app.command("export")
def export(
    ctx: typer.Context,
    encrypted: Annotated[
        str,
        typer.Option(
            "--encrypted",
            help="Backup file to write (OpenSSH, passphrase-protected): a new file in a folder that exists.",
        ),
    ],
    fingerprint: Annotated[str | None, typer.Argument(help="Fingerprint (default: the acting key).")] = None,
) -> None:
    """Back up a private key, passphrase-protected, so a lost laptop does not lose your authorship."""
    from pathlib import Path

    from ..errors import VaultNotFoundError
    from ..keystore import export_private

    st = state(ctx)
    try:  # a private key never lives in a vault (nor may its backup overwrite the log)
        root = st.vault_root()
    except VaultNotFoundError:
        root = None
    if root is not None:
        refuse_inside_vault(Path(encrypted), root, "--encrypted")
    store = st.keystore()
    ident = store.find(fingerprint or st.key)
    export_private(
        store, ident, st.passphrase, Path(encrypted), new_passphrase=lambda w: st.passphrase(w, confirm=True)
    )
    output.info(f"wrote an encrypted backup of {ident.fingerprint} to {encrypted}")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="OpenSSH Ed25519 private key (a backup or ~/.ssh/id_ed25519).")],
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            callback=utf8_text,
            help="Your name as custodian (default: the key file's comment, else its name).",
        ),
    ] = None,
    email: EmailOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import a private key as one of your identities."""
    from pathlib import Path

    from ..keystore import import_private

    st = state(ctx)
    ident = import_private(
        st.keystore(),
        Path(file).expanduser(),
        st.passphrase,
        name=name,
        email=email,
        new_passphrase=lambda w: st.passphrase(w, confirm=True),
    )
    if json_out:
        output.emit_json(ident.to_dict())
    else:
        output.info(f"imported {ident.name}")
        print(ident.fingerprint)
