"""Take custody of a received bag: verify it, then ingest its files with their provenance.

Each payload file is ingested like ``add`` does, with ``source`` = "bag <vault id> from <vault name>",
both as the bag's verified, signed ``vault.created`` line gives them (never from the unsigned
bag-info.txt, which verify-bundle only checks against them), and its ingest event carries
``provenance``: the SHA-256 of the bag's ``tagmanifest-sha256.txt``, the sending vault's id, and the
object holding the bag's tag files (a zip of everything but ``data/``), so the received custody log and
proofs stay with the files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .bagit import bag_info_value
from .bundle_verify import require_bag, verify_bundle
from .errors import DamagedZipError, EvidenceVaultError, UnsafeZipError, UsageError
from .regular_files import read_bytes
from .report import Report
from .safezip import safe_extract
from .signing import Signer
from .vault import AddOptions, AddResult, Vault, _Stored, display_name


class BundleRejected(EvidenceVaultError):
    """The bag did not verify: nothing was imported."""

    exit_code = 1


@dataclass
class ImportResult:
    report: Report
    results: list[AddResult] = field(default_factory=list)
    source: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verification": self.report.outcome,
            "source": self.source,
            "provenance": self.provenance,
            "results": [r.to_dict() for r in self.results],
        }


def _tag_zip(root: Path, out: BinaryIO) -> None:
    """Write every file of the bag except data/ to ``out`` as a deterministic zip (fixed times, sorted);
    each file streamed in (a big vault's redacted log is never held in memory)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            if rel == "data" or rel.startswith("data/") or not stat.S_ISREG(st.st_mode):
                continue
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = st.st_size  # as writestr sets it: the same entry header (zip64 or not)
            with open(p, "rb") as src, zf.open(info, "w") as dest:
                shutil.copyfileobj(src, dest, 1 << 20)


def _store_tag_zip(vault: Vault, root: Path) -> tuple[Any, bool]:
    """The bag's tag files zip, put into the object store through a temporary file."""
    with tempfile.TemporaryFile(prefix="evidence-vault-import-") as tmp:
        _tag_zip(root, tmp)
        size = tmp.tell()
        tmp.seek(0)
        return vault.objects.put_file(tmp.fileno(), size, "the bag's tag files")


CHANGED_SINCE_VERIFIED = (
    "changed since the bag was verified (no item of its log has this content): not imported"
)


def import_bag(
    vault: Vault,
    path: Path,
    signer: Signer,
    *,
    trusted: Sequence[str] = (),
    tsa_roots: Sequence[bytes] = (),
    strict: bool = False,
) -> ImportResult:
    """Verify ``path`` (bag directory or zip), then ingest its payload (:class:`BundleRejected` if not)."""
    path = Path(path)
    vault.require_appendable(signer)  # a refusal known now stores nothing (no orphan objects)
    tmp = Path(tempfile.mkdtemp(prefix="evidence-vault-import-"))
    try:
        root = path
        if path.is_file():
            try:
                root = safe_extract(path, tmp / "bag")
            except (UnsafeZipError, DamagedZipError) as exc:  # as verify-bundle: FAIL, nothing imported
                raise BundleRejected(f"bag rejected: {exc.message}", path=path) from None
            # Not a zip at all, or a disk that fills up: raised (exit 2), as verify-bundle does.
            require_bag(root, path)
        elif not path.is_dir():
            raise UsageError("no such bag", path=path)
        report = verify_bundle(root, trusted=trusted, tsa_roots=tsa_roots)
        if report.exit_code(strict) != 0:
            codes = sorted({f.code for f in report.failures} or {f.code for f in report.warnings})
            raise BundleRejected(
                f"bag does not verify ({report.outcome}: {', '.join(codes)}); nothing imported", path=path
            )
        # The sender as the verified log signs it, never as bag-info.txt (the exporter's word) says.
        sender = bag_info_value(report.vault_name) if report.vault_name is not None else "?"
        source = f"bag {report.vault_id or '?'} from {sender}"
        try:
            tagmanifest = hashlib.sha256(read_bytes(root / "tagmanifest-sha256.txt")).hexdigest()
        except OSError as exc:  # verify-bundle requires it: the bag changed since it was verified
            raise BundleRejected(
                "bag rejected: tagmanifest-sha256.txt cannot be read since the bag was verified "
                f"({exc.strerror or exc}); nothing imported",
                path=path,
            ) from None
        digest, stored_now = _store_tag_zip(vault, root)
        provenance = {
            "bag_tagmanifest_sha256": tagmanifest,
            "source_vault": report.vault_id,
            "bundle_object": digest.id,
        }
        files = sorted(p for p in (root / "data").rglob("*") if p.is_file() and not p.is_symlink())
        options = AddOptions(source=source)
        prepared = []
        results: list[AddResult] = []
        verified = {str(entry.get("id")) for entry in report.items}  # the items of the verified log
        unpacked = root != path  # a zip: its files are recorded by their path inside it, not in tmp
        for f in files:
            recorded = f"{path.resolve()}/{f.relative_to(tmp / 'bag').as_posix()}" if unpacked else None
            outcome = vault._prepare(str(f), options, None, recorded_as=recorded)
            if not isinstance(outcome, AddResult) and outcome.digest.id not in verified:
                # Changed (or put there) after the bag was verified: not what the bag's log vouches for.
                if not isinstance(outcome, _Stored):
                    vault.objects.discard(str(outcome.data["metadata"]).removeprefix("sha256:"))
                    vault.objects.discard(outcome.digest.sha256)
                results.append(
                    AddResult(display_name(recorded or f), "failed", message=CHANGED_SINCE_VERIFIED)
                )
                continue
            if isinstance(outcome, _Stored):  # content the store holds: _commit tells whether the log has it
                outcome = vault._describe(outcome, options)
            if isinstance(outcome, AddResult):
                results.append(outcome)
                continue
            outcome.data["provenance"] = provenance
            prepared.append(outcome)
        if prepared:
            results += vault._commit(prepared, signer, options, None)
        if stored_now and not any(r.status == "added" for r in results):
            # Only what this import stored: the same bag imported before holds the same object.
            vault.objects.discard(digest.sha256)
        return ImportResult(report=report, results=results, source=source, provenance=provenance)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
