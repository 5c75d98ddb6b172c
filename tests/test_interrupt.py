"""Staff can stop a batch: SIGTERM or Ctrl-C ends the grader promptly, kills the sandbox and
keeps the records already written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile

import nbformat
from support.builders import mini_rubric, procs_with

RUBRIC = mini_rubric(
    "stop", reference_dir="ref", due="2025-10-05T23:59:00", timezone="America/New_York", penalties={},
    execution={"cell_timeout_s": 120, "notebook_timeout_s": 300},
    items=[{"id": "nb.x", "part": "nb", "kind": "exists", "title": "x", "target": "x", "points": 1}])


def test_sigterm_stops_the_batch_and_keeps_finished_records(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "stop.toml").write_text(RUBRIC)
    subs = tmp_path / "subs"
    subs.mkdir()
    token = f"sleeper{os.getpid()}"
    for net_id, code in (("aa111", "x = 1"), ("bb222", f"import time  # {token}\nx = 1\ntime.sleep(600)")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(code)]
        with zipfile.ZipFile(subs / f"{net_id}.zip", "w") as zf:
            zf.writestr("work.ipynb", nbformat.writes(nb))
    times = tmp_path / "submission_times.csv"
    times.write_text("net_id,submitted_at\naa111,2025-10-05T20:00:00-04:00\nbb222,2025-10-05T20:00:00-04:00\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric",
                             str(tmp_path / "stop.toml"), "--out", str(out), "--times", str(times)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (out / "records" / "aa111.zip.json").exists():
        time.sleep(0.2)
    time.sleep(4)  # bb222's kernel is sleeping now
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the grader did not stop within 30 s of SIGTERM")
    assert proc.returncode == 130, err
    assert "stopped; 1 complete record(s) are kept" in err
    assert sorted(p.name for p in (out / "records").glob("*.json")) == ["aa111.zip.json"]
    time.sleep(1)
    assert procs_with(token) == []


def test_sigterm_stops_every_notebook_of_a_submission_running_side_by_side(tmp_path):
    """One zip with two notebooks, each on its own kernel slot (grader/part_runs.py): SIGTERM
    stops both kernels, the one in a helper thread too, and the grader exits as stopped."""
    (tmp_path / "ref").mkdir()
    two = mini_rubric(
        "stop2", reference_dir="ref", due="2025-10-05T23:59:00", timezone="America/New_York", penalties={},
        execution={"cell_timeout_s": 120, "notebook_timeout_s": 300},
        parts=[{"id": p, "file": f"{p}.ipynb", "points": 1} for p in ("one", "two")],
        items=[{"id": f"{p}.x", "part": p, "kind": "exists", "title": "x", "target": "x", "points": 1}
               for p in ("one", "two")])
    (tmp_path / "stop2.toml").write_text(two)
    subs = tmp_path / "subs"
    subs.mkdir()
    token = f"sidebyside{os.getpid()}"
    with zipfile.ZipFile(subs / "cc333.zip", "w") as zf:
        for p in ("one", "two"):
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(f"import time  # {token}\nx = 1\ntime.sleep(600)")]
            zf.writestr(f"{p}.ipynb", nbformat.writes(nb))
    times = tmp_path / "submission_times.csv"
    times.write_text("net_id,submitted_at\ncc333,2025-10-05T20:00:00-04:00\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric",
                             str(tmp_path / "stop2.toml"), "--out", str(out), "--times", str(times),
                             "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _sandboxed_parts(out) != {"one", "two"}:
            time.sleep(0.2)
        assert _sandboxed_parts(out) == {"one", "two"}, "the two notebooks did not run side by side"
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    except BaseException:
        proc.kill()         # its sandboxes die with it (bwrap --die-with-parent)
        proc.wait()
        raise
    assert proc.returncode == 130, err
    time.sleep(1)
    assert _sandboxed_parts(out) == set()


def _sandboxed_parts(out) -> set[str]:
    """The parts whose sandbox (bwrap, binding the part's run folder under ``out``) is alive."""
    found = set()
    for pid in procs_with(str(out / "work")):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"bwrap"):
            found |= {p for p in ("one", "two") for a in args if a.endswith(f"/run/{p}".encode())}
    return found
