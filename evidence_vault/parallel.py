"""Ordered work on every core: small items in forked worker processes, the others in threads.

Work on a small file (hash it, parse a little JSON, write a small object) is mostly Python, so threads
share one core (the GIL); forked workers take batches of such items instead. Big files stay in threads
of this process: hashing them releases the GIL, and they can report progress while they stream.
Results come back in the order of the items given.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import chain, islice
from multiprocessing import get_context
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BATCH = 16  # items per task sent to a worker process
MIN_FOR_PROCESSES = 32  # fewer items than this: not worth forking

_task: Callable[[Any, bool], Any] | None = None


def _init(fn: Callable[[Any, bool], Any]) -> None:
    global _task
    _task = fn


def _run_batch(items: list[Any]) -> list[Any]:
    assert _task is not None
    return [_task(item, True) for item in items]


class _Work(Generic[R]):
    """A submitted unit: a future of one or more results, and whether a worker process made them."""

    def __init__(self, future: Future[list[R]], in_worker: bool) -> None:
        self.future, self.in_worker = future, in_worker


def ordered_map(
    fn: Callable[[T, bool], R],
    items: Iterable[T],
    *,
    to_worker: Callable[[T], bool],
    threads: int = 2,
    processes: int | None = None,
) -> Iterator[tuple[R, bool]]:
    """Yield ``(fn(item, in_worker), in_worker)`` for each item, in order.

    Items for which ``to_worker(item)`` holds go, in batches, to forked worker processes (when there are
    at least ``MIN_FOR_PROCESSES`` items and more than one core); the rest run in threads here.
    ``fn`` must not rely on state changed in this process after the call (workers are forked at once).
    """
    stream = iter(items)
    head = list(islice(stream, MIN_FOR_PROCESSES))  # streamed: a million items are never all in memory
    n_proc = processes if processes is not None else (os.cpu_count() or 1)
    pool: ProcessPoolExecutor | None = None
    if n_proc > 1 and len(head) >= MIN_FOR_PROCESSES:
        pool = ProcessPoolExecutor(
            max_workers=n_proc, mp_context=get_context("fork"), initializer=_init, initargs=(fn,)
        )
        # Fork every worker now, before this process starts threads of its own (a fork pool launches all
        # its workers on the first submit).
        pool.submit(os.getpid).result()
    thread_pool = ThreadPoolExecutor(max_workers=threads)
    window = 4 * max(n_proc, threads)
    pending: deque[_Work[R]] = deque()

    def one(item: T) -> list[R]:
        return [fn(item, False)]

    try:
        rest = chain(head, stream)
        for batch in iter(lambda: list(islice(rest, BATCH)), []):
            if pool is not None and all(to_worker(item) for item in batch):
                pending.append(_Work(pool.submit(_run_batch, batch), True))
            else:
                pending.extend(_Work(thread_pool.submit(one, item), False) for item in batch)
            while len(pending) > window:
                work = pending.popleft()
                for result in work.future.result():
                    yield result, work.in_worker
        while pending:
            work = pending.popleft()
            for result in work.future.result():
                yield result, work.in_worker
    finally:
        for work in pending:
            work.future.cancel()
        thread_pool.shutdown(wait=True)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
