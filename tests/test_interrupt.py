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
