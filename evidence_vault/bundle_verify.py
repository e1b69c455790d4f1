"""Verify an exported bag without the vault that made it: returns a :class:`Report`, never prints.

A bag (directory or zip) is checked for: BagIt validity; every payload file being an exported item;
every revealed log line (canonical form, seq, chain, authorization, signature); the chain *through* the
withheld lines, whose line hashes and leaf hashes are given; each checkpoint's root recomputed from the
leaf hashes, its signature, its OpenTimestamps proof against the bag's block headers and its RFC 3161
tokens; the inclusion proofs of the revealed events in the latest checkpoint and the consistency proofs
between checkpoints; the metadata openings against their signed commitments; the exporter's signature
over ``tagmanifest-sha256.txt`` (so over every file) with the key the revealed log authorized; and that
the keys the bag names (``evidence/keys/allowed_signers``, ``VERIFY.md``) are exactly the keys that
signed, revealed lines or the bag.

What cannot be checked: a withheld line's leaf hash against its line hash (the line itself is not in the
bag). The leaf hash is bound by the checkpoint root; the line hash by the next revealed line's ``prev``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import commitments, merkle
from . import events as ev
from .anchors_verify import (
    _check_ots,
    _check_tsrs,
    _HasRoot,
    _iso,
    _item_times,
    check_checkpoint_dir,
    pinned_tsa_roots,
)
from .bagit import SOFTWARE_AGENT, bag_info_value, read_bag_info, validate_bag
from .checkpoint import Checkpoint
from .errors import BagError, DamagedZipError, EvidenceVaultError, UnsafeZipError, UsageError
from .events import Event, line_hash, parse_line
from .hashing import hash_file
from .index import items_of
from .keystore import utc_now
from .regular_files import open_regular, read_bytes, read_text
from .report import Finding, Report, line_subject
from .revealed import RevealedLines
from .safezip import safe_extract
from .signing import (
    FINGERPRINT_RE,
    PublicKey,
    key_file_name,
    parse_allowed_signers,
    unarmor,
    verify_signature,
)
from .timestamps.headers import HeaderStore
from .verify import LogState, check_event

if TYPE_CHECKING:
    from .authority import Authority

EVIDENCE = "evidence"
#: Events revealed in every export whatever items it holds: they carry no item data.
STRUCTURAL = frozenset({ev.VAULT_CREATED, ev.KEY_ADDED, ev.KEY_REVOKED, ev.CHECKPOINT})
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_WITHHELD_KEYS = {"seq", "withheld", "line_sha256", "leaf_hash"}
#: A withheld entry exactly as :func:`withheld_stub` writes it (anything else is parsed as JSON).
_STUB_LINE = re.compile(
    rb'\{"leaf_hash":"([0-9a-f]{64})","line_sha256":"([0-9a-f]{64})","seq":(0|[1-9][0-9]{0,17}),"withheld":true\}'
)
_SIZE_DIR = re.compile(r"^[0-9]{1,20}$")  # ASCII digits only: str.isdigit() also takes '²'
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: The labels an export writes in bag-info.txt, each once (Payload-Oxum is the BagIt validator's).
BAG_INFO_LABELS = (
    "Source-Organization",
    "External-Description",
    "External-Identifier",
    "Internal-Sender-Identifier",
    "Bag-Count",
    "Bag-Group-Identifier",
    "Bagging-Date",
    "Bag-Software-Agent",
    "Evidence-Vault-Exporter",
    "Payload-Oxum",
)
#: The bag-info.txt label naming the key that signed the bag (``SHA256:…``); and the tag file holding
#: that key's signature over the exact bytes of ``tagmanifest-sha256.txt`` (which it cannot list).
EXPORTER_LABEL = "Evidence-Vault-Exporter"
BAG_SIGNATURE = "tagmanifest-sha256.txt.sig"


#: The hint of a pending OpenTimestamps proof in a bag (``verify``'s says `run evidence-vault upgrade`).
_PENDING_HINT = "whoever keeps the vault runs `evidence-vault upgrade`, then exports again"


def mentioned_items(event: Event) -> list[str]:
    """Every item an event names (``index.items_of`` plus an ingest's ``derived_from``)."""
    out = items_of(event)
    src = event.data.get("derived_from")
    if isinstance(src, str) and src not in out:
        out.append(src)
    return out


def is_revealed(event: Event, exported: set[str] | frozenset[str]) -> bool:
    """Selective disclosure rule: structural events, and events about exported items only."""
    return event.type in STRUCTURAL or all(i in exported for i in mentioned_items(event))


def withheld_stub(seq: int, line: bytes, leaf: bytes | None = None) -> bytes:
    """The line shipped in place of a withheld log line (its hashes only): compact JSON, keys sorted.
    ``leaf``: the line's leaf hash, if already computed."""
    leaf = merkle.leaf_hash(line) if leaf is None else leaf
    return _STUB % (leaf.hex().encode(), hashlib.sha256(line).hexdigest().encode(), seq)


_STUB = b'{"leaf_hash":"%s","line_sha256":"%s","seq":%d,"withheld":true}'


#: Files at the top of a bag that an export writes (beside data/ and evidence/).
BAG_TOP_FILES = frozenset(
    {
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha256.txt",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha256.txt.sig",
        "VERIFY.md",
        "report.html",
        "verify_bundle.py",
    }
)
_CHECKPOINT_FILES = frozenset({"checkpoint", "checkpoint.sig", "checkpoint.ots"})
_TOKEN_FILES = (".chain.pem", ".ca.pem", ".json", ".tsr")  # beside each tsa-<name>.tsr


def checkpoint_files(names: Iterable[str]) -> set[str]:
    """Of the file names in a checkpoint directory, those an export ships: ``checkpoint``, its ``.sig``
    and ``.ots``, and for each RFC 3161 token ``tsa-<name>.tsr`` its ``.json``, ``.chain.pem`` and
    ``.ca.pem``. Anything else there is checked by nothing."""
    names = set(names)
    tokens = {n.removesuffix(".tsr") for n in names if n.startswith("tsa-") and n.endswith(".tsr")}
    out = set()
    for n in names:
        ext = next((e for e in _TOKEN_FILES if n.endswith(e)), None)
        if n in _CHECKPOINT_FILES or (ext is not None and n.removesuffix(ext) in tokens):
            out.add(n)
    return out


def external_description(n_items: int) -> str:
    """bag-info.txt's ``External-Description`` of an export of ``n_items`` items."""
    return (
        f"evidence-vault export of {n_items} item(s) with their custody log, proofs and keys; see VERIFY.md"
    )


def fingerprints_text(signers: Iterable[str], auth: Authority) -> str:
    """``evidence/keys/fingerprints.txt``: one line per key that signed a revealed line or the bag (the
    exporter), sorted, with the role and name the log's key lines give it."""
    out = []
    for fp in sorted(signers):
        grant = auth.keys.get(fp)
        out.append(f"{fp}  {grant.role if grant else '?'}  {grant.name if grant else '?'}\n")
    return "".join(out)


def short(value: Any, limit: int = 100) -> str:
    """``repr(value)``, cut to ``limit`` characters (a hostile value can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class Anchor:
    """One checked time proof of a checkpoint, for the custody report."""

    kind: str  # "bitcoin" | "rfc3161"
    time: str
    detail: str


@dataclass
class EvidenceState:
    """What checking ``evidence/`` learned."""

    log: LogState = field(default_factory=LogState)
    revealed: RevealedLines = field(default_factory=RevealedLines)  # on disk past a few MB
    withheld: int = 0  # lines shipped as their hashes only
    leaves: merkle.Leaves = field(default_factory=merkle.Leaves)
    signers: set[str] = field(default_factory=set)
    checkpoint_sizes: list[int] = field(default_factory=list)
    anchors: dict[int, list[Anchor]] = field(default_factory=dict)
    pending: dict[int, bool] = field(default_factory=dict)
    anchored: dict[int, tuple[float, str]] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    openings: dict[str, dict[str, Any]] = field(default_factory=dict)  # item -> field -> value (checked)
    vault_id: str | None = None
    exporter: str | None = None  # the key bag-info.txt names as the exporter, if the log authorized it

    def named_keys(self) -> set[str]:
        """The keys the bag must name (allowed_signers, keys/, fingerprints.txt, VERIFY.md): those that
        signed a revealed line, plus the exporter."""
        return self.signers | ({self.exporter} if self.exporter else set())


class _Root(_HasRoot):
    """Stands in for a vault for ``_check_tsrs`` (which resolves a TSA's ``ca`` path against ``root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root


def _why(exc: BaseException) -> str:
    """Why a file of the bag could not be used, in words: no errno number, path or Python repr."""
    if isinstance(exc, FileNotFoundError):
        return "file is missing"
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or 'I/O error'}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not {exc.encoding.upper()} text"
    if isinstance(exc, EvidenceVaultError):
        return exc.message
    return str(exc)


def _read_json(path: Path, report: Report, subject: str) -> Any:
    try:
        return json.loads(read_text(path, "utf-8"))
    except FileNotFoundError:
        report.fail("bundle.missing-file", subject, "file is missing")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        report.fail("bundle.malformed", subject, f"unreadable: {_why(exc)}")
    except RecursionError:
        report.fail("bundle.malformed", subject, "unreadable: JSON nested too deeply")
    return None


def _withheld_entry(raw: bytes, index: int, subject: str, report: Report) -> tuple[bytes, str] | None:
    """The (leaf hash, line hash) a withheld entry stands for, its problems reported; None if the line is
    no withheld entry."""
    fast = _STUB_LINE.fullmatch(raw)  # an entry as export writes it: no JSON parse needed
    if fast is not None:
        leaf_hex, line_hex, seq = (group.decode("ascii") for group in fast.groups())
        if int(seq) != index:
            report.fail("log.seq-mismatch", subject, f"withheld entry says seq {int(seq)}", seq=index)
        return bytes.fromhex(leaf_hex), "sha256:" + line_hex
    stub = _withheld(raw)
    if stub is None:
        return None
    ok = (
        set(stub) == _WITHHELD_KEYS
        and isinstance(stub.get("line_sha256"), str)
        and isinstance(stub.get("leaf_hash"), str)
        and _HEX64.match(stub["line_sha256"]) is not None
        and _HEX64.match(stub["leaf_hash"]) is not None
    )
    if not ok:
        report.fail("bundle.bad-withheld", subject, "withheld entry is malformed", seq=index)
        return merkle.leaf_hash(raw), line_hash(raw)
    if stub["seq"] != index:
        report.fail("log.seq-mismatch", subject, f"withheld entry says seq {stub['seq']}", seq=index)
    return bytes.fromhex(stub["leaf_hash"]), "sha256:" + stub["line_sha256"]


def _withheld(raw: bytes) -> dict[str, Any] | None:
    if b'"withheld"' not in raw:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and doc.get("withheld") is True else None


def _check_revealed(
    event: Event,
    is_canonical: bool,
    index: int,
    prev: str | None,
    root_before: bytes,
    state: EvidenceState,
    report: Report,
) -> None:
    """The per-line checks of ``verify`` (shared), for one revealed line of a bundle's log."""
    if index == 0 and isinstance(event.data.get("vault_id"), str):
        state.vault_id = event.data["vault_id"]
    check_event(event, is_canonical, index, prev, root_before, state.log, report, state.vault_id)


def check_log(ev_root: Path, report: Report, state: EvidenceState) -> None:
    """Walk ``evidence/log.jsonl``: revealed lines fully, withheld lines through their hashes. The log is
    streamed: memory holds 32 bytes a line (its leaf hash), and the revealed lines."""
    path = ev_root / "log.jsonl"
    try:
        fd, st = open_regular(path)
    except OSError:
        report.fail("bundle.missing-file", "evidence/log.jsonl", "the custody log is missing")
        return
    with os.fdopen(fd, "rb") as log:
        try:
            if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
                report.fail("log.torn-line", "evidence/log.jsonl", "last line is incomplete")
            _walk_log(log, report, state)
        except OSError as exc:
            report.fail("bundle.malformed", "evidence/log.jsonl", f"unreadable: {_why(exc)}")


def _walk_log(log: Iterable[bytes], report: Report, state: EvidenceState) -> None:
    prev: str | None = None
    acc = merkle.MerkleAccumulator()
    for index, text in enumerate(log):
        raw = text.removesuffix(b"\n")
        subject = line_subject(index)
        state.log.events += 1
        withheld = _withheld_entry(raw, index, subject, report)
        if withheld is not None:
            leaf, this_hash = withheld
            state.withheld += 1
            state.leaves.append(leaf)
            acc.append(leaf)
            state.log.line_hashes.append(this_hash)
            prev = this_hash
            continue
        this_hash = line_hash(raw)
        leaf = merkle.leaf_hash(raw)
        root_before = acc.root()
        acc.append(leaf)
        state.leaves.append(leaf)
        state.log.line_hashes.append(this_hash)
        try:
            event, is_canonical = parse_line(raw)
        except EvidenceVaultError as exc:
            report.fail("log.malformed", subject, exc.message, seq=index)
            prev = this_hash
            continue
        _check_revealed(event, is_canonical, index, prev, root_before, state, report)
        prev = this_hash
        state.revealed.add(index, raw)
        state.signers.add(event.actor)
    if state.log.line_hashes:
        report.head = {"seq": len(state.log.line_hashes) - 1, "hash": state.log.line_hashes[-1]}


def check_event_files(ev_root: Path, report: Report, state: EvidenceState) -> None:
    """``evidence/events/<seq>.json`` (+ ``.sig``) must be the exact signed bytes of each revealed event."""
    d = ev_root / "events"
    expected = {f"{seq}.json" for seq in state.revealed} | {f"{seq}.json.sig" for seq in state.revealed}
    present = {p.name for p in d.iterdir()} if d.is_dir() else set()
    for extra in sorted(present - expected):
        report.fail("bundle.event-file-mismatch", f"evidence/events/{extra}", "file for no revealed event")
    for seq, event in state.revealed.items():  # in log order
        subject = f"evidence/events/{seq}.json"
        try:
            body = read_bytes(d / f"{seq}.json")
            sig = unarmor(read_text(d / f"{seq}.json.sig", "ascii"))
        except (OSError, UnicodeDecodeError, EvidenceVaultError) as exc:
            which = Path(exc.filename).name if isinstance(exc, OSError) and exc.filename else "event files"
            report.fail("bundle.event-file-mismatch", subject, f"{which}: {_why(exc)}", seq=seq)
            continue
        try:
            same = body == event.signing_bytes() and sig == event.signature
        except EvidenceVaultError as exc:  # the log line itself is bad (reported by the log pass too)
            message = f"its log line cannot be signed: {exc}"
            report.fail("bundle.event-file-mismatch", subject, message, seq=seq)
            continue
        if not same:
            report.fail(
                "bundle.event-file-mismatch",
                subject,
                "differs from the signed event in evidence/log.jsonl",
                seq=seq,
            )


def _root_ok(d: Path, root: bytes) -> bool:
    try:
        return Checkpoint.parse(read_bytes(d / "checkpoint")).root == root
    except (OSError, EvidenceVaultError):
        return False


def _checkpoint_dirs(base: Path, report: Report) -> list[Path]:
    """The ``<size>/`` directories under ``base`` by size; anything else there is a FAIL naming it."""
    found: list[Path] = []
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        if p.is_dir() and not p.is_symlink() and _SIZE_DIR.match(p.name):
            found.append(p)
        else:
            report.fail(
                "bundle.malformed",
                f"evidence/checkpoints/{p.name}",
                "not a checkpoint directory (those are named by their tree size, in ASCII digits)",
            )
    return sorted(found, key=lambda p: int(p.name))


def check_checkpoints(
    ev_root: Path, report: Report, state: EvidenceState, tsa_roots: Sequence[bytes], *, hermetic: bool = False
) -> None:
    """Every ``evidence/checkpoints/<size>/``: root from the leaf hashes, signature, OTS and RFC 3161
    (``hermetic``: no TSA root of this machine, pinned or configured, counts)."""
    base = ev_root / "checkpoints"
    try:
        store = (
            HeaderStore.load(ev_root / "headers.json")
            if (ev_root / "headers.json").exists()
            else HeaderStore()
        )
    except EvidenceVaultError as exc:
        report.fail("anchors.bad-headers", "evidence/headers.json", f"block headers rejected: {exc.message}")
        store = HeaderStore()
    dirs = _checkpoint_dirs(base, report)
    for d in dirs:
        size = int(d.name)
        subject = f"evidence/checkpoints/{d.name}"
        n_lines = len(state.leaves)
        root = merkle.root_from_leaves(state.leaves, 0, size) if size <= n_lines else None
        text = check_checkpoint_dir(
            d,
            size,
            subject,
            n_lines=n_lines,
            root=root,
            record=state.log.checkpoints.get(size),
            authority=state.log.authority,
            report=report,
            sig_required=True,
        )
        if root is not None and _root_ok(d, root):
            state.checkpoint_sizes.append(size)  # the proofs may use it even if its event is missing
        if text is None:
            continue
        digest = hashlib.sha256(text).digest()
        before = len(report.findings)
        # Whoever checks a bag has no vault to upgrade: the exporter upgrades and exports again.
        ots_times = _check_ots(d, subject, digest, store, report, pending_hint=_PENDING_HINT)
        tsa_times = _check_tsrs(
            _Root(ev_root / ".no-vault"),
            d,
            subject,
            digest,
            report,
            tsa_roots,
            frozenset() if hermetic else pinned_tsa_roots(state.vault_id),
            user_config=not hermetic,
        )
        state.pending[size] = any(f.code == "anchors.ots-pending" for f in report.findings[before:])
        state.anchors[size] = [Anchor("bitcoin", _iso(t), p) for t, p in ots_times] + [
            Anchor("rfc3161", _iso(t), p) for t, p in tsa_times
        ]
        times = ots_times + tsa_times
        if times:
            state.anchored[size] = min(times)
        elif not (d / "checkpoint.ots").exists() and not any(d.glob("tsa-*.tsr")):
            report.warn("anchors.unstamped", subject, "checkpoint has no time proof")
    for size in sorted(state.log.checkpoints):
        if size not in state.checkpoint_sizes and not any(int(d.name) == size for d in dirs):
            report.warn(
                "checkpoint.dir-missing", line_subject(size), "checkpoint event without its directory"
            )


def check_proofs(ev_root: Path, report: Report, state: EvidenceState) -> None:
    """Inclusion proofs of the revealed events in the latest checkpoint; consistency between checkpoints."""
    roots = {s: merkle.root_from_leaves(state.leaves, 0, s) for s in state.checkpoint_sizes}
    if not state.checkpoint_sizes:
        report.warn(
            "proof.no-checkpoint", "evidence/checkpoints", "no checkpoint: nothing ties the log to a time"
        )
        return
    latest = max(state.checkpoint_sizes)
    doc = _read_json(ev_root / "proofs" / "inclusion.json", report, "evidence/proofs/inclusion.json")
    if isinstance(doc, dict):
        size = doc.get("tree_size")
        if size != latest:
            report.fail(
                "proof.wrong-checkpoint",
                "evidence/proofs/inclusion.json",
                f"proofs are for tree size {size!r}, not the latest checkpoint ({latest})",
            )
        proofs = doc.get("proofs") if isinstance(doc.get("proofs"), dict) else {}
        for seq, line in state.revealed.lines():  # in log order
            if seq >= latest:
                continue
            path = proofs.get(str(seq)) if isinstance(proofs, dict) else None
            subject = f"evidence/proofs/inclusion.json seq {seq}"
            if not isinstance(path, list):
                report.fail("proof.missing", subject, "no inclusion proof for this revealed event", seq=seq)
                continue
            try:
                hashes = [bytes.fromhex(str(h)) for h in path]
            except ValueError:
                hashes = []
            if not merkle.verify_inclusion(merkle.leaf_hash(line), seq, latest, hashes, roots[latest]):
                report.fail(
                    "proof.inclusion-invalid",
                    subject,
                    f"event is not included in checkpoint {latest} by this proof",
                    seq=seq,
                )
    cons = _read_json(ev_root / "proofs" / "consistency.json", report, "evidence/proofs/consistency.json")
    table = (
        {
            (c["old_size"], c["new_size"]): c.get("proof")
            for c in cons
            if isinstance(c, dict) and type(c.get("old_size")) is int and type(c.get("new_size")) is int
        }
        if isinstance(cons, list)
        else {}
    )
    sizes = sorted(state.checkpoint_sizes)
    for old, new in itertools.pairwise(sizes):
        proof = table.get((old, new))
        try:
            cons_path: list[bytes] | None = (
                [bytes.fromhex(str(h)) for h in proof] if isinstance(proof, list) else None
            )
        except ValueError:
            cons_path = None
        if cons_path is None or not merkle.verify_consistency(old, new, roots[old], roots[new], cons_path):
            report.fail(
                "proof.consistency-invalid",
                "evidence/proofs/consistency.json",
                f"no valid consistency proof from checkpoint {old} to {new}",
            )


def _check_allowed_signers(
    named: dict[str, PublicKey] | None, signers: set[str], auth: Authority, report: Report
) -> None:
    """``allowed_signers`` must list every signer (and no one else) with the key the log authorized."""
    if named is None:
        return  # unreadable: reported
    if set(named) != signers:
        extra, missing = sorted(set(named) - signers), sorted(signers - set(named))
        report.fail(
            "bundle.keys-mismatch",
            "evidence/keys/allowed_signers",
            f"names {', '.join(extra) or 'no other keys'} beyond the signers and the exporter; lacks "
            f"{', '.join(missing) or 'none'}",
        )
    for principal, key in named.items():
        grant = auth.keys.get(principal)
        if key.fingerprint != principal or grant is None or PublicKey.from_openssh(grant.public_key) != key:
            report.fail(
                "bundle.keys-mismatch",
                "evidence/keys/allowed_signers",
                f"key listed for {principal} is not the key the log authorized for it",
            )


def _check_pub_files(ev_root: Path, signers: set[str], report: Report) -> None:
    """``keys/*.pub`` must be exactly one public key file per signer."""
    pubs = sorted((ev_root / "keys").glob("*.pub")) if (ev_root / "keys").is_dir() else []
    seen: set[str] = set()
    for p in pubs:
        try:
            key = PublicKey.from_openssh(read_text(p, "utf-8").strip())
        except (OSError, UnicodeDecodeError, EvidenceVaultError) as exc:
            report.fail("bundle.keys-mismatch", f"evidence/keys/{p.name}", f"unreadable key: {_why(exc)}")
            continue
        seen.add(key.fingerprint)
        if key.fingerprint not in signers:
            report.fail(
                "bundle.keys-mismatch", f"evidence/keys/{p.name}", f"{key.fingerprint} signed nothing here"
            )
    missing = sorted(signers - seen)
    if missing:
        report.fail(
            "bundle.keys-mismatch",
            "evidence/keys",
            f"no public key file for {', '.join(missing)}, which signed revealed lines or the bag",
        )


def check_keys(bag_root: Path, report: Report, state: EvidenceState) -> None:
    """The keys the bag names must be exactly the keys that signed its revealed events, plus the exporter."""
    ev_root = bag_root / EVIDENCE
    auth = state.log.authority
    signers = state.named_keys()
    subject = "evidence/keys/allowed_signers"
    named = None
    try:
        named = parse_allowed_signers(read_text(ev_root / "keys" / "allowed_signers", "utf-8"))
    except FileNotFoundError:
        report.fail("bundle.missing-file", subject, "file is missing: no list of the keys that may sign")
    except (OSError, UnicodeDecodeError, EvidenceVaultError) as exc:
        report.fail("bundle.keys-mismatch", subject, f"unreadable: {_why(exc)}")
    _check_allowed_signers(named, signers, auth, report)
    _check_pub_files(ev_root, signers, report)
    try:
        verify_md = read_text(bag_root / "VERIFY.md", "utf-8")
    except (OSError, UnicodeDecodeError):
        report.fail("bundle.missing-file", "VERIFY.md", "VERIFY.md is missing or unreadable")
        return
    in_md = set(FINGERPRINT_RE.findall(verify_md))
    if in_md != signers:
        report.fail(
            "bundle.keys-mismatch",
            "VERIFY.md",
            "fingerprints in VERIFY.md are not exactly the keys that signed (lines, or the bag): "
            f"extra {sorted(in_md - signers)}, missing {sorted(signers - in_md)}",
        )


def check_openings(ev_root: Path, report: Report, state: EvidenceState) -> None:
    """Revealed metadata values must open the commitments signed in the ingest events."""
    for item, rec in state.log.items.items():
        hex_id = item.removeprefix("sha256:")
        subject = f"evidence/openings/{hex_id}.json"
        values: dict[str, Any] = {}
        path = ev_root / "openings" / f"{hex_id}.json"
        doc = _read_json(path, report, subject) if path.exists() else {}
        if not isinstance(doc, dict):
            report.fail("bundle.malformed", subject, "openings file is not a JSON object", item=item)
            doc = {}
        for name, opening in doc.items():
            commitment = rec.committed.get(name)
            if commitment is None:
                report.fail(
                    "metadata.opening-unknown", subject, f"no signed commitment for field {name!r}", item=item
                )
            elif not isinstance(opening, dict) or not commitments.opens(commitment, opening):
                report.fail(
                    "metadata.commitment-mismatch",
                    subject,
                    f"value of {name!r} does not match its signed commitment",
                    item=item,
                )
            else:
                values[name] = opening["value"]
        meta_path = ev_root / "metadata" / f"{hex_id}.json"
        if meta_path.exists() and rec.metadata:
            got = hash_file(meta_path)
            if got.id != rec.metadata:
                report.fail(
                    "metadata.hash-mismatch",
                    f"evidence/metadata/{hex_id}.json",
                    "metadata object is not the one the ingest event signed",
                    item=item,
                )
        state.openings[item] = values


def check_evidence(
    bag_root: Path, report: Report, *, tsa_roots: Sequence[bytes] = (), hermetic: bool = False
) -> EvidenceState:
    """All checks of ``evidence/`` (no payload, no BagIt): used by verify-bundle and the custody report.
    ``hermetic``: the verdict depends on the bag alone (no TSA root of this machine counts, and no
    ``tsa_roots`` may be given), as for the report.html an export ships."""
    if hermetic and tsa_roots:
        raise ValueError("a hermetic check takes no TSA roots")
    ev_root = bag_root / EVIDENCE
    state = EvidenceState()
    export = _read_json(ev_root / "export.json", report, "evidence/export.json")
    if export is not None and not isinstance(export, dict):
        report.fail("bundle.malformed", "evidence/export.json", "not a JSON object")
    state.export = export if isinstance(export, dict) else {}
    check_log(ev_root, report, state)
    check_event_files(ev_root, report, state)
    check_checkpoints(ev_root, report, state, tsa_roots, hermetic=hermetic)
    check_proofs(ev_root, report, state)
    check_openings(ev_root, report, state)
    return state


def signed_vault_name(state: EvidenceState) -> str | None:
    """The vault name the bag's signed ``vault.created`` line (seq 0) gives, if it is revealed."""
    genesis = state.revealed.get(0)
    if genesis is None or genesis.type != ev.VAULT_CREATED:
        return None
    name = genesis.data.get("name")
    return name if isinstance(name, str) else None


def check_bag_info(bag_root: Path, report: Report, state: EvidenceState) -> None:
    """bag-info.txt holds the labels an export writes, each once, with what the verified log gives:
    ``Source-Organization`` = the vault name of the signed ``vault.created`` line, ``External-Identifier``
    = its vault id; ``Internal-Sender-Identifier`` and ``Bag-Group-Identifier`` = ``export.json``'s
    ``export_id``. Nothing else is in it (a label no one checks could claim anything)."""
    subject = "bag-info.txt"
    if not (bag_root / subject).is_file():
        report.fail("bundle.missing-file", subject, "bag-info.txt is missing")
        return
    try:
        info = read_bag_info(bag_root)
    except EvidenceVaultError as exc:
        report.fail("bundle.malformed", subject, exc.message)
        return
    for label in sorted(set(info) - set(BAG_INFO_LABELS)):
        report.fail(
            "bundle.export-mismatch",
            subject,
            f"label {short(label)} is not one an evidence-vault export writes (nothing checks it)",
        )
    name = signed_vault_name(state)
    export_id = state.export.get("export_id")
    expected: dict[str, tuple[str | None, str]] = {
        "Source-Organization": (
            None if name is None else bag_info_value(name),
            "the vault name the signed vault.created line gives",
        ),
        "External-Identifier": (state.vault_id, "the vault id the signed vault.created line gives"),
        "External-Description": (external_description(len(state.log.items)), "what the export writes"),
        "Internal-Sender-Identifier": (
            export_id if isinstance(export_id, str) else None,
            "the export_id of evidence/export.json",
        ),
        "Bag-Group-Identifier": (
            export_id if isinstance(export_id, str) else None,
            "the export_id of evidence/export.json",
        ),
        "Bag-Count": ("1 of 1", "what the export writes"),
        "Bag-Software-Agent": (SOFTWARE_AGENT, "what the export writes"),
    }
    for label in BAG_INFO_LABELS:
        values = info.get(label, [])
        if label in ("Payload-Oxum", EXPORTER_LABEL):
            continue  # the BagIt validator checks it (bag.bag-info.*); check_exporter the exporter
        if len(values) != 1:
            report.fail(
                "bundle.export-mismatch",
                subject,
                f"{label} is there {len(values)} times: an export writes it once",
            )
            continue
        value = values[0]
        if label == "Bagging-Date":
            if not _DATE.match(value):
                report.fail("bundle.export-mismatch", subject, f"Bagging-Date {short(value)} is no date")
            continue
        want, what = expected[label]
        if want is None:
            if label == "Source-Organization":
                report.fail(
                    "bundle.export-mismatch",
                    subject,
                    f"{label} cannot be checked: no signed vault.created line in the log gives a name",
                )
            continue  # a missing vault id or export_id is reported where it is missing
        if value != want:
            report.fail(
                "bundle.export-mismatch", subject, f"{label} is {short(value)}, not {what} ({short(want)})"
            )


def check_exporter(bag_root: Path, report: Report, state: EvidenceState) -> None:
    """The exporter's signature over the exact bytes of ``tagmanifest-sha256.txt`` (which lists the
    SHA-256 of every tag file, ``manifest-sha256.txt`` and so the payload among them): ``bag-info.txt``
    names the key (``Evidence-Vault-Exporter``), the revealed log gives it (never a file of the bag
    alone), and it must be authorized, not revoked, at the bag's last revealed line. Without this, anyone
    handling the bag could withhold more lines and make the tag manifest again."""
    try:
        values = read_bag_info(bag_root).get(EXPORTER_LABEL, [])
    except EvidenceVaultError:
        values = []  # an unreadable bag-info.txt is reported by check_bag_info
    auth = state.log.authority
    fp = values[0] if len(values) == 1 else ""
    grant = auth.keys.get(fp) if FINGERPRINT_RE.fullmatch(fp) else None
    if grant is not None:
        state.exporter = fp  # its keys files are expected, signature or not
    sig_path = bag_root / BAG_SIGNATURE
    if len(values) != 1 or not os.path.lexists(sig_path):
        missing = []
        if len(values) != 1:
            missing.append(f"bag-info.txt gives {EXPORTER_LABEL} {len(values)} times, not once")
        if not os.path.lexists(sig_path):
            missing.append(f"{BAG_SIGNATURE} is missing")
        report.fail(
            "bundle.unsigned",
            BAG_SIGNATURE,
            f"the bag is not signed by its exporter ({'; '.join(missing)}): anyone who handled it could "
            "have withheld more log lines and made the tag manifest again",
        )
        return
    if grant is None:
        report.fail(
            "bundle.exporter-unauthorized",
            "bag-info.txt",
            f"{EXPORTER_LABEL} {short(fp)} is not a key the revealed log authorizes: the bag's signature "
            "cannot be checked",
        )
        return
    if not os.path.isfile(bag_root / "tagmanifest-sha256.txt"):
        return  # nothing to check the signature over: check_required_files reports it
    try:
        blob = unarmor(read_text(sig_path, "ascii"))
        verify_signature(blob, read_bytes(bag_root / "tagmanifest-sha256.txt"), auth.public_key(fp))
    except (OSError, UnicodeDecodeError, EvidenceVaultError) as exc:
        report.fail(
            "bundle.bad-signature",
            BAG_SIGNATURE,
            f"is not a signature of tagmanifest-sha256.txt by the exporter {fp} ({_why(exc)}): the bag was "
            "changed after it was signed",
        )
        return
    if grant.revoked_seq is not None:
        report.fail(
            "bundle.exporter-unauthorized",
            BAG_SIGNATURE,
            f"the exporter {fp} ({short(grant.name)}) was revoked at seq {grant.revoked_seq}: it may not "
            "sign for this vault at the bag's last line",
        )
        return
    report.add(
        "INFO",
        "bundle.signed",
        BAG_SIGNATURE,
        f"the bag (its tag manifest, which covers every file) is signed by its exporter {fp} "
        f"({grant.role}, {short(grant.name)}), a key the revealed log authorizes",
    )


def _required_file(bag_root: Path, rel: str, report: Report, missing: str) -> bytes | None:
    """The bytes of a file every bag has; None, with a FAIL naming it, if it is missing or unreadable."""
    try:
        return read_bytes(bag_root / rel)
    except FileNotFoundError:
        report.fail("bundle.missing-file", rel, missing)
    except OSError as exc:
        report.fail("bundle.malformed", rel, f"unreadable: {exc}")
    return None


def check_fingerprints_txt(bag_root: Path, report: Report, state: EvidenceState) -> None:
    """``evidence/keys/fingerprints.txt`` must list exactly the keys that signed (revealed lines, or the bag:
    the exporter), as the log names them."""
    subject = "evidence/keys/fingerprints.txt"
    got = _required_file(bag_root, subject, report, "file is missing")
    if got is None:
        return
    want = fingerprints_text(state.named_keys(), state.log.authority).encode()
    if got != want:
        have, need = got.splitlines(), want.splitlines()
        extra = [short(x.decode("utf-8", "backslashreplace")) for x in have if x not in need]
        missing = [short(x.decode()) for x in need if x not in have]
        report.fail(
            "bundle.keys-mismatch",
            subject,
            "is not exactly the keys that signed (lines, or the bag), with the role and name the log gives "
            "them: "
            f"extra {', '.join(extra[:5]) or 'none'}; missing {', '.join(missing[:5]) or 'none'}",
        )


_EXPORT_FIELDS = frozenset(
    {
        "v",
        "type",
        "export_id",
        "created",
        "vault_id",
        "vault_name",
        "genesis_key",
        "log_size",
        "checkpoints",
        "redacted_fields",
        "items",
    }
)
_EXPORT_ITEM_FIELDS = ("id", "path", "size", "media_type", "ingest_seq")


def _same(got: Any, want: Any) -> bool:
    """Equal as JSON (``True`` is not ``1``)."""
    return json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


def _shipped_checkpoints(ev_root: Path) -> list[int]:
    base = ev_root / "checkpoints"
    if not base.is_dir():
        return []
    return sorted(
        int(p.name) for p in base.iterdir() if _SIZE_DIR.match(p.name) and p.is_dir() and not p.is_symlink()
    )


def check_export_doc(bag_root: Path, report: Report, state: EvidenceState) -> None:
    """Every field of ``evidence/export.json`` that the verified log and evidence determine must say
    what they do (``bundle.export-mismatch`` naming the field); ``export_id`` and ``created`` are the
    exporter's word alone (informational: the export id is in bag-info.txt too)."""
    doc = state.export
    if not doc:
        return  # missing or not an object: reported
    subject = "evidence/export.json"

    def fail(message: str) -> None:
        report.fail("bundle.export-mismatch", subject, message)

    extra, missing = sorted(set(doc) - _EXPORT_FIELDS), sorted(_EXPORT_FIELDS - set(doc))
    if extra:
        fail(f"fields {', '.join(short(f) for f in extra[:5])} are not ones an export writes")
    if missing:
        fail(f"lacks the fields {', '.join(missing)}")
    withheld: set[str] = set()
    for item, rec in state.log.items.items():
        withheld |= set(rec.committed) - set(state.openings.get(item, {}))
    derived: dict[str, tuple[Any, str]] = {
        "v": (1, "the format version"),
        "type": ("evidence-vault-export", "the document type"),
        "vault_id": (state.vault_id, "the vault id of the signed vault.created line"),
        "vault_name": (signed_vault_name(state), "the vault name of the signed vault.created line"),
        "genesis_key": (state.log.authority.genesis, "the key of the signed vault.created line"),
        "log_size": (state.log.events, "the number of lines in evidence/log.jsonl"),
        "checkpoints": (_shipped_checkpoints(bag_root / EVIDENCE), "the sizes in evidence/checkpoints/"),
        "redacted_fields": (sorted(withheld), "the signed metadata fields the bag does not open"),
    }
    for name, (want, what) in derived.items():
        if name in doc and want is not None and not _same(doc[name], want):
            fail(f"field {name!r} is {short(doc[name])}, not {what} ({short(want)})")
    if "export_id" in doc and not isinstance(doc["export_id"], str):
        fail(f"field 'export_id' is {short(doc['export_id'])}, not a string")
    if "created" in doc and not (isinstance(doc["created"], str) and _TIME.match(doc["created"])):
        fail(f"field 'created' is {short(doc['created'])}, not a time (YYYY-MM-DDTHH:MM:SS.sssZ)")
    if "items" in doc:
        _check_export_items(doc["items"], state, fail)


def _check_export_items(items: Any, state: EvidenceState, fail: Callable[[str], None]) -> None:
    """``items``: one entry per item ingested in the revealed log, with its signed size, media type and
    ingest seq (``path`` is checked against ``data/`` by :func:`check_payload`)."""
    if not isinstance(items, list):
        fail("field 'items' is not a list")
        return
    seen: set[str] = set()
    for n, entry in enumerate(items):
        where = f"field 'items' entry {n}"
        if not isinstance(entry, dict):
            fail(f"{where} is not an object")
            continue
        if sorted(entry) != sorted(_EXPORT_ITEM_FIELDS):
            fail(f"{where} does not have exactly the fields {', '.join(_EXPORT_ITEM_FIELDS)}")
        item = entry.get("id")
        if not isinstance(item, str) or item not in state.log.items:
            fail(f"{where}: {short(item)} is not an item ingested in the revealed log")
            continue
        if item in seen:
            fail(f"{where}: item {item} is listed twice")
            continue
        seen.add(item)
        rec = state.log.items[item]
        ingest = state.revealed.get(rec.seq)
        signed = {
            "size": rec.size,
            "ingest_seq": rec.seq,
            "media_type": ingest.data.get("media_type") if ingest is not None else None,
        }
        for name, want in signed.items():
            if name in entry and not _same(entry[name], want):
                fail(
                    f"{where} ({item}): {name!r} is {short(entry[name])}, not what its signed ingest "
                    f"line gives ({short(want)})"
                )
    for item, _rec in state.log.items.items():
        if item not in seen:
            fail(f"field 'items' lacks item {item}, which the revealed log ingests")


#: Files every evidence-vault bag has that no other check reads (VERIFY.md, bag-info.txt and the
#: evidence/ files are required where they are checked).
REQUIRED_FILES = {
    "manifest-sha256.txt": "the payload manifest (VERIFY.md checks data/ with it)",
    "tagmanifest-sha256.txt": "the tag manifest, which binds evidence/ (log, keys, proofs) to the bag",
    "verify_bundle.py": "the stdlib-only checking script VERIFY.md runs",
}


def check_required_files(bag_root: Path, report: Report) -> None:
    """An evidence-vault bag always has these files (BagIt makes a tag manifest optional: ours is not)."""
    for name, what in REQUIRED_FILES.items():
        if not os.path.isfile(bag_root / name):
            report.fail("bundle.missing-file", name, f"{name} is missing: {what}")


def check_bag_files(bag_root: Path, report: Report, state: EvidenceState) -> None:
    """Every file of the bag must be one an export writes (``bundle.unexpected-file`` naming it
    otherwise: nothing else checks it, and it could claim anything), and none a symbolic link (an export
    writes none). The payload files are :func:`check_payload`'s, ``evidence/events/`` is
    :func:`check_event_files`' and the entries right under ``evidence/checkpoints/`` are
    :func:`_checkpoint_dirs`'."""
    ev_dir = EVIDENCE
    items = {item.removeprefix("sha256:"): rec for item, rec in state.log.items.items()}
    expected = set(BAG_TOP_FILES) | {
        f"{ev_dir}/{name}"
        for name in (
            "log.jsonl",
            "export.json",
            "headers.json",
            "keys/allowed_signers",
            "keys/fingerprints.txt",
            *(f"keys/{key_file_name(fp)}" for fp in state.named_keys()),
            *(f"openings/{hex_id}.json" for hex_id in items),
            *(f"metadata/{hex_id}.json" for hex_id, rec in items.items() if rec.metadata),
        )
    }
    if _shipped_checkpoints(bag_root / EVIDENCE):
        expected |= {f"{ev_dir}/proofs/inclusion.json", f"{ev_dir}/proofs/consistency.json"}
    checkpoints = f"{ev_dir}/checkpoints"
    for dirpath, dirnames, filenames in os.walk(bag_root):  # never into a symbolic link
        base = Path(dirpath).relative_to(bag_root).as_posix()
        prefix = "" if base == "." else base + "/"
        in_checkpoint = base.startswith(checkpoints + "/") and _SIZE_DIR.match(base.split("/")[2])
        shipped = checkpoint_files(filenames) if in_checkpoint and base.count("/") == 2 else set()
        for name in sorted(dirnames + filenames):
            rel = prefix + name
            if os.path.islink(os.path.join(dirpath, name)):
                report.fail("bundle.unexpected-file", rel, "a symbolic link: an export writes none")
            elif name in dirnames or base == checkpoints:
                continue  # a directory; or right under checkpoints/: _checkpoint_dirs reports it
            elif base == "data" or base.startswith(("data/", f"{ev_dir}/events")):
                continue  # the payload, and the signed-bytes files: checked elsewhere
            elif (name not in shipped) if in_checkpoint else (rel not in expected):
                report.fail(
                    "bundle.unexpected-file",
                    rel,
                    "not a file an evidence-vault export writes: nothing checks what it says",
                )


def check_payload(bag_root: Path, report: Report, state: EvidenceState) -> dict[str, str]:
    """Every file under data/ must be an exported item, and every exported item present: path -> item."""
    found: dict[str, str] = {}
    data = bag_root / "data"
    walk = data.is_dir() and not data.is_symlink()  # a link (to /, say) is reported, never walked
    files = sorted(p for p in data.rglob("*") if p.is_file() and not p.is_symlink()) if walk else []
    for p in files:
        rel = p.relative_to(bag_root).as_posix()
        digest = hash_file(p)
        rec = state.log.items.get(digest.id)
        if rec is None:
            report.fail(
                "bundle.payload-not-an-item",
                rel,
                f"content {digest.id} is not an item ingested in the revealed log",
            )
            continue
        if rec.size != digest.size:
            report.fail(
                "object.size-mismatch", rel, f"size {digest.size}, recorded {rec.size}", item=digest.id
            )
        found[rel] = digest.id
    for item in state.log.items:
        if item not in found.values():
            report.fail(
                "bundle.item-missing", "data/", f"item {item} is in the log but not in data/", item=item
            )
    for entry in state.export.get("items", []) if isinstance(state.export.get("items"), list) else []:
        if isinstance(entry, dict) and found.get(str(entry.get("path"))) != entry.get("id"):
            report.fail(
                "bundle.export-mismatch",
                "evidence/export.json",
                f"{entry.get('path')!r} is not item {entry.get('id')}",
            )
    return found


def check_report_html(
    bag_root: Path,
    report: Report,
    state: EvidenceState,
    found: dict[str, str],
    evidence_findings: Sequence[Finding],
) -> None:
    """``report.html`` must be, byte for byte, the report an export renders from this bag: from its
    ``evidence/`` checked with no TSA root of this machine (what the bag proves by itself), at
    ``export.json``'s ``created`` time, with the thumbnails of the files in ``data/``
    (``bundle.report-mismatch`` otherwise: its names, dates or verdict were changed)."""
    from .custody_report import bag_report, encode_report, render_checked

    subject = "report.html"
    got = _required_file(bag_root, subject, report, "the custody report is missing")
    if got is None:
        return
    made = state.export.get("created")
    if not isinstance(made, str):
        report.fail(
            "bundle.report-mismatch", subject, "cannot be rendered again: export.json gives no creation time"
        )
        return
    entries = state.export.get("items")
    names = {
        e["id"]: e["path"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("path"), str)
    }
    thumbs = {item: bag_root / rel for rel, item in found.items()}
    if any((bag_root / EVIDENCE / "checkpoints").glob("*/tsa-*.tsr")):
        # This run's verdict on an RFC 3161 token may rest on roots of this machine or --tsa-ca: the
        # report rests on the bag alone, so check it again that way.
        want = bag_report(bag_root, thumbs, names=names, made=made)
    else:  # nothing in this run's check of evidence/ depended on this machine
        want = encode_report(render_checked(state, evidence_findings, thumbs=thumbs, names=names, made=made))
    if got != want:
        have, need = got.split(b"\n"), want.split(b"\n")
        line = next((n for n, (a, b) in enumerate(zip(have, need, strict=False)) if a != b), len(need)) + 1
        report.fail(
            "bundle.report-mismatch",
            subject,
            f"is not the report this bag's verified evidence renders to (line {line} differs): it was "
            "changed after the export; rely on verify-bundle's findings, not on it",
        )


def _note_withheld(report: Report, state: EvidenceState) -> None:
    """Say (INFO: no effect on the outcome) what withheld lines leave unchecked."""
    if not state.withheld:
        return
    report.add(
        "INFO",
        "bundle.withheld-lines",
        "evidence/log.jsonl",
        f"{state.withheld} of {state.log.events} log lines are withheld (hashes only): who was "
        "authorized was judged on the revealed key events alone, since a withheld line's type cannot be "
        "checked (it could be a key revocation); see the earliest proven time of each file, or ask for "
        "a full export",
    )


def verify_bundle(
    path: Path,
    *,
    trusted: Sequence[str] = (),
    tsa_roots: Sequence[bytes] = (),
    extract_to: Path | None = None,
) -> Report:
    """Verify a bag directory or a bag zip offline; ``extract_to`` (must not exist) keeps a zip's contents."""
    path = Path(path)
    report = Report(target=str(path), kind="bundle", started=utc_now())
    if not path.exists():
        raise UsageError("no such bag", path=path)
    if path.is_file():
        tmp_parent: Path | None = None
        if extract_to is None:
            tmp_parent = Path(tempfile.mkdtemp(prefix="evidence-vault-bundle-"))
            extract_to = tmp_parent / "bag"
        try:
            try:
                root = safe_extract(path, extract_to)
            except (UnsafeZipError, DamagedZipError) as exc:
                # A verdict on the zip. Not a zip at all, or a disk that fills up (StorageError): raised.
                code = "bundle.unsafe-zip" if isinstance(exc, UnsafeZipError) else "bundle.unreadable-zip"
                report.fail(code, str(path), exc.message)
                report.finished = utc_now()
                return report
            require_bag(root, path)
            return _verify_dir(root, report, trusted, tsa_roots)
        finally:
            if tmp_parent is not None:
                shutil.rmtree(tmp_parent, ignore_errors=True)
    if not path.is_dir():
        raise BagError("neither a bag directory nor a zip file", path=path)
    require_bag(path, path)
    return _verify_dir(path, report, trusted, tsa_roots)


def require_bag(root: Path, given: Path) -> None:
    """A :class:`BagError` (exit 2: nothing to check) if ``root`` holds none of what a bag holds
    (``bagit.txt``, ``data/``, ``evidence/``): a folder of photos named by mistake, or a zip of one, is no
    bag that fails. A bag that lacks some of them is checked, and its findings say what is missing.
    ``given``: the path the user gave (the zip, for an extracted one)."""
    if not any(os.path.lexists(root / name) for name in ("bagit.txt", "data", EVIDENCE)):
        inside = " in the zip" if given != root else ""
        raise BagError(f"not a BagIt bag (no bagit.txt, data/ or evidence/{inside})", path=given)


def _verify_dir(root: Path, report: Report, trusted: Sequence[str], tsa_roots: Sequence[bytes]) -> Report:
    from .verify import check_trust

    counted: dict[str, int] = {}
    for f in validate_bag(root, stats=counted):
        if f.level == "error":
            report.fail(f"bag.{f.code}", f.path or ".", f.message)
        else:
            report.warn(f"bag.{f.code}", f.path or ".", f.message)
    before = len(report.findings)
    state = check_evidence(root, report, tsa_roots=tsa_roots)
    evidence_findings = report.findings[before:]
    report.vault_id = state.vault_id
    report.vault_name = signed_vault_name(state)
    check_bag_info(root, report, state)
    check_exporter(root, report, state)
    found = check_payload(root, report, state)
    check_export_doc(root, report, state)
    check_keys(root, report, state)
    check_fingerprints_txt(root, report, state)
    check_required_files(root, report)
    check_bag_files(root, report, state)
    check_report_html(root, report, state, found, evidence_findings)
    check_trust(report, state.log, trusted=trusted, pins=None, vault_id=state.vault_id)
    _note_withheld(report, state)
    _item_times(state.log, report, state.anchored)
    report.stats = {
        "events": state.log.events,
        "revealed": len(state.revealed),
        "withheld": state.withheld,
        "items": len(state.log.items),
        "keys": len(state.signers),
        "checkpoints": len(state.checkpoint_sizes),
        "bytes_hashed": counted.get("bytes_hashed", 0),
    }
    report.finished = utc_now()
    return report
