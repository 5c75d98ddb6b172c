"""How fast a whole class is graded, every figure a ratio measured in this one run.

    .venv/bin/python bench/scale.py [--p1] [--p2] [--p3] [--students 200]   (default: all)

This machine's speed drifts by tens of percent within minutes, so nothing here is a time
measured at one moment divided by a time measured at another: a one-core figure is timed
together with its baseline on the other core (``paired``), and a two-core figure in the order
1, 2, 2, 1 (``ABBA``).

P1  `grader grade` of the solution zip (three notebooks, sandboxed, probed and checked) on a
    machine that graded one submission before, one kernel at a time (``--jobs 1``) ÷ the same
    three notebooks as plain Python scripts at the same thread count, the two timed together;
    the first submission (which prepares the machine's data sets, calibration and reference
    results) is printed beside it, and the same submission alone on the machine, its notebooks
    side by side on the machine's kernel slots (grader/part_runs.py).
P2  `--jobs 2` ÷ `--jobs 1` on small training notebooks (ideal on 2 cores: 2.0), beside the
    machine's own ceiling (the same training as plain scripts, two at a time ÷ one at a time), and
    the same with 2 Dask workers on loopback ÷ 1 worker. The pool's workers are forked from a
    server that imports the grader once per grading process; that start is timed on its own and
    printed beside the speed-up, and the batches are timed with the server running.
P3  a regrade after a tolerance-only rubric change: students per second, no kernel started.
P4  the same solution notebooks through nbgrader's ``autograde`` and through ``otter run``
    (each installed in a throwaway virtual environment given with --nbgrader-venv and
    --otter-venv: ``python3.11 -m venv V && V/bin/pip install torch==2.13.0 nbgrader`` (or
    otter-grader ipykernel, then ``V/bin/python -m ipykernel install --sys-prefix``) plus the
    course's packages, ``grader environment --requirements``), each timed together with the
    plain scripts as the grader was in P1; neither is sandboxed.
    Then per student on the whole machine, each tool in its own batch mode: the grader's batch of
    2 students on its default workers ÷ 2, against one student through nbgrader, which grades one
    notebook at a time (no parallel autograde: jupyter/nbgrader#174); Otter's parallel mode needs
    Docker.
P5  arithmetic from P1 and P2: 600 students on a 16-core node and on 10 such Slurm nodes.
"""
from __future__ import annotations

import argparse
from datetime import timedelta
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import nbformat  # noqa: E402

from grader.batch import grade_batch  # noqa: E402
from grader.rubric import load_rubric  # noqa: E402
from grader.kernel_slots import default_jobs  # noqa: E402
from grader.runner import GradeSettings, prepare_datasets, time_limits  # noqa: E402

# A notebook that trains a small network for a few seconds on one thread: the shape of a
# real submission's cost (import torch, then compute), short enough to repeat.
TRAIN = ("import torch\ntorch.manual_seed({k})\n"
         "net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))\n"
         "opt = torch.optim.SGD(net.parameters(), lr=0.01)\n"
         "x, y = torch.randn(512, 64), torch.randint(0, 10, (512,))\n"
         "for _ in range({steps}):\n"
         "    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()\n")


def hw2_zip(folder: Path) -> Path:
    from conftest import hw2_members, write_zip
    folder.mkdir(parents=True, exist_ok=True)
    return write_zip(folder / "ab1234.zip", hw2_members("solution"))


# What keeps a core busy while the other side of a pair finishes: on 2 cores the two sides of a
# pair always share the machine, to the end of the longer one.
FILLER = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\n"
          "while True:\n    a = torch.tanh(a @ a)\n")


def paired(timed, floor) -> tuple[float, float]:
    """(seconds of ``timed()``, seconds of ``floor()``), run at the same time on the two cores, each
    side's core kept busy (FILLER) once it is done until the other side is, so both run on a
    machine equally loaded throughout. This machine's speed drifts by tens of percent within
    minutes; two sides timed together see the same machine, and their ratio does not drift."""
    import threading
    result: dict[str, float] = {}
    errors: list[BaseException] = []
    done = threading.Event()

    def side(name, fn):
        try:
            result[name] = fn()
        except BaseException as e:          # re-raised in the caller's thread
            errors.append(e)
        filler = subprocess.Popen([sys.executable, "-c", FILLER], stdout=subprocess.DEVNULL,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            while len(result) + len(errors) < 2:
                done.wait(0.2)
        finally:
            filler.kill()
            filler.wait()
        done.set()

    threads = [threading.Thread(target=side, args=a) for a in (("timed", timed), ("floor", floor))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return result["timed"], result["floor"]


def link_mounts(rubric, datasets: dict, run_dirs: dict[str, Path]) -> None:
    """Each notebook's datasets linked into its work folder where the sandbox mounts them, so a
    run outside the sandbox (a script, nbgrader, Otter) finds them where the notebook looks."""
    for part in rubric.parts:
        for m in (part.mounts if part.id in run_dirs else ()):
            link = run_dirs[part.id] / m.target
            if link.is_dir() and not link.is_symlink() and not any(link.iterdir()):
                link.rmdir()                  # the sandbox's empty mount point, left in the work folder
            if not link.exists():
                link.symlink_to(datasets.get(m.source, rubric.reference_dir / m.source))


def plain_scripts(rubric, datasets: dict, run_dirs: dict[str, Path]) -> tuple[float, dict[str, float]]:
    """The notebooks as plain Python scripts, one after another at the rubric's threads, in
    folders the grader prepared (support files there), the datasets linked where the sandbox
    mounts them: (total s, s per part)."""
    threads = str(rubric.execution.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "MPLBACKEND": "Agg",
           "PYTHONPATH": str(REPO / "grader" / "kernel_env")}
    seconds: dict[str, float] = {}
    link_mounts(rubric, datasets, run_dirs)
    for part in rubric.parts:
        if part.kind != "notebook":
            continue
        run_dir = run_dirs[part.id]
        script = run_dir / "as_script.py"
        if not script.exists():
            nb = nbformat.read(str(run_dir / part.file), as_version=4)
            code = "\n".join("\n".join(line for line in c.source.splitlines()
                                       if not re.match(r"\s*[%!]", line))
                             for c in nb.cells if c.cell_type == "code")
            # The kernel's environment shim (Colab stand-ins, CPU fallback), as the grader's hidden cell installs it.
            script.write_text("import _grader_env\n_grader_env.install()\n" + code)
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, str(script)], cwd=run_dir, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"P1: {part.file} as a plain script failed ({done.returncode}):\n{done.stderr[-2000:]}")
        seconds[part.id] = time.monotonic() - t0
    return sum(seconds.values()), seconds


def p1(tmp: Path) -> dict:
    """The grader against the plain scripts, each pair timed together (``paired``). What a
    machine prepares once (data sets, the limits' calibration, reference results:
    grader/reference_cache.py) is paid by its first submission, timed alone; every other one is
    the steady state a class is graded at: one kernel at a time (``--jobs 1``), and the same
    submission alone on the machine, its notebooks side by side on the kernel slots."""
    rubric = load_rubric(REPO / "rubrics" / "hw2.toml")
    zip_path = hw2_zip(tmp / "subs")
    first_zip = Path(shutil.copy(zip_path, tmp / "subs" / "aa1000.zip"))
    out = tmp / "p1"
    due = rubric.deadline.due - timedelta(hours=1)
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache", keep_work=True, reuse_runs=False,
                             seed=1, times={"ab1234": due, "aa1000": due})
    t0 = time.monotonic()
    datasets = prepare_datasets(rubric, settings.cache_dir)
    first = grade_batch([first_zip], rubric, settings, tmp / "p1-first", log=lambda m: None)[0]
    cold = time.monotonic() - t0
    assert first.status == "graded", first.reason
    # The scripts run in the first submission's folders while the grader grades the second.
    run_dirs = {p.id: out / "work" / "aa1000.zip" / "run" / p.id for p in rubric.parts if p.kind == "notebook"}
    recs: list = []
    per_part: dict[str, float] = {}

    def grade_one():
        t0 = time.monotonic()
        recs.append(grade_batch([zip_path], rubric, settings, out, log=lambda m: None)[0])
        return time.monotonic() - t0

    def scripts():
        total, parts = plain_scripts(rubric, datasets, run_dirs)
        per_part.update(parts)
        return total

    graded, plain = paired(grade_one, scripts)
    rec = recs[0]
    assert rec.status == "graded", rec.reason
    t = rec.timing
    where = "; ".join(f"{pid}: run {t.get(f'{pid}_s', 0):.1f} s + probe {t.get(f'{pid}_probe_s', 0):.1f} s "
                      f"+ checks {t.get(f'{pid}_checks_s', 0):.1f} s, script {s:.1f} s"
                      for pid, s in per_part.items()) + f"; whole submission {t.get('total_s', 0):.1f} s"
    # Alone on the machine its notebooks take both cores: timed against the scripts run just after.
    slots = default_jobs(rubric.execution.threads, rubric.execution.memory_mb)[0]
    t0 = time.monotonic()
    alone = grade_batch([zip_path], rubric, replace(settings, work_dir=out / "work-alone", kernel_slots=slots),
                        tmp / "p1-alone", log=lambda m: None)[0]
    side_by_side = time.monotonic() - t0
    assert alone.status == "graded" and alone.score == rec.score, (alone.reason, alone.score, rec.score)
    return {"graded": graded, "cold": cold, "plain": plain, "where": where, "side_by_side": side_by_side,
            "slots": slots, "rubric": rubric, "datasets": datasets, "run_dirs": run_dirs}


def _notebook_dirs(tmp: Path) -> list[tuple[Path, str]]:
    """(run folder, notebook file) of each notebook P1 graded in step with the scripts (the
    scripts run in the first submission's folders, the other tools copy or link these): support
    files and datasets in place."""
    rubric = load_rubric(REPO / "rubrics" / "hw2.toml")
    run_dirs = {p.id: tmp / "p1" / "work" / "ab1234.zip" / "run" / p.id for p in rubric.parts if p.kind == "notebook"}
    link_mounts(rubric, prepare_datasets(rubric, tmp / "p1" / "cache"), run_dirs)
    return [(run_dirs[part.id], part.file) for part in rubric.parts if part.kind == "notebook"]


def _tool_env(venv: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}


def p4_nbgrader(tmp: Path, venv: Path, course: str = "nbgrader-course") -> float:
    """One student's three notebooks through ``nbgrader autograde`` (its course layout)."""
    root = tmp / course
    for where in (root / "source" / "hw2", root / "submitted" / "ab1234" / "hw2"):
        where.mkdir(parents=True)
        for run_dir, _ in _notebook_dirs(tmp):
            for entry in run_dir.iterdir():
                if entry.name not in ("as_script.py",) and not (where / entry.name).exists():
                    if entry.is_symlink():
                        (where / entry.name).symlink_to(entry.resolve())
                    elif entry.is_dir():
                        shutil.copytree(entry, where / entry.name, symlinks=True)
                    else:
                        shutil.copy2(entry, where / entry.name)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.root = %r\nc.CourseDirectory.course_id = 'hw2'\n"
        "c.ExecutePreprocessor.timeout = 3600\n" % str(root))
    env = _tool_env(venv)
    # nbgrader does not copy a linked data set folder into its autograded copy: the notebook reads
    # the data set from where its own text says it may be (HW2_DATA_DIR), the one the grader mounts.
    rubric = load_rubric(REPO / "rubrics" / "hw2.toml")
    env["HW2_DATA_DIR"] = str(prepare_datasets(rubric, tmp / "p1" / "cache")["cats_and_dogs"])
    run = lambda *a: subprocess.run([str(venv / "bin" / "nbgrader"), *a], cwd=root, env=env, check=True,
                                    capture_output=True, text=True)
    run("generate_assignment", "hw2", "--force")
    t0 = time.monotonic()
    run("autograde", "hw2", "--student", "ab1234", "--create", "--force")
    seconds = time.monotonic() - t0
    # A time counts only for notebooks that ran to their end without an error: a notebook that
    # fails early is fast for the wrong reason.
    graded = root / "autograded" / "ab1234" / "hw2"
    for _, nb_file in _notebook_dirs(tmp):
        nb = nbformat.read(str(graded / nb_file), as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        unrun = [c for c in nb.cells if c.cell_type == "code" and c.source.strip() and c.execution_count is None]
        if errors or unrun:
            first = f"{errors[0].get('ename')}: {errors[0].get('evalue')}" if errors else "cells not run"
            raise RuntimeError(f"nbgrader's run of {nb_file} is incomplete ({len(errors)} errors, "
                               f"{len(unrun)} cells not run; {first[:300]})")
    return seconds


def p4_otter(tmp: Path, venv: Path) -> float:
    """The three notebooks through ``otter run`` (no container), each with its support files."""
    env = _tool_env(venv)
    total = 0.0
    for k, (run_dir, nb_file) in enumerate(_notebook_dirs(tmp)):
        work = tmp / f"otter-{k}"
        (work / "tests").mkdir(parents=True)
        (work / "out").mkdir()                 # otter run wants its output folder made
        (work / "tests" / "q1.py").write_text("OK_FORMAT = True\n\ntest = {'name': 'q1', 'points': 1, 'suites': [{'cases': "
                                               "[{'code': '>>> True\\nTrue', 'hidden': False, 'locked': False}], "
                                               "'scored': True, 'setup': '', 'teardown': '', 'type': 'doctest'}]}\n")
        support = [e.name for e in run_dir.iterdir() if e.name not in (nb_file, "as_script.py")]
        for name in support:
            src = run_dir / name
            (work / name).symlink_to(src.resolve()) if src.is_symlink() or src.is_file() else \
                shutil.copytree(src, work / name, symlinks=True)
        subprocess.run([str(venv / "bin" / "otter"), "generate", "--no-config", "--no-requirements",
                        "--no-environment", "-t", "tests", "-o", "autograder.zip", *support], cwd=work, env=env,
                       check=True, capture_output=True, text=True)
        shutil.copy2(run_dir / nb_file, work / nb_file)
        t0 = time.monotonic()
        # --debug: an error in the notebook stops the run instead of being skipped, so the time is
        # that of the whole notebook.
        subprocess.run([str(venv / "bin" / "otter"), "run", "--debug", "-a", "autograder.zip", "-o", "out", nb_file],
                       cwd=work, env=env, check=True, capture_output=True, text=True)
        total += time.monotonic() - t0
    return total


def p4_machine(tmp: Path, nbgrader_venv: Path | None, students: int = 2) -> dict:
    """Per student on the whole machine, each tool in its own batch mode, timed alone: the grader's
    batch of ``students`` copies of the solution zip on its default workers, and nbgrader, which
    autogrades one notebook of one student at a time (jupyter/nbgrader#174), one student."""
    rubric = load_rubric(REPO / "rubrics" / "hw2.toml")
    folder = tmp / "p4-machine"
    src = hw2_zip(folder / "src")
    zips = [Path(shutil.copy(src, folder / f"mc{1001 + k}.zip")) for k in range(students)]
    due = rubric.deadline.due - timedelta(hours=1)
    settings = GradeSettings(work_dir=folder / "work", cache_dir=tmp / "p1" / "cache", reuse_runs=False, seed=1,
                             times={z.stem: due for z in zips})
    jobs = default_jobs(rubric.execution.threads, rubric.execution.memory_mb)[0]
    t0 = time.monotonic()
    recs = grade_batch(zips, rubric, settings, folder / "out", jobs=jobs, log=lambda m: None)
    ours = (time.monotonic() - t0) / students
    assert all(r.status == "graded" for r in recs), [r.reason for r in recs]
    out = {"jobs": jobs, "students": students, "ours": ours}
    if nbgrader_venv is not None:
        out["nbgrader"] = p4_nbgrader(tmp, nbgrader_venv, course="nbgrader-machine")
    return out


def small_zips(folder: Path, n: int, steps: int) -> list[Path]:
    from test_scale import student_zip
    folder.mkdir(parents=True, exist_ok=True)
    return [student_zip(folder, f"{'abcdefghij'[k % 10]}{'abcdefghij'[k // 10 % 10]}{1000 + k}",
                        TRAIN.format(k=k, steps=steps), "answer = 42") for k in range(n)]


def _small_rubric(tmp: Path, atol: float = 1e-2):
    from test_scale import rubric_file
    return load_rubric(rubric_file(tmp, atol))


def _warm_cache(tmp: Path, rubric) -> Path:
    """One cache folder for every P2 batch, the machine's speed measured in it before any is timed:
    a class is graded on a machine that has (run reuse stays off)."""
    cache = tmp / "p2-cache"
    time_limits(rubric, GradeSettings(work_dir=tmp / "p2-warm", cache_dir=cache, seed=1))
    return cache


# One worker, two, two, one: a drift of the machine's speed over the four runs weighs on both sides alike.
ABBA = (1, 2, 2, 1)


def pool_start() -> float:
    """Seconds from a grading process with no pool to its first worker's answer: the fork server's
    imports (torch among them), paid once per grading process (grader/engines.py)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import forkserver
    from grader import engines
    forkserver._forkserver._stop()          # the benchmark's earlier batches started one
    t0 = time.monotonic()
    engines.start_pool_server()
    ctx = engines._pool_context()
    slots = ctx.Queue()
    slots.put(0)
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=engines._worker_init,
                             initargs=(slots, os.getpid(), dict(os.environ))) as pool:
        pool.submit(os.getpid).result()
    return time.monotonic() - t0


def p2_local(tmp: Path, n: int = 4, steps: int = 1500) -> tuple[float, float]:
    """Timed with the pool's fork server running (the speed-up of a class's batch); ``pool_start``
    measures what a fresh grading process pays once on top."""
    rubric = _small_rubric(tmp)
    zips = small_zips(tmp / "p2subs", n, steps)
    cache = _warm_cache(tmp, rubric)
    times = {1: 0.0, 2: 0.0}
    for k, jobs in enumerate(ABBA):
        out = tmp / f"p2-{jobs}-{k}"
        settings = GradeSettings(work_dir=out / "work", cache_dir=cache, reuse_runs=False, seed=1)
        t0 = time.monotonic()
        recs = grade_batch(zips, rubric, settings, out, jobs=jobs, log=lambda m: None)
        times[jobs] += time.monotonic() - t0
        assert all(r.status == "graded" for r in recs), [r.reason for r in recs]
    return times[1] / 2, times[2] / 2


def p2_machine(tmp: Path, n: int = 4, steps: int = 1500) -> tuple[float, float]:
    """The machine's own ceiling for P2: the same training code as plain one-thread scripts, one
    at a time ÷ two at a time, in the same order (a VM's two cores are not always two cores' worth)."""
    folder = tmp / "p2-scripts"
    folder.mkdir(exist_ok=True)
    scripts = []
    for k in range(n):
        script = folder / f"train{k}.py"
        script.write_text(TRAIN.format(k=k, steps=steps))
        scripts.append(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    times = {1: 0.0, 2: 0.0}
    for at_once in ABBA:
        t0 = time.monotonic()
        for k in range(0, n, at_once):
            procs = [subprocess.Popen([sys.executable, str(s)], env=env) for s in scripts[k:k + at_once]]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("P2: a training script failed")
        times[at_once] += time.monotonic() - t0
    return times[1] / 2, times[2] / 2


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p2_dask(tmp: Path, n: int = 4, steps: int = 1500) -> tuple[float, float]:
    from distributed import Client
    rubric = _small_rubric(tmp)
    zips = small_zips(tmp / "p2subs", n, steps)
    cache = _warm_cache(tmp, rubric)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    times = {1: 0.0, 2: 0.0}
    for k, workers in enumerate(ABBA):
        port = _port()
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", str(port), "--dashboard-address", "127.0.0.1:0"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                                    "--host", "127.0.0.1", "--nthreads", "1", "--dashboard-address", "127.0.0.1:0",
                                    "--preload", "grader.engines", "--local-directory", str(tmp / f"dw{workers}-{k}-{w}")], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for w in range(workers)]
        try:
            client = Client(f"tcp://127.0.0.1:{port}", timeout="30s")
            client.wait_for_workers(workers, timeout=60)
            out = tmp / f"p2d-{workers}-{k}"
            settings = GradeSettings(work_dir=out / "work", cache_dir=cache, reuse_runs=False, seed=1)
            t0 = time.monotonic()
            recs = grade_batch(zips, rubric, settings, out, client=client, log=lambda m: None)
            times[workers] += time.monotonic() - t0
            assert all(r.status == "graded" for r in recs), [r.reason for r in recs]
            client.close()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
    return times[1] / 2, times[2] / 2


def p3(tmp: Path, students: int) -> tuple[int, float]:
    from test_scale import EXACT, student_zip
    folder = tmp / "p3subs"
    folder.mkdir()
    # Identical notebooks (one zip's bytes under every name: nbformat gives each new cell a random
    # id): the first grading runs one kernel, the run cache serves the rest; the regrade still
    # judges every student's record on its own.
    first = student_zip(folder, "st1000", EXACT, "answer = 42")
    zips = [first] + [Path(shutil.copy(first, folder / f"st{1000 + k}.zip")) for k in range(1, students)]
    out = tmp / "p3"
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache", seed=1)
    grade_batch(zips, _small_rubric(tmp, 1e-2), settings, out, log=lambda m: None)
    tight = _small_rubric(tmp, 1e-6)
    import grader.notebook_parts as runner
    real = runner.execute_notebook

    def no_kernel(*a, **k):
        raise AssertionError("the regrade started a kernel")
    runner.execute_notebook = no_kernel
    try:
        t0 = time.monotonic()
        recs = grade_batch(zips, tight, replace(settings), out, log=lambda m: None)
        seconds = time.monotonic() - t0
    finally:
        runner.execute_notebook = real
    assert all("regraded" in r.notebooks["nb"]["limits"] for r in recs)
    return students, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for p in ("p1", "p2", "p3"):
        ap.add_argument(f"--{p}", action="store_true")
    ap.add_argument("--students", type=int, default=200, help="students in the P3 regrade (default 200)")
    ap.add_argument("--p2-students", type=int, default=12, help="submissions in each P2 batch (default 12)")
    ap.add_argument("--p2-steps", type=int, default=1500, help="training steps per P2 submission (default 1500)")
    ap.add_argument("--nbgrader-venv", type=Path, help="a venv with nbgrader and the course's packages (P4)")
    ap.add_argument("--otter-venv", type=Path, help="a venv with otter-grader and the course's packages (P4)")
    args = ap.parse_args()
    every = not (args.p1 or args.p2 or args.p3)
    tmp = Path(tempfile.mkdtemp(prefix="grader-bench-"))
    rows = []
    try:
        if every or args.p1:
            r1 = p1(tmp)
            graded, plain, cold = r1["graded"], r1["plain"], r1["cold"]
            rows.append(f"P1  grader {graded:.1f} s / plain scripts {plain:.1f} s = {graded / plain:.2f}x "
                        "(target <= 1.0x; timed together, one kernel at a time); the first submission on a fresh "
                        f"cache folder {cold:.1f} s = {cold / plain:.2f}x (data sets, calibration and reference "
                        "results, once; timed alone)")
            rows.append(f"    by notebook: {r1['where']}")
            rows.append(f"P1  the same submission alone on the machine ({r1['slots']} kernel slots, its notebooks "
                        f"side by side; timed alone) {r1['side_by_side']:.1f} s / plain scripts {plain:.1f} s = "
                        f"{r1['side_by_side'] / plain:.2f}x")
        for name, venv, fn, target in (("nbgrader autograde", args.nbgrader_venv, p4_nbgrader, 1.5),
                                       ("otter run", args.otter_venv, p4_otter, 3.0)):
            if venv is not None and (every or args.p1):
                # Each tool is timed together with the plain scripts, as the grader was in P1; its
                # time over ours is the ratio of the two ratios, each free of the machine's drift.
                try:
                    theirs, floor = paired(lambda: fn(tmp, venv),
                                           lambda: plain_scripts(r1["rubric"], r1["datasets"], r1["run_dirs"])[0])
                    ratio = (theirs / floor) / (graded / plain)
                    rows.append(f"P4  {name} {theirs:.1f} s / plain scripts {floor:.1f} s = {theirs / floor:.2f}x, "
                                f"against the grader's {graded / plain:.2f}x: the grader is {ratio:.2f}x as fast "
                                f"(target >= {target:g}x; they run unsandboxed)")
                except subprocess.CalledProcessError as e:
                    rows.append(f"P4  {name} failed: {(e.stderr or '')[-600:]}")
                except RuntimeError as e:
                    rows.append(f"P4  {name}: no figure: {e}")
        if every or args.p1:
            m = p4_machine(tmp, args.nbgrader_venv)
            line = (f"P4  per student on the whole machine, each tool's own batch mode, timed alone: the grader "
                    f"{m['students']} students on {m['jobs']} workers {m['ours']:.1f} s each")
            if "nbgrader" in m:
                line += (f"; nbgrader autograde (one notebook at a time) {m['nbgrader']:.1f} s: the grader is "
                         f"{m['nbgrader'] / m['ours']:.2f}x as fast (target >= 1.5x)")
            rows.append(line + "; Otter runs students in parallel only in Docker containers (otter grade), "
                               "which this machine does not have")
        if every or args.p2:
            start = pool_start()
            one, two = p2_local(tmp, args.p2_students, args.p2_steps)
            m1, m2 = p2_machine(tmp, args.p2_students, args.p2_steps)
            rows.append(f"P2  {args.p2_students} submissions of {args.p2_steps} steps: --jobs 1 {one:.1f} s / "
                        f"--jobs 2 {two:.1f} s = {one / two:.2f}x speed-up (target >= 1.8x); the same training "
                        f"as plain scripts, one at a time {m1:.1f} s / two at a time {m2:.1f} s = {m1 / m2:.2f}x "
                        f"(the machine's own ceiling): the grader reaches {one / two / (m1 / m2):.0%} of it")
            rows.append(f"    the pool's start, once per grading process (fork server imports, first worker "
                        f"ready; timed alone): {start:.1f} s; counted in this batch: {one:.1f} s / "
                        f"{two + start:.1f} s = {one / (two + start):.2f}x")
            d1, d2 = p2_dask(tmp, args.p2_students, args.p2_steps)
            rows.append(f"P2  Dask 1 worker {d1:.1f} s / 2 workers {d2:.1f} s = {d1 / d2:.2f}x speed-up")
        if every or args.p3:
            n, seconds = p3(tmp, args.students)
            rows.append(f"P3  tolerance-only regrade: {n} students in {seconds:.2f} s = {n / seconds:.0f} students/s "
                        "(target >= 50/s), no kernel started")
        if (every or args.p1) and (every or args.p2):
            per_student = graded               # one student, three notebooks, one core per kernel
            speedup = one / two / 2            # parallel efficiency per worker measured in P2
            node = 600 * per_student / (16 * speedup) / 3600
            rows.append(f"P5  600 students x {per_student:.0f} s each: one 16-core node (16 workers, efficiency "
                        f"{speedup:.2f}) {node:.1f} h; 10 such Slurm nodes {node / 10:.2f} h (+ queue wait)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
