"""Anchoring the log in time: signed checkpoints (tree heads), OpenTimestamps and RFC 3161 stamps.

A checkpoint is the C2SP tlog-checkpoint text of the RFC 9162 Merkle tree over every log line before
it, signed with sshsig (so ``ssh-keygen -Y verify`` checks it) and recorded as a ``checkpoint`` event.
Checkpoints, not single files, get timestamped: one proof covers everything before it. Each one lives
in ``checkpoints/<size>/``::

    checkpoint            the text            checkpoint.sig   armored sshsig of the text
    checkpoint.ots        OpenTimestamps proof of SHA-256(text)
    tsa-<name>.tsr        RFC 3161 token over SHA-256(text); tsa-<name>.chain.pem: the TSA's certificates

``checkpoints/headers.json`` keeps the Bitcoin block headers the proofs need (verification is offline);
``checkpoints/queue.json`` lists stamps that could not be made yet (offline), done by the next
``stamp`` or ``upgrade``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import events as ev
from . import log_frontier
from .atomic import write_atomic
from .checkpoint import (
    CHECKPOINTS,
    Checkpoint,
    checkpoint_dir,
    headers_path,
    list_checkpoints,
    parse_queue,
    queue_path,
)
from .custody_log import Head
from .errors import EvidenceVaultError, NetworkError, TimestampError, UsageError
from .keystore import TrustStore
from .locate import VAULT_FILE
from .signing import Signer, armor
from .timestamps import ots, rfc3161
from .timestamps.headers import BlockHeader, HeaderStore, fetch_from_bitcoind, fetch_from_explorer
from .vault import Vault


def origin_of(vault_id: str) -> str:
    return f"evidence-vault/{vault_id}"


def tsa_slug(url: str) -> str:
    """A file-name-safe short name for a TSA URL."""
    host = re.sub(r"^[a-z]+://", "", url.lower()).split("/")[0]
    slug = re.sub(r"[^a-z0-9.-]+", "-", host).strip("-.") or "tsa"
    return f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class CheckpointInfo:
    size: int
    root: str
    seq: int
    directory: str
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_checkpoint(vault: Vault, signer: Signer, *, only_if_grown: bool = False) -> CheckpointInfo:
    """Sign the tree head of the whole log and record it as a ``checkpoint`` event."""
    made: dict[str, Any] = {}

    def build(head: Head | None) -> list[tuple[str, dict[str, Any]]]:
        if head is None:
            raise UsageError("the log is empty")
        vault.require_authorized(signer, head, ev.CHECKPOINT)
        size = head.seq + 1
        last = _last_event(vault)
        if only_if_grown and last is not None and last.type == ev.CHECKPOINT:
            made["existing"] = last
            return []
        root, frontier = log_frontier.tree_head(vault.log, vault.config.vault_id, size)
        made["frontier"] = frontier
        cp = Checkpoint(origin=origin_of(vault.config.vault_id), size=size, root=root)
        text = cp.to_text()
        sig = signer.sign(text)
        directory = checkpoint_dir(vault, size)
        write_atomic(directory / "checkpoint", text)
        write_atomic(directory / "checkpoint.sig", armor(sig).encode())
        made.update(size=size, root=cp.root.hex())
        return [
            (
                ev.CHECKPOINT,
                {
                    "origin": cp.origin,
                    "size": size,
                    "root": cp.root.hex(),
                    "signature": base64.b64encode(sig).decode(),
                },
            )
        ]

    out = vault.append(signer, [], build=build)
    if "existing" in made:
        e = made["existing"]
        size = int(e.data["size"])
        directory = checkpoint_dir(vault, size)
        if not (directory / "checkpoint").exists():
            _restore_checkpoint_dir(directory, e)
        return CheckpointInfo(size, str(e.data["root"]), e.seq, str(directory), False)
    (event,) = out
    if made["frontier"] is not None:  # kept once the checkpoint is recorded, for the next one
        log_frontier.save(vault.config.vault_id, made["frontier"])
    return CheckpointInfo(
        made["size"], made["root"], event.seq, str(checkpoint_dir(vault, made["size"])), True
    )


def _restore_checkpoint_dir(directory: Path, event: ev.Event) -> None:
    """Write again the text and detached signature of a recorded checkpoint whose directory was lost:
    both follow from its event (origin, size, root, signature), so it can still be stamped."""
    try:
        cp = Checkpoint(
            origin=str(event.data["origin"]),
            size=int(event.data["size"]),
            root=bytes.fromhex(event.data["root"]),
        )
        sig = base64.b64decode(str(event.data["signature"]), validate=True)
    except (KeyError, TypeError, ValueError, EvidenceVaultError):
        return  # not ours to repair: verify reports the event
    write_atomic(directory / "checkpoint", cp.to_text())
    write_atomic(directory / "checkpoint.sig", armor(sig).encode())


def _last_event(vault: Vault) -> ev.Event | None:
    head, _ = vault.log.tail_state()
    if head is None:
        return None
    with open(vault.log.path, "rb") as fh:
        fh.seek(max(0, head.size - 65536))
        tail = fh.read(head.size - fh.tell())
    line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return ev.parse_line(line)[0]


# -- configuration ---------------------------------------------------------------------------------


@dataclass
class StampConfig:
    calendars: list[str] = field(default_factory=lambda: list(ots.DEFAULT_CALENDARS))
    min_calendars: int = 2
    tsas: list[dict[str, str]] = field(default_factory=list)  # {"url", "ca"} ca: path relative to vault

    @classmethod
    def of(cls, vault: Vault) -> StampConfig:
        """Defaults, then the user's ``EVIDENCE_VAULT_HOME/config.json`` "stamping", then the vault's."""
        cfg = cls()
        for raw in (_user_stamping(), vault.config.extra.get("stamping")):
            cfg._merge(raw)
        return cfg

    def _merge(self, raw: Any) -> None:
        cfg = self
        if isinstance(raw, dict):
            if isinstance(raw.get("calendars"), list) and raw["calendars"]:
                cfg.calendars = [str(c) for c in raw["calendars"]]
            m = raw.get("min_calendars")
            if isinstance(m, int) and not isinstance(m, bool) and m >= 1:  # 0 would make every stamp fail
                cfg.min_calendars = m
            if isinstance(raw.get("tsas"), list):
                cfg.tsas = [dict(t) for t in raw["tsas"] if isinstance(t, dict) and "url" in t]

    def to_dict(self) -> dict[str, Any]:
        return {"calendars": self.calendars, "min_calendars": self.min_calendars, "tsas": self.tsas}


def _user_stamping() -> Any:
    """The per-user stamping defaults (calendars, min_calendars, tsas with absolute "ca" paths)."""
    from .keystore import default_home

    try:
        doc = json.loads((default_home() / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("stamping") if isinstance(doc, dict) else None


def save_config(vault: Vault, cfg: StampConfig) -> None:
    doc = vault.config.to_dict()
    doc["stamping"] = cfg.to_dict()
    write_atomic(vault.root / VAULT_FILE, json.dumps(doc, indent=2).encode() + b"\n")
    vault.config.extra["stamping"] = cfg.to_dict()


def check_timeout(timeout: float) -> None:
    """Refuse a ``--timeout`` no request could use (0, negative, NaN, infinite) before anything is done."""
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout {timeout}: give a positive number of seconds")


def configure(
    vault: Vault,
    *,
    calendars: Sequence[str] = (),
    tsas: Sequence[tuple[str, bytes | None]] = (),
    min_calendars: int | None = None,
) -> StampConfig:
    """Merge command-line stamping options into the vault's config (and keep TSA trust anchors)."""
    for option, url in [*(("--calendar", c) for c in calendars), *(("--tsa", t) for t, _ in tsas)]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{option} {url!r} is not an http:// or https:// URL")
    cfg = StampConfig.of(vault)
    changed = False
    if calendars:
        cfg.calendars = list(dict.fromkeys(calendars))
        changed = True
    if min_calendars is not None:
        if min_calendars < 1:
            raise UsageError(f"--min-calendars {min_calendars}: at least 1 calendar must answer")
        cfg.min_calendars = min_calendars
        changed = True
    for url, ca in tsas:
        entry = next((t for t in cfg.tsas if t["url"] == url), None)
        if entry is None:
            entry = {"url": url}
            cfg.tsas.append(entry)
        if ca is not None:
            # Named by content: a new root for the same TSA (renewed, or given by mistake) must not
            # replace the file that the tokens already made name as theirs.
            rel = f"{CHECKPOINTS}/tsa-roots/{tsa_slug(url)}-{hashlib.sha256(ca).hexdigest()[:16]}.pem"
            if not (vault.root / rel).is_file():
                write_atomic(vault.root / rel, ca)
            entry["ca"] = rel  # pinned on this machine once a token of the TSA verifies under it
        changed = True
    if cfg.min_calendars > len(cfg.calendars):
        source = (
            "" if min_calendars is not None else " (not given: the default, or the one saved for this vault)"
        )
        raise UsageError(
            f"--min-calendars {cfg.min_calendars}{source} is more than the {len(cfg.calendars)} "
            f"calendar{'s' if len(cfg.calendars) != 1 else ''} to ask: give more --calendar URLs, or "
            f"--min-calendars {len(cfg.calendars) or 1}"
        )
    if changed:
        save_config(vault, cfg)
    return cfg


# -- the queue -------------------------------------------------------------------------------------


def load_queue(vault: Vault) -> dict[str, list[int]]:
    """Stamps still to make: {"ots": [sizes], "tsa:<url>": [sizes]}.

    A queue file that cannot be read is set aside (``queue.json.unreadable``) and the queue rebuilt
    from the checkpoints on disk: every recorded checkpoint still without its OpenTimestamps proof or
    without a token of a configured TSA. Queued work is never dropped silently.
    """
    path = queue_path(vault)
    try:
        queue = parse_queue(path.read_bytes())
    except FileNotFoundError:
        return {}
    except OSError:
        queue = None
    if queue is None:
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".unreadable"))
        return _rebuild_queue(vault)
    return queue


def _recorded(vault: Vault, sizes: set[int]) -> list[int]:
    """Those of ``sizes`` at which the log holds a checkpoint event (one pass over the log)."""
    recorded: list[int] = []
    if not sizes:
        return recorded
    last = max(sizes)
    for seq, raw in enumerate(vault.log.iter_raw()):
        if seq > last or not raw.complete:
            break
        if seq in sizes and b'"type":"checkpoint"' in raw.data:
            recorded.append(seq)
    return recorded


def _recorded_without_proof(vault: Vault, *, exclude: int) -> list[int]:
    """Recorded checkpoints other than ``exclude`` with neither an OpenTimestamps proof nor a token."""
    bare = set()
    for size in list_checkpoints(vault):
        d = checkpoint_dir(vault, size)
        if size != exclude and not (d / "checkpoint.ots").exists() and not any(d.glob("tsa-*.tsr")):
            bare.add(size)
    return _recorded(vault, bare)


def _rebuild_queue(vault: Vault) -> dict[str, list[int]]:
    recorded = _recorded(vault, set(list_checkpoints(vault)))
    queue: dict[str, list[int]] = {}
    tsas = [t["url"] for t in StampConfig.of(vault).tsas]
    for size in recorded:
        d = checkpoint_dir(vault, size)
        if not (d / "checkpoint.ots").exists():
            queue.setdefault("ots", []).append(size)
        for url in tsas:
            if not _has_token(d, url):
                queue.setdefault(f"tsa:{url}", []).append(size)
    return queue


def save_queue(vault: Vault, queue: dict[str, list[int]]) -> None:
    clean = {k: sorted(set(v)) for k, v in queue.items() if v}
    write_atomic(queue_path(vault), json.dumps(clean, indent=2, sort_keys=True).encode() + b"\n")


@dataclass
class StampOutcome:
    checkpoint: CheckpointInfo | None = None
    stamped: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    # Of ``queued``: the service answered, and its answer was refused (no token, another digest, a
    # token that does not verify against the configured root). Waiting does not fix these: exit 1.
    refused: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "stamped": self.stamped,
            "queued": self.queued,
            "refused": self.refused,
        }


def stamp(
    vault: Vault,
    signer: Signer,
    *,
    calendars: Sequence[str] = (),
    tsas: Sequence[tuple[str, bytes | None]] = (),
    min_calendars: int | None = None,
    timeout: float = 10.0,
) -> StampOutcome:
    """Checkpoint if the log grew, then submit every queued checkpoint to the calendars and TSAs."""
    check_timeout(timeout)
    cfg = configure(vault, calendars=calendars, tsas=tsas, min_calendars=min_calendars)
    checkpoint = make_checkpoint(vault, signer, only_if_grown=True)
    outcome = StampOutcome(checkpoint=checkpoint)
    queue = load_queue(vault)
    size = checkpoint.size
    d = checkpoint_dir(vault, size)
    if not (d / "checkpoint.ots").exists():
        queue.setdefault("ots", []).append(size)
    # A recorded checkpoint with no time proof at all (made by `checkpoint`, or by a stamp interrupted
    # before it queued it) is stamped too: verify says `anchors.unstamped: run evidence-vault stamp`.
    queue.setdefault("ots", []).extend(_recorded_without_proof(vault, exclude=size))
    for t in cfg.tsas:
        if not _has_token(d, t["url"]):
            queue.setdefault(f"tsa:{t['url']}", []).append(size)
    save_queue(vault, queue)
    process_queue(vault, cfg, outcome, timeout=timeout)
    return outcome


def process_queue(vault: Vault, cfg: StampConfig, outcome: StampOutcome, *, timeout: float = 10.0) -> None:
    """Try every queued stamp; what fails for lack of network stays queued."""
    queue = load_queue(vault)
    for key, sizes in list(queue.items()):
        remaining = []
        unreachable: str | None = None  # once a service is unreachable, its other stamps wait too
        for size in sorted(set(sizes)):
            d = checkpoint_dir(vault, size)
            # Stamped meanwhile: never replace a proof (it may be upgraded already).
            if (d / "checkpoint.ots").exists() if key == "ots" else _has_token(d, key[4:]):
                continue
            if unreachable is not None:
                remaining.append(size)
                outcome.queued.append({"size": size, "service": key, "reason": unreachable})
                continue
            try:
                digest = hashlib.sha256((d / "checkpoint").read_bytes()).digest()
            except OSError as exc:
                remaining.append(size)  # kept: a stamp once queued is never dropped silently
                why = f"{CHECKPOINTS}/{d.name}/checkpoint cannot be read ({exc.strerror or exc})"
                outcome.queued.append({"size": size, "service": key, "reason": why})
                continue
            try:
                if key == "ots":
                    res = ots.stamp(digest, cfg.calendars, min_calendars=cfg.min_calendars, timeout=timeout)
                    write_atomic(d / "checkpoint.ots", res.ots)
                    outcome.stamped.append(
                        {
                            "size": size,
                            "service": "opentimestamps",
                            "calendars": res.calendars_ok,
                            "failed": res.calendars_failed,
                        }
                    )
                elif key.startswith("tsa:"):
                    url = key[4:]
                    _stamp_tsa(vault, cfg, url, d, digest, timeout)
                    outcome.stamped.append({"size": size, "service": "rfc3161", "tsa": url})
            except NetworkError as exc:
                remaining.append(size)
                outcome.queued.append({"size": size, "service": key, "reason": exc.message})
                unreachable = exc.message
            except TimestampError as exc:
                remaining.append(size)  # kept: the service may be fixed, or the root given again
                entry = {"size": size, "service": key, "reason": f"refused: {exc.message}"}
                outcome.queued.append(entry)
                outcome.refused.append(entry)
        queue[key] = remaining
    save_queue(vault, queue)


def _false_answer(heights: list[int]) -> str:
    blocks = ", ".join(str(h) for h in heights)
    return f"a calendar answer merged earlier does not match Bitcoin block {blocks} (removed; asked again)"


def _has_token(d: Path, url: str) -> bool:
    """The TSA's token and the .json beside it (without which it has no trust anchor) are both there;
    a run interrupted between the two makes the token again."""
    slug = tsa_slug(url)
    return (d / f"tsa-{slug}.tsr").exists() and (d / f"tsa-{slug}.json").exists()


def _stamp_tsa(vault: Vault, cfg: StampConfig, url: str, d: Path, digest: bytes, timeout: float) -> None:
    tsr = rfc3161.request_token(url, digest, timeout=timeout)
    entry = next((t for t in cfg.tsas if t["url"] == url), {"url": url})
    slug = tsa_slug(url)
    ca = _tsa_root_file(vault, entry)
    roots = rfc3161.split_pem_or_der_certs(ca) if ca else []
    if roots:
        check = rfc3161.verify_token(tsr, digest=digest, roots=roots)
        if not check.ok:
            raise TimestampError(
                f"TSA {url}: its token does not verify against the root saved for it ({entry.get('ca')}, "
                f"from --tsa-ca): {check.problem}"
            )
    write_atomic(d / f"tsa-{slug}.tsr", tsr)
    meta = {"url": url, "ca": entry.get("ca")}
    write_atomic(d / f"tsa-{slug}.json", json.dumps(meta, indent=2).encode() + b"\n")
    if roots:
        write_atomic(d / f"tsa-{slug}.chain.pem", rfc3161.certs_to_pem(roots))
        _pin_root(vault, entry["ca"], ca)


def _tsa_root_file(vault: Vault, entry: dict[str, str]) -> bytes:
    """The bytes of the root file saved for a TSA (empty: none, or unreadable)."""
    ca = entry.get("ca")
    if not ca:
        return b""
    try:
        return (vault.root / ca).read_bytes()
    except OSError:
        return b""


def _pin_root(vault: Vault, name: str, ca: bytes) -> None:
    """Pin on this machine (verify trusts the vault's copy of a TSA root only if pinned) the root file
    ``name`` a token has just verified under. Not when ``--tsa-ca`` is given: a wrong root, refused by
    the TSA's answer, stayed trusted here. The file is named by its SHA-256, as ``--tsa-ca`` wrote it: a
    file changed in the vault since is not pinned."""
    digest = hashlib.sha256(ca).hexdigest()
    if Path(name).stem.endswith("-" + digest[:16]):
        TrustStore().pin_tsa_root(vault.config.vault_id, digest)


# -- upgrade ---------------------------------------------------------------------------------------


@dataclass
class UpgradeOutcome:
    upgraded: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    complete: dict[int, int] = field(default_factory=dict)  # size -> block height
    headers_added: list[int] = field(default_factory=list)
    headers_missing: list[int] = field(default_factory=list)
    headers_errors: dict[int, str] = field(
        default_factory=dict
    )  # height -> why --bitcoin-node/--explorer failed
    rejected: dict[int, str] = field(default_factory=dict)  # size -> why a calendar answer was refused
    unreachable: dict[int, list[str]] = field(default_factory=dict)  # size -> calendars not reached, why
    stamps: StampOutcome = field(default_factory=StampOutcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "upgraded": self.upgraded,
            "pending": self.pending,
            "complete": {str(k): v for k, v in self.complete.items()},
            "headers_added": self.headers_added,
            "headers_missing": self.headers_missing,
            "headers_errors": {str(k): v for k, v in self.headers_errors.items()},
            "rejected": {str(k): v for k, v in self.rejected.items()},
            "unreachable": {str(k): v for k, v in self.unreachable.items()},
            "stamped": self.stamps.stamped,
            "queued": self.stamps.queued,
            "refused": self.stamps.refused,
        }


def upgrade(
    vault: Vault,
    *,
    headers_file: Path | None = None,
    bitcoin_node: str | None = None,
    explorer: str | None = None,
    endpoints: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> UpgradeOutcome:
    """Complete pending proofs from allow-listed calendars and store the block headers they need."""
    check_timeout(timeout)
    given_headers = None
    if headers_file is not None:  # checked before any request is made
        if not Path(headers_file).exists():  # load() takes a missing file for an empty store
            raise UsageError("--headers: no such file", path=headers_file)
        given_headers = HeaderStore.load(headers_file)
    cfg = StampConfig.of(vault)
    outcome = UpgradeOutcome()
    process_queue(vault, cfg, outcome.stamps, timeout=timeout)
    store = HeaderStore.load(headers_path(vault))
    for given in given_headers or ():
        if given.height not in store:
            store.add(given)
    allowed = list(dict.fromkeys([*ots.DEFAULT_CALENDARS, *cfg.calendars]))
    for size in list_checkpoints(vault):
        path = checkpoint_dir(vault, size) / "checkpoint.ots"
        if not path.exists():
            continue
        original = data = path.read_bytes()
        try:
            # A calendar answer merged while its block header was unknown may have turned out false:
            # drop it, so that the proof is pending again and its calendar is asked once more.
            data, removed = ots.drop_false_attestations(data, store)
            refused: list[str] = []
            unreachable: list[str] = []
            new, changed = ots.upgrade(
                data,
                allowed_calendars=allowed,
                timeout=timeout,
                headers=store,
                endpoints=endpoints,
                refused=refused,
                unreachable=unreachable,
            )
        except TimestampError:
            continue
        if unreachable:
            outcome.unreachable[size] = unreachable
        if removed or refused:
            outcome.rejected[size] = "; ".join([*([_false_answer(removed)] if removed else []), *refused])
        for height in ots.attested_heights(new):
            if height in store:
                continue
            header: BlockHeader | None = None
            try:
                if bitcoin_node:
                    header = fetch_from_bitcoind(bitcoin_node, height, timeout=timeout)
                elif explorer:
                    header = fetch_from_explorer(explorer, height, timeout=timeout)
            except EvidenceVaultError as exc:
                outcome.headers_errors[height] = str(exc)
                header = None
            if header is not None:
                store.add(header)
                outcome.headers_added.append(height)
            else:
                outcome.headers_missing.append(height)
        digest = hashlib.sha256((checkpoint_dir(vault, size) / "checkpoint").read_bytes()).digest()
        check = ots.verify(new, digest, store)
        if changed and check.status == "invalid":
            # A calendar answer that does not lead to the real block (a graft): keep the old proof.
            outcome.rejected[size] = check.problem or "invalid"
            new, check = data, ots.verify(data, digest, store)
        elif changed:
            outcome.upgraded.append(size)
        if new != original:
            write_atomic(path, new)
        if check.status == "complete" and check.height is not None:
            outcome.complete[size] = check.height
        else:
            outcome.pending.append(size)
    if len(store):
        headers_path(vault).parent.mkdir(parents=True, exist_ok=True)
        store.save(headers_path(vault))
    return outcome
