"""Preparing files for ingest on every core: small files in worker processes, big ones in threads.

Preparing a file (copy + hash into the object store, metadata extraction, the metadata object) is mostly
Python for a small file, so threads would share one core (the GIL); forked worker processes take batches
of small files instead. Big files stay in threads of this process: their hashing releases the GIL, and
their progress is reported as they stream. Outcomes come back in the order of the paths given.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .objects import SMALL, ObjectStore

Prepare = Callable[[str, "Callable[[int], None] | None"], Any]

BATCH = 16  # small files per task sent to a worker process
MIN_FOR_PROCESSES = 32  # fewer files than this: not worth forking

_worker: tuple[Prepare, ObjectStore] | None = None


def _init(prepare: Prepare, store: ObjectStore) -> None:
    global _worker
    _worker = (prepare, store)


def _run_batch(paths: list[str]) -> tuple[list[Any], list[Path]]:
    """In a worker process: prepare each file; hand back the outcomes and the objects still to sync."""
    assert _worker is not None
    prepare, store = _worker
    outcomes = [prepare(p, None) for p in paths]
    take = getattr(store, "take_unsynced", None)
    return outcomes, (take() if take is not None else [])


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
    todo = list(paths)
    n_proc = processes if processes is not None else (os.cpu_count() or 1)
    use_processes = n_proc > 1 and len(todo) >= MIN_FOR_PROCESSES
    window = 4 * max(n_proc, threads)
    # (future, from a worker process): worker outcomes report their progress when they arrive
    pending: deque[tuple[Future[tuple[list[Any], list[Path]]], bool]] = deque()
    thread_pool = ThreadPoolExecutor(max_workers=threads)
    proc_pool = (
        ProcessPoolExecutor(
            max_workers=n_proc, mp_context=get_context("fork"), initializer=_init, initargs=(prepare, store)
        )
        if use_processes
        else None
    )
    if proc_pool is not None:
        # Fork every worker now, before this process starts any thread of its own (a fork ProcessPoolExecutor
        # launches all its workers on the first submit).
        proc_pool.submit(os.getpid).result()
    adopt = getattr(store, "adopt_unsynced", None)

    def in_thread(path: str) -> tuple[list[Any], list[Path]]:
        return [prepare(path, on_progress)], []

    def collect(future: Future[tuple[list[Any], list[Path]]], from_worker: bool) -> Iterator[Any]:
        outcomes, unsynced = future.result()
        if adopt is not None and unsynced:
            adopt(unsynced)
        for outcome in outcomes:
            if from_worker and on_progress is not None:
                on_progress(size_of(outcome))
            yield outcome

    try:
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            if proc_pool is not None and all(_is_small(p) for p in batch):
                pending.append((proc_pool.submit(_run_batch, batch), True))
            else:
                pending.extend((thread_pool.submit(in_thread, path), False) for path in batch)
            while len(pending) > window:
                yield from collect(*pending.popleft())
        while pending:
            yield from collect(*pending.popleft())
    finally:
        for future, _ in pending:
            future.cancel()
        thread_pool.shutdown(wait=True)
        if proc_pool is not None:
            proc_pool.shutdown(wait=True, cancel_futures=True)
