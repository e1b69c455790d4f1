#!/usr/bin/env python3
"""Generate a vault with N real, signed custody events, fast (one pass, one buffered write).

Every event is produced through the library: ``evidence_vault.events.Event`` for the model and its
RFC 8785 canonical line, ``evidence_vault.signing`` (the identity from the key store, unlocked with
EVIDENCE_VAULT_PASSPHRASE) for the sshsig signature, correct ``seq`` and ``prev`` (hash of the previous
line). The genesis event comes from ``Vault.init`` (which also pins the key on this machine).

Mix (default): one ``item.ingested`` every ``--ingest-every`` events, each with a tiny distinct object
and a real metadata object (salted commitments of the original name and path, like ``add``); the other
events are ``item.annotated`` events about the items ingested so far. ``--checkpoints 10000,100000``
also inserts real ``checkpoint`` events (signed RFC 9162 tree heads, files in checkpoints/<size>/).

The result verifies: ``evidence-vault --vault DIR verify`` gives PASS.

    python bench/gen_log.py DIR [--events 1000000] [--ingest-every 100] [--checkpoints 10000,100000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from evidence_vault import commitments, merkle
from evidence_vault import events as ev
from evidence_vault.anchoring import checkpoint_dir, origin_of
from evidence_vault.atomic import write_atomic
from evidence_vault.canonical import canonical
from evidence_vault.checkpoint import Checkpoint
from evidence_vault.events import Event, line_hash
from evidence_vault.keystore import KeyStore, TrustStore, utc_now
from evidence_vault.signing import armor
from evidence_vault.vault import Vault


def _signer():
    store = KeyStore()
    ident = store.find(os.environ.get("EVIDENCE_VAULT_KEY") or None)
    pw = os.environ.get("EVIDENCE_VAULT_PASSPHRASE")
    return store.signer(ident, lambda _what: pw.encode() if pw else None), ident.name


def _put_object(objects: Path, data: bytes) -> str:
    hex_digest = hashlib.sha256(data).hexdigest()
    sub = objects / "sha256" / hex_digest[:2]
    sub.mkdir(parents=True, exist_ok=True)
    path = sub / hex_digest
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return "sha256:" + hex_digest


def generate(root: Path, events: int, ingest_every: int, checkpoints: set[int], progress: bool) -> dict:
    t0 = time.monotonic()
    signer, name = _signer()
    vault = Vault.init(root, name=root.name, signer=signer, signer_name=name)
    head, _ = vault.log.tail_state()
    assert head is not None and head.seq == 0
    genesis = vault.log.path.read_bytes().rstrip(b"\n")
    acc = merkle.MerkleAccumulator()
    acc.append(merkle.leaf_hash(genesis))
    prev = head.hash
    actor = signer.fingerprint
    objects = root / "objects"
    items: list[str] = []
    first_item: str | None = None
    sign = signer.sign
    b64 = base64.b64encode
    out = open(vault.log.path, "ab", buffering=8 << 20)  # noqa: SIM115 (closed after the loop)
    now = utc_now()
    last_line = genesis
    for seq in range(1, events):
        if seq % 1000 == 0:
            now = utc_now()
            if progress and seq % 100000 == 0:
                rate = seq / (time.monotonic() - t0)
                print(f"gen_log: {seq} events ({rate:.0f}/s)", file=sys.stderr, flush=True)
        if seq in checkpoints:
            cp = Checkpoint(origin=origin_of(vault.config.vault_id), size=seq, root=acc.root())
            text = cp.to_text()
            sig = sign(text)
            d = checkpoint_dir(vault, seq)
            write_atomic(d / "checkpoint", text)
            write_atomic(d / "checkpoint.sig", armor(sig).encode())
            etype = ev.CHECKPOINT
            data: dict = {
                "origin": cp.origin,
                "size": seq,
                "root": cp.root.hex(),
                "signature": b64(sig).decode(),
            }
        elif seq % ingest_every == 1 or not items:
            content = b"evidence-vault bench item %d " % seq + os.urandom(16)
            item = _put_object(objects, content)
            private = {
                "original_name": f"item-{seq:07d}.bin",
                "original_path": f"/bench/in/item-{seq:07d}.bin",
            }
            commits, openings = commitments.make(private)
            doc = {
                "v": 1,
                "type": "metadata",
                "item": item,
                "salt": os.urandom(16).hex(),
                "fields": openings,
                "raw": {},
                "extractors": [],
                "errors": [],
            }
            meta = _put_object(objects, canonical(doc))
            etype = ev.ITEM_INGESTED
            data = {
                "item": item,
                "size": len(content),
                "media_type": "application/octet-stream",
                "metadata": meta,
                "public": {},
                "committed": commits,
                "tags": [],
                "extraction_errors": [],
            }
            items.append(item)
            first_item = first_item or item
        else:
            # Annotations: most go to the first item (so `show` of it has many events), the rest spread.
            item = first_item if seq % 10 == 0 else items[seq % len(items)]
            etype = ev.ITEM_ANNOTATED
            data = {"item": item, "label": f"bench note {seq}"}
        e = Event(seq=seq, prev=prev, time=now, type=etype, actor=actor, data=data)
        e = Event(
            seq=seq,
            prev=prev,
            time=now,
            type=etype,
            actor=actor,
            data=data,
            sig=b64(sign(e.signing_bytes())).decode(),
        )
        line = e.line()
        out.write(line + b"\n")
        prev = line_hash(line)
        acc.append(merkle.leaf_hash(line))
        last_line = line
    out.flush()
    os.fsync(out.fileno())
    out.close()
    TrustStore().record_head(vault.config.vault_id, events - 1, line_hash(last_line))
    info = {
        "vault": str(root),
        "events": events,
        "items": len(items),
        "first_item": first_item,
        "last_item": items[-1] if items else None,
        "checkpoints": sorted(c for c in checkpoints if c < events),
        "seconds": round(time.monotonic() - t0, 2),
        "log_bytes": vault.log.path.stat().st_size,
    }
    (root / "cache").mkdir(exist_ok=True)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vault", type=Path, help="new vault directory (must not exist or be empty)")
    ap.add_argument("--events", type=int, default=1_000_000, help="total events including genesis")
    ap.add_argument("--ingest-every", type=int, default=100, help="one item.ingested every K events")
    ap.add_argument("--checkpoints", default="", help="comma-separated seqs at which to insert checkpoints")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    cps = {int(x) for x in a.checkpoints.split(",") if x.strip()}
    info = generate(a.vault, a.events, max(1, a.ingest_every), cps, not a.quiet)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
