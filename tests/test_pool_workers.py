"""The local pool's workers (grader/engines.py): forked from multiprocessing's fork server, they
die with the grader however it ends, and see the grader's environment as it is when the pool
starts, not as it was when the fork server started."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from grader import engines

# A stand-in worker: its parent is this test, not the "grader" it watches, as a pool worker's
# parent is the fork server.
WORKER = """
import os, sys, time
from grader import engines
if sys.argv[2] == "no-pidfd":
    def missing(pid):
        raise OSError(38, "Function not implemented")
    os.pidfd_open = missing
engines._die_with(int(sys.argv[1]))
print("watching", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["pidfd", "no-pidfd"])
def test_a_worker_dies_when_the_grader_is_killed(how):
    grader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(grader.pid), how],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().strip() == "watching"
        assert worker.poll() is None
        os.kill(grader.pid, signal.SIGKILL)      # not reaped yet: a zombie until the wait below
        assert worker.wait(timeout=5) == 1
        grader.wait()
    finally:
        for p in (grader, worker):
            if p.poll() is None:
                p.kill()
                p.wait()
        worker.stdout.close()


def test_a_worker_started_after_the_grader_died_exits_at_once():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    worker = subprocess.run([sys.executable, "-c", WORKER, str(gone.pid), "pidfd"],
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode == 1 and "watching" not in worker.stdout


def _probe(name: str) -> tuple[int, str | None]:
    return os.getppid(), os.environ.get(name)


def test_workers_are_forked_from_the_server_and_see_the_grader_environment_of_now(monkeypatch):
    from multiprocessing import forkserver
    engines.start_pool_server()
    server = forkserver._forkserver._forkserver_pid
    name = f"GRADER_TEST_{os.getpid()}"
    monkeypatch.setenv(name, "set after the fork server started")
    ctx = engines._pool_context()
    slots = ctx.Queue()
    slots.put(0)
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=engines._worker_init,
                             initargs=(slots, os.getpid(), dict(os.environ))) as pool:
        parent, seen = pool.submit(_probe, name).result(timeout=120)
    assert parent == server != os.getpid()
    assert seen == "set after the fork server started"
    assert forkserver._forkserver._forkserver_pid == server
