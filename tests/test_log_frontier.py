"""A checkpoint starts from the frontier the last one kept (outside the vault), only when the log prefix
it covers is byte-for-byte unchanged; its root is always the root of the log as it is."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evidence_vault import log_frontier, merkle
from evidence_vault.custody_log import CustodyLog

from .conftest import Cli


def _root_from_scratch(vault: Path, size: int) -> str:
    lines = (vault / "log.jsonl").read_bytes().split(b"\n")[:size]
    return merkle.root_from_leaves([merkle.leaf_hash(x) for x in lines]).hex()


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte offsets the log was read from by each checkpoint's line pass (other reads of the log,
    such as the append guard's look at its tail, are not counted)."""
    seen: list[int] = []
    real = CustodyLog.iter_raw

    def spy(self: CustodyLog, start: int = 0) -> Any:
        if sys._getframe(1).f_code is log_frontier.tree_head.__code__:
            seen.append(start)
        return real(self, start)

    monkeypatch.setattr(CustodyLog, "iter_raw", spy)
    return seen


def _checkpoint(cli: Cli, vault: Path) -> dict[str, Any]:
    res = cli("--vault", vault, "checkpoint", "--json")
    assert res.code == 0, res.stderr
    doc: dict[str, Any] = res.json()
    assert doc["root"] == _root_from_scratch(vault, doc["size"])
    return doc


def _vault_id(vault: Path) -> str:
    vault_id: str = json.loads((vault / "vault.json").read_text())["vault_id"]
    return vault_id


def _frontier_file(home: Path, vault: Path) -> Path:
    path = log_frontier.path_of(_vault_id(vault), home)
    assert path is not None
    return path


def test_second_checkpoint_hashes_only_the_new_lines(
    cli: Cli, filled_vault: Path, home: Path, starts: list[int], tmp_path: Path
) -> None:
    first = _checkpoint(cli, filled_vault)
    assert starts == [0]
    kept = json.loads(_frontier_file(home, filled_vault).read_text())
    assert kept["lines"] == first["size"]
    assert kept["bytes"] == (filled_vault / "log.jsonl").stat().st_size - len(
        (filled_vault / "log.jsonl").read_bytes().splitlines(keepends=True)[-1]
    ), "it ends where the checkpoint event's line begins"
    assert not list(filled_vault.rglob("*frontier*")), "kept in the home, never in the vault"
    (tmp_path / "new.bin").write_bytes(b"a file added after the first checkpoint")
    assert cli("--vault", filled_vault, "add", tmp_path / "new.bin").code == 0
    starts.clear()
    second = _checkpoint(cli, filled_vault)
    assert second["size"] == first["size"] + 2  # the first checkpoint's event and the new file's
    assert starts == [kept["bytes"]], "the lines under the first checkpoint are not hashed again"
    assert cli("--vault", filled_vault, "verify").code == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes().replace(b'"seq":1,', b'"seq":7,', 1)), id="edited"
        ),
        pytest.param(lambda p: p.write_bytes(p.read_bytes().split(b"\n", 1)[1]), id="first-line-cut"),
    ],
)
def test_changed_prefix_means_the_whole_log_is_read(
    cli: Cli, filled_vault: Path, home: Path, starts: list[int], damage: Callable[[Path], Any]
) -> None:
    """Bytes under the kept frontier changed: it is not used, and the root signed is that of the log as
    it is now (which verify then reports), never one computed from the kept state."""
    _checkpoint(cli, filled_vault)
    log = filled_vault / "log.jsonl"
    damage(log)
    size = len(log.read_bytes().splitlines())
    starts.clear()
    root, frontier = log_frontier.tree_head(
        CustodyLog(log, log.with_name(".lock")), _vault_id(filled_vault), size, home=home
    )
    assert starts == [0]
    assert root.hex() == _root_from_scratch(filled_vault, size)
    assert frontier is not None and frontier.lines == size


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"lines": 2}', b'{"lines": 3, "bytes": 10, "prefix_sha256": "x", "acc_hashes": []}'],
)
def test_unreadable_frontier_is_ignored(
    cli: Cli, filled_vault: Path, home: Path, starts: list[int], content: bytes
) -> None:
    _checkpoint(cli, filled_vault)
    _frontier_file(home, filled_vault).write_bytes(content)
    starts.clear()
    _checkpoint(cli, filled_vault)
    assert starts == [0]
    assert json.loads(_frontier_file(home, filled_vault).read_text())["lines"] > 0  # written again


def test_clean_incremental_verify_state_is_used(
    cli: Cli, filled_vault: Path, home: Path, starts: list[int]
) -> None:
    """No checkpoint made on this machine yet, but a clean verification kept its state: the checkpoint
    starts where that state ends."""
    assert cli("--vault", filled_vault, "verify", "--incremental").code == 0
    state = json.loads(next((home / "verified").rglob("state.json")).read_text())
    starts.clear()
    _checkpoint(cli, filled_vault)
    assert starts == [state["bytes"]]


def test_frontier_of_another_log_is_not_used(
    cli: Cli, filled_vault: Path, home: Path, starts: list[int], tmp_path: Path
) -> None:
    """A frontier kept for more lines than the log now has (a restored backup) is skipped."""
    _checkpoint(cli, filled_vault)
    doc = json.loads(_frontier_file(home, filled_vault).read_text())
    size = doc["lines"] - 2
    starts.clear()
    root, _ = log_frontier.tree_head(
        CustodyLog(filled_vault / "log.jsonl", filled_vault / ".lock"),
        _vault_id(filled_vault),
        size,
        home=home,
    )
    assert starts == [0]
    assert root.hex() == _root_from_scratch(filled_vault, size)


def test_home_that_cannot_be_written(cli: Cli, filled_vault: Path, home: Path) -> None:
    """The frontier is a cache: a home where it cannot be kept does not stop the checkpoint."""
    (home / "frontier").write_text("a file where the folder would go")
    _checkpoint(cli, filled_vault)
    assert cli("--vault", filled_vault, "verify").code == 0


def test_forged_frontier_in_the_home_is_caught_by_verify(
    cli: Cli, filled_vault: Path, home: Path, tmp_path: Path
) -> None:
    """What docs/trust-model.md says: someone who can write the home can make the next checkpoint sign
    a root that is not the log's, and the next verify reports that checkpoint; nothing is hidden."""
    _checkpoint(cli, filled_vault)
    path = _frontier_file(home, filled_vault)
    doc = json.loads(path.read_text())
    doc["acc_hashes"] = ["ab" * 32 for _ in doc["acc_hashes"]]
    path.write_text(json.dumps(doc))
    (tmp_path / "new.bin").write_bytes(b"added after the frontier was forged")
    assert cli("--vault", filled_vault, "add", tmp_path / "new.bin").code == 0
    res = cli("--vault", filled_vault, "checkpoint", "--json")
    assert res.code == 0, res.stderr
    assert res.json()["root"] != _root_from_scratch(filled_vault, res.json()["size"])
    report = cli("--vault", filled_vault, "verify", "--json")
    assert report.code == 1
    codes = {(f["code"], f["subject"]) for f in report.json()["findings"] if f["level"] == "FAIL"}
    size = res.json()["size"]
    assert {x for x in codes if x[0].startswith("checkpoint.")} == {
        ("checkpoint.root-mismatch", f"checkpoints/{size:012d}"),
        ("checkpoint.root-mismatch", f"log.jsonl line {size + 1} (seq {size})"),
    }, codes
