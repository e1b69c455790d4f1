"""C2SP tlog-checkpoint body text: round trips and strict rejection of every malformed form."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence_vault.checkpoint import Checkpoint
from evidence_vault.errors import IntegrityError
from evidence_vault.merkle import EMPTY_ROOT

ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()
URLSAFE_B64 = base64.urlsafe_b64encode(b"\xfb" * 32).decode()  # 32 bytes that use "-" and "_"
ORIGIN = "evidence-vault/0b7e6c1e-3f0a-4c55-9f1e-2a8f6b1d9c11"

# The example from c2sp.org/tlog-checkpoint.
SPEC_EXAMPLE = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_spec_example() -> None:
    cp = Checkpoint.parse(SPEC_EXAMPLE)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.to_text() == SPEC_EXAMPLE


def test_to_text_layout() -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT, ("ext one", "ext two"))
    assert cp.to_text() == f"{ORIGIN}\n7\n{ROOT_B64}\next one\next two\n".encode()
    assert Checkpoint.parse(cp.to_text()) == cp


def test_empty_tree() -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    assert cp.to_text() == f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n".encode()
    assert Checkpoint.parse(cp.to_text()) == cp


def test_dict_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 12, ROOT, ("x",))
    d = cp.to_dict()
    assert d == {"origin": ORIGIN, "size": 12, "root": ROOT.hex(), "extensions": ["x"]}
    assert Checkpoint.from_dict(d) == cp
    assert Checkpoint.from_dict({"origin": ORIGIN, "size": 12, "root": ROOT.hex()}).extensions == ()


_line = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="".join(map(chr, range(32)))), min_size=1
)


@given(_line, st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32), st.lists(_line, max_size=3))
def test_round_trip_property(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    text = cp.to_text()
    assert Checkpoint.parse(text) == cp
    assert Checkpoint.parse(text).to_text() == text
    assert Checkpoint.from_dict(cp.to_dict()) == cp


GOOD = f"{ORIGIN}\n5\n{ROOT_B64}\n"
MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "no trailing newline": GOOD[:-1].encode(),
    "CRLF line ends": GOOD.replace("\n", "\r\n").encode(),
    "two lines": f"{ORIGIN}\n5\n".encode(),
    "empty origin": f"\n5\n{ROOT_B64}\n".encode(),
    "blank extension line": (GOOD + "\next\n").encode(),
    "trailing blank line": (GOOD + "\n").encode(),
    "signed note, not body": (GOOD + "\n— key sig\n").encode(),
    "leading zero size": f"{ORIGIN}\n05\n{ROOT_B64}\n".encode(),
    "double zero size": f"{ORIGIN}\n00\n{ROOT_B64}\n".encode(),
    "negative size": f"{ORIGIN}\n-5\n{ROOT_B64}\n".encode(),
    "plus sign size": f"{ORIGIN}\n+5\n{ROOT_B64}\n".encode(),
    "hex size": f"{ORIGIN}\n0x5\n{ROOT_B64}\n".encode(),
    "spaced size": f"{ORIGIN}\n 5\n{ROOT_B64}\n".encode(),
    "underscore size": f"{ORIGIN}\n1_000\n{ROOT_B64}\n".encode(),
    "non-ASCII digit size": f"{ORIGIN}\n\u0665\n{ROOT_B64}\n".encode(),
    "size above uint64": f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n".encode(),
    "huge size": f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n".encode(),
    "root unpadded": f"{ORIGIN}\n5\n{ROOT_B64.rstrip('=')}\n".encode(),
    "root urlsafe alphabet": f"{ORIGIN}\n5\n{URLSAFE_B64}\n".encode(),
    "root with space": f"{ORIGIN}\n5\n{ROOT_B64[:8]} {ROOT_B64[8:]}\n".encode(),
    "root non-canonical bits": f"{ORIGIN}\n5\n{ROOT_B64[:-2]}9=\n".encode(),  # decodes to ROOT
    "root hex": f"{ORIGIN}\n5\n{ROOT.hex()}\n".encode(),
    "root 31 bytes": f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n".encode(),
    "root 33 bytes": f"{ORIGIN}\n5\n{base64.b64encode(ROOT + b'x').decode()}\n".encode(),
    "root non-ASCII": f"{ORIGIN}\n5\n{ROOT_B64[:-1]}\u00e9\n".encode(),
    "invalid UTF-8": GOOD.encode().replace(b"evidence", b"evid\xffnce"),
    "control character": GOOD.replace("evidence", "evid\x00ence").encode(),
    "tab in extension": (GOOD + "a\tb\n").encode(),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_parse_rejects(data: bytes) -> None:
    with pytest.raises(IntegrityError) as exc:
        Checkpoint.parse(data)
    assert "\n" not in str(exc.value)
    assert exc.value.exit_code == 1


def test_good_form_of_malformed_cases_parses() -> None:
    assert Checkpoint.parse(GOOD.encode()) == Checkpoint(ORIGIN, 5, ROOT)
    assert Checkpoint.parse((GOOD + "ext\n").encode()).extensions == ("ext",)


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, "1", ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT.hex(), ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("a\nb",)),
        (ORIGIN, 1, ROOT, ["x"]),
    ],
)
def test_constructor_rejects(args: tuple[Any, ...]) -> None:
    with pytest.raises(IntegrityError):
        Checkpoint(*args)


@pytest.mark.parametrize(
    "d",
    [
        [],
        {"origin": ORIGIN, "size": 1},
        {"origin": ORIGIN, "size": 1, "root": ROOT.hex(), "extra": 1},
        {"origin": ORIGIN, "size": 1, "root": ROOT.hex().upper()},
        {"origin": ORIGIN, "size": 1, "root": ROOT_B64},
        {"origin": ORIGIN, "size": 1, "root": ROOT.hex()[:-2]},
        {"origin": ORIGIN, "size": "1", "root": ROOT.hex()},
        {"origin": 5, "size": 1, "root": ROOT.hex()},
        {"origin": ORIGIN, "size": 1, "root": ROOT.hex(), "extensions": "x"},
        {"origin": ORIGIN, "size": 1, "root": ROOT.hex(), "extensions": [1]},
    ],
)
def test_from_dict_rejects(d: Any) -> None:
    with pytest.raises(IntegrityError):
        Checkpoint.from_dict(d)


def test_list_checkpoints_takes_only_the_names_checkpoint_dir_writes(tmp_path: Any) -> None:
    """A stray directory such as ``³`` (isdigit() but not int()) must not crash verify, and ``3`` or
    ``٣`` (Arabic-Indic three) must not count as checkpoint 3 a second time."""
    from types import SimpleNamespace

    from evidence_vault.checkpoint import checkpoint_dir, list_checkpoints

    vault: Any = SimpleNamespace(root=tmp_path)
    for size in (3, 10**12):
        checkpoint_dir(vault, size).mkdir(parents=True)
    for name in ("³", "3", "٣", "0003", "000000000004.tmp", "x"):
        (tmp_path / "checkpoints" / name).mkdir()
    (tmp_path / "checkpoints" / "000000000005").write_text("a file, not a directory")
    assert list_checkpoints(vault) == [3, 10**12]
