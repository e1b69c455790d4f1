"""Verification of checkpoints on disk and their time proofs (OpenTimestamps, RFC 3161), offline.

Every ``checkpoints/<size>/`` directory is checked against the log itself (the root recomputed from
the first ``size`` lines), its detached signature, its OpenTimestamps proof against the stored block
headers, and its RFC 3161 tokens against the TSA trust anchor at genTime. Then each item gets the
earliest time it is proven to have existed: the earliest anchor of any checkpoint after its ingest.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .checkpoint import Checkpoint
from .errors import EvidenceVaultError
from .regular_files import read_bytes, read_text
from .report import Report
from .signing import unarmor, verify_signature
from .timestamps.headers import HeaderStore

if TYPE_CHECKING:
    from .authority import Authority
    from .vault import Vault
    from .verify import CheckpointRecord, LogState


class _HasRoot(Protocol):
    """Anything with a ``root`` directory that TSA ``ca`` paths are relative to (a vault, a proof dir)."""

    root: Path


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_checkpoint_dir(
    d: Path,
    size: int,
    subject: str,
    *,
    n_lines: int,
    root: bytes | None,
    record: CheckpointRecord | None,
    authority: Authority,
    report: Report,
    sig_required: bool,
) -> bytes | None:
    """The checks of one ``checkpoints/<size>/`` shared by vault and bundle verification.

    The text must parse and be of its directory's size, cover no more than the log's ``n_lines``,
    have the Merkle ``root`` recomputed from the log, match its ``checkpoint`` event, and carry a
    detached signature by that event's signer. Returns the text when its time proofs are worth
    checking, else None.
    """
    try:
        text = read_bytes(d / "checkpoint")
        cp = Checkpoint.parse(text)
    except OSError:
        report.fail("checkpoint.missing-text", subject, "checkpoint text is missing")
        return None
    except EvidenceVaultError as exc:
        report.fail("checkpoint.malformed", subject, exc.message)
        return None
    if cp.size != size:
        report.fail("checkpoint.bad-size", subject, f"directory is for size {size}, text says {cp.size}")
        return None
    if size > n_lines:
        report.fail(
            "log.rollback",
            subject,
            f"a checkpoint covers {size} log lines but the log has only {n_lines}: "
            "events after it were removed (rollback)",
        )
        return None
    if root != cp.root:
        report.fail(
            "checkpoint.root-mismatch",
            subject,
            f"root does not match the first {size} lines of the log (history rewritten)",
        )
        return None
    if record is None:
        report.fail(
            "checkpoint.unrecorded",
            subject,
            "checkpoint has no checkpoint event in the log (event removed or withheld)",
        )
        return None
    if record.data.get("root") != cp.root.hex() or record.data.get("origin") != cp.origin:
        report.fail("checkpoint.text-mismatch", subject, "checkpoint text differs from its log event")
        return None
    try:
        sig = unarmor(read_text(d / "checkpoint.sig", "ascii"))
        verify_signature(sig, text, authority.public_key(record.actor))
    except FileNotFoundError:
        if sig_required:
            report.fail("checkpoint.bad-signature", subject, "checkpoint.sig is missing")
        else:
            report.warn(
                "checkpoint.sig-missing", subject, "detached checkpoint.sig is missing (the log has it)"
            )
    except (EvidenceVaultError, KeyError, UnicodeDecodeError) as exc:
        report.fail("checkpoint.bad-signature", subject, f"checkpoint.sig: {exc}")
    except OSError as exc:
        report.fail("checkpoint.bad-signature", subject, f"checkpoint.sig: cannot read: {exc.strerror}")
    return text


def check_anchors(
    vault: Vault,
    state: LogState,
    report: Report,
    sizes: Sequence[int],
    *,
    tsa_roots: Sequence[bytes] = (),
    pinned: frozenset[str] = frozenset(),
) -> None:
    """Check every checkpoint directory and attach per-item proof times to ``report.items``.

    ``pinned``: the SHA-256 of the TSA roots this machine pinned for the vault (see :func:`_tsa_anchor`).
    """
    from .checkpoint import checkpoint_dir, headers_path

    n_lines = len(state.line_hashes)
    try:
        store = HeaderStore.load(headers_path(vault))
    except EvidenceVaultError as exc:
        report.fail(
            "anchors.bad-headers", "checkpoints/headers.json", f"stored block headers rejected: {exc.message}"
        )
        store = HeaderStore()
    anchored: dict[int, tuple[float, str]] = {}  # size -> (earliest time, which proof)
    queued: set[int] | None = None  # read once, when a checkpoint has no proof
    for size in sizes:
        d = checkpoint_dir(vault, size)
        subject = f"checkpoints/{d.name}"
        has_proofs = (d / "checkpoint.ots").exists() or any(d.glob("tsa-*.tsr"))
        record = state.checkpoints.get(size)
        if record is None and not has_proofs and size <= n_lines and state.roots_at.get(size) is not None:
            report.warn(
                "checkpoint.interrupted",
                subject,
                "checkpoint was written but never recorded (interrupted); harmless",
            )
            continue
        text = check_checkpoint_dir(
            d,
            size,
            subject,
            n_lines=n_lines,
            root=state.roots_at.get(size),
            record=record,
            authority=state.authority,
            report=report,
            sig_required=False,
        )
        if text is None:
            continue
        digest = hashlib.sha256(text).digest()
        times = _check_ots(d, subject, digest, store, report)
        times += _check_tsrs(vault, d, subject, digest, report, tsa_roots, pinned)
        if times:
            anchored[size] = min(times)
        elif not has_proofs:
            if queued is None:
                queued = _queued_for_ots(vault)
            report.warn(
                "anchors.unstamped",
                subject,
                "checkpoint has no time proof yet: it is queued, and `evidence-vault stamp` or `upgrade` "
                "submits it again when the calendars can be reached"
                if size in queued
                else "checkpoint has no time proof yet: run `evidence-vault stamp`",
            )
    on_disk = set(sizes)
    for size in sorted(set(state.checkpoints) - on_disk):
        report.warn(
            "checkpoint.dir-missing",
            f"checkpoints/{checkpoint_dir(vault, size).name}",
            f"the checkpoint recorded at seq {size} has no directory: its time proofs are gone"
            " (`evidence-vault stamp` writes the latest one again and stamps it)",
            seq=size,
        )
    _item_times(state, report, anchored)


def _queued_for_ots(vault: Vault) -> set[int]:
    """The checkpoint sizes ``stamp`` has queued for OpenTimestamps (``checkpoints/queue.json``), read
    only: what cannot be read counts as not queued (``stamp`` sets such a file aside and rebuilds it)."""
    from .checkpoint import parse_queue, queue_path

    try:
        queue = parse_queue(read_bytes(queue_path(vault), limit=1 << 24))
    except OSError:
        return set()
    return set((queue or {}).get("ots", []))


def _check_ots(
    d: Path,
    subject: str,
    digest: bytes,
    store: HeaderStore,
    report: Report,
    *,
    pending_hint: str = "run `evidence-vault upgrade`",
) -> list[tuple[float, str]]:
    path = d / "checkpoint.ots"
    if not path.exists():
        return []
    from .timestamps import ots  # opentimestamps (0.1 s to import): only when there is a proof to check

    try:
        data = read_bytes(path)
    except OSError as exc:
        report.fail("anchors.ots-invalid", subject, f"{path.name} is unreadable: {exc.strerror or exc}")
        return []
    check = ots.verify(data, digest, store)
    if check.status == "complete" and check.height is not None and check.block_time is not None:
        report.add(
            "INFO",
            "anchors.ots-complete",
            subject,
            f"anchored in Bitcoin block {check.height} at {_iso(check.block_time)}",
        )
        return [(float(check.block_time), f"bitcoin block {check.height}")]
    if check.status == "pending":
        why = check.problem or "waiting for " + ", ".join(check.pending_calendars)
        report.warn(
            "anchors.ots-pending",
            subject,
            f"OpenTimestamps proof pending ({why}): {pending_hint}",
        )
        return []
    report.fail("anchors.ots-invalid", subject, f"OpenTimestamps proof does not check: {check.problem}")
    return []


def _read_certs(path: Path, where: str, report: Report) -> list[bytes] | None:
    """The certificates in ``path`` (PEM bundle or DER); a FAIL naming the file if it holds none."""
    root = _read_root(path, where, report, frozenset())
    return None if root is None else root[0]


def _read_root(
    path: Path, where: str, report: Report, pinned: frozenset[str]
) -> tuple[list[bytes], bool] | None:
    """:func:`_read_certs`, and whether the file's SHA-256 is one of ``pinned`` (one read of it)."""
    from .timestamps import rfc3161

    try:
        data = read_bytes(path)
        return rfc3161.split_pem_or_der_certs(data), hashlib.sha256(data).hexdigest() in pinned
    except (OSError, EvidenceVaultError) as exc:
        report.fail("anchors.tsa-malformed", where, f"cannot read certificates from {path.name}: {exc}")
        return None


def _read_tsa_meta(path: Path, where: str, report: Report) -> dict[str, Any] | None:
    """``tsa-*.json`` beside a token ({} if absent); None (and a FAIL naming it) if it is not an object."""
    try:
        meta = json.loads(read_text(path, "utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        report.fail("anchors.tsa-malformed", where, f"{path.name} is unreadable: {_short(exc)}")
        return None
    if not isinstance(meta, dict):
        report.fail("anchors.tsa-malformed", where, f"{path.name} is not a JSON object")
        return None
    return meta


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _vault_ca(vault: Vault | _HasRoot, ca: Any) -> Path | None:
    """The vault's configured TSA root (a path relative to the vault, never outside it), if present."""
    if not isinstance(ca, str) or not ca or Path(ca).is_absolute() or ".." in Path(ca).parts:
        return None
    path = vault.root / ca
    return path if path.is_file() else None


def pinned_tsa_roots(vault_id: str | None) -> frozenset[str]:
    """The TSA roots this machine pinned for ``vault_id`` (none for an unknown vault)."""
    from .keystore import TrustStore

    return TrustStore().tsa_roots(vault_id) if vault_id else frozenset()


def tsa_root_file(vault: Vault, meta_file: Path) -> Path | None:
    """The TSA root a ``tsa-*.json`` names, if it is a file inside the vault (for ``prove`` and
    ``export``, which hand it to others: a path out of the vault, say to a private key, must never be
    copied into what they write)."""
    from .timestamps import rfc3161

    try:
        meta = json.loads(read_text(meta_file, "utf-8"))
    except (OSError, ValueError, RecursionError):
        return None  # the verifier reports the file itself (copied as it is)
    if not isinstance(meta, dict):
        return None
    ca = _vault_ca(vault, meta.get("ca"))
    if ca is not None and not ca.resolve().is_relative_to(vault.root.resolve()):
        ca = None
    if ca is None:
        ca = _user_tsa_ca(meta.get("url"))  # the root this user configured, outside the vault on purpose
    try:
        if ca is None or not rfc3161.split_pem_or_der_certs(read_bytes(ca)):
            return None
    except (OSError, EvidenceVaultError):
        return None  # only certificates are ever copied
    return ca


def _user_tsa_ca(url: Any) -> Path | None:
    """The root this user configured for the TSA at ``url`` in ``EVIDENCE_VAULT_HOME/config.json``
    ("stamping": {"tsas": [{"url", "ca"}]}, absolute paths): outside the vault, so it is trusted
    like --tsa-ca; ``stamp`` checked the token against it."""
    from .keystore import default_home

    if not isinstance(url, str):
        return None
    try:
        doc = json.loads(read_text(default_home() / "config.json", "utf-8"))
        tsas = doc["stamping"]["tsas"]
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return None
    for entry in tsas if isinstance(tsas, list) else []:
        if isinstance(entry, dict) and entry.get("url") == url and isinstance(entry.get("ca"), str):
            path = Path(entry["ca"]).expanduser()
            return path if path.is_absolute() and path.is_file() else None
    return None


def _tsa_anchor(
    vault: Vault | _HasRoot,
    d: Path,
    base: str,
    meta: dict[str, Any],
    user_roots: Sequence[bytes],
    subject: str,
    report: Report,
    pinned: frozenset[str] = frozenset(),
    user_config: bool = True,
) -> tuple[list[bytes], str, bool] | None:
    """The roots one token is checked against, how they were chosen, and whether they are independent
    of whoever could write the vault or made the bag; None if unreadable (reported).

    Roots you give replace every other anchor. Yours (``--tsa-ca``, ``config.json``) and a vault's copy
    or a bag whose SHA-256 is pinned on this machine (``stamp --tsa-ca`` pins it) are independent; a
    copy in the vault or the bag alone is not: whoever could write there could have replaced root and
    token.
    """
    if user_roots:
        return list(user_roots), "trust anchor given by you", True
    mine = _user_tsa_ca(meta.get("url")) if user_config else None
    ca = _vault_ca(vault, meta.get("ca"))
    shipped = d / f"{base}.ca.pem"
    if mine is not None:
        certs = _read_certs(mine, str(mine), report)
        return None if certs is None else (certs, "trust anchor from your config.json", True)
    if ca is not None:
        root, note = _read_root(ca, str(meta["ca"]), report, pinned), "trust anchor from the vault's config"
    elif shipped.is_file():
        root = _read_root(shipped, f"{subject}/{shipped.name}", report, pinned)
        note = "trust anchor shipped with the proof"
    else:
        return [], "", False
    if root is None:
        return None
    certs, independent = root
    return certs, note + (", pinned on this machine" if independent else ""), independent


def _check_tsrs(
    vault: Vault | _HasRoot,
    d: Path,
    subject: str,
    digest: bytes,
    report: Report,
    extra_roots: Sequence[bytes],
    pinned: frozenset[str] = frozenset(),
    *,
    user_config: bool = True,
) -> list[tuple[float, str]]:
    """Check every ``tsa-*.tsr`` in ``d``: against ``extra_roots`` alone when given, else the TSA's
    configured or shipped root. Returns (genTime, proof) of the tokens that check against an
    independent root (see :func:`_tsa_anchor`); one that checks only against a root from inside the
    vault or the bag is a WARN ``anchors.tsa-unpinned`` and proves no time. ``user_config=False``
    leaves this user's ``config.json`` out (with no ``pinned`` and no ``extra_roots``: the verdict
    depends on the files checked alone, the same on every machine)."""
    from .timestamps import rfc3161

    out: list[tuple[float, str]] = []
    for tsr_path in sorted(d.glob("tsa-*.tsr")):
        base = tsr_path.name.removesuffix(".tsr")
        where = f"{subject}/{tsr_path.name}"
        meta = _read_tsa_meta(d / f"{base}.json", f"{subject}/{base}.json", report)
        if meta is None:
            continue
        anchor = _tsa_anchor(vault, d, base, meta, extra_roots, subject, report, pinned, user_config)
        if anchor is None:
            continue
        roots, anchor_note, independent = anchor
        chain_path = d / f"{base}.chain.pem"
        chain = _read_certs(chain_path, f"{subject}/{chain_path.name}", report) if chain_path.exists() else []
        if chain is None:
            continue
        name = str(meta.get("url") or base)
        try:
            tsr = read_bytes(tsr_path)
        except OSError as exc:
            report.fail("anchors.tsa-malformed", where, f"unreadable: {exc}")
            continue
        if not roots:
            # No root to check the signature against, but garbage, or a token for another digest, is
            # plain without one.
            problem = _token_problem(tsr, digest)
            if problem:
                report.fail("anchors.tsa-invalid", where, f"RFC 3161 token: {problem}")
            else:
                report.warn("anchors.tsa-untrusted", where, "no trust anchor for this TSA: pass --tsa-ca PEM")
            continue
        check = rfc3161.verify_token(tsr, digest=digest, roots=roots, intermediates=chain)
        if check.ok and check.token is not None and not independent:
            report.warn(
                "anchors.tsa-unpinned",
                where,
                f"RFC 3161 token from {name} checks only against the TSA root "
                f"{anchor_note.removeprefix('trust anchor ')}, which whoever could write there could have "
                "replaced along with the token: no proven time; "
                "pass --tsa-ca with your own copy of the TSA's root",
            )
        elif check.ok and check.token is not None:
            t = check.token.gen_time
            report.add(
                "INFO",
                "anchors.tsa-valid",
                where,
                f"RFC 3161 token from {name}, genTime {t.strftime('%Y-%m-%dT%H:%M:%SZ')} ({anchor_note})",
            )
            out.append((t.timestamp(), f"rfc3161 {name}"))
        else:
            problem = check.problem
            if extra_roots:
                problem = f"{problem} (checked against the --tsa-ca roots you gave only)"
            report.fail("anchors.tsa-invalid", where, f"RFC 3161 token: {problem}")
    return out


def _token_problem(tsr: bytes, digest: bytes) -> str | None:
    """What is wrong with a token that needs no trust anchor to see: unreadable, or another digest's."""
    from .timestamps import rfc3161

    try:
        token = rfc3161.parse_token(tsr)
    except EvidenceVaultError as exc:
        return exc.message
    if token.message_imprint != digest:
        return "message imprint is not the digest of the checkpoint"
    return None


def _item_times(state: LogState, report: Report, anchored: dict[int, tuple[float, str]]) -> None:
    sizes = sorted(anchored)
    suffix: list[tuple[float, str, int]] = []
    best: tuple[float, str, int] | None = None
    for size in reversed(sizes):
        t, proof = anchored[size]
        if best is None or t < best[0]:
            best = (t, proof, size)
        suffix.append(best)
    suffix.reverse()
    for item, seq in state.items.seqs():
        i = bisect.bisect_right(sizes, seq)
        entry: dict[str, Any] = {
            "id": item,
            "seq": seq,
            "proven_since": None,
            "proof": None,
            "checkpoint": None,
        }
        if i < len(sizes):
            t, proof, size = suffix[i]
            entry.update(proven_since=_iso(t), proof=proof, checkpoint=size)
        report.items.append(entry)


#: What a checkpoint's time proofs say when none proves a time, by the finding verify makes of them.
_NO_TIME = (
    ("anchors.ots-invalid", "OpenTimestamps proof does not check"),
    ("anchors.tsa-invalid", "RFC 3161 token does not check"),
    ("anchors.tsa-malformed", "RFC 3161 token's files cannot be read"),
    ("anchors.ots-pending", "OpenTimestamps proof pending"),
    (
        "anchors.tsa-unpinned",
        "RFC 3161 token not checked against a TSA root you trust (give --tsa-ca): no proven time",
    ),
    ("anchors.tsa-untrusted", "RFC 3161 token without a TSA root (give --tsa-ca): no proven time"),
)


def _log_roots(vault: Vault, wanted: set[int]) -> tuple[dict[int, bytes], set[int]]:
    """The log's Merkle root before each line number in ``wanted``, and which of those lines are
    checkpoint lines.

    Starts from the end state of the last clean ``verify`` on this machine (kept outside the vault, as
    ``verify --incremental`` uses it) when the log still begins with exactly the bytes that run verified
    and that run saw every wanted size below its end: one SHA-256 pass over that prefix instead of a leaf
    hash per line (a million-line log: about 0.3 s instead of 5 s). Otherwise, and for the lines after
    it, every line up to the last wanted one is hashed.
    """
    from . import incremental as inc
    from . import merkle

    roots: dict[int, bytes] = {}
    recorded: set[int] = set()
    acc = merkle.MerkleAccumulator()
    first, offset = 0, 0
    saved = inc.load(vault.config.vault_id)
    if saved is not None and all(str(n) in saved.roots_at for n in wanted if n < saved.lines):
        try:
            same = vault.log.path.stat().st_size >= saved.bytes and (
                inc.prefix_sha256(vault.log.path, saved.bytes) == saved.prefix_sha256
            )
        except OSError:
            same = False
        if same:
            roots = {n: bytes.fromhex(saved.roots_at[str(n)]) for n in wanted if n < saved.lines}
            recorded = {n for n in wanted if n < saved.lines and str(n) in saved.checkpoints}
            acc, first, offset = saved.accumulator(), saved.lines, saved.bytes
    last = max(wanted, default=-1)
    for seq, raw in enumerate(vault.log.iter_raw(offset), start=first):
        if seq > last or not raw.complete:  # the lines after the last wanted size change none of it
            break
        if seq in wanted:
            roots[seq] = acc.root()
            if b'"type":"checkpoint"' in raw.data:
                recorded.add(seq)
        acc.append(merkle.leaf_hash(raw.data))
    return roots, recorded


def checkpoint_times(
    vault: Vault, *, tsa_roots: Sequence[bytes] = ()
) -> list[tuple[int, float | None, str, str]]:
    """Per checkpoint directory, in order: (size, earliest proven time or None, which proof, status).

    Offline and by the rules of ``verify`` (never a time it would not state): the checkpoint must be
    recorded in the log at its size and its root must be the log's; an OpenTimestamps proof counts once
    it checks against a stored block header, an RFC 3161 token only if it checks against a root that
    does not come from the vault alone (``tsa_roots``, this user's ``config.json``, or a root pinned on
    this machine by ``stamp --tsa-ca``). Signatures are not checked here: ``verify`` does that.
    """
    from .checkpoint import checkpoint_dir, headers_path, list_checkpoints

    sizes = list_checkpoints(vault)
    if not sizes:
        return []
    try:
        store = HeaderStore.load(headers_path(vault))
    except EvidenceVaultError:  # verify names the file; here it only means "not proven"
        store = HeaderStore()
    roots, recorded = _log_roots(vault, set(sizes))
    pinned = pinned_tsa_roots(vault.config.vault_id)
    out: list[tuple[int, float | None, str, str]] = []
    for size in sizes:
        d = checkpoint_dir(vault, size)
        subject = f"checkpoints/{d.name}"
        try:
            text = read_bytes(d / "checkpoint")
            cp = Checkpoint.parse(text)
        except (OSError, EvidenceVaultError):
            out.append((size, None, "", "checkpoint text unreadable: proves no time"))
            continue
        if cp.size != size or size not in recorded or roots.get(size) != cp.root:
            out.append((size, None, "", "checkpoint does not match the log: proves no time (run verify)"))
            continue
        report = Report(target=subject)
        digest = hashlib.sha256(text).digest()
        times = _check_ots(d, subject, digest, store, report)
        times += _check_tsrs(vault, d, subject, digest, report, tsa_roots, pinned)
        if times:
            t, proof = min(times)
            out.append((size, t, proof, ""))
            continue
        codes = {f.code for f in report.findings}
        said = [text for code, text in _NO_TIME if code in codes]
        out.append((size, None, "", "; ".join(said) or "checkpointed, not yet stamped"))
    return out
