"""RFC 8493 BagIt: write, validate and zip bags (own implementation, no bagit-python at runtime).

Validation never raises for a bad bag: it returns :class:`BagFinding` objects (``error`` = the bag is not
valid, ``warning`` = a SHOULD of the spec is not met). Decisions beyond the spec, deliberate for evidence:

* Paths that are out of scope on *any* platform are errors everywhere: absolute paths, ``..``, ``~``,
  drive letters, UNC paths and backslashes (a bag must mean the same thing on Windows and on Linux).
* A manifest path that is missing on disk but matches exactly one file up to case or Unicode normalization
  is verified against that file and reported as a warning (bags made on macOS/Windows file systems).
* The same path listed twice with the same checksum is an error from BagIt 1.0 on, a warning before.
* Unresolved ``fetch.txt`` entries are an error (``fetch.incomplete``): a holey bag is not evidence.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import errno
import hashlib
import os
import re
import shutil
import stat
import unicodedata
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from evidence_vault.atomic import sync_files
from evidence_vault.errors import BagError, IntegrityError

__all__ = [
    "BagFinding",
    "bag_to_zip",
    "read_bag_info",
    "safe_payload_name",
    "unique_names",
    "validate_bag",
    "write_bag",
]

_T = TypeVar("_T")
_R = TypeVar("_R")

CHUNK = 1 << 20
BAGIT_VERSION = "1.0"
SOFTWARE_AGENT = "evidence-vault"
_WINDOWS_BAD = set('<>:"/\\|?*')
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in "123456789¹²³"}
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", ".directory"}
_WEAK = {"md5", "sha1"}
_MANIFEST_RE = re.compile(r"^(tag)?manifest-([A-Za-z0-9_-]+)\.txt$")
_LINE_RE = re.compile(r"^([0-9A-Fa-f]+)[ \t]+(.*)$")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_NEWLINES = re.compile(r"\r\n|\n|\r")


@dataclass(frozen=True)
class BagFinding:
    """One validation result; ``path`` is relative to the bag ("" = the bag itself)."""

    level: Literal["error", "warning"]
    path: str
    code: str
    message: str


# --------------------------------------------------------------------------------------------- names


def _cap_bytes(stem: str, ext: str, limit: int = 255) -> str:
    room = limit - len(ext.encode("utf-8"))
    if room < 1:  # absurd extension: cut the whole name
        stem, ext, room = stem + ext, "", limit
    data = stem.encode("utf-8")
    if len(data) > room:
        stem = data[:room].decode("utf-8", errors="ignore").rstrip(" .") or "_"
    return stem + ext


def _split_ext(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    if dot <= 0 or len(name) - dot > 16:
        return name, ""
    return name[:dot], name[dot:]


def safe_payload_name(name: str) -> str:
    """Return a file name valid on Windows, macOS and Linux (NFC, ≤255 UTF-8 bytes, never empty)."""
    s = unicodedata.normalize("NFC", name)
    s = "".join("_" if (c in _WINDOWS_BAD or ord(c) < 32 or ord(c) == 127) else c for c in s)
    s = s.strip(" ").rstrip(". ")
    if not s:
        s = "_"
    if s.split(".")[0].rstrip(" ").upper() in _RESERVED:
        s = "_" + s
    stem, ext = _split_ext(s)
    return _cap_bytes(stem, ext)


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def unique_names(names: Sequence[str]) -> list[str]:
    """Make every name safe and unique (case- and NFC/NFD-insensitively): ``a.jpg``, ``a (2).jpg``..."""
    used: set[str] = set()
    out: list[str] = []
    for raw in names:
        name = safe_payload_name(raw)
        n = 1
        while _fold(name) in used:
            n += 1
            stem, ext = _split_ext(safe_payload_name(raw))
            name = _cap_bytes(stem, f" ({n}){ext}")
        used.add(_fold(name))
        out.append(name)
    return out


# --------------------------------------------------------------------------------------------- writing


def _encode_path(path: str) -> str:
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _decode_path(path: str) -> str:
    return re.sub(r"%(0[AaDd]|25)", lambda m: chr(int(m.group(1), 16)), path)


def _check_rel(rel: str, what: str) -> str:
    rel = unicodedata.normalize("NFC", rel)
    parts = rel.split("/")
    if (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\0" in rel
        or _DRIVE_RE.match(rel)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise BagError(f"unsafe {what} path {rel!r}")
    return rel


def _new_hashers(algorithms: Iterable[str]) -> dict[str, hashlib._Hash]:
    return {a: hashlib.new(_hashlib_name(a)) for a in algorithms}


def _hashlib_name(alg: str) -> str:
    return alg.lower().replace("-", "_") if alg.lower().startswith("sha3") else alg.lower()


def _copy_hashing(src: Path, dst: Path, algorithms: Sequence[str]) -> tuple[int, dict[str, str]]:
    hashers = _new_hashers(algorithms)
    size = 0
    if not stat.S_ISREG(os.stat(src).st_mode):  # checked before open: a FIFO would block
        raise BagError("not a regular file", path=src)
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode):
            raise BagError("not a regular file", path=src)
        while chunk := fin.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    st = os.stat(src)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return size, {a: h.hexdigest() for a, h in hashers.items()}


def bag_info_value(text: str) -> str:
    """``text`` as one bag-info.txt value reads back: line breaks as spaces, no surrounding whitespace."""
    return _NEWLINES.sub(" ", text).strip()


def _bag_info_text(bag_info: Mapping[str, str | Sequence[str]], oxum: str) -> str:
    lines: list[str] = []
    seen = {k.lower() for k in bag_info}
    items: list[tuple[str, str | Sequence[str]]] = list(bag_info.items())
    if "bagging-date" not in seen:
        items.append(("Bagging-Date", _dt.date.today().isoformat()))
    if "bag-software-agent" not in seen:
        items.append(("Bag-Software-Agent", SOFTWARE_AGENT))
    items = [(k, v) for k, v in items if k.lower() != "payload-oxum"] + [("Payload-Oxum", oxum)]
    for label, value in items:
        if not label or label != label.strip() or ":" in label or _NEWLINES.search(label):
            raise BagError(f"invalid bag-info label {label!r}")
        for v in [value] if isinstance(value, str) else value:
            if _NEWLINES.search(v):
                raise BagError(f"bag-info value for {label} contains a line break")
            lines.append(f"{label}: {v}\n")
    return "".join(lines)


def _is_reserved_tag(rel: str) -> bool:
    top = rel.split("/")[0]
    return top in ("data", "bagit.txt", "bag-info.txt", "fetch.txt") or (
        "/" not in rel and _MANIFEST_RE.match(rel) is not None
    )


def write_bag(
    dest: Path,
    payload: Sequence[tuple[str, Path]],
    *,
    tag_files: Mapping[str, bytes | Path] = {},
    bag_info: Mapping[str, str | Sequence[str]] = {},
    algorithms: Sequence[str] = ("sha256",),
    hashes: Mapping[str, Mapping[str, str]] | None = None,
    move_tag_files: bool = False,
) -> None:
    """Write a BagIt 1.0 bag at ``dest`` atomically (built beside it, renamed at the end).

    ``payload`` holds (path under data/, source file). ``hashes`` (algorithm -> path -> hex), if given,
    are checked against the bytes actually copied; a difference raises :class:`IntegrityError`.
    ``tag_files`` maps a tag file's path to its bytes, or to a file to copy (streamed: a big vault's
    redacted log is never held in memory). With ``move_tag_files`` those files are moved into the bag
    (renamed, where on the same file system; a staging folder of the caller's) and made durable by one
    sync of the file system before the bag gets its name, instead of a copy and an fsync each: a bag
    that reveals 100,000 events has 200,000 of them.
    """
    dest = Path(dest)
    if os.path.lexists(dest):
        raise BagError("destination already exists", path=dest)
    if not algorithms:
        raise BagError("at least one checksum algorithm is needed")
    algs = [a.lower() for a in algorithms]
    for a in algs:
        try:
            hashlib.new(_hashlib_name(a))
        except ValueError:
            raise BagError(f"unsupported checksum algorithm {a!r}") from None
    rels: list[tuple[str, Path]] = []
    folded: dict[str, str] = {}
    for rel, src in payload:
        rel = _check_rel(rel, "payload")
        key = _fold(rel)
        if key in folded:
            raise BagError(f"payload paths {folded[key]!r} and {rel!r} collide (case or normalization)")
        folded[key] = rel
        rels.append((rel, Path(src)))
    tags: list[tuple[str, bytes | Path]] = []
    for rel, content in tag_files.items():
        rel = _check_rel(rel, "tag file")
        if _is_reserved_tag(rel):
            raise BagError(f"tag file name {rel!r} is reserved")
        tags.append((rel, content))
    given: dict[str, dict[str, str]] = {}
    for alg, table in (hashes or {}).items():
        given[alg.lower()] = {unicodedata.normalize("NFC", k): v.lower() for k, v in table.items()}

    tmp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=False)
    try:
        data = tmp / "data"
        data.mkdir()
        manifests: dict[str, dict[str, str]] = {a: {} for a in algs}
        total = 0
        for rel, src in rels:
            target = data / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            size, digests = _copy_hashing(src, target, sorted(set(algs) | set(given)))
            total += size
            for alg, table in given.items():
                expected = table.get(rel)
                if expected is not None and expected != digests[alg]:
                    raise IntegrityError(
                        f"{alg} of copied bytes {digests[alg]} differs from expected {expected}", path=src
                    )
            for alg in algs:
                manifests[alg][f"data/{rel}"] = digests[alg]
        _write(tmp / "bagit.txt", f"BagIt-Version: {BAGIT_VERSION}\nTag-File-Character-Encoding: UTF-8\n")
        _write(tmp / "bag-info.txt", _bag_info_text(bag_info, f"{total}.{len(rels)}"))
        for alg, entries in manifests.items():
            _write(tmp / f"manifest-{alg}.txt", _manifest_text(entries))
        tag_names = ["bagit.txt", "bag-info.txt", *(f"manifest-{a}.txt" for a in algs)]
        moved: list[str] = []  # their paths in the bag (strings: 200,000 Path objects would cost 60 MB)
        for rel, content in tags:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                if move_tag_files and _move(content, tmp / rel):
                    moved.append(rel)
                else:
                    _copy_hashing(content, tmp / rel, ())
            else:
                _write_bytes(tmp / rel, content)
            tag_names.append(rel)
        for alg in algs:
            entries = {}
            for rel in tag_names:
                with open(tmp / rel, "rb") as f:
                    entries[rel] = hashlib.file_digest(f, _hashlib_name(alg)).hexdigest()
            _write(tmp / f"tagmanifest-{alg}.txt", _manifest_text(entries))
        if moved:  # one sync for them all (the files written here were fsynced each)
            sync_files(tmp, (tmp / rel for rel in moved))
        _fsync_dir(tmp)
        if os.path.lexists(dest):
            raise BagError("destination appeared while writing", path=dest)
        os.rename(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _manifest_text(entries: Mapping[str, str]) -> str:
    return "".join(f"{digest}  {_encode_path(rel)}\n" for rel, digest in sorted(entries.items()))


def _move(src: Path, dst: Path) -> bool:
    """Rename the regular file ``src`` to ``dst``; False (nothing done) if they are on two file systems."""
    if not stat.S_ISREG(os.lstat(src).st_mode):
        raise BagError("not a regular file", path=src)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def _write(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, content: bytes) -> None:
    with open(path, "xb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- reading


@dataclass
class _Ctx:
    root: Path
    findings: list[BagFinding] = field(default_factory=list)
    version: tuple[int, int] = (1, 0)
    encoding: str = "utf-8"

    def error(self, path: str, code: str, message: str) -> None:
        self.findings.append(BagFinding("error", path, code, _one_line(message)))

    def warn(self, path: str, code: str, message: str) -> None:
        self.findings.append(BagFinding("warning", path, code, _one_line(message)))


def _one_line(s: str) -> str:
    return s.replace("\r", "\\r").replace("\n", "\\n")


def _read_declaration(ctx: _Ctx) -> None:
    p = ctx.root / "bagit.txt"
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        ctx.error("bagit.txt", "bagit.missing", "bagit.txt (bag declaration) is missing")
        return
    except OSError as exc:
        ctx.error("bagit.txt", "file.unreadable", f"cannot read bagit.txt: {exc.strerror}")
        return
    if raw.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        ctx.error("bagit.txt", "bagit.bom", "bagit.txt must not start with a byte-order mark")
        raw = raw.lstrip(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        ctx.error("bagit.txt", "bagit.bad-encoding", "bagit.txt is not UTF-8")
        return
    lines = list(_lines(text))
    m1 = re.fullmatch(r"BagIt-Version: ([0-9]+)\.([0-9]+)", lines[0]) if lines else None
    m2 = re.fullmatch(r"Tag-File-Character-Encoding: (\S+)", lines[1]) if len(lines) > 1 else None
    if len(lines) != 2 or not m1 or not m2:
        bad = next((ln for ln, m in zip(lines, (m1, m2), strict=False) if not m), None)
        detail = f"bad line {bad!r}" if bad is not None else f"expected 2 lines, found {len(lines)}"
        ctx.error("bagit.txt", "bagit.bad-declaration", f"bagit.txt is not a valid declaration: {detail}")
    if m1:
        major, minor = _small_int(m1.group(1)), _small_int(m1.group(2))
        ver = (major, minor) if major is not None and minor is not None else (10**30, 0)
        if not (0, 93) <= ver <= (1, 0):
            shown = f"{m1.group(1)[:20]}.{m1.group(2)[:20]}" if ver[0] == 10**30 else f"{ver[0]}.{ver[1]}"
            ctx.error("bagit.txt", "bagit.unsupported-version", f"unsupported BagIt-Version {shown}")
        else:
            ctx.version = ver
    if m2:
        enc = m2.group(1)
        try:
            name = codecs.lookup(enc).name
        except LookupError:
            ctx.error("bagit.txt", "bagit.unknown-encoding", f"unknown Tag-File-Character-Encoding {enc!r}")
            return
        ctx.encoding = name
        if name != "utf-8":
            ctx.warn("bagit.txt", "bagit.non-utf8-encoding", f"tag files are {enc}, UTF-8 is recommended")


def _decode_tag(ctx: _Ctx, rel: str, raw: bytes) -> str | None:
    enc = ctx.encoding
    if enc == "utf-8" and raw.startswith(codecs.BOM_UTF8):
        ctx.warn(rel, "tag.bom", "tag file starts with a byte-order mark")
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode(enc)
    except UnicodeDecodeError as exc:
        ctx.error(rel, "tag.bad-encoding", f"not valid {enc} at byte {exc.start}")
        return None


def _read_tag(ctx: _Ctx, rel: str) -> str | None:
    try:
        raw = (ctx.root / rel).read_bytes()
    except OSError as exc:
        ctx.error(rel, "file.unreadable", f"cannot read: {exc.strerror}")
        return None
    return _decode_tag(ctx, rel, raw)


def _parse_info(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
    """Parse bag-info text into (label, value) pairs and (level, code, message, line) problems."""
    items: list[tuple[str, str]] = []
    problems: list[tuple[str, str, str, str]] = []
    for line in _lines(text):
        if not line.strip():
            problems.append(("warning", "bag-info.blank-line", "blank line", line))
        elif line[0] in " \t":
            if items:
                label, value = items[-1]
                items[-1] = (label, f"{value} {line.strip()}")
            else:
                problems.append(("error", "bag-info.bad-line", "continuation line without a label", line))
        elif ":" not in line:
            problems.append(("error", "bag-info.bad-line", f"line without a colon: {line!r}", line))
        else:
            label, _, value = line.partition(":")
            if label != label.strip():
                problems.append(
                    ("warning", "bag-info.whitespace", f"whitespace around label {label!r}", line)
                )
            items.append((label.strip(), value.strip()))
    return items, problems


def _info_name(ctx: _Ctx) -> str:
    if not (ctx.root / "bag-info.txt").exists() and (ctx.root / "package-info.txt").exists():
        return "package-info.txt"
    return "bag-info.txt"


def read_bag_info(path: Path) -> dict[str, list[str]]:
    """Return bag-info.txt as label -> values (labels as written, repeated labels keep every value)."""
    root = Path(path)
    if not root.is_dir():
        raise BagError("not a bag directory", path=root)
    ctx = _Ctx(root)
    _read_declaration(ctx)
    name = _info_name(ctx)
    if not (root / name).exists():
        return {}
    text = _read_tag(ctx, name)
    if text is None:
        raise BagError(f"{name} cannot be read or decoded", path=root)
    out: dict[str, list[str]] = {}
    for label, value in _parse_info(text)[0]:
        out.setdefault(label, []).append(value)
    return out


# --------------------------------------------------------------------------------------------- validation


@dataclass(slots=True)
class _Entry:
    path: str  # as resolved against the bag (posix, relative)
    digest: str
    line: int


def _unsafe(path: str) -> str | None:
    if "\0" in path:
        return "contains NUL"
    if path.startswith("/"):
        return "is absolute"
    if path.startswith("~"):
        return "starts with ~ (home directory)"
    if _DRIVE_RE.match(path):
        return "has a drive letter"
    if "\\" in path:
        return "contains a backslash (a path separator on Windows)"
    if ".." in path.split("/"):
        return "contains '..'"
    return None


def _walk(ctx: _Ctx) -> tuple[dict[str, int], dict[str, int]]:
    """Return (payload files, tag files) as relative path -> size; reports links and special files."""
    root_real = os.path.realpath(ctx.root)
    payload: dict[str, int] = {}
    tags: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(ctx.root, followlinks=False):
        reldir = os.path.relpath(dirpath, ctx.root).replace(os.sep, "/")
        reldir = "" if reldir == "." else reldir + "/"
        for name in sorted(dirnames + filenames):
            rel = reldir + name
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(full)
                if os.path.commonpath([root_real, real]) != root_real:
                    ctx.error(rel, "path.out-of-scope", "symbolic link points outside the bag")
                    continue
                ctx.warn(rel, "path.symlink", "symbolic link inside the bag")
                try:
                    st = os.stat(full)
                except OSError:
                    ctx.error(rel, "path.broken-link", "dangling symbolic link")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if name in dirnames:
                        dirnames.remove(name)
                    continue
            if not stat.S_ISREG(st.st_mode):
                ctx.error(rel, "path.special-file", "not a regular file (device, FIFO or socket)")
                continue
            if rel.startswith("data/"):
                payload[rel] = st.st_size
                if name.lower() in _SYSTEM_FILES or name.startswith("._"):
                    ctx.warn(rel, "payload.system-file", "operating-system metadata file in the payload")
            else:
                tags[rel] = st.st_size
    return payload, tags


def _lines(text: str) -> Iterator[str]:
    """The lines of a tag file (CR, LF or CRLF), one at a time: a manifest can list 200,000 files."""
    start = 0
    for m in _NEWLINES.finditer(text):
        yield text[start : m.start()]
        start = m.end()
    if start < len(text):
        yield text[start:]


def _parse_manifest(ctx: _Ctx, rel: str, alg: str, is_tag: bool) -> list[_Entry] | None:
    text = _read_tag(ctx, rel)
    if text is None:
        return None
    try:
        size = hashlib.new(_hashlib_name(alg)).digest_size * 2
    except ValueError:
        size = 0
    entries: list[_Entry] = []
    for n, line in enumerate(_lines(text), 1):
        where = f"{rel} line {n}"
        if not line.strip():
            ctx.warn(rel, "manifest.blank-line", f"{where}: blank line")
            continue
        m = _LINE_RE.match(line)
        if not m or not m.group(2) or (size and len(m.group(1)) != size):
            ctx.error(rel, "manifest.bad-line", f"{where}: not '<{alg} checksum> <path>': {line!r}")
            continue
        digest, path = m.group(1).lower(), m.group(2)
        if ctx.version >= (1, 0):
            path = _decode_path(path)
        if path.startswith("*") and not os.path.lexists(ctx.root / path):
            ctx.warn(rel, "manifest.binary-marker", f"{where}: md5sum-style '*' before the path")
            path = path[1:]
        if path.startswith("./"):
            ctx.warn(rel, "manifest.dot-slash", f"{where}: path starts with './'")
            while path.startswith("./"):
                path = path[2:]
        why = _unsafe(path)
        if why:
            ctx.error(path, "path.out-of-scope", f"{where}: path {why}")
            continue
        if any(p in ("", ".") for p in path.split("/")):
            ctx.error(path, "manifest.bad-path", f"{where}: empty or '.' path component")
            continue
        if not is_tag and not path.startswith("data/"):
            ctx.error(path, "path.out-of-scope", f"{where}: payload manifest lists a file outside data/")
            continue
        if is_tag and path.startswith("data/"):
            ctx.error(path, "tagmanifest.payload-file", f"{where}: tag manifest lists a payload file")
            continue
        entries.append(_Entry(path, digest, n))
    _check_duplicates(ctx, rel, entries)
    return entries


def _check_duplicates(ctx: _Ctx, rel: str, entries: list[_Entry]) -> None:
    exact: dict[str, list[_Entry]] = {}
    folded: dict[str, set[str]] = {}
    for e in entries:
        exact.setdefault(e.path, []).append(e)
        folded.setdefault(_fold(e.path), set()).add(e.path)
    for path, group in exact.items():
        if len(group) < 2:
            continue
        if len({e.digest for e in group}) > 1:
            ctx.error(path, "manifest.conflicting-entries", f"{rel} lists the path with different checksums")
        elif ctx.version >= (1, 0):
            ctx.error(path, "manifest.duplicate-entry", f"{rel} lists the path {len(group)} times")
        else:
            ctx.warn(path, "manifest.duplicate-entry", f"{rel} lists the path {len(group)} times")
    for variants in folded.values():
        if len(variants) > 1:
            names = ", ".join(sorted(repr(v) for v in variants))
            ctx.warn(
                sorted(variants)[0],
                "manifest.equivalent-entries",
                f"{rel} lists paths that differ only in case or Unicode normalization: {names}",
            )


class _Resolver:
    def __init__(self, files: Mapping[str, int]) -> None:
        self.files = files
        self.norm: dict[str, list[str]] | None = None  # made at the first path not found as written
        self.fold: dict[str, list[str]] = {}

    def resolve(self, path: str) -> tuple[str | None, str | None]:
        """Return (file on disk, warning code) for a manifest path."""
        if path in self.files:
            return path, None
        if self.norm is None:
            self.norm = {}
            for f in self.files:
                self.norm.setdefault(unicodedata.normalize("NFC", f), []).append(f)
                self.fold.setdefault(_fold(f), []).append(f)
        cands = self.norm.get(unicodedata.normalize("NFC", path), [])
        if len(cands) == 1:
            return cands[0], "path.normalization-mismatch"
        cands = self.fold.get(_fold(path), [])
        if len(cands) == 1:
            return cands[0], "path.case-mismatch"
        return None, None


def _map_bounded(
    pool: Executor, fn: Callable[[_T], _R], items: Iterable[_T], window: int = 256
) -> Iterator[_R]:
    """``pool.map(fn, items)`` with at most ``window`` items in flight: ``Executor.map`` submits every
    item at once, and a future costs about 2 KB (400 MB for the 200,000 tag files of a bag that reveals
    100,000 events)."""
    pending: deque[Future[_R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _check_digests(
    ctx: _Ctx,
    jobs: list[tuple[str, tuple[tuple[int, str, str, str], ...]]],
    results: Iterator[tuple[dict[str, str], int] | str],
    stats: dict[str, int] | None,
) -> None:
    """Compare each file's digests, as they come, with what its manifests say; report the differences in
    the order the manifests list them. ``stats`` gets the bytes read."""
    found: list[tuple[int, str, str, str]] = []  # (order listed, disk path, code, message)
    hashed = 0
    for (disk, wants), result in zip(jobs, results, strict=True):
        if isinstance(result, str):
            found.append((wants[0][0], disk, "file.unreadable", f"cannot read: {result}"))
            continue
        got, size = result
        hashed += size
        for index, alg, want, manifest in wants:
            if got[alg] != want:
                code = "payload.hash-mismatch" if disk.startswith("data/") else "tag.hash-mismatch"
                found.append((index, disk, code, f"{alg} is {got[alg]}, {manifest} says {want}"))
    for _, disk, code, message in sorted(found):
        ctx.error(disk, code, message)
    if stats is not None:
        stats["bytes_hashed"] = hashed


def _hash_file(root: Path, rel: str, algs: Sequence[str]) -> tuple[dict[str, str], int] | str:
    """The file's digest in each algorithm and its size in bytes read, or why it cannot be read."""
    try:
        hashers = _new_hashers(algs)
        size = 0
        with open(root / rel, "rb") as f:
            while chunk := f.read(CHUNK):
                size += len(chunk)
                for h in hashers.values():
                    h.update(chunk)
        return {a: h.hexdigest() for a, h in hashers.items()}, size
    except OSError as exc:
        return exc.strerror or str(exc)


def _parse_fetch(ctx: _Ctx) -> list[str]:
    if not (ctx.root / "fetch.txt").exists():
        return []
    text = _read_tag(ctx, "fetch.txt")
    if text is None:
        return []
    out: list[str] = []
    for n, line in enumerate(_NEWLINES.split(text), 1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            ctx.error("fetch.txt", "fetch.bad-line", f"line {n}: not '<url> <length|-> <path>': {line!r}")
            continue
        path = _decode_path(parts[2]) if ctx.version >= (1, 0) else parts[2]
        why = _unsafe(path)
        if why or not path.startswith("data/"):
            reason = f"path {why}" if why else "path is outside data/"
            ctx.error(path, "path.out-of-scope", f"fetch.txt line {n}: {reason}")
            continue
        out.append(path)
    return out


def _check_oxum(ctx: _Ctx, info_name: str, payload: Mapping[str, int]) -> None:
    if not (ctx.root / info_name).exists():
        return
    text = _read_tag(ctx, info_name)
    if text is None:
        return
    items, problems = _parse_info(text)
    for level, code, message, _line in problems:
        (ctx.error if level == "error" else ctx.warn)(info_name, code, message)
    oxums = {v for k, v in items if k.lower() == "payload-oxum"}
    if len(oxums) > 1:
        ctx.error(info_name, "bag-info.bad-oxum", f"conflicting Payload-Oxum values: {sorted(oxums)}")
        return
    if not oxums:
        return
    oxum = oxums.pop()
    m = re.fullmatch(r"([0-9]+)\.([0-9]+)", oxum)
    if not m:
        ctx.error(info_name, "bag-info.bad-oxum", f"Payload-Oxum {oxum!r} is not '<octets>.<files>'")
        return
    octets, count = _small_int(m.group(1)), _small_int(m.group(2))
    found = (sum(payload.values()), len(payload))
    if (octets, count) != found:
        said = f"{octets} bytes in {count} files" if octets is not None and count is not None else oxum[:60]
        ctx.error(
            info_name,
            "bag-info.oxum-mismatch",
            f"Payload-Oxum says {said}, found {found[0]} bytes in {found[1]} files",
        )


def _small_int(digits: str) -> int | None:
    """ASCII digits as a number; None past 30 digits (no bag is that big, and Python refuses to convert
    more than 4,300 digits at all)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 30 else None


def validate_bag(
    path: Path, *, processes: int | None = None, stats: dict[str, int] | None = None
) -> list[BagFinding]:
    """Fully validate a bag (RFC 8493, BagIt 0.93-1.0); return findings (no errors = valid). ``stats``
    gets ``bytes_hashed``: the bytes of the payload and tag files read to check their digests."""
    ctx = _Ctx(Path(path))
    if not ctx.root.is_dir():
        ctx.error("", "bag.not-a-directory", "not a directory")
        return ctx.findings
    _read_declaration(ctx)
    data = ctx.root / "data"
    if data.is_symlink() or not data.is_dir():
        ctx.error("data", "payload.missing-dir", "payload directory data/ is missing or not a directory")
    payload, tags = _walk(ctx)

    manifests: dict[str, list[_Entry]] = {}
    tagmanifests: dict[str, list[_Entry]] = {}
    for name in sorted(tags):
        m = _MANIFEST_RE.match(name)
        if not m or "/" in name:
            continue
        is_tag, alg = m.group(1) is not None, m.group(2).lower()
        try:
            hashlib.new(_hashlib_name(alg))
        except ValueError:
            ctx.error(name, "manifest.unsupported-algorithm", f"cannot check algorithm {alg!r}")
            continue
        entries = _parse_manifest(ctx, name, alg, is_tag)
        if entries is not None:
            (tagmanifests if is_tag else manifests)[alg] = entries
    if not any(_MANIFEST_RE.match(n) and not n.startswith("tag") for n in tags if "/" not in n):
        ctx.error("", "manifest.none", "no payload manifest (manifest-<algorithm>.txt)")
    elif manifests and set(manifests) <= _WEAK:
        ctx.warn("", "manifest.weak-algorithm", f"only weak checksums ({', '.join(sorted(manifests))})")

    fetch = set(_parse_fetch(ctx))
    payload_res, tag_res = _Resolver(payload), _Resolver(tags)
    # disk path -> what its manifests say: (order listed, alg, digest, manifest). Tuples, and no list of
    # results: a bag can have 200,000 tag files.
    work: dict[str, tuple[tuple[int, str, str, str], ...]] = {}
    order = 0
    listed: dict[str, set[str]] = {alg: set() for alg in manifests}
    missing_fetch: set[str] = set()
    for is_tag, table in ((False, manifests), (True, tagmanifests)):
        resolver = tag_res if is_tag else payload_res
        prefix = "tagmanifest" if is_tag else "manifest"
        for alg, entries in table.items():
            manifest = f"{prefix}-{alg}.txt"
            for e in entries:
                disk, how = resolver.resolve(e.path)
                if disk is None:
                    if e.path in fetch:
                        missing_fetch.add(e.path)
                    else:
                        ctx.error(e.path, "manifest.missing-file", f"listed in {manifest}, not found")
                    continue
                if how:
                    ctx.warn(e.path, how, f"listed in {manifest}; found as {disk!r}")
                if not is_tag:
                    listed[alg].add(disk)
                work[disk] = (*work.get(disk, ()), (order, alg, e.digest, manifest))
                order += 1
            entries.clear()  # what they say is in ``work`` now
    for p in sorted(missing_fetch):
        ctx.error(p, "fetch.incomplete", "listed in fetch.txt but not fetched: the bag is incomplete")
    for p in sorted(fetch - missing_fetch):
        if manifests and not any(payload_res.resolve(p)[0] in s for s in listed.values()):
            ctx.error(p, "fetch.not-in-manifest", "fetch.txt entry is not in the payload manifests")
    for alg, seen in listed.items():
        for p in sorted(set(payload) - seen):
            ctx.error(p, "payload.not-in-manifest", f"payload file is not listed in manifest-{alg}.txt")

    workers = max(1, processes if processes is not None else min(32, (os.cpu_count() or 1) + 4))
    jobs = sorted(work.items())
    del work

    def hash_one(job: tuple[str, tuple[tuple[int, str, str, str], ...]]) -> tuple[dict[str, str], int] | str:
        return _hash_file(ctx.root, job[0], sorted({want[1] for want in job[1]}))

    if workers == 1 or len(jobs) < 2:
        _check_digests(ctx, jobs, map(hash_one, jobs), stats)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            _check_digests(ctx, jobs, _map_bounded(pool, hash_one, jobs), stats)

    info_name = _info_name(ctx)
    if not missing_fetch:
        _check_oxum(ctx, info_name, payload)
    return ctx.findings


# --------------------------------------------------------------------------------------------- zip


def bag_to_zip(bag_dir: Path, zip_path: Path) -> None:
    """Zip a bag under one top-level folder, in sorted order with fixed timestamps; payload is stored."""
    bag_dir, zip_path = Path(bag_dir), Path(zip_path)
    if not (bag_dir / "bagit.txt").is_file():
        raise BagError("not a bag (no bagit.txt)", path=bag_dir)
    if os.path.lexists(zip_path):
        raise BagError("destination already exists", path=zip_path)
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(bag_dir, followlinks=False):
        dirnames.sort()
        rel = os.path.relpath(dirpath, bag_dir).replace(os.sep, "/")
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(full).st_mode):
                raise BagError(f"refusing to zip non-regular file {name!r}", path=full)
            files.append(name if rel == "." else f"{rel}/{name}")
    top = bag_dir.resolve().name
    tmp = zip_path.parent / f".{zip_path.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        with zipfile.ZipFile(tmp, "x", allowZip64=True) as zf:
            for rel in sorted(files, key=lambda r: (r.startswith("data/"), r)):
                info = zipfile.ZipInfo(f"{top}/{rel}", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3
                payload = rel.startswith("data/")
                info.compress_type = zipfile.ZIP_STORED if payload else zipfile.ZIP_DEFLATED
                size = os.path.getsize(bag_dir / rel)
                info.file_size = size
                with open(bag_dir / rel, "rb") as src, zf.open(info, "w", force_zip64=size > 2**31) as dst:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.rename(tmp, zip_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
