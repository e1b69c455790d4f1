"""Extract untrusted zip files safely: every entry is checked before a single byte is written."""

from __future__ import annotations

import os
import re
import shutil
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path

from evidence_vault.errors import BagError, DamagedZipError, StorageError, UnsafeZipError

__all__ = ["safe_extract"]

CHUNK = 1 << 20
DEFAULT_MAX_TOTAL_BYTES = 64 << 30  # 64 GiB
DEFAULT_MAX_FILES = 100_000
MAX_RATIO = 100  # uncompressed / compressed, per entry (media is stored, text compresses ~10x)
_RATIO_FLOOR = 1 << 20  # small entries may compress well without being a bomb
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
#: How a zip file starts: a local file header, or the end record of an empty zip (spanned: its marker).
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def _reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\0" in info.orig_filename:  # zipfile silently truncates names at NUL
        return "name contains NUL"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if "\0" in name:
        return "name contains NUL"
    if "\\" in name:
        return "name contains a backslash"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE_RE.match(name):
        return "drive letter"
    parts = name.rstrip("/").split("/") if name.endswith("/") else name.split("/")
    if not name or any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    if ".." in parts:
        return "'..' path component"
    if kind == stat.S_IFLNK:
        return "symbolic link entry"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special file entry"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return f"compression ratio above {MAX_RATIO} (zip bomb?)"
    return None


def _top_level(names: list[str]) -> str | None:
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop()
    return None


def safe_extract(
    zip_path: Path,
    dest: Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> Path:
    """Check every entry of ``zip_path``, then extract into ``dest`` (absent or empty).

    Rejects ``..``, absolute paths, drive letters, backslashes, NUL, symlinks and other special entries,
    duplicate names (also case- or normalization-insensitively), encrypted entries and zip bombs.
    Returns the single top-level folder if the zip has one (as a bag zip does), else ``dest``.
    Raises :class:`UnsafeZipError` for a zip that is unsafe and :class:`DamagedZipError` for one that is
    damaged or cut short (verdicts on the zip); a plain :class:`BagError` for a file that is no zip at all
    or cannot be opened, or a ``dest`` that is not empty, and :class:`StorageError` when writing fails
    (disk full): the tool could not check it.
    """
    zip_path, dest = Path(zip_path), Path(dest)

    def fail(msg: str) -> BagError:
        return UnsafeZipError(msg, path=zip_path)

    def damaged(msg: str) -> BagError:
        return DamagedZipError(msg, path=zip_path)

    try:
        zf = zipfile.ZipFile(zip_path)
    except OSError as exc:
        raise BagError(f"cannot read: {exc.strerror or exc}", path=zip_path) from None
    except zipfile.BadZipFile as exc:
        raise _not_a_zip_or_damaged(zip_path, exc) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise fail(f"{len(infos)} entries, more than the limit of {max_files}")
        seen: dict[str, str] = {}
        dirs: set[str] = set()
        files: set[str] = set()
        total = 0
        for info in infos:
            why = _reason(info)
            if why:
                raise fail(f"unsafe entry {info.filename!r}: {why}")
            key = unicodedata.normalize("NFC", info.filename.rstrip("/")).casefold()
            if key in seen:
                raise fail(f"unsafe entry {info.filename!r}: duplicate of {seen[key]!r}")
            seen[key] = info.filename
            parts = key.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            (dirs if info.is_dir() else files).add(key)
            total += info.file_size
            if total > max_total_bytes:
                raise fail(f"uncompressed size exceeds the limit of {max_total_bytes} bytes (zip bomb?)")
        clash = files & dirs
        if clash:
            raise fail(f"unsafe entry {seen[sorted(clash)[0]]!r}: is both a file and a directory")
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise BagError(f"destination {dest} is not an empty directory", path=zip_path)

        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        name = ""  # the entry being written, for an error message
        try:
            written = 0
            for info in infos:
                name = info.filename
                target = root / info.filename
                if os.path.commonpath([root, target.resolve()]) != str(root):
                    raise fail(f"unsafe entry {info.filename!r}: escapes the destination")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > max_total_bytes:
                            raise fail("uncompressed size exceeds the limit (zip bomb?)")
                        out.write(chunk)
        except OSError as exc:  # disk full, permissions, I/O error: the environment, not the zip
            _cleanup(dest, created)
            raise StorageError(
                f"cannot extract {name!r} from {zip_path.name}: {exc.strerror or exc}",
                path=exc.filename or dest / name,
            ) from None
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            _cleanup(dest, created)
            raise damaged(f"damaged zip: cannot extract {name!r} ({exc}): nothing was extracted") from None
        except BaseException:
            _cleanup(dest, created)
            raise
        top = _top_level([i.filename for i in infos])
        return dest / top if top else dest


def _not_a_zip_or_damaged(zip_path: Path, exc: zipfile.BadZipFile) -> BagError:
    """zipfile's "File is not a zip file" for any file it cannot open: a file that starts as a zip does
    is a damaged (often cut short) zip, a verdict on it; any other file is no zip at all."""
    try:
        with open(zip_path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return BagError(f"cannot read: {err.strerror or err}", path=zip_path)
    if not head.startswith(_ZIP_SIGNATURES):
        return BagError("not a zip file" + (" (it is empty)" if not head else ""), path=zip_path)
    why = "its central directory is missing (cut short?)" if str(exc) == "File is not a zip file" else exc
    return DamagedZipError(f"damaged or truncated zip: {why}", path=zip_path)


def _cleanup(dest: Path, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
