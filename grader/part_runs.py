"""The notebooks of one submission on this machine's kernel slots (grader/kernel_slots.py).

Each job is one notebook part, prepared beforehand in the caller's thread (planning draws from
process-wide random state, so it never runs concurrently) and judged afterwards in part order, so
a record never depends on how its notebooks were spread. The caller's thread runs jobs one after
the other and takes a slot, waiting for one, only while a kernel runs (a reused run needs none).
Whenever two or more jobs are waiting and a slot is free, a helper thread takes that slot without
waiting and runs waiting jobs until none is left. Stopping (Ctrl-C, SIGTERM) stops the helpers'
kernels too.
"""
from __future__ import annotations

import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, TypeVar

from grader.kernel_slots import KernelSlots, Slot

T = TypeVar("T")
STOP_WAIT_S = 60            # a stopped helper's kernel is shut down well within this


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


def run_jobs(jobs: Sequence[Callable[[Lane], T]], slots: KernelSlots) -> list[T]:
    """Every ``jobs[i](lane)``, results in job order. After an error no further job starts, and
    once the running ones have ended the error of the first failed job (in job order) is raised;
    a KeyboardInterrupt here stops the helpers' kernels and is raised as soon as they ended."""
    results: list[Any] = [None] * len(jobs)
    errors: dict[int, BaseException] = {}
    waiting = deque(range(len(jobs)))
    lock = threading.Lock()
    stop = threading.Event()
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

    here = Lane(slots, stop)
    try:
        while True:
            with lock:
                more = len(waiting) >= 2
            if more and (slot := slots.try_acquire()) is not None:
                t = threading.Thread(target=helper, args=(slot,), daemon=True, name="grader-part")
                t.start()
                helpers.append(t)
            i = take()
            if i is None:
                break
            try:
                results[i] = jobs[i](here)
            except Exception as e:      # like a helper's: no new job, the first in job order wins
                errors[i] = e
                stop.set()
        with _sigterm_stops():
            for t in helpers:
                while t.is_alive():
                    t.join(0.2)
    except BaseException:
        stop.set()
        for t in helpers:
            t.join(STOP_WAIT_S)
        raise
    if errors:
        raise errors[min(errors)]
    return results
