"""Export: a BagIt bag a lawyer can check without trusting us, with selective disclosure.

The bag holds the chosen originals under ``data/`` and, under ``evidence/``, the custody log in which
every line about other items is replaced by its two hashes (so the chain and the Merkle roots still
check), the signed bytes and signature of each revealed event, the checkpoints with their time proofs
and block headers, inclusion and consistency proofs, the signers' public keys, and the openings of the
metadata fields that are revealed. ``VERIFY.md`` says how to check each claim with standard tools,
``verify_bundle.py`` checks the chain and the proofs with the Python standard library alone, and
``report.html`` is the custody report. The export is then recorded as an ``item.exported`` event.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from importlib import resources
from pathlib import Path
from typing import Any

from . import commitments, merkle
from . import events as ev
from .anchors_verify import tsa_root_file
from .authority import Authority
from .bagit import bag_info_value, bag_to_zip, unique_names, write_bag
from .bundle_verify import (
    BAG_SIGNATURE,
    EVIDENCE,
    EXPORTER_LABEL,
    checkpoint_files,
    external_description,
    fingerprints_text,
    is_revealed,
    withheld_stub,
)
from .canonical import canonical
from .checkpoint import checkpoint_dir, headers_path, list_checkpoints
from .errors import EvidenceVaultError, UsageError
from .events import Event, parse_event
from .keystore import utc_now
from .signing import NAMESPACE, Signer, armor, key_file_name
from .timestamps import rfc3161
from .vault import COMMITTED_FIELDS, Vault

#: What ``--redact-metadata`` accepts beyond the exact committed field names.
REDACT_ALIASES = {
    "gps": ("gps", "gps_latitude", "gps_longitude", "gps_altitude", "location", "latitude", "longitude"),
    "serial": ("serial", "serial_number", "body_serial", "lens_serial", "camera_serial"),
    "path": ("original_path",),
    "name": ("original_name",),
}
#: First line of every VERIFY.md block: the blocks run in the bag's folder, which the reader enters once
#: (``cd`` and the folder dragged in: the terminal quotes its path). No path is typed into a block, so
#: none can break it (a ``"``, ``$``, backtick or ``\`` in a path broke the old ``cd "/path/to/this/bag"``).
IN_BAG = (
    "test -f bagit.txt || "
    "{ echo 'not in the bag folder: run cd and the folder first (top of VERIFY.md)' >&2; exit 1; }"
)


@dataclass(frozen=True)
class ExportResult:
    export_id: str
    out: str
    items: list[str]
    names: dict[str, str]
    revealed: int
    withheld: int
    redacted: list[str]
    tagmanifest_sha256: str
    seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Staged:
    """``evidence/`` written to a staging directory, and what it needs."""

    names: dict[str, str] = field(default_factory=dict)  # item -> payload name (under data/)
    signers: dict[str, str] = field(default_factory=dict)  # fingerprint -> key name
    genesis: str | None = None  # the vault's genesis key (the one to pin)
    exporter: str | None = None  # the key that signs the bag (its public key ships even if it signed no line)
    vault_name: str = ""  # as the signed vault.created line gives it (vault.json's copy is unsigned)
    revealed: int = 0
    withheld: int = 0
    redacted: set[str] = field(default_factory=set)
    checkpoints: list[int] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)  # RFC 3161 tokens for VERIFY.md
    actors: dict[int, str] = field(default_factory=dict)  # seq -> signer of each revealed line, in order


def select_items(
    vault: Vault,
    refs: Sequence[str],
    *,
    all_items: bool = False,
    tag: str | None = None,
    verb: str = "export",
) -> list[str]:
    """Item ids from ``refs`` (id prefixes or files), or every item (optionally with ``tag``). ``verb``:
    what is done with them, for the error when there are none ("nothing to export: ...")."""
    if refs and all_items:
        raise UsageError("give items or --all, not both")
    if tag is not None and not tag.strip():
        raise UsageError("--tag: empty; give a tag (no item can have an empty one)")
    if all_items or (tag and not refs):
        ids = [i.id for i in vault.items(tag=tag)]
    else:
        ids = [vault.resolve(r).id for r in refs]
        if tag:
            tagged = {i.id for i in vault.items(tag=tag)}
            ids = [i for i in ids if i in tagged]
    ids = list(dict.fromkeys(ids))
    if not ids and tag:
        raise UsageError(f"nothing to {verb}: no {'given ' if refs else ''}item has the tag {tag!r}")
    if not ids and all_items:
        raise UsageError(f"nothing to {verb}: the vault holds no items yet")
    if not ids:
        raise UsageError(f"nothing to {verb}: give item ids, --all or --tag")
    return ids


def redacted_fields(committed: Iterable[str], wanted: Iterable[str]) -> set[str]:
    """The committed field names matched by the ``--redact-metadata`` words (exact name, alias or prefix)."""
    names = set(committed)
    out: set[str] = set()
    for w in (x.strip().lower() for x in wanted):
        if not w:
            continue
        for n in names:
            if n == w or n in REDACT_ALIASES.get(w, ()) or n.startswith(w + "_"):
                out.add(n)
    return out


def check_redaction(committed: Iterable[str], wanted: Iterable[str]) -> None:
    """Refuse a ``--redact-metadata`` word that can withhold nothing: it matches no committed field of the
    exported items and is no field name or alias this tool knows (a typo would disclose what it meant)."""
    names = set(committed)
    # A word naming a field any item may have, or one of REDACT_ALIASES, is accepted even when no exported
    # item has that field.
    known = COMMITTED_FIELDS | set(REDACT_ALIASES) | {n for ns in REDACT_ALIASES.values() for n in ns}
    for word in (x.strip().lower() for x in wanted):
        if word and word not in known and not redacted_fields(names, [word]):
            fields = ", ".join(sorted(names)) or "none"
            raise UsageError(
                f"--redact-metadata {word!r} matches no signed metadata field of the items exported "
                f"(theirs: {fields}; aliases: {', '.join(sorted(REDACT_ALIASES))}): nothing exported"
            )


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _payload_name(original: Any, item: str, media_type: str | None) -> str:
    if isinstance(original, str) and original:
        return original
    ext = mimetypes.guess_extension(media_type or "") or ".bin"
    return item.removeprefix("sha256:")[:16] + ext


def _require_ingests(item_ids: Sequence[str], ingests: dict[str, Event], hidden: dict[str, Event]) -> None:
    """Every exported item needs its revealed ingest line; say why one is not revealed."""
    for item in item_ids:
        if item in ingests:
            continue
        source = hidden[item].data.get("derived_from") if item in hidden else None
        if isinstance(source, str):
            raise UsageError(
                f"item {item[7:19]} is a working copy derived from {source[7:19]}: its ingest line names "
                f"that original, so it can only be exported together with it (add {source[7:19]})"
            )
        raise UsageError(f"no ingest event for {item} in the log")


def stage_evidence(
    vault: Vault,
    item_ids: Sequence[str],
    dest: Path,
    *,
    redact: Iterable[str] = (),
    export_id: str = "",
    created: str = "",
    exporter: str | None = None,
) -> Staged:
    """Write ``dest/evidence/`` for ``item_ids`` (nothing about other items beyond line hashes);
    ``exporter``: the fingerprint of the key that will sign the bag (its keys files are written too)."""
    exported = frozenset(item_ids)
    ev_root = dest / EVIDENCE
    staged = Staged()
    auth = Authority()
    leaves = merkle.Leaves()  # the log is streamed: memory holds 32 bytes a line, not the lines
    checkpoint_lines: set[int] = set()
    ingests: dict[str, Event] = {}
    hidden_ingests: dict[str, Event] = {}  # exported items whose ingest the rule withholds
    shown: set[int] = set()
    signed_name: str | None = None
    (ev_root / "events").mkdir(parents=True, exist_ok=True)
    with open(ev_root / "log.jsonl", "wb") as log_out:
        for raw in vault.log.iter_raw():
            if not raw.complete:
                break
            # Which lines are revealed depends on the event alone, not on the line's canonical form
            # (verify reports a non-canonical line; the bag's check does again for a revealed one).
            event = parse_event(raw.data)
            seq = len(leaves)
            leaf = merkle.leaf_hash(raw.data)
            leaves.append(leaf)
            if b'"type":"checkpoint"' in raw.data:
                checkpoint_lines.add(seq)
            if event.type in (ev.VAULT_CREATED, ev.KEY_ADDED, ev.KEY_REVOKED):
                auth.apply(event)
            if seq == 0 and event.type == ev.VAULT_CREATED and isinstance(event.data.get("name"), str):
                signed_name = event.data["name"]
            if not is_revealed(event, exported):
                if event.type == ev.ITEM_INGESTED and event.data.get("item") in exported:
                    hidden_ingests.setdefault(str(event.data["item"]), event)
                log_out.write(withheld_stub(seq, raw.data, leaf) + b"\n")
                staged.withheld += 1
                continue
            staged.revealed += 1
            shown.add(seq)
            staged.actors[seq] = event.actor
            log_out.write(raw.data + b"\n")
            staged.signers[event.actor] = ""
            _write(ev_root, f"events/{seq}.json", event.signing_bytes())
            _write(ev_root, f"events/{seq}.json.sig", armor(event.signature).encode())
            if event.type == ev.ITEM_INGESTED and event.data.get("item") in exported:
                ingests.setdefault(str(event.data["item"]), event)
    n_lines = len(leaves)
    _require_ingests(item_ids, ingests, hidden_ingests)
    wanted = list(redact)
    check_redaction(
        (
            name
            for event in ingests.values()
            if isinstance(event.data.get("committed"), dict)
            for name in event.data["committed"]
        ),
        wanted,
    )
    staged.genesis = auth.genesis
    staged.vault_name = signed_name if signed_name is not None else vault.config.name

    # Checkpoints recorded in the log, with their proofs; the block headers; Merkle proofs.
    recorded = [s for s in list_checkpoints(vault) if s < n_lines and s in checkpoint_lines]
    for size in recorded:
        src = checkpoint_dir(vault, size)
        rel_dir = f"checkpoints/{src.name}"
        files = checkpoint_files(f.name for f in src.iterdir() if f.is_file() and not f.is_symlink())
        for f in sorted(src.iterdir()):
            if f.name not in files:  # what verify-bundle would refuse: no checkpoint file, or a link
                continue
            _write(ev_root, f"{rel_dir}/{f.name}", f.read_bytes())
            if f.name.startswith("tsa-") and f.suffix == ".json":
                ca = tsa_root_file(vault, f)  # certificates from the vault or your config only
                if ca is not None:
                    _write(ev_root, f"{rel_dir}/{f.stem}.ca.pem", ca.read_bytes())
        for tsr in sorted(src.glob("tsa-*.tsr")):
            try:
                token = rfc3161.parse_token(tsr.read_bytes())
            except EvidenceVaultError:
                continue
            staged.tokens.append(
                {
                    "dir": rel_dir,
                    "base": tsr.stem,
                    "gen_time": token.gen_time,
                    "digest": hashlib.sha256((src / "checkpoint").read_bytes()).hexdigest(),
                }
            )
        staged.checkpoints.append(size)
    if headers_path(vault).exists():
        _write(ev_root, "headers.json", headers_path(vault).read_bytes())
    if staged.checkpoints:
        latest = staged.checkpoints[-1]
        paths = merkle.inclusion_proofs(leaves, (s for s in shown if s < latest), latest)  # by seq, in order
        proofs = {str(s): [h.hex() for h in path] for s, path in paths.items()}
        _write(
            ev_root,
            "proofs/inclusion.json",
            json.dumps({"tree_size": latest, "proofs": proofs}, indent=1).encode() + b"\n",
        )
        cons = [
            {"old_size": a, "new_size": b, "proof": [h.hex() for h in merkle.consistency_proof(leaves, a, b)]}
            for a, b in zip(staged.checkpoints, staged.checkpoints[1:], strict=False)
        ]
        _write(ev_root, "proofs/consistency.json", json.dumps(cons, indent=1).encode() + b"\n")

    # Keys: exactly the keys that signed a revealed event, plus the exporter (which signs the bag).
    if exporter is not None:
        staged.exporter = exporter
        staged.signers[exporter] = ""
    allowed = []
    for fp in sorted(staged.signers):
        grant = auth.keys.get(fp)
        if grant is None:
            raise EvidenceVaultError(f"signer {fp} is not a key of this vault's log")
        staged.signers[fp] = grant.name
        _write(ev_root, f"keys/{key_file_name(fp)}", (grant.public_key + "\n").encode())
        allowed.append(f'{fp} namespaces="{NAMESPACE}" {grant.public_key}\n')
    _write(ev_root, "keys/allowed_signers", "".join(allowed).encode())
    _write(ev_root, "keys/fingerprints.txt", fingerprints_text(staged.signers, auth).encode())

    # Metadata openings; payload names.
    originals: list[Any] = []
    for item in item_ids:
        event = ingests[item]
        committed = event.data.get("committed") if isinstance(event.data.get("committed"), dict) else {}
        assert isinstance(committed, dict)
        hidden = redacted_fields(committed, wanted)
        staged.redacted |= hidden
        try:
            doc = vault.metadata_object(str(event.data.get("metadata") or ""))
        except EvidenceVaultError:
            doc = {}
        fields = doc.get("fields") if isinstance(doc.get("fields"), dict) else {}
        assert isinstance(fields, dict)
        openings = {k: v for k, v in fields.items() if k in committed and k not in hidden}
        hex_id = item.removeprefix("sha256:")
        _write(
            ev_root,
            f"openings/{hex_id}.json",
            json.dumps(openings, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n",
        )
        if not wanted and doc:
            meta_hex = str(event.data["metadata"]).removeprefix("sha256:")
            with vault.objects.open(meta_hex) as fh:
                _write(ev_root, f"metadata/{hex_id}.json", fh.read())
        name = openings.get("original_name")  # as the (unchecked) metadata object has it: any JSON
        originals.append(
            _payload_name(
                name.get("value") if isinstance(name, dict) else None,
                item,
                str(event.data.get("media_type") or ""),
            )
        )
    for item, name in zip(item_ids, unique_names(originals), strict=True):
        staged.names[item] = name
    export_doc = {
        "v": 1,
        "type": "evidence-vault-export",
        "export_id": export_id,
        "created": created,
        "vault_id": vault.config.vault_id,
        "vault_name": staged.vault_name,
        "genesis_key": auth.genesis,
        "log_size": n_lines,
        "checkpoints": staged.checkpoints,
        "redacted_fields": sorted(staged.redacted),
        "items": [
            {
                "id": i,
                "path": f"data/{staged.names[i]}",
                "size": ingests[i].data.get("size"),
                "media_type": ingests[i].data.get("media_type"),
                "ingest_seq": ingests[i].seq,
            }
            for i in item_ids
        ],
    }
    _write(ev_root, "export.json", json.dumps(export_doc, indent=1, ensure_ascii=False).encode() + b"\n")
    return staged


def template(name: str) -> str:
    return resources.files("evidence_vault.bundle_templates").joinpath(name).read_text("utf-8")


def _block(check: str, commands: list[str]) -> str:
    """One fenced block: a subshell that stops at the first failing command (a pasted block leaves the
    terminal open) and exits non-zero then. It runs unchanged in bash, zsh and dash (POSIX sh): no
    comment line in it, since zsh, macOS's shell, reads ``#`` as a command when typed or pasted (its
    INTERACTIVE_COMMENTS option is off by default). The block's name is on the fence line (its info
    string, ``sh check=NAME``), which a reader does not copy."""
    body = "".join(c + "\n" for c in commands)
    return f"```sh check={check}\n(\nset -e\n{IN_BAG}\n" + body + ")\n```"


#: macOS may have no ``sha256sum``; it ships ``shasum`` (``shasum -a 256`` prints and checks the same
#: lines). Defined first in a block that needs it, only where ``sha256sum`` is missing. A function, not a
#: variable holding the command: zsh does not split an unquoted ``$var`` into words.
_SHA256SUM = 'command -v sha256sum >/dev/null || sha256sum() { shasum -a 256 "$@"; }'

#: Python reading a BagIt manifest and printing it for ``sha256sum -c``: BagIt writes ``%``, CR and LF
#: in a path as ``%25``, ``%0D``, ``%0A``; sha256sum wants them decoded, with ``\``, CR and LF escaped
#: after a leading backslash. Only double quotes inside: it sits in single quotes in the block.
_DECODE_MANIFEST = """decode='import re, sys
codes = {"25": "%", "0A": "\\n", "0D": "\\r"}
for line in open(sys.argv[1], encoding="utf-8"):
    digest, path = line.rstrip("\\n").split("  ", 1)
    path = re.sub("%(25|0A|0D)", lambda m: codes[m[1].upper()], path, flags=re.I)
    escaped = path.replace("\\\\", "\\\\\\\\").replace("\\n", "\\\\n").replace("\\r", "\\\\r")
    print(("\\\\" if escaped != path else "") + digest + "  " + escaped)'"""


#: ``sha256sum`` follows symbolic links: the block first stops at any link or special file in the bag.
_NO_LINKS = [
    "odd=$(find . ! -type f ! -type d)",
    'if [ -n "$odd" ]; then printf "not a plain file (an export holds no link):\\n%s\\n" "$odd"; exit 1; fi',
]


def _files_commands() -> list[str]:
    """No link or special file in the bag, then ``sha256sum -c`` of both manifests, decoded first (a
    failing decode stops the block)."""
    out = [*_NO_LINKS, _SHA256SUM, _DECODE_MANIFEST]
    for manifest in ("manifest-sha256.txt", "tagmanifest-sha256.txt"):
        out += [f'sums=$(python3 -c "$decode" {manifest})', 'printf "%s\\n" "$sums" | sha256sum --strict -c']
    return out


def render_verify_md(staged: Staged, stage: Path, vault_name: str) -> str:
    """VERIFY.md for this bag: one fenced block of standard-tool commands per claim."""
    ev_root = stage / EVIDENCE
    ev_cmds = [
        f"ssh-keygen -Y verify -f evidence/keys/allowed_signers -I {actor} -n {NAMESPACE} "
        f"-s evidence/events/{seq}.json.sig < evidence/events/{seq}.json"
        for seq, actor in staged.actors.items()
    ]
    sig_cmds = []
    for size in staged.checkpoints:  # a checkpoint line is always revealed
        d = f"evidence/checkpoints/{size:012d}"
        actor = staged.actors.get(size)
        if actor is not None:
            sig_cmds.append(
                f"ssh-keygen -Y verify -f evidence/keys/allowed_signers -I {actor} "
                f"-n {NAMESPACE} -s {d}/checkpoint.sig < {d}/checkpoint"
            )
    ots_cmds = [
        'ots --no-cache --no-default-whitelist --bitcoin-node "${BITCOIN_NODE:-http://127.0.0.1:8332/}" '
        "verify "
        f"-f evidence/checkpoints/{s:012d}/checkpoint evidence/checkpoints/{s:012d}/checkpoint.ots"
        for s in staged.checkpoints
        if (ev_root / f"checkpoints/{s:012d}/checkpoint.ots").exists()
    ]
    tsa_cmds = []
    for t in staged.tokens:
        base = f"evidence/{t['dir']}/{t['base']}"
        if not (stage / f"{base}.ca.pem").exists():
            continue
        untrusted = f" -untrusted {base}.chain.pem" if (stage / f"{base}.chain.pem").exists() else ""
        epoch = int(t["gen_time"].astimezone(UTC).timestamp())
        tsa_cmds.append(
            f'openssl ts -verify -digest "$(sha256sum evidence/{t["dir"]}/checkpoint | cut -d" " -f1)" '
            f"-in {base}.tsr -CAfile {base}.ca.pem"
            f"{untrusted} -attime {epoch}"
        )
    keys = "\n".join(
        f"- `{fp}` ({name or 'unnamed key'})"
        + (" **genesis key**" if fp == staged.genesis else "")
        + (" **exporter**" if fp == staged.exporter else "")
        for fp, name in sorted(staged.signers.items())
    )
    bag_sig = (
        _block(
            "exporter-signature",
            [
                f"ssh-keygen -Y verify -f evidence/keys/allowed_signers -I {staged.exporter} -n {NAMESPACE} "
                f"-s {BAG_SIGNATURE} < tagmanifest-sha256.txt"
            ],
        )
        if staged.exporter
        else "(This bag is not signed by its exporter.)"
    )
    parts = {
        "{{VAULT_NAME}}": vault_name.replace("\n", " "),
        "{{KEYS}}": keys,
        "{{EXPORTER}}": f"`{staged.exporter}`" if staged.exporter else "(none)",
        "{{EXPORTER_SIG_BLOCK}}": bag_sig,
        "{{FILES_BLOCK}}": _block("files", _files_commands()),
        "{{CHECKPOINT_SIG_BLOCK}}": _block("checkpoint-signatures", sig_cmds)
        if sig_cmds
        else "(This bag holds no checkpoint.)",
        "{{EVENT_SIG_BLOCK}}": _block("event-signatures", ev_cmds),
        "{{OTS_BLOCK}}": _block("opentimestamps", ots_cmds)
        if ots_cmds
        else "(No checkpoint in this bag has an OpenTimestamps proof.)",
        "{{TSA_BLOCK}}": _block("rfc3161", [_SHA256SUM, *tsa_cmds])
        if tsa_cmds
        else "(No checkpoint in this bag has an RFC 3161 token with its TSA's certificate.)",
        "{{SCRIPT_BLOCK}}": _block("script", ["python3 verify_bundle.py ."]),
    }
    text = template("VERIFY.md")
    for k, v in parts.items():
        text = text.replace(k, v)
    return text


def export(
    vault: Vault,
    signer: Signer,
    item_ids: Sequence[str],
    out: Path,
    *,
    as_zip: bool = False,
    redact: Sequence[str] = (),
    recipient: str | None = None,
) -> ExportResult:
    """Write the bag (or its zip) at ``out`` and record an ``item.exported`` event signed by ``signer``."""
    from .custody_report import bag_report

    out = Path(out)
    if out.exists() or out.is_symlink():
        raise UsageError("destination already exists", path=out)
    if not out.parent.is_dir():
        raise UsageError("destination folder does not exist", path=out.parent)
    vault.require_appendable(signer, ev.ITEM_EXPORTED)  # refused now, before a bag is written
    for item in item_ids:  # before anything is written: one line naming the item, not a bare ENOENT
        if not vault.objects.path(item.removeprefix("sha256:")).is_file():
            raise EvidenceVaultError(
                f"the original of item {item} is missing from the object store (`evidence-vault verify` "
                "reports it); nothing exported",
                path=vault.objects.path(item.removeprefix("sha256:")),
            )
    export_id = str(uuid.uuid4())
    created = utc_now()
    work = out.parent / f".{out.name}.export-{export_id[:8]}"
    work.mkdir()
    try:
        stage = work / "stage"
        stage.mkdir()
        staged = stage_evidence(
            vault,
            item_ids,
            stage,
            redact=redact,
            export_id=export_id,
            created=created,
            exporter=signer.fingerprint,
        )
        (stage / "VERIFY.md").write_text(render_verify_md(staged, stage, staged.vault_name), "utf-8")
        thumbs = {i: vault.objects.path(i.removeprefix("sha256:")) for i in item_ids}
        names = {i: f"data/{n}" for i, n in staged.names.items()}
        html = bag_report(stage, thumbs, names=names, made=created)  # verify-bundle renders it again
        tag_files: dict[str, bytes | Path] = {
            p.relative_to(stage).as_posix(): p for p in sorted(stage.rglob("*")) if p.is_file()
        }
        tag_files["report.html"] = html
        tag_files["verify_bundle.py"] = template("verify_bundle.py").encode("utf-8")
        bag_info = {
            "Source-Organization": bag_info_value(staged.vault_name),
            "External-Description": external_description(len(item_ids)),
            "External-Identifier": vault.config.vault_id,
            "Internal-Sender-Identifier": export_id,
            "Bag-Count": "1 of 1",
            "Bag-Group-Identifier": export_id,
            EXPORTER_LABEL: signer.fingerprint,  # covered by the tag manifest: signed too
        }
        payload = [(staged.names[i], vault.objects.path(i.removeprefix("sha256:"))) for i in item_ids]
        hashes = {"sha256": {staged.names[i]: i.removeprefix("sha256:") for i in item_ids}}
        bag_dir = work / (out.stem if as_zip else "bag")
        # The staged files are moved into the bag (the staging folder is removed below in any case).
        write_bag(
            bag_dir, payload, tag_files=tag_files, bag_info=bag_info, hashes=hashes, move_tag_files=True
        )
        # The exporter signs the bag: the exact bytes of the tag manifest, which lists every tag file
        # (evidence/, bag-info.txt with the exporter's name, manifest-sha256.txt and so the payload).
        manifest_bytes = (bag_dir / "tagmanifest-sha256.txt").read_bytes()
        tagmanifest = hashlib.sha256(manifest_bytes).hexdigest()
        (bag_dir / BAG_SIGNATURE).write_text(armor(signer.sign(manifest_bytes)), "ascii")
        if as_zip:
            bag_to_zip(bag_dir, out)
        else:  # written whole beside it, then renamed: no unsigned bag at `out` if signing fails
            if out.exists() or out.is_symlink():
                raise UsageError("destination already exists", path=out)
            bag_dir.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data: dict[str, Any] = {
        "export_id": export_id,
        "items": list(item_ids),
        "tagmanifest_sha256": tagmanifest,
    }
    if recipient:
        committed, openings = commitments.make({"recipient": recipient})
        doc = {"v": 1, "type": "openings", "salt": uuid.uuid4().hex, "fields": openings}
        digest, _ = vault.objects.put_bytes(canonical(doc))
        data.update(recipient=committed["recipient"], committed=committed, openings=digest.id)
    events = vault.append(signer, [(ev.ITEM_EXPORTED, data)])
    return ExportResult(
        export_id=export_id,
        out=str(out),
        items=list(item_ids),
        names=dict(staged.names),
        revealed=staged.revealed,
        withheld=staged.withheld,
        redacted=sorted(staged.redacted),
        tagmanifest_sha256=tagmanifest,
        seq=events[0].seq if events else None,
    )
