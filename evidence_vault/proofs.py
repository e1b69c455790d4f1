"""Item inclusion proofs: check one item against an anchored checkpoint without the rest of the log.

``prove`` writes a directory holding the item's ingest event line, its RFC 9162 inclusion proof in a
checkpoint, the checkpoint text and signature, the checkpoint's time proofs, the block headers they
need, and the signer's public key. ``verify_proof`` checks all of it offline and returns a Report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import events as ev
from . import merkle
from .anchors_verify import _check_ots, _check_tsrs, checkpoint_times, pinned_tsa_roots, tsa_root_file
from .atomic import write_atomic
from .checkpoint import Checkpoint, checkpoint_dir, headers_path, list_checkpoints
from .errors import EvidenceVaultError, UsageError
from .events import Event, parse_line
from .hashing import hash_file
from .keystore import utc_now
from .regular_files import read_bytes, read_text
from .report import Report
from .signing import (
    PublicKey,
    fingerprint_prefix,
    normalize_fingerprint,
    parse_allowed_signers,
    unarmor,
    verify_signature,
)
from .timestamps import ots
from .timestamps.headers import HeaderStore
from .vault import Vault

PROOF_FILE = "proof.json"


def prove(vault: Vault, item_id: str, out: Path) -> tuple[dict[str, Any], bool]:
    """Write an inclusion proof of ``item_id``'s ingest event in the earliest anchored checkpoint covering
    it (the earliest proven time), else the latest checkpoint. Returns the proof document and whether
    its checkpoint is anchored (else the proof shows inclusion, signed, but proves no time yet).

    The proof is written to a new directory beside ``out`` and then put in its place, so that no file
    of an earlier proof there (a token of another checkpoint) stays to make the new one fail, and an
    interrupted run leaves no half proof. A non-empty ``out`` that is not a proof is refused, and so is
    one whose folder does not exist (as ``export`` does: a path typed wrong, or a disk not mounted, is
    no place to create folders and write evidence to).
    """
    out = Path(out)
    if out.exists() and not (out / PROOF_FILE).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not a proof directory: give another --out")
    if not out.parent.is_dir():
        raise UsageError("destination folder does not exist", path=out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        doc, anchored = _write_proof(vault, item_id, tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "proof")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return doc, anchored


def _write_proof(vault: Vault, item_id: str, out: Path) -> tuple[dict[str, Any], bool]:
    item = vault.index.item(item_id)
    if item is None:
        raise UsageError(f"no item {item_id} in this vault")
    covering = [s for s in list_checkpoints(vault) if s > item.seq]
    if not covering:
        raise UsageError("no checkpoint covers this item yet: run `evidence-vault checkpoint` or `stamp`")
    store = HeaderStore.load(headers_path(vault))
    # Anchored: a time proof that checks as `verify` checks it here (a token that checks only against a
    # root nobody pinned, or for another checkpoint, anchors nothing).
    proven = {s: t for s, t, _, _ in checkpoint_times(vault) if t is not None}

    # The earliest anchored checkpoint covering the item proves the earliest time (a later one only a
    # later time); without any, the latest checkpoint (its proofs may complete after `upgrade`).
    size = min((s for s in covering if s in proven), key=lambda s: (proven[s], s), default=None)
    is_anchored = size is not None
    if size is None:
        size = covering[-1]
    leaves: list[bytes] = []
    line = b""
    for raw in vault.log.iter_raw():
        if len(leaves) >= size or not raw.complete:
            break
        if len(leaves) == item.seq:
            line = raw.data
        leaves.append(merkle.leaf_hash(raw.data))
    path = merkle.inclusion_proof(leaves, item.seq, size)
    event, _ = parse_line(line)
    src = checkpoint_dir(vault, size)
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in sorted(src.iterdir()):
        if f.is_file():
            shutil.copyfile(f, out / f.name)
            copied.append(f.name)
            if f.name.startswith("tsa-") and f.suffix == ".json":
                ca = tsa_root_file(vault, f)
                if ca is not None:
                    shutil.copyfile(ca, out / f"{f.stem}.ca.pem")
                    copied.append(f"{f.stem}.ca.pem")
    heights = (
        ots.attested_heights(read_bytes(src / "checkpoint.ots")) if (src / "checkpoint.ots").exists() else []
    )
    needed = HeaderStore()
    for h in heights:
        header = store.get(h)
        if header is not None:
            needed.add(header)
    if len(needed):
        needed.save(out / "headers.json")
    auth = vault.authority()
    keys = {fp: auth.keys[fp].public_key for fp in {event.actor} if fp in auth.keys}
    cp_event = _checkpoint_event(vault, size)
    if cp_event is not None and cp_event.actor in auth.keys:
        keys[cp_event.actor] = auth.keys[cp_event.actor].public_key
    doc = {
        "v": 1,
        "type": "inclusion-proof",
        "created": utc_now(),
        "vault_id": vault.config.vault_id,
        "genesis_key": auth.genesis,
        "item": item_id,
        "event_line": line.decode("utf-8"),
        "leaf_index": item.seq,
        "tree_size": size,
        "inclusion_path": [h.hex() for h in path],
        "checkpoint_signer": cp_event.actor if cp_event else None,
        "keys": keys,
        "files": copied,
    }
    write_atomic(out / PROOF_FILE, json.dumps(doc, indent=2).encode() + b"\n")
    (out / "allowed_signers").write_text(
        "".join(f'{fp} namespaces="evidence-vault" {pk}\n' for fp, pk in keys.items()), "utf-8"
    )
    return doc, is_anchored


def _checkpoint_event(vault: Vault, size: int) -> ev.Event | None:
    with open(vault.log.path, "rb") as fh:
        for i, line in enumerate(fh):
            if i == size:
                e, _ = parse_line(line.rstrip(b"\n"))
                return e if e.type == ev.CHECKPOINT else None
    return None


def verify_proof(
    directory: Path, *, file: Path | None = None, trusted: Sequence[str] = (), tsa_roots: Sequence[bytes] = ()
) -> Report:
    """Check an inclusion-proof directory offline; with ``file``, also that the file is the item."""
    report = Report(target=str(directory), kind="inclusion-proof", started=utc_now())
    where = PROOF_FILE
    try:
        doc = json.loads(read_text(directory / PROOF_FILE, "utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
            raise ValueError("not a JSON object with a 'keys' object")
        line = str(doc["event_line"]).encode()
        index, size = int(doc["leaf_index"]), int(doc["tree_size"])
        path = [bytes.fromhex(h) for h in doc["inclusion_path"]]
        if doc.get("v") != 1 or doc.get("type") != "inclusion-proof":
            raise ValueError(
                f"not an inclusion proof of format 1 (v {doc.get('v')!r}, type {doc.get('type')!r})"
            )
        keys = {str(k): PublicKey.from_openssh(str(v)) for k, v in doc["keys"].items()}
        where = "checkpoint"
        text = read_bytes(directory / "checkpoint")
        cp = Checkpoint.parse(text)
    except FileNotFoundError as exc:
        report.fail("proof.missing-file", str(exc.filename), "file of the proof is missing")
        return _done(report)
    except RecursionError:
        report.fail("proof.malformed", where, "unreadable proof: JSON nested too deeply")
        return _done(report)
    except (OSError, ValueError, KeyError, TypeError, EvidenceVaultError) as exc:
        report.fail("proof.malformed", where, f"unreadable proof: {exc}")
        return _done(report)
    report.vault_id = str(doc.get("vault_id"))
    # Nothing signed in a proof names the genesis key (``genesis_key`` is for the reader): what --trust
    # pins here are the two signing keys, each filed under its own fingerprint.
    keys = _keys_by_own_fingerprint(keys, report)
    _check_allowed_signers(directory, keys, report)
    if cp.origin != f"evidence-vault/{report.vault_id}":
        report.fail(
            "checkpoint.wrong-origin",
            "checkpoint",
            f"the checkpoint is of {cp.origin!r}, not of the vault {report.vault_id} the proof names",
        )
    try:
        event: Event | None
        event, canonical_ok = parse_line(line)
        if not canonical_ok:
            report.fail("log.non-canonical", "event_line", "event line is not canonical")
        key = keys.get(event.actor)
        if key is None:
            report.fail("proof.key-missing", "event_line", f"public key of {event.actor} not in the proof")
        else:
            verify_signature(event.signature, event.signing_bytes(), key)
    except EvidenceVaultError as exc:
        report.fail("log.bad-signature", "event_line", f"event signature: {exc.message}")
        event = None
    if event is not None and (event.type != ev.ITEM_INGESTED or event.data.get("item") != doc.get("item")):
        report.fail("proof.wrong-event", "event_line", "event is not the ingest of the named item")
    if cp.size != size:
        report.fail(
            "proof.size-mismatch", "checkpoint", f"proof is for size {size}, checkpoint has {cp.size}"
        )
    elif not merkle.verify_inclusion(merkle.leaf_hash(line), index, size, path, cp.root):
        report.fail("proof.inclusion-invalid", PROOF_FILE, "event is not included in the checkpoint's tree")
    signer = doc.get("checkpoint_signer")
    try:
        sig = unarmor(read_text(directory / "checkpoint.sig", "ascii"))
        signer_key = keys.get(str(signer)) if signer else None
        if signer_key is None:
            raise EvidenceVaultError("checkpoint signer's key is not in the proof")
        verify_signature(sig, text, signer_key)
    except (OSError, EvidenceVaultError, UnicodeDecodeError) as exc:
        report.fail("checkpoint.bad-signature", "checkpoint.sig", f"checkpoint signature: {exc}")
    wanted = [fingerprint_prefix(t) for t in trusted]
    if wanted and not ({str(signer), event.actor if event else ""} <= set(wanted)):
        report.fail("trust.key-mismatch", "keys", "the signing keys are not the trusted ones")
    elif not wanted:
        report.warn(
            "trust.not-pinned",
            "keys",
            "signing keys not pinned: compare " + ", ".join(sorted(keys)) + " out of band, then --trust",
        )
    else:
        report.add(
            "INFO",
            "trust.signers-pinned",
            "keys",
            "the event and the checkpoint are signed by the keys you trust: "
            + ", ".join(sorted({str(signer), event.actor if event else ""} - {""})),
        )
    try:
        store = HeaderStore.load(directory / "headers.json")
    except EvidenceVaultError as exc:
        report.fail("anchors.bad-headers", "headers.json", exc.message)
        store = HeaderStore()
    digest = hashlib.sha256(text).digest()
    # Whoever checks a proof holds no vault to upgrade: the custodian upgrades and proves again.
    hint = "whoever keeps the vault runs `evidence-vault upgrade`, then `prove` again"
    times = _check_ots(directory, "checkpoint", digest, store, report, pending_hint=hint)
    pinned = pinned_tsa_roots(report.vault_id)  # the vault id the signed checkpoint's origin names
    times += _check_tsrs(_Root(directory), directory, "checkpoint", digest, report, tsa_roots, pinned)
    if not times:
        report.warn("anchors.none", "checkpoint", "no verified time proof for this checkpoint")
    report.stats = {"events": 1 if event is not None else 0, "items": 1}
    if file is not None:
        got = hash_file(file)
        report.stats["bytes_hashed"] = got.size
        if got.id != doc.get("item"):
            report.fail(
                "object.hash-mismatch", str(file), f"file hash {got.id} is not the item {doc.get('item')}"
            )
    if times and event is not None:
        t, proof = min(times)
        from .anchors_verify import _iso

        report.items.append(
            {"id": doc.get("item"), "seq": index, "proven_since": _iso(t), "proof": proof, "checkpoint": size}
        )
    return _done(report)


def _keys_by_own_fingerprint(keys: dict[str, PublicKey], report: Report) -> dict[str, PublicKey]:
    """The keys of ``keys`` filed under their own fingerprint; a FAIL for each that is not (a key of
    someone else's under a trusted name would make ``--trust`` pin nothing)."""
    out: dict[str, PublicKey] = {}
    for name, key in keys.items():
        if normalize_fingerprint(name) != normalize_fingerprint(key.fingerprint):
            report.fail(
                "proof.key-mismatch",
                PROOF_FILE,
                f"the key filed under {name[:60]} is {key.fingerprint}: not the key it names",
            )
        else:
            out[key.fingerprint] = key
    return out


def _check_allowed_signers(directory: Path, keys: dict[str, PublicKey], report: Report) -> None:
    """``allowed_signers`` (what ``ssh-keygen -Y verify`` reads by hand) must hold the proof's keys."""
    path = directory / "allowed_signers"
    try:
        text = read_text(path, "utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError, EvidenceVaultError) as exc:
        report.fail("proof.key-mismatch", "allowed_signers", f"unreadable: {exc}")
        return
    try:
        listed = {key.raw for key in parse_allowed_signers(text).values()}
    except EvidenceVaultError:
        listed = None  # a line ssh-keygen would not read as a key
    if listed != {k.raw for k in keys.values()}:
        report.fail(
            "proof.key-mismatch",
            "allowed_signers",
            "allowed_signers does not list exactly the keys of proof.json (a check by hand with "
            "ssh-keygen would use other keys)",
        )


class _Root:
    """Resolves ``ca`` paths of tsa-*.json against the proof directory (where they don't exist, so the
    CA shipped beside the token, or the one the user passes, is used)."""

    def __init__(self, root: Path) -> None:
        self.root = root


def _done(report: Report) -> Report:
    report.finished = utc_now()
    return report
