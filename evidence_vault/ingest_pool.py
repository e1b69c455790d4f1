"""Preparing files for ingest on every core: small files in worker processes, big ones in threads.

Preparing a file is copy + hash into the object store, metadata extraction and the metadata object (see
:mod:`evidence_vault.parallel` for why small files go to worker processes). Outcomes come back in the
order of the paths given, so events are appended in that order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .objects import SMALL, ObjectStore
from .parallel import ordered_map

Prepare = Callable[[str, "Callable[[int], None] | None"], Any]


def _is_small(path: str) -> bool:
    try:
        return os.stat(path).st_size <= SMALL
    except OSError:
        return False  # the thread path reports why it cannot be read


def prepare_all(
    paths: Iterable[str],
    prepare: Prepare,
    store: ObjectStore,
    *,
    size_of: Callable[[Any], int],
    on_progress: Callable[[int], None] | None = None,
    threads: int = 2,
    processes: int | None = None,
) -> Iterator[Any]:
    """Yield ``prepare(path, on_progress)`` for each path, in order, using every core.

    ``size_of(outcome)`` gives the bytes to report to ``on_progress`` for an outcome prepared in a worker
    process (those cannot report while they stream). Objects written by workers are handed to
    ``store.adopt_unsynced`` so that the caller's ``store.sync()`` covers them.
    """
    take = getattr(store, "take_unsynced", None)
    adopt = getattr(store, "adopt_unsynced", None)

    def task(path: str, in_worker: bool) -> tuple[Any, list[Path]]:
        if not in_worker:
            return prepare(path, on_progress), []
        return prepare(path, None), (take() if take is not None else [])

    for (outcome, unsynced), in_worker in ordered_map(
        task, paths, to_worker=_is_small, threads=threads, processes=processes
    ):
        if unsynced and adopt is not None:
            adopt(unsynced)
        if in_worker and on_progress is not None:
            on_progress(size_of(outcome))
        yield outcome
