"""Ordered work on every core: small items in forked worker processes, the others in threads.

Work on a small file (hash it, parse a little JSON, write a small object) is mostly Python, so threads
share one core (the GIL); forked workers take batches of such items instead. Big files stay in threads
of this process: hashing them releases the GIL, and they can report progress while they stream.
Results come back in the order of the items given.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, CancelledError, Future, ThreadPoolExecutor
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .hashing import libc

if TYPE_CHECKING:  # multiprocessing is imported when a pool is made (25 ms of every command's start)
    from concurrent.futures import ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

BATCH = 16  # items per task sent to a worker process
MIN_FOR_PROCESSES = 32  # fewer items than this: not worth forking
# What a future of a pool that broke raises (a worker died; the futures not yet failed by the executor
# may be cancelled by the shutdown that follows): its work is redone in this process.
LOST = (BrokenExecutor, CancelledError)  # BrokenExecutor: the base of concurrent's BrokenProcessPool
# What submitting to such a pool (or to no pool) raises.
REFUSED = (BrokenExecutor, RuntimeError)

_task: Callable[[Any, bool], Any] | None = None


def fork_pool(
    workers: int, initializer: Callable[..., None] | None = None, *args: Any
) -> ProcessPoolExecutor:
    """A pool of forked workers that ignore Ctrl-C (this process stops them) and die with this process
    (a killed ``add`` or ``verify`` must not leave workers holding its pipes and files)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    libc()  # loaded here once (find_library runs ldconfig), inherited by every forked worker
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("fork"),
        initializer=_worker_setup,
        initargs=(os.getpid(), initializer, args),
    )


def _worker_setup(parent: int, initializer: Callable[..., None] | None, args: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _die_with_parent():
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    if initializer is not None:
        initializer(*args)


def _die_with_parent() -> bool:
    """Linux: have the kernel send SIGKILL to this worker when its parent dies (prctl PR_SET_PDEATHSIG)."""
    lib = libc()
    prctl = getattr(lib, "prctl", None) if lib is not None else None
    return prctl is not None and prctl(1, signal.SIGKILL, 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init(fn: Callable[[Any, bool], Any]) -> None:
    global _task
    _task = fn


def _run_batch(items: list[Any]) -> list[Any]:
    assert _task is not None
    return [_task(item, True) for item in items]


class Workers:
    """A pool of forked workers shared by the passes of one command, forked on first use.

    ``task`` (given before the fork, so it may be a closure) is what :func:`ordered_map` runs on the
    items it sends here; other work is submitted as picklable module-level functions. A worker that
    dies (OOM killer, a signal) breaks the pool: :meth:`lost` drops it and the command goes on in
    this process.
    """

    def __init__(self, task: Callable[[Any, bool], Any] | None = None, processes: int | None = None) -> None:
        self.task = task
        self.processes = processes if processes is not None else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._done = False  # lost or closed: never forked again

    def pool(self) -> ProcessPoolExecutor | None:
        """The pool (forked now if not yet: call this before starting threads), or None on one core
        and once the pool was lost or closed."""
        if self._pool is None and not self._done and self.processes > 1:
            self._pool = fork_pool(self.processes, _init, self.task)
            # Fork every worker now, before this process starts threads of its own (a fork pool
            # launches all its workers on the first submit).
            self._pool.submit(os.getpid).result()
        return self._pool

    def submit_batch(self, items: list[Any]) -> Future[list[Any]]:
        """Run ``task`` on each item in a worker; raises what :data:`REFUSED` names when there are no
        workers (lost, closed, or one core)."""
        pool = self.pool()
        if pool is None:
            raise BrokenExecutor("no worker processes")
        return pool.submit(_run_batch, items)

    def lost(self) -> None:
        """A worker died: stop using the pool (what was queued on it is redone by the caller)."""
        self._done = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._done = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Work(Generic[T, R]):
    """A submitted unit: a future of one or more results, its items, and whether a worker process runs it."""

    def __init__(self, future: Future[list[R]], items: list[T], in_worker: bool) -> None:
        self.future, self.items, self.in_worker = future, items, in_worker


def ordered_map(
    fn: Callable[[T, bool], R],
    items: Iterable[T],
    *,
    to_worker: Callable[[T], bool],
    threads: int = 2,
    processes: int | None = None,
    workers: Workers | None = None,
) -> Iterator[tuple[R, bool]]:
    """Yield ``(fn(item, in_worker), in_worker)`` for each item, in order.

    Items for which ``to_worker(item)`` holds go, in batches, to forked worker processes (when there are
    at least ``MIN_FOR_PROCESSES`` items and more than one core); the rest run in threads here.
    ``fn`` must not rely on state changed in this process after the call (workers are forked at once).
    With ``workers`` (a shared pool, left open), its ``task`` must do in a worker what ``fn`` does.
    """
    stream = iter(items)
    head = list(islice(stream, MIN_FOR_PROCESSES))  # streamed: a million items are never all in memory
    own = workers is None
    shared = workers if workers is not None else Workers(fn, processes)
    use_workers = len(head) >= MIN_FOR_PROCESSES and shared.pool() is not None  # forks now if so
    thread_pool = ThreadPoolExecutor(max_workers=threads)
    window = 4 * max(shared.processes, threads)
    pending: deque[_Work[T, R]] = deque()

    def one(item: T) -> list[R]:
        return [fn(item, False)]

    def results(work: _Work[T, R]) -> Iterator[tuple[R, bool]]:
        try:
            done = work.future.result()
        except LOST:
            # A worker died (OOM killer, a signal): this batch runs here instead, and so does the rest.
            shared.lost()
            for item in work.items:
                yield fn(item, False), False
            return
        for result in done:
            yield result, work.in_worker

    try:
        rest = chain(head, stream)
        for batch in iter(lambda: list(islice(rest, BATCH)), []):
            submitted = False
            if use_workers and shared.pool() is not None and all(to_worker(item) for item in batch):
                try:
                    pending.append(_Work(shared.submit_batch(batch), batch, True))
                    submitted = True
                except REFUSED:
                    shared.lost()
            if not submitted:
                pending.extend(_Work(thread_pool.submit(one, item), [item], False) for item in batch)
            while len(pending) > window:
                yield from results(pending.popleft())
        while pending:
            yield from results(pending.popleft())
    finally:
        for work in pending:
            work.future.cancel()
        thread_pool.shutdown(wait=True)
        if own:
            shared.close()
