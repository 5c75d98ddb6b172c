"""grader/kernel_slots.py and grader/part_runs.py: the machine's kernel slots, shared by real
processes, and the notebooks of one submission spread over the idle ones."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from grader.kernel_slots import KernelSlots
from grader.part_runs import run_jobs

HOLD = ("import sys, time\nfrom grader.kernel_slots import KernelSlots\n"
        "s = KernelSlots(int(sys.argv[2]), sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(120)\n")


def _holder(folder, count: int = 1) -> subprocess.Popen:
    """Another process holding the first free of ``count`` slots."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(count)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_slot_held_by_another_process_is_taken_only_when_it_is_free_or_its_holder_died(tmp_path):
    slots = KernelSlots(2, tmp_path)
    holder = _holder(tmp_path)                 # takes slot 0
    try:
        mine = slots.try_acquire()
        assert mine is not None and mine.index == 1
        assert slots.try_acquire() is None     # both held: one by us, one by the other process
        mine.release()
        again = slots.try_acquire()
        assert again is not None and again.index == 1
        again.release()
    finally:
        holder.kill()
        holder.wait()
    # The dead holder's lock went with it.
    both = [slots.try_acquire(), slots.try_acquire()]
    assert sorted(s.index for s in both) == [0, 1]
    for s in both:
        s.release()


class Tally:
    """How many stand-in kernels run at once, at most."""

    def __init__(self):
        self.now = self.most = 0
        self.lock = threading.Lock()

    def kernel(self, seconds: float, stop=None) -> str:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            if stop is not None:
                stop.wait(seconds)
            else:
                time.sleep(seconds)
            return threading.current_thread().name
        finally:
            with self.lock:
                self.now -= 1


def test_idle_slots_run_the_notebooks_side_by_side_and_results_keep_their_order(tmp_path):
    tally = Tally()
    jobs = [lambda lane, k=k: (k, lane.kernel(tally.kernel, 0.4)) for k in range(5)]
    results = run_jobs(jobs, KernelSlots(2, tmp_path))
    assert [k for k, _ in results] == [0, 1, 2, 3, 4]
    assert tally.most == 2                     # never more kernels than slots
    assert {name for _, name in results} == {"MainThread", "grader-part"}


def test_with_every_slot_taken_elsewhere_the_notebooks_run_one_after_the_other_here(tmp_path):
    tally = Tally()
    holder = _holder(tmp_path)                 # the other slot: another worker's kernel
    try:
        jobs = [lambda lane, k=k: (k, lane.kernel(tally.kernel, 0.2)) for k in range(3)]
        assert [k for k, _ in run_jobs(jobs, KernelSlots(2, tmp_path))] == [0, 1, 2]
        assert tally.most == 1                 # the one free slot, whichever thread holds it
    finally:
        holder.kill()
        holder.wait()


def _nap(seconds: float, stop=None) -> None:
    time.sleep(seconds)


def test_an_error_is_raised_in_job_order_after_every_job_ended(tmp_path):
    ended = []

    def job(k):
        def run(lane):
            lane.kernel(_nap, 0.2 * k)
            ended.append(k)
            if k in (1, 2):
                raise ValueError(f"job {k}")
            return k
        return run
    with pytest.raises(ValueError, match="job 1"):
        run_jobs([job(k) for k in range(4)], KernelSlots(2, tmp_path))
    assert {0, 1} <= set(ended) and 3 not in ended    # nothing new starts after an error


def test_stopping_the_caller_stops_the_helpers_kernels(tmp_path):
    stopped = threading.Event()

    def long_kernel(seconds, stop=None):
        assert stop is not None                # a helper's kernel can be stopped from outside
        if stop.wait(seconds):
            stopped.set()
            raise KeyboardInterrupt("stopped")

    def job(lane):
        if lane.slot is not None:              # on a helper: a long kernel
            return lane.kernel(long_kernel, 60)
        time.sleep(1.0)                        # here: the helper has started its kernel by now
        raise KeyboardInterrupt("Ctrl-C")
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):
        run_jobs([job, job], KernelSlots(2, tmp_path))
    assert stopped.is_set() and time.monotonic() - t0 < 30


def test_jobs_start_in_the_given_order_and_results_keep_job_order(tmp_path):
    started = []

    def job(k):
        def run(lane):
            return lane.kernel(lambda stop=None: started.append(k) or k)
        return run
    assert run_jobs([job(k) for k in range(4)], KernelSlots(1, tmp_path), order=[2, 0, 3, 1]) == [0, 1, 2, 3]
    assert started == [2, 0, 3, 1]
    with pytest.raises(ValueError, match="permutation"):
        run_jobs([job(0), job(1)], KernelSlots(1, tmp_path), order=[1, 1])


def test_a_slot_freed_elsewhere_while_the_caller_runs_a_kernel_is_taken_for_a_waiting_job(tmp_path):
    """Both slots are other workers' kernels when the submission starts; the first to end gives
    the caller's thread its slot, and when the second ends the waiting notebooks start there on a
    helper, not after the caller's kernel."""
    tally = Tally()
    holders = [_holder(tmp_path, count=2), _holder(tmp_path, count=2)]       # slots 0 and 1
    threading.Timer(0.3, holders[0].kill).start()
    threading.Timer(1.0, holders[1].kill).start()
    try:
        began: dict[int, float] = {}

        def job(k):
            def run(lane):
                return k, lane.kernel(lambda stop=None: began.setdefault(k, time.monotonic()) and tally.kernel(3.0))
            return run
        results = run_jobs([job(k) for k in range(3)], KernelSlots(2, tmp_path))
    finally:
        for h in holders:
            h.wait()
    assert [k for k, _ in results] == [0, 1, 2]
    assert results[0][1] == "MainThread" and "grader-part" in {results[1][1], results[2][1]}
    # The second slot is taken about 0.7 s after the first, while the first kernel still runs.
    assert min(began[1], began[2]) - began[0] < 2.0, began
    assert tally.most == 2


def test_parts_never_timed_start_first_then_the_longest(tmp_path):
    from grader.part_runs import PartSeconds, longest_first
    assert longest_first([None, 5.0, None, 10.0]) == [0, 2, 3, 1]
    assert longest_first([]) == []
    seconds = PartSeconds(tmp_path / "hints")
    assert seconds.get("seq") is None
    seconds.remember("seq", 61.25)
    assert seconds.get("seq") == 61.25
    (tmp_path / "hints" / "cnn").write_text("not a number")
    assert seconds.get("cnn") is None
