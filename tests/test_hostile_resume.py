"""A real `grader grade` (two local workers) killed with SIGKILL while a notebook runs, then
run again: no student is lost or graded twice, finished records are reused, and the kill
leaves no worker or sandboxed process behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.record import load as load_record
from test_hostile_exec import RUBRIC
from support.builders import procs_with

FAST = "def f(x):\n    return x + 1\nanswer = f(41)"
SLOW = ("import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{token}'], start_new_session=True)\n"
        "open('started', 'w').close()\ntime.sleep(25)\n" + FAST)


def _zip(path: Path, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("work.ipynb", nbformat.writes(nb))


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _grade(root: Path) -> list[str]:
    return [sys.executable, "-m", "grader.cli", "grade", str(root / "subs"), "--rubric", str(root / "r.toml"),
            "--out", str(root / "out"), "--jobs", "2"]


@pytest.mark.slow
def test_killed_batch_resumes_without_losing_or_duplicating(tmp_path):
    token = f"resume-{os.getpid()}-{time.time_ns()}"
    (tmp_path / "ref").mkdir()
    (tmp_path / "r.toml").write_text(RUBRIC.replace("cell_timeout_s = 3", "cell_timeout_s = 60"))
    subs = tmp_path / "subs"
    subs.mkdir()
    _zip(subs / "aa001.zip", FAST)
    _zip(subs / "bb002.zip", SLOW.format(token=token))
    _zip(subs / "cc003.zip", FAST)
    out = tmp_path / "out"
    started = out / "work" / "bb002.zip" / "run" / "nb" / "started"

    proc = subprocess.Popen(_grade(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    records = out / "records"
    # bb002 sleeps on one worker while the other grades aa001 and cc003.
    while not (started.exists() and (records / "aa001.zip.json").exists() and (records / "cc003.zip.json").exists()):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the slow notebook never started beside the two fast ones"
        time.sleep(0.05)
    # The workers are forked from multiprocessing's fork server, a child of the grader.
    servers = [pid for pid in procs_with("forkserver") if _parent(pid) == proc.pid]
    assert len(servers) == 1, servers
    workers = [pid for pid in procs_with("forkserver") if _parent(pid) == servers[0]]
    assert len(workers) == 2, workers
    assert procs_with(token), "the notebook's child should be running now"
    killed = proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    # The sandbox dies with the grader (bwrap --die-with-parent, pid namespace).
    for _ in range(100):
        if not procs_with(token):
            break
        time.sleep(0.05)
    assert procs_with(token) == []
    for _ in range(100):
        if not [w for w in workers + servers if _alive(w)]:
            break
        time.sleep(0.05)
    assert [w for w in workers + servers if _alive(w)] == [], ("a worker outlived the killed grader", workers, servers)
    assert sorted(p.name for p in records.iterdir()) == ["aa001.zip.json", "cc003.zip.json"]   # nothing half-written
    first = load_record(records / "aa001.zip.json")
    assert first.complete and first.status == "graded"
    mtime = (records / "aa001.zip.json").stat().st_mtime_ns

    again = subprocess.run(_grade(tmp_path), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "aa001.zip: reusing the record" in again.stderr and "cc003.zip: reusing the record" in again.stderr
    assert "bb002.zip: grading" in again.stderr and again.stderr.count(": grading") == 1
    assert (records / "aa001.zip.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in records.iterdir()) == ["aa001.zip.json", "bb002.zip.json", "cc003.zip.json"]
    rows = (out / "grades.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == ["aa001", "bb002", "cc003"]
    for name in ("aa001", "bb002", "cc003"):
        rec = load_record(records / f"{name}.zip.json")
        assert rec.status == "graded" and rec.score["final"] == 6, (name, rec.reason)
    assert procs_with(token) == []
    # The killed grader's (empty) cgroups were removed by the next run.
    for controller in ("memory", "pids"):
        line = [l for l in Path("/proc/self/cgroup").read_text().splitlines()
                if controller in l.split(":")[1].split(",")]
        group = Path("/sys/fs/cgroup") / controller / line[0].split(":", 2)[2].lstrip("/") if line else None
        if group is not None and group.is_dir():
            assert not list(group.glob(f"grader_{killed}_*")), controller
