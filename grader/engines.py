"""Where submissions are graded: in this process, in a pool of local worker processes, or on a
Dask cluster. Every engine calls the one runner (``grade_submission``) and hands each record
back to the caller as it finishes; only the caller writes records, so a task that runs twice
(a lost Dask worker's task is re-run elsewhere) still yields one record.

The local pool is a plain process pool, not Dask's ``LocalCluster``: it needs no scheduler,
dashboard or listening socket, its workers run tasks in their main thread (signals work) and
may start children, and it dies with the grader. Dask is for more than one machine.
"""
from __future__ import annotations

import multiprocessing
import os
import select
import shutil
import signal
import tempfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from grader import devices, procs
from grader.record import Record, zip_key
from grader.rubric import Rubric
from grader.runner import GradeSettings, error_record, grade_submission, sha256

Grader = Callable[[Path, Rubric, GradeSettings, "Record | None"], Record]


@dataclass
class Task:
    index: int                     # position in the batch (the CSV keeps this order)
    zip_path: Path
    previous: Record | None        # this zip's earlier record, for a regrade


def run_here(tasks: list[Task], rubric: Rubric, settings: GradeSettings) -> Iterator[tuple[Task, Record]]:
    for t in tasks:
        yield t, grade_submission(t.zip_path, rubric, settings, t.previous)


# ----------------------------------------------------------------- local pool

_SLOT: list[int] = []


def _die_with(grader: int) -> None:
    """A worker (and so its sandboxes: bwrap --die-with-parent) dies with the grader, even when
    the grader is SIGKILLed. Its parent is multiprocessing's fork server, which outlives the
    grader as long as any worker lives (each holds the server's pipe), so a worker watches the
    grader's pid itself, and dies with the fork server too."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):    # pragma: no cover - not Linux
        pass
    try:
        watched: int | None = os.pidfd_open(grader)   # readable once the grader has exited
    except ProcessLookupError:                        # the grader is gone already
        os._exit(1)
    except OSError:                                   # Linux before 5.3: look twice a second
        watched = None

    def watch() -> None:
        if watched is not None:
            select.select([watched], [], [])
        else:
            while procs.alive({grader}):     # a grader dead but not yet reaped is a zombie: gone
                time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="grader-watch", daemon=True).start()


def _pool_context():
    """Workers forked from multiprocessing's fork server, which imports the grader (torch with
    it) once: a spawned worker pays interpreter start and ``import torch``, about 2 s of CPU
    each, before its first submission. The grader's own process is not forked: it holds
    threads and may have run torch's thread pool."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["grader.engines"])
    return ctx


def start_pool_server() -> None:
    """Start the fork server now, so its imports overlap the caller's own set-up."""
    from multiprocessing import forkserver
    _pool_context()
    forkserver.ensure_running()


def _worker_init(slots, grader: int, environ: dict[str, str]) -> None:
    _die_with(grader)
    # The fork server's environment is the grader's when it started; a worker sees today's.
    os.environ.clear()
    os.environ.update(environ)
    # Ctrl-C and SIGTERM are the grader's to handle: it stops the pool and keeps what finished.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _SLOT.append(slots.get())


def _pool_task(grade: Grader, began: Path, index: int, zip_path: Path, rubric: Rubric,
               settings: GradeSettings, previous: Record | None) -> Record:
    (began / str(index)).touch()      # a file, not a message: it is there even if we are SIGKILLed next
    slot = _SLOT[0] if _SLOT else 0
    settings = replace(settings, device=devices.for_slot(settings.device, slot))
    return grade(zip_path, rubric, settings, previous)


def run_pool(tasks: list[Task], rubric: Rubric, settings: GradeSettings, jobs: int,
             grade: Grader = grade_submission) -> Iterator[tuple[Task, Record]]:
    """Grade ``tasks`` on ``jobs`` worker processes; yields (task, record) as each finishes.

    A worker that dies (the machine's OOM killer, a grader crash) breaks the pool, and every
    submission not finished yet with it. Those that had not started go on in a fresh pool at no
    cost; those that were running are suspects, and each gets one more try alone, after the
    rest: dying again there is its own doing (an error record), never a neighbour's. Stopping
    (KeyboardInterrupt in the caller) kills the workers, and their sandboxes with them."""
    if threading.current_thread() is threading.main_thread():
        before = signal.signal(signal.SIGTERM, _stop)   # scancel, kill: stop like Ctrl-C does
        try:
            yield from _pool(tasks, rubric, settings, jobs, grade)
        finally:
            signal.signal(signal.SIGTERM, before)
    else:
        yield from _pool(tasks, rubric, settings, jobs, grade)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _pool(tasks: list[Task], rubric: Rubric, settings: GradeSettings, jobs: int,
          grade: Grader) -> Iterator[tuple[Task, Record]]:
    ctx = _pool_context()
    todo, suspects = list(tasks), []
    idle_breaks = 0             # breaks in which no submission had started: the machine, not a zip
    with tempfile.TemporaryDirectory(prefix="grader-pool-") as marks:
        while todo or suspects:
            alone = not todo
            batch, todo = ([suspects.pop(0)] if alone else todo), []
            width = 1 if alone else min(jobs, len(batch))
            began = Path(marks) / str(uuid.uuid4())
            began.mkdir()
            blamed = False
            slots = ctx.Queue()
            for k in range(width):
                slots.put(k)
            pool = ProcessPoolExecutor(max_workers=width, mp_context=ctx, initializer=_worker_init,
                                       initargs=(slots, os.getpid(), dict(os.environ)))
            pending = {pool.submit(_pool_task, grade, began, t.index, t.zip_path, rubric, settings, t.previous): t
                       for t in batch}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        task = pending.pop(fut)
                        try:
                            rec = fut.result()
                        except BrokenProcessPool as e:
                            started = (began / str(task.index)).exists()
                            if alone:
                                why = f"the grading worker died on this submission, twice ({e})"
                            elif started:
                                suspects.append(task)
                                blamed = True
                                continue
                            elif idle_breaks < 2:
                                todo.append(task)
                                continue
                            else:
                                why = f"grading workers kept dying before they started ({e})"
                            rec = error_record(task.zip_path, rubric, settings, why)
                        except Exception as e:  # not the submission's doing: staff look, the batch goes on
                            rec = error_record(task.zip_path, rubric, settings, f"{type(e).__name__}: {e}")
                        yield task, rec
            except BaseException:
                for proc in multiprocessing.active_children():
                    proc.kill()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            if todo and not blamed:
                idle_breaks += 1


# ----------------------------------------------------------------- Dask

def task_key(task: Task, settings: GradeSettings, rubric: Rubric) -> str:
    """Deterministic per zip and grading inputs: a resubmission of a key Dask still holds is the
    same future, never a second grading."""
    return f"grade-{zip_key(task.zip_path.name)}-{(sha256(task.zip_path) or '')[:12]}-{rubric.digest[:8]}" \
           f"-{settings.seed % 10**6}"


def dask_task(zip_path: str, rubric: Rubric, settings: GradeSettings, previous: Record | None) -> Record:
    """Runs on a Dask worker. Scratch space is private to this attempt, so a re-run of the task
    elsewhere (or alongside, after a lost worker) never touches this one's files."""
    work = Path(tempfile.mkdtemp(prefix="grader-task-"))
    try:
        return grade_submission(Path(zip_path), rubric, replace(settings, work_dir=work), previous)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_dask(tasks: list[Task], rubric: Rubric, settings: GradeSettings, client) -> Iterator[tuple[Task, Record]]:
    """Grade on the cluster behind ``client`` (paths must be readable there: a shared folder)."""
    from distributed import as_completed
    futures = {}
    for t in tasks:
        fut = client.submit(dask_task, str(t.zip_path.resolve()), rubric, settings, t.previous,
                            key=task_key(t, settings, rubric), retries=1, pure=False)
        futures[fut] = t
    for fut in as_completed(list(futures)):
        task = futures.pop(fut)
        try:
            record = fut.result()
        except Exception as e:     # e.g. KilledWorker: every worker that tried it died
            record = error_record(task.zip_path, rubric, settings,
                                  f"the cluster could not grade this submission: {type(e).__name__}: {e}")
        fut.release()
        yield task, record
