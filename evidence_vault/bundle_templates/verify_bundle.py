#!/usr/bin/env python3
"""Check an evidence-vault export with the Python standard library alone.

    python3 verify_bundle.py /path/to/bag

Checks: (0) that nothing in the bag is a symbolic link or a special file (an export writes none, and a
link would have the other checks read a file outside the bag: the script stops there); (1) every file
against manifest-sha256.txt and tagmanifest-sha256.txt; (2) the hash chain of
evidence/log.jsonl, through withheld lines (given as their hashes); (3) each checkpoint's Merkle root
recomputed from the leaf hashes (RFC 9162); (4) the inclusion proofs of the revealed lines and the
consistency proofs between checkpoints; (5) that every file in data/ is an item ingested in the log,
and that every item ingested in the revealed log, and every item evidence/export.json lists (with its
path), is there;
(6) that no key in evidence/keys/allowed_signers or in a revealed key event is an Ed25519 point of small
order (with such a key one signature verifies for every message, and ssh-keygen accepts it); (7) that
evidence/events/<seq>.json and .json.sig are exactly the signed bytes and the signature of log line <seq>
(so the ssh-keygen checks of VERIFY.md are about the lines of the log). Runs on Python 3.9 and later.

It does NOT check signatures (the standard library has no Ed25519): use the ssh-keygen commands in
VERIFY.md, or `evidence-vault verify-bundle`. That includes the exporter's signature over the whole bag
(tagmanifest-sha256.txt.sig, VERIFY.md step 8): this script only checks that it is there.
Exit code 0 = all checks passed, 1 = a check failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys

problems: list[str] = []


def fail(msg: str) -> None:
    msg = msg.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates from hand-made JSON
    problems.append(msg)
    print("FAIL", msg)


# Ed25519 points of small order, as libsodium lists them (compared without the sign bit): 0, 1, the two
# points of order 8, and p-1, p, p+1. With such a public key anyone can sign as it.
SMALL_ORDER = {
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
}


def small_order_key(b64: str) -> bool:
    """Is this OpenSSH ssh-ed25519 key blob (base64) a point of small order?"""
    try:
        blob = base64.b64decode(b64, validate=True)
    except ValueError:
        return False
    n = int.from_bytes(blob[:4], "big")
    raw = blob[8 + n : 8 + n + 32]
    return len(raw) == 32 and raw[:31] + bytes([raw[31] & 0x7F]) in SMALL_ORDER


def check_keys(ev: str, revealed: dict[int, bytes]) -> None:
    """No key ssh-keygen would be told to trust, and no key the log brings in, may be of small order."""
    keys: list[tuple[str, str]] = []
    path = os.path.join(ev, "keys", "allowed_signers")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for entry in f:
                parts = entry.split()
                if len(parts) >= 3 and not parts[0].startswith("#"):
                    keys.append((f"allowed_signers: {parts[0]}", parts[-1]))
    for seq, line in revealed.items():
        doc = json.loads(line)
        key = doc.get("data", {}).get("key") if doc.get("type") in ("vault.created", "key.added") else None
        if isinstance(key, dict) and isinstance(key.get("public_key"), str):
            parts = key["public_key"].split()
            if len(parts) >= 2:
                keys.append((f"log line {seq + 1}", parts[1]))
    for where, b64 in keys:
        if small_order_key(b64):
            fail(f"{where}: the key is an Ed25519 point of small order (anyone can sign as it)")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def leaf_hash(line: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + line).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash of a list of leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes | None:
    """RFC 9162 section 2.1.3.2."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def consistent(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def canonical(value: object) -> str:
    """RFC 8785 canonical JSON of a parsed log line (keys by UTF-16 code units; no floats in events)."""
    if isinstance(value, dict):
        pairs = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v) for k, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, float):
        raise ValueError("a floating point number in a signed event")
    return json.dumps(value, ensure_ascii=False)


def unarmor(text: str) -> bytes:
    """The signature blob inside an armored SSH signature (``-----BEGIN SSH SIGNATURE-----``)."""
    rows = [r.strip() for r in text.strip().splitlines()]
    if (
        len(rows) < 3
        or rows[0] != "-----BEGIN SSH SIGNATURE-----"
        or rows[-1] != "-----END SSH SIGNATURE-----"
    ):
        raise ValueError("not an armored SSH signature")
    return base64.b64decode("".join(rows[1:-1]), validate=True)


def check_event_files(ev: str, revealed: dict[int, bytes]) -> None:
    """evidence/events/<seq>.json must be exactly the bytes the line's signature covers (the line without
    its "sig", in canonical JSON), and <seq>.json.sig that signature: what ssh-keygen checks in VERIFY.md
    step 4 is then the line in log.jsonl. Files for no revealed line are refused too."""
    d = os.path.join(ev, "events")
    present = set(os.listdir(d)) if os.path.isdir(d) else set()
    expected = {f"{seq}.json" for seq in revealed} | {f"{seq}.json.sig" for seq in revealed}
    for extra in sorted(present - expected):
        fail(f"evidence/events/{extra}: belongs to no revealed log line")
    for seq, line in sorted(revealed.items()):
        where = f"evidence/events/{seq}.json"
        try:
            doc = json.loads(line)
            sig = base64.b64decode(doc.pop("sig"), validate=True)
            signed = canonical(doc).encode("utf-8")
            with open(os.path.join(d, f"{seq}.json"), "rb") as f:
                body = f.read()
            with open(os.path.join(d, f"{seq}.json.sig"), encoding="ascii") as f:
                armored = unarmor(f.read())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            fail(f"{where}: cannot be checked against log line {seq + 1} ({type(exc).__name__}: {exc})")
            continue
        if body != signed:
            fail(f"{where}: is not the signed bytes of log line {seq + 1}")
        if armored != sig:
            fail(f"{where}.sig: is not the signature in log line {seq + 1}")
    print(f"events: {len(revealed)} signed-bytes files match their log lines")


def check_tree(bag: str) -> bool:
    """Nothing in the bag may be a symbolic link (to a file or a directory, inside the bag or out of it)
    or a device, FIFO or socket: an export writes none, and reading through one would check a file that
    is not in the bag (or never end). True if the bag is clean."""
    clean = True
    for root, dirs, files in os.walk(bag):  # does not follow links
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, bag).replace(os.sep, "/")
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                fail(f"{rel} is a symbolic link (to {os.readlink(path)}): an export writes none")
                clean = False
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                fail(f"{rel} is not a regular file (device, FIFO or socket): an export writes none")
                clean = False
    return clean


def check_manifest(bag: str, name: str, digests: dict[str, str]) -> set[str]:
    """Check each file a manifest lists; the SHA-256 of each file found goes into ``digests``."""
    listed: set[str] = set()
    with open(os.path.join(bag, name), encoding="utf-8") as f:
        for line in f:
            digest, _, rel = line.rstrip("\n").partition("  ")
            rel = rel.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
            parts = rel.split("/")
            if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
                fail(f"{name}: {rel!r} is not a path inside the bag")
                continue
            if (parts[0] == "data") != (name == "manifest-sha256.txt"):
                fail(f"{name}: {rel} is {'not ' if parts[0] != 'data' else ''}a payload file")
            listed.add(rel)
            path = os.path.join(bag, *parts)
            if not (os.path.lexists(path) and stat.S_ISREG(os.lstat(path).st_mode)):
                fail(f"{name}: {rel} is missing")
                continue
            digests[rel] = sha256_file(path)
            if digests[rel] != digest:
                fail(f"{name}: {rel} does not match its SHA-256")
    return listed


def check_items(ev: str, items: set[str], payload: dict[str, str]) -> None:
    """Every item ingested in the revealed log must be in data/, and every entry of export.json must be
    such an item, at the path it gives."""
    present = set(payload.values())
    for ingested in sorted(items):
        if str(ingested).removeprefix("sha256:") not in present:
            fail(f"item {ingested} is ingested in the revealed log, but no file in data/ holds it")
    with open(os.path.join(ev, "export.json"), encoding="utf-8") as f:
        doc = json.load(f)
    entries = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        fail("evidence/export.json: has no list of items")
        return
    for entry in entries:
        item = entry.get("id") if isinstance(entry, dict) else None
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(item, str) or item not in items:
            fail(f"evidence/export.json: {item!r} is not an item ingested in the revealed log")
        elif not isinstance(path, str) or "sha256:" + payload.get(path, "") != item:
            fail(f"evidence/export.json: {path!r} is not a file in data/ holding item {item}")
    print(f"items: {len(items)} ingested in the revealed log, checked against data/ and export.json")


def check_exporter_signature(bag: str) -> None:
    """The exporter's signature over tagmanifest-sha256.txt must be there; it is checked elsewhere."""
    exporter = "?"
    with open(os.path.join(bag, "bag-info.txt"), encoding="utf-8") as f:
        for entry in f:
            label, _, value = entry.partition(":")
            if label == "Evidence-Vault-Exporter":
                exporter = value.strip()
    if not os.path.isfile(os.path.join(bag, "tagmanifest-sha256.txt.sig")) or exporter == "?":
        fail(
            "the bag is not signed by its exporter (tagmanifest-sha256.txt.sig, or the bag-info.txt label "
            "Evidence-Vault-Exporter, is missing)"
        )
        return
    print(
        f"exporter {exporter}: its signature tagmanifest-sha256.txt.sig is not checked here; check it with "
        "`evidence-vault verify-bundle`, or by hand with the ssh-keygen command of VERIFY.md step 8"
    )


def main(bag: str) -> int:
    if not check_tree(bag):
        print("FAIL", f"({len(problems)} problems; the checks stopped here: nothing is read through a link)")
        return 1
    digests: dict[str, str] = {}
    payload = check_manifest(bag, "manifest-sha256.txt", digests)
    check_manifest(bag, "tagmanifest-sha256.txt", digests)
    for root, _dirs, files in os.walk(os.path.join(bag, "data")):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), bag).replace(os.sep, "/")
            if rel not in payload:
                fail(f"{rel} is not in manifest-sha256.txt")

    ev = os.path.join(bag, "evidence")
    leaves: list[bytes] = []
    prev: str | None = None
    items: set[str] = set()
    revealed: dict[int, bytes] = {}
    with open(os.path.join(ev, "log.jsonl"), "rb") as f:  # line by line: a big log is not held whole
        for seq, read in enumerate(f):
            line = read[:-1] if read.endswith(b"\n") else read
            doc = json.loads(line)
            if doc.get("withheld") is True:
                if doc.get("seq") != seq:
                    fail(f"log line {seq + 1}: withheld entry has seq {doc.get('seq')}")
                leaves.append(bytes.fromhex(doc["leaf_hash"]))
                prev = "sha256:" + doc["line_sha256"]
                continue
            if doc.get("seq") != seq:
                fail(f"log line {seq + 1}: seq is {doc.get('seq')}")
            if doc.get("prev") != prev:
                fail(f"log line {seq + 1}: prev does not match the previous line's hash (chain broken)")
            leaves.append(leaf_hash(line))
            prev = "sha256:" + hashlib.sha256(line).hexdigest()
            revealed[seq] = line
            if doc.get("type") == "item.ingested":
                items.add(doc["data"]["item"])
    n_lines = len(leaves)
    print(f"log: {n_lines} lines, {len(revealed)} revealed, {n_lines - len(revealed)} withheld")

    roots: dict[int, bytes] = {}
    cp_dir = os.path.join(ev, "checkpoints")
    for name in sorted(os.listdir(cp_dir)) if os.path.isdir(cp_dir) else []:
        if not (name.isascii() and name.isdigit()):  # str.isdigit() alone also takes '\u00b2'
            fail(f"evidence/checkpoints/{name}: not a checkpoint directory (named by its tree size)")
            continue
        with open(os.path.join(cp_dir, name, "checkpoint"), "rb") as f:
            text = f.read().decode("utf-8").split("\n")
        size, cp_root = int(text[1]), base64.b64decode(text[2])
        if size > len(leaves) or merkle_root(leaves[:size]) != cp_root:
            fail(f"checkpoint {size}: root does not match the first {size} log lines")
        else:
            roots[size] = cp_root
            print(f"checkpoint {size}: root matches the log")
    if roots:
        latest = max(roots)
        with open(os.path.join(ev, "proofs", "inclusion.json"), encoding="utf-8") as f:
            inc = json.load(f)
        if inc.get("tree_size") != latest:
            fail(
                f"inclusion proofs are for tree size {inc.get('tree_size')}, "
                f"not the latest checkpoint {latest}"
            )
        for seq, line in revealed.items():
            if seq >= latest:
                continue
            proof = [bytes.fromhex(h) for h in inc["proofs"].get(str(seq), [])]
            if root_from_inclusion(leaf_hash(line), seq, latest, proof) != roots[latest]:
                fail(f"inclusion proof of log line {seq + 1} does not lead to checkpoint {latest}")
        with open(os.path.join(ev, "proofs", "consistency.json"), encoding="utf-8") as f:
            cons = {(c["old_size"], c["new_size"]): c["proof"] for c in json.load(f)}
        sizes = sorted(roots)
        for old, new in zip(sizes, sizes[1:]):  # noqa: B905, RUF007 (Python 3.9: no strict=, no pairwise)
            proof = [bytes.fromhex(h) for h in cons.get((old, new), [])]
            if not consistent(old, new, roots[old], roots[new], proof):
                fail(f"no valid consistency proof from checkpoint {old} to {new}")
        print(f"inclusion proofs in checkpoint {latest} and consistency proofs checked")

    check_event_files(ev, revealed)
    check_keys(ev, revealed)
    payload_digests = {rel: digests[rel] for rel in payload if rel in digests}
    for rel, digest in sorted(payload_digests.items()):
        if "sha256:" + digest not in items:
            fail(f"{rel} is not an item ingested in the revealed log")
    check_items(ev, items, payload_digests)
    check_exporter_signature(bag)
    print("signatures: not checked here (no Ed25519 in the standard library); see VERIFY.md steps 3-4")
    print("FAIL" if problems else "PASS", f"({len(problems)} problems)")
    return 1 if problems else 0


def run(bag: str) -> int:
    """``main``, with a bundle too damaged to read (a missing file, a line that is not JSON, a field of
    the wrong type) reported as one more problem, not a traceback."""
    try:
        return main(bag)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        fail(f"the bundle is damaged or incomplete ({type(exc).__name__}: {exc}); the checks stopped here")
        print("FAIL", f"({len(problems)} problems)")
        return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else "."))
