"""safe_extract rejects hostile zips before writing anything."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from evidence_vault.errors import BagError
from evidence_vault.safezip import safe_extract


def _zip(
    path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], compress: int = zipfile.ZIP_STORED
) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


GOOD = ("bag/ok.txt", b"fine")


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ([GOOD, ("bag/../../evil.txt", b"x")], "'..'"),
        ([GOOD, ("/etc/evil", b"x")], "absolute"),
        ([GOOD, ("C:/evil.txt", b"x")], "drive letter"),
        ([GOOD, ("bag\\..\\evil.txt", b"x")], "backslash"),
        ([GOOD, (_symlink_info("bag/link"), b"/etc/passwd")], "symbolic link"),
        ([GOOD, ("bag/ok.txt", b"again")], "duplicate"),
        ([GOOD, ("bag/OK.TXT", b"again")], "duplicate"),
        ([GOOD, ("bag/ok.txt/inner", b"x")], "file and a directory"),
    ],
)
def test_rejects_before_writing(
    tmp_path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], fragment: str
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        z = _zip(tmp_path / "evil.zip", entries)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BagError) as exc:
        safe_extract(z, dest)
    assert fragment in str(exc.value) and "evil.zip" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert list(dest.iterdir()) == []


def test_rejects_nul_in_name(tmp_path: Path) -> None:
    z = _zip(tmp_path / "evil.zip", [GOOD, ("bag/nul@.txt", b"x")])
    z.write_bytes(z.read_bytes().replace(b"nul@", b"nul\0"))  # zipfile cannot write NUL itself
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BagError, match="NUL"):
        safe_extract(z, dest)
    assert list(dest.iterdir()) == []


def test_rejects_zip_bomb_by_ratio(tmp_path: Path) -> None:
    z = _zip(tmp_path / "bomb.zip", [GOOD, ("bag/zeros", b"\0" * (20 << 20))], zipfile.ZIP_DEFLATED)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BagError, match="ratio"):
        safe_extract(z, dest)
    assert list(dest.iterdir()) == []


def test_rejects_total_size_and_file_count(tmp_path: Path) -> None:
    z = _zip(tmp_path / "big.zip", [GOOD, ("bag/b", b"x" * 1000)])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BagError, match="size"):
        safe_extract(z, dest, max_total_bytes=500)
    with pytest.raises(BagError, match="entries"):
        safe_extract(z, dest, max_files=1)
    assert list(dest.iterdir()) == []


def test_good_zip_extracts(tmp_path: Path) -> None:
    z = _zip(tmp_path / "good.zip", [("bag/", b""), GOOD, ("bag/data/a b.jpg", b"\xff\xd8" * 10)])
    out = safe_extract(z, tmp_path / "dest")
    assert out == tmp_path / "dest" / "bag"
    assert (out / "ok.txt").read_bytes() == b"fine"
    assert (out / "data/a b.jpg").read_bytes() == b"\xff\xd8" * 10


def test_non_empty_dest_and_bad_zip(tmp_path: Path) -> None:
    z = _zip(tmp_path / "good.zip", [GOOD])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("x")
    with pytest.raises(BagError):
        safe_extract(z, dest)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(BagError):
        safe_extract(tmp_path / "junk.zip", tmp_path / "d2")


@pytest.mark.parametrize("err", ["EFBIG", "ENOSPC"])
def test_disk_full_while_extracting_is_an_environment_error_not_an_unsafe_zip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any, err: str
) -> None:
    """A write failing (file too large, disk full) says nothing about the zip: exit 2 with one line
    naming the file, not FAIL bundle.unsafe-zip (exit 1)."""
    import builtins
    import errno
    import os

    from evidence_vault import safezip
    from evidence_vault.bundle_verify import verify_bundle
    from evidence_vault.errors import StorageError

    code = getattr(errno, err)

    class Full:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, chunk: bytes) -> int:
            raise OSError(code, os.strerror(code))

    def full_open(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        fh = builtins.open(path, mode, *args, **kw)  # noqa: SIM115 (closed by Full or the caller)
        return Full(fh) if "x" in mode else fh

    monkeypatch.setattr(safezip, "open", full_open, raising=False)
    z = _zip(tmp_path / "good.zip", [GOOD, ("bag/data/photo.jpg", b"\xff\xd8" * 10)])
    dest = tmp_path / "dest"
    with pytest.raises(StorageError) as exc:
        safe_extract(z, dest)
    assert not isinstance(exc.value, BagError) and exc.value.exit_code == 2
    assert "bag/ok.txt" in str(exc.value) and os.strerror(code) in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not dest.exists()
    with pytest.raises(StorageError):
        verify_bundle(z, extract_to=tmp_path / "dest2")
    res = cli("verify-bundle", z, "--json")
    assert res.code == 2 and "unsafe-zip" not in res.stdout, (res.stdout, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1 and "bag/ok.txt" in res.stderr, res.stderr
