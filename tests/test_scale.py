"""A whole class, fast: parallel workers, Dask on loopback (one worker killed mid-run), resume,
--only/--force, a tolerance-only regrade that starts no kernel, and the GPU slot logic.

Every grading here goes through the real runner, sandbox and kernel; the notebooks are small
so that the machinery, not the homework, is what takes the time."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grader import devices, engines, kernel_slots
from grader.batch import grade_batch
from grader.cluster import ClusterError, SlurmConfig, load_slurm_config, slurm_cluster
from grader.record import load as load_record
from grader.rubric import load_rubric
from grader.runner import GradeSettings
from support.builders import ANSWER_ITEM, mini_rubric, notebook, write_zip

REPO = Path(__file__).resolve().parents[1]
REF_DIR = Path(__file__).resolve().parent / "checks_ref"
SEED = 20251005
ANSWER_1 = {**ANSWER_ITEM, "points": 1}


def rubric_text(atol: float) -> str:
    return mini_rubric(
        "scale", title="Scale", reference_dir=str(REF_DIR),
        execution={"cell_timeout_s": 60, "notebook_timeout_s": 120, "probe_timeout_s": 60, "memory_mb": 1536,
                   "threads": 1},
        items=[ANSWER_1,
               {"id": "nb.conv", "part": "nb", "kind": "function", "title": "strided 1-D convolution", "points": 2,
                "target": "conv1d", "reference": "minref.ops:conv1d",
                "subchecks": [{"name": "forward", "points": 2}],
                "params": {"atol": atol, "rtol": 0,
                           "cases": [{"args": [{"tensor": [3, 12]}, {"tensor": [2, 3, 3]}, 2], "group": "forward"}],
                           "compare": {"forward": "output:forward"}}}])
EXACT = ("import torch\n"
         "def conv1d(x, w, stride):\n"
         "    return torch.einsum('cpk,fck->fp', x.unfold(-1, w.shape[-1], stride), w)\n")
# Right formula, a rounding error of 1e-3 added: passes a loose tolerance, fails a tight one.
ROUGH = EXACT.replace("return torch.einsum", "return 1e-3 + torch.einsum")


def rubric_file(root: Path, atol: float = 1e-2) -> Path:
    path = root / "scale.toml"
    path.write_text(rubric_text(atol))
    return path


def student_zip(folder: Path, net_id: str, *cells: str) -> Path:
    return write_zip(folder / f"{net_id}.zip", {"work.ipynb": notebook(*cells)})


def points(rec) -> dict[str, float]:
    return {i["id"]: i["points"] for i in rec.items}


def test_regrade_after_a_tolerance_change_starts_no_kernel(tmp_path, monkeypatch):
    subs = tmp_path / "subs"
    subs.mkdir()
    zips = [student_zip(subs, "aa001", EXACT, "answer = 42"),
            student_zip(subs, "bb002", ROUGH, "answer = 42"),
            student_zip(subs, "cc003", "answer = 1")]
    out = tmp_path / "out"
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache", seed=SEED)
    first = grade_batch(zips, load_rubric(rubric_file(tmp_path, 1e-2)), settings, out, log=lambda m: None)
    assert [points(r) for r in first] == [{"nb.answer": 1, "nb.conv": 2}, {"nb.answer": 1, "nb.conv": 2},
                                          {"nb.answer": 1, "nb.conv": 0}]

    # Only a tolerance changes: every run stands, so no notebook may be executed again.
    import grader.notebook_parts as runner

    def no_kernel(*a, **k):
        raise AssertionError("a tolerance-only regrade started a kernel")
    monkeypatch.setattr(runner, "execute_notebook", no_kernel)
    tight = load_rubric(rubric_file(tmp_path, 1e-6))
    logs: list[str] = []
    again = grade_batch(zips, tight, settings, out, log=logs.append)
    assert [points(r) for r in again] == [{"nb.answer": 1, "nb.conv": 2}, {"nb.answer": 1, "nb.conv": 0},
                                          {"nb.answer": 1, "nb.conv": 0}]
    assert all(r.status == "graded" and "regraded" in r.notebooks["nb"]["limits"] for r in again)
    assert all(r.rubric["digest"] == tight.digest for r in again)
    rough = load_record(out / "records" / "bb002.zip.json")
    conv = next(i for i in rough.items if i["id"] == "nb.conv")
    assert "atol=1e-06" in conv["message"], conv["message"]
    # The item that did not change kept its finding; the changed one was judged again.
    assert rough.judged["nb.answer"]["digest"] == first[1].judged["nb.answer"]["digest"]
    assert rough.judged["nb.conv"]["digest"] != first[1].judged["nb.conv"]["digest"]

    # The same rubric again: every record is current and kept as it is.
    logs.clear()
    grade_batch(zips, tight, settings, out, log=logs.append)
    assert sum("reusing the record" in m for m in logs) == 3, logs

    # A probe input that changes (another case) is not a tolerance: that part runs again.
    monkeypatch.undo()
    changed = tmp_path / "changed.toml"
    changed.write_text(rubric_file(tmp_path, 1e-6).read_text().replace("[3, 12]", "[3, 14]"))
    rerun = grade_batch(zips[:1], load_rubric(changed), settings, out / "other", log=lambda m: None)
    assert "regraded" not in rerun[0].notebooks["nb"]["limits"]


def _cli(root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "grader.cli", "grade", str(root / "subs"), "--rubric",
                           str(root / "scale.toml"), "--out", str(root / "out"), *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def test_jobs_resume_only_and_force_through_the_command(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    for k, body in enumerate((EXACT, ROUGH, EXACT, "x = 1")):
        student_zip(subs, f"{'abcd'[k] * 2}100{k}", body, "answer = 42")
    rubric_file(tmp_path)
    first = _cli(tmp_path, "--jobs", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 worker(s) on this machine (--jobs)" in first.stderr
    records = out_records(tmp_path)
    assert sorted(records) == ["aa1000.zip", "bb1001.zip", "cc1002.zip", "dd1003.zip"]
    assert [records[z].score["final"] for z in sorted(records)] == [3, 3, 3, 1]
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["net_id"] for r in rows] == ["aa1000", "bb1001", "cc1002", "dd1003"]   # batch order, always
    assert "slowest:" in first.stdout and "records:" in first.stdout

    again = _cli(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reusing the record") == 4, again.stderr[-3000:]

    before = {z: r.graded_at for z, r in records.items()}
    time.sleep(1.1)
    forced = _cli(tmp_path, "--only", "bb1001", "--force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    after = out_records(tmp_path)
    assert "bb1001.zip: grading" in forced.stderr and forced.stderr.count(": grading") == 1
    assert after["bb1001.zip"].graded_at != before["bb1001.zip"]
    assert "regraded" not in after["bb1001.zip"].notebooks["nb"]["limits"]      # --force ran it again
    assert {z: r.graded_at for z, r in after.items() if z != "bb1001.zip"} == \
        {z: t for z, t in before.items() if z != "bb1001.zip"}
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4                               # the others stay in the CSV
    missing = _cli(tmp_path, "--only", "zz999")
    assert "--only zz999: no zip of the batch" in missing.stderr


def out_records(root: Path) -> dict:
    return {r.zip_name: r for r in map(load_record, (root / "out" / "records").glob("*.json"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dask_two_workers_on_loopback_one_killed_mid_task(tmp_path):
    pytest.importorskip("distributed")
    subs = tmp_path / "subs"
    subs.mkdir()
    slow = "import time\ntime.sleep(6)"
    zips = [student_zip(subs, f"dk{k}00{k}", EXACT, slow, "answer = 42") for k in range(4)]
    rubric_path = rubric_file(tmp_path)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                          str(port), "--dashboard-address", "127.0.0.1:0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}", "--host", "127.0.0.1",
                            "--nthreads", "1", "--nworkers", "1", "--name", name, "--dashboard-address",
                            "127.0.0.1:0", "--preload", "grader.engines", "--local-directory", str(tmp_path / name)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
        from distributed import Client
        client = Client(f"tcp://127.0.0.1:{port}", timeout="30s")
        client.wait_for_workers(2, timeout=60)
        out = tmp_path / "out"
        settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache", seed=SEED)
        killed: list[str] = []

        def killer() -> None:
            # As soon as a worker is running a task, SIGKILL that worker's nanny (its whole group).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    time.sleep(3)           # well inside the notebook
                    info = client.scheduler_info()["workers"]
                    victim = next(info[w]["name"] for w in busy if w in info)
                    proc = procs[1] if victim == "w1" else procs[2]
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed.append(victim)
                time.sleep(0.2)
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        recs = grade_batch(zips, load_rubric(rubric_path), settings, out, client=client, log=lambda m: None)
        t.join(5)
        client.close()
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL) if p is not procs[0] else p.kill()
            except ProcessLookupError:
                pass
            p.wait()
    assert killed, "no worker was killed mid-task"
    assert [r.zip_name for r in recs] == [z.name for z in zips]                  # none lost, none twice
    assert sorted(p.name for p in (out / "records").glob("*.json")) == sorted(z.name + ".json" for z in zips)
    assert all(r.status == "graded" and r.score["final"] == 3 for r in recs), [(r.zip_name, r.status, r.reason,
                                                                               r.warnings[:2]) for r in recs]


def test_slurm_config_makes_the_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    cfg_path = tmp_path / "slurm.toml"
    cfg_path.write_text('[slurm]\naccount = "pr_123_general"\npartition = "cpu"\ncores = 4\nmemory = "24GB"\n'
                        'walltime = "02:00:00"\nprologue = ["module purge"]\npython = "/opt/venv/bin/python"\n')
    cfg = load_slurm_config(cfg_path)
    script = slurm_cluster(cfg, scheduler_host="127.0.0.1").job_script()
    for line in ("#SBATCH -A pr_123_general", "#SBATCH -p cpu", "#SBATCH --cpus-per-task=4", "#SBATCH -t 02:00:00",
                 "module purge", "export DASK_DISTRIBUTED__WORKER__DAEMON=False", "--nthreads 1", "--nworkers 4",
                 "--lifetime 110m", "--preload grader.engines", "/opt/venv/bin/python -m distributed.cli.dask_worker"):
        assert line in script, (line, script)
    bad = tmp_path / "bad.toml"
    bad.write_text('[slurm]\naccount = "x"\ncores = 0\n')
    with pytest.raises(ClusterError, match="cores must be a whole number"):
        load_slurm_config(bad)
    bad.write_text('[slurm]\npartition = "cpu"\n')
    with pytest.raises(ClusterError, match="account is required"):
        load_slurm_config(bad)
    bad.write_text('[slurm]\naccount = "x"\nwalltim = "1:00:00"\n')
    with pytest.raises(ClusterError, match="unknown key"):
        load_slurm_config(bad)


def test_gpu_slots_round_robin(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    assert devices.for_slot("auto", 3, dev_root=dev, has_cuda=True) == "cpu"       # no GPU: the CPU
    for n in ("nvidia0", "nvidia1", "nvidiactl"):
        (dev / n).touch()
    assert [devices.for_slot("auto", k, dev_root=dev, has_cuda=True) for k in range(5)] == \
        ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert devices.for_slot("auto", 1, dev_root=dev, has_cuda=False) == "cpu"       # a CPU build of torch
    assert devices.for_slot("cuda:1", 0, dev_root=dev, has_cuda=True) == "cuda:1"   # staff's choice wins
    assert devices.gpu_slots(3, dev_root=dev, has_cuda=True) == 6
    assert devices.gpu_slots(3, dev_root=dev, has_cuda=False) == 0


def test_default_jobs_follow_cores_memory_and_gpus(monkeypatch):
    monkeypatch.setattr(kernel_slots, "cores", lambda: 16)
    monkeypatch.setattr(kernel_slots, "available_mb", lambda: 64 * 1024)
    assert kernel_slots.default_jobs(1, 6144)[0] == 9          # memory: 65536 // (6144 + 800)
    assert kernel_slots.default_jobs(4, 2048)[0] == 4          # cores: 16 // 4
    assert kernel_slots.default_jobs(1, 2048, gpu_slots=2)[0] == 2
    monkeypatch.setattr(kernel_slots, "available_mb", lambda: 1000)
    assert kernel_slots.default_jobs(1, 6144)[0] == 1          # never fewer than one


GENERATOR = '''
import os, time
from pathlib import Path

def build(folder):
    with open(os.environ["BUILD_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    data = Path(folder) / "data"
    data.mkdir()
    for k in range(20):
        time.sleep(0.02)                       # slow enough for a second worker to arrive
        (data / f"{k}.bin").write_bytes(bytes([k]) * 1000)
    return data
'''


def _prepare(rubric, cache: str):
    from grader.runner import prepare_datasets
    return {k: sorted(p.name for p in v.iterdir()) for k, v in prepare_datasets(rubric, Path(cache)).items()}


def test_datasets_are_built_once_by_parallel_workers(tmp_path, monkeypatch):
    """Workers that start together on one cache: one builds the grader-held data set, the others
    wait for it and all see the whole set (a race here once failed a batch's first gradings)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from types import SimpleNamespace
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "slowdata.py").write_text(GENERATOR)
    monkeypatch.setenv("BUILD_LOG", str(tmp_path / "builds.log"))
    rubric = SimpleNamespace(name="mini", reference_dir=ref, datasets=(("shapes", "slowdata:build"),))
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        seen = list(pool.map(_prepare, [rubric] * 3, [str(tmp_path / "cache")] * 3))
    want = sorted(f"{k}.bin" for k in range(20))
    assert seen == [{"shapes": want}] * 3
    assert len((tmp_path / "builds.log").read_text().split()) == 1
    assert [p.name for p in (tmp_path / "cache" / "mini").iterdir() if p.name.endswith(".tmp")] == []


def grade_or_die(zip_path, rubric, settings, previous):
    """A grader whose worker process dies on one submission (as under the machine's OOM killer)."""
    from grader.runner import error_record
    if zip_path.stem == "zz0666":
        time.sleep(0.5)                     # its neighbour is running when it dies
        os._exit(137)
    time.sleep(1.0)
    rec = error_record(zip_path, rubric, settings, "stand-in")
    rec.status, rec.warnings = "graded", [f"graded by {os.getpid()}"]
    return rec


def test_a_dying_worker_costs_only_its_own_submission(tmp_path):
    """The pool breaks when a worker dies, and every unfinished submission with it: the ones
    running then each get a try alone; only the one that kills its worker there gets an error
    record, and every other submission is graded exactly once."""
    rubric = load_rubric(rubric_file(tmp_path))
    settings = GradeSettings(work_dir=tmp_path / "work", cache_dir=tmp_path / "cache")
    names = ["aa0001", "zz0666", "bb0002", "cc0003", "dd0004"]
    tasks = [engines.Task(n, student_zip(tmp_path, name, "x = 1"), None) for n, name in enumerate(names)]
    seen = [(t.zip_path.stem, r.status, r.warnings[0]) for t, r in
            engines.run_pool(tasks, rubric, settings, jobs=2, grade=grade_or_die)]
    assert sorted(s for s, _, _ in seen) == sorted(names)          # none lost, none twice
    status = {s: st for s, st, _ in seen}
    assert status.pop("zz0666") == "error"
    assert set(status.values()) == {"graded"}
    why = next(w for s, _, w in seen if s == "zz0666")
    assert "died on this submission, twice" in why


def _two_notebooks(tmp_path, sleeps: tuple[float, float] = (3, 3)):
    """A rubric of two notebook parts whose cells take a few seconds each (``sleeps``), and one zip."""
    items = [{"id": f"{p}.answer", "part": p, "kind": "exists", "title": f"answer in {p}", "points": 1,
              "target": "answer"} for p in ("one", "two")]
    rubric_path = tmp_path / "two.toml"
    rubric_path.write_text(mini_rubric(
        "two", reference_dir=str(REF_DIR),
        execution={"cell_timeout_s": 60, "notebook_timeout_s": 120, "probe_timeout_s": 60, "memory_mb": 1024,
                   "threads": 1},
        parts=[{"id": p, "file": f"{p}.ipynb", "points": 1} for p in ("one", "two")], items=items))
    zip_path = write_zip(tmp_path / "ab1234.zip", {f"{p}.ipynb": notebook(f"import time\ntime.sleep({t})", "answer = 42")
                                                   for p, t in zip(("one", "two"), sleeps)})
    return load_rubric(rubric_path), zip_path


def _span(rec, part: str) -> tuple[float, float]:
    start = rec.timing[f"{part}_started_s"]
    return start, start + rec.timing[f"{part}_s"]


@pytest.mark.parametrize("slots", [1, 2])
def test_the_notebooks_of_one_submission_share_the_idle_kernel_slots(tmp_path, slots):
    from grader.runner import grade_submission
    rubric, zip_path = _two_notebooks(tmp_path)
    settings = GradeSettings(work_dir=tmp_path / "work", cache_dir=tmp_path / "cache", seed=SEED,
                             reuse_runs=False, kernel_slots=slots, slots_dir=tmp_path / "slots")
    rec = grade_submission(zip_path, rubric, settings)
    assert rec.status == "graded" and points(rec) == {"one.answer": 1, "two.answer": 1}, rec.reason
    assert list(rec.notebooks) == ["one", "two"]          # recorded in part order however they ran
    (a0, a1), (b0, b1) = sorted([_span(rec, "one"), _span(rec, "two")])
    if slots == 1:
        assert b0 >= a1 - 0.05                             # one kernel at a time
    else:
        assert b0 < a1                                     # side by side


def test_a_machine_that_ran_the_notebooks_before_starts_the_longest_first(tmp_path):
    """One kernel at a time: the first grading starts them in part order; the next, on the same
    cache folder, starts the notebook that took longest, so a free slot is never left waiting on
    a long notebook started last. The record is the same either way."""
    from grader.runner import grade_submission
    rubric, zip_path = _two_notebooks(tmp_path, sleeps=(0.5, 4))
    recs = []
    for k in range(2):
        settings = GradeSettings(work_dir=tmp_path / f"work{k}", cache_dir=tmp_path / "cache", seed=SEED,
                                 reuse_runs=False, kernel_slots=1, slots_dir=tmp_path / "slots")
        recs.append(grade_submission(zip_path, rubric, settings))
    first, again = recs
    assert first.timing["one_started_s"] < first.timing["two_started_s"]
    assert again.timing["two_started_s"] < again.timing["one_started_s"]
    assert again.items == first.items and list(again.notebooks) == ["one", "two"]
