"""The notebooks of one submission on this machine's kernel slots (grader/kernel_slots.py).

Each job is one notebook part, prepared beforehand in the caller's thread (planning draws from
process-wide random state, so it never runs concurrently) and judged afterwards in part order, so
a record never depends on how its notebooks were spread. The caller's thread runs jobs one after
the other and takes a slot, waiting for one, only while a kernel runs (a reused run needs none).
Whenever a job is waiting and a slot is free (at the start, or when another kernel of this
machine ends while the caller's runs), a helper thread takes that slot without waiting and runs
waiting jobs until none is left. Jobs start longest first where this machine has run them before
(``PartSeconds``): the longest notebook started last is what keeps a slot busy after the others
are idle. Stopping (Ctrl-C, SIGTERM) stops the helpers' kernels too.
"""
from __future__ import annotations

import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from grader.kernel_slots import KernelSlots, Slot
from grader.record import safe_key, write_atomic

T = TypeVar("T")
STOP_WAIT_S = 60            # a stopped helper's kernel is shut down well within this
WATCH_S = 0.25              # how often a slot freed elsewhere is looked for while jobs wait


class PartSeconds:
    """How long each part's kernel ran last on this machine, one small file per part (workers
    write them at once; a lost update only costs an ordering hint)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def get(self, part_id: str) -> float | None:
        try:
            return float((self.folder / safe_key(part_id)).read_text())
        except (OSError, ValueError):
            return None

    def remember(self, part_id: str, seconds: float) -> None:
        try:
            write_atomic(self.folder / safe_key(part_id), f"{seconds:.3f}\n")
        except OSError:
            pass                # a hint only


def longest_first(known: Sequence[float | None]) -> list[int]:
    """Job indices in the order to start them: parts never timed here first, in their own order
    (one of them may be the longest), then the others longest first."""
    return sorted(range(len(known)), key=lambda i: (known[i] is not None, -(known[i] or 0.0), i))


class Lane:
    """Where a job runs: the caller's thread (a slot per kernel) or a helper holding one."""

    def __init__(self, slots: KernelSlots, stop: threading.Event, slot: Slot | None = None):
        self.slots, self.stop, self.slot = slots, stop, slot
        self.started: float | None = None       # when this lane's last kernel got its slot (monotonic)

    def kernel(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` (one kernel's run) while this lane holds a slot."""
        if self.slot is not None:
            self.started = time.monotonic()
            return fn(*args, stop=self.stop, **kwargs)
        with self.slots.acquire():
            self.started = time.monotonic()
            return fn(*args, **kwargs)


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """While the caller waits for helpers, SIGTERM stops like Ctrl-C (a KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_jobs(jobs: Sequence[Callable[[Lane], T]], slots: KernelSlots,
             order: Sequence[int] | None = None) -> list[T]:
    """Every ``jobs[i](lane)``, started in ``order`` (default: job order), results in job order.
    After an error no further job starts, and once the running ones have ended the error of the
    first failed job (in job order) is raised; a KeyboardInterrupt here stops the helpers'
    kernels and is raised as soon as they ended."""
    results: list[Any] = [None] * len(jobs)
    errors: dict[int, BaseException] = {}
    waiting = deque(range(len(jobs)) if order is None else order)
    if sorted(waiting) != list(range(len(jobs))):
        raise ValueError(f"order {list(order or ())} is not a permutation of {len(jobs)} jobs")
    lock = threading.Lock()
    stop = threading.Event()
    finished = threading.Event()
    helpers: list[threading.Thread] = []

    def take() -> int | None:
        with lock:
            return waiting.popleft() if waiting and not stop.is_set() else None

    def helper(slot: Slot) -> None:
        lane = Lane(slots, stop, slot)
        try:
            while (i := take()) is not None:
                try:
                    results[i] = jobs[i](lane)
                except BaseException as e:  # re-raised in the caller's thread
                    errors[i] = e
                    stop.set()
        finally:
            slot.release()

    def start_helper(slot: Slot) -> None:
        t = threading.Thread(target=helper, args=(slot,), daemon=True, name="grader-part")
        with lock:
            helpers.append(t)
        t.start()

    def watch() -> None:
        # While the caller's thread runs a kernel, a slot another kernel frees must not stay idle.
        while not finished.wait(WATCH_S):
            with lock:
                wanted = bool(waiting) and not stop.is_set()
            if wanted and (slot := slots.try_acquire()) is not None:
                start_helper(slot)

    watcher = threading.Thread(target=watch, daemon=True, name="grader-part-watch")
    here = Lane(slots, stop)
    try:
        if len(jobs) >= 2:
            watcher.start()
        while True:
            with lock:
                more = len(waiting) >= 2
            if more and (slot := slots.try_acquire()) is not None:
                start_helper(slot)
            i = take()
            if i is None:
                break
            try:
                results[i] = jobs[i](here)
            except Exception as e:      # like a helper's: no new job, the first in job order wins
                errors[i] = e
                stop.set()
        finished.set()
        with _sigterm_stops():
            while watcher.is_alive():
                watcher.join(0.2)
            for t in list(helpers):
                while t.is_alive():
                    t.join(0.2)
    except BaseException:
        stop.set()
        finished.set()
        if watcher.is_alive():
            watcher.join(STOP_WAIT_S)
        for t in list(helpers):
            t.join(STOP_WAIT_S)
        raise
    if errors:
        raise errors[min(errors)]
    return results
