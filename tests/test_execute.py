"""Notebook execution in the real sandbox: statuses, timeouts, kills, limits, probe."""
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from grader.execute import ExecSettings, ProbeRequest, execute_notebook

FAST = ExecSettings(cell_timeout_s=30, notebook_timeout_s=120)


def _write(tmp_path, cells, name="nb.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else
                nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


def _run(tmp_path, cells, settings=FAST, sub="work", **kw):
    work = tmp_path / sub
    work.mkdir(exist_ok=True)
    return execute_notebook(_write(tmp_path, cells, f"{sub}.ipynb"), work, settings, **kw)


def _procs_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_trivial_notebook_completes(tmp_path):
    run = _run(tmp_path, ["md:# Title", "x = 6 * 7", "print(x)"])
    assert run.status == "completed" and run.executable()
    assert [(c.index, c.status) for c in run.cells] == [(1, "ok"), (2, "ok")]
    assert run.first_error_cell is None
    assert run.limits["sandbox_check"].startswith("passed")
    for key in ("memory", "pids", "network", "cpu", "file_size", "tmp", "cell_timeout"):
        assert run.limits[key]
    nb = nbformat.read(str(run.executed_path), as_version=4)
    assert run.executed_path.parent == tmp_path / "executed"
    assert nb.cells[2].outputs[0]["text"] == "42\n"
    assert [c.execution_count for c in nb.cells[1:]] == [1, 2]


def test_error_in_middle_cell_later_cells_still_run(tmp_path):
    run = _run(tmp_path, ["md:intro", "a = 1", "md:more", "print(model)",
                          "open('after.txt', 'w').write(str(a + 1))"])
    assert run.status == "errors" and not run.executable(), run.message
    assert run.first_error_cell == 3
    assert [c.status for c in run.cells] == ["ok", "error", "ok"]
    bad = run.cells[1]
    assert bad.error_name == "NameError" and "model" in bad.error_value
    assert "\x1b[" not in bad.traceback and "print(model)" in bad.traceback
    assert "code cell 2 (cell 4 of the notebook)" in run.message and "NameError" in run.message
    assert (tmp_path / "work" / "after.txt").read_text() == "2"


def test_cell_timeout_stops_notebook_and_next_notebook_runs(tmp_path):
    settings = ExecSettings(cell_timeout_s=3, notebook_timeout_s=60)
    t0 = time.monotonic()
    run = _run(tmp_path, ["x = 1", "while True: pass", "print('never')"], settings)
    assert time.monotonic() - t0 < 20
    assert run.status == "timeout"
    assert [c.status for c in run.cells] == ["ok", "timeout", "not_run"]
    assert run.first_error_cell == 1
    assert 2.5 < run.cells[1].seconds < 10
    assert "code cell 2" in run.message and "3 s" in run.message
    again = _run(tmp_path, ["print('fine')"], settings, sub="work2")
    assert again.status == "completed"


def test_notebook_wall_clock_limit(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=4)
    t0 = time.monotonic()
    run = _run(tmp_path, ["import time", "time.sleep(60)", "print(1)"], settings)
    assert time.monotonic() - t0 < 20
    assert run.status == "timeout" and "whole notebook" in run.message
    assert [c.status for c in run.cells] == ["ok", "timeout", "not_run"]


def test_sigint_ignoring_cell_with_sigterm_ignoring_child_is_killed(tmp_path):
    token = f"sentinel-{os.getpid()}-{time.time_ns()}"
    child = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "signal.signal(signal.SIGINT, signal.SIG_IGN); open('child_started', 'w').close(); "
             "time.sleep(3600)")
    cell = (f"import signal, subprocess, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            f"for _ in range(2):\n"
            f"    subprocess.Popen([sys.executable, '-c', {child!r}, {token!r}], start_new_session=True)\n"
            "while True:\n    pass")
    run = _run(tmp_path, [cell, "print('never')"], ExecSettings(cell_timeout_s=3, notebook_timeout_s=60))
    assert run.status == "timeout"
    assert (tmp_path / "work" / "child_started").exists()
    assert _procs_with(token) == []
    assert "leftover_processes" not in run.limits


def test_memory_hog_is_stopped_and_grader_survives(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, memory_mb=1536)
    hog = ("chunks = []\nfor i in range(64):\n"
           "    chunks.append(bytearray(b'\\x01') * (64 << 20))\nprint('allocated all')")
    run = _run(tmp_path, ["x = 1", hog, "print('after')"], settings)
    if "cgroup" in run.limits["memory"]:
        assert run.status == "kernel_died"
        assert [c.status for c in run.cells] == ["ok", "kernel_died", "not_run"]
        assert "memory" in run.message and "code cell 2" in run.message
    else:
        assert run.status == "errors"
        assert run.cells[1].error_name == "MemoryError"
    again = _run(tmp_path, ["print('fine')"], FAST, sub="work2")
    assert again.status == "completed"


def test_memory_fallback_without_cgroups_gives_memory_error_and_torch_still_imports(tmp_path, monkeypatch):
    import grader.sandbox as sandbox
    monkeypatch.setattr(sandbox, "_own_v1_group", lambda controller: None)
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, memory_mb=1536)
    hog = ("chunks = []\ntry:\n    for i in range(64):\n"
           "        chunks.append(bytearray(b'\\x01') * (64 << 20))\nfinally:\n    n = len(chunks)\n    chunks = None")
    run = _run(tmp_path, [hog, "import torch\nprint(torch.ones(3).sum().item(), n)"], settings)
    assert run.limits["memory"].startswith("RLIMIT_AS 2048 MiB")
    assert run.limits["pids"].startswith("none")
    assert run.status == "errors"
    assert run.cells[0].error_name == "MemoryError"
    assert run.cells[1].status == "ok", run.cells[1].traceback


def test_two_notebooks_in_parallel_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda sub: _run(tmp_path, [f"print('{sub}')"], sub=sub), ["w1", "w2"]))
    assert [r.status for r in runs] == ["completed", "completed"]


def test_env_and_read_only_mounts(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_HOST_ONLY", "secret")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    cells = ["import os\nassert os.environ.get('HW_SEED') == '3'\n"
             "assert 'GRADER_HOST_ONLY' not in os.environ",
             "assert open('/data/hw/train.csv').read().startswith('a,b')\n"
             "try:\n    open('/data/hw/new.txt', 'w')\n    raise SystemExit('writable')\nexcept OSError:\n    pass"]
    run = _run(tmp_path, cells, env={"HW_SEED": "3"}, ro_mounts=[(data, "/data/hw")])
    assert run.status == "completed", [c.traceback for c in run.cells]
    assert not (data / "new.txt").exists()


def test_fork_bomb_is_contained_by_pids_limit(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, pids_max=48)
    cell = ("import subprocess\nprocs, failed = [], None\nfor i in range(150):\n"
            "    try:\n        procs.append(subprocess.Popen(['sleep', '600']))\n"
            "    except OSError as e:\n        failed = e\n        break\n"
            "print(len(procs), repr(failed))\nassert failed is not None and len(procs) < 48")
    run = _run(tmp_path, [cell], settings)
    if "cgroup" not in run.limits["pids"]:
        pytest.skip("no writable cgroup v1 pids controller on this host")
    assert run.status == "completed", (run.message, run.cells[0].traceback)
    assert "leftover_processes" not in run.limits


def test_output_flood_is_truncated_keeping_head_and_tail(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, max_output_chars=2000)
    cell = "for i in range(200000):\n    print('line', i)\nprint('THE END')"
    run = _run(tmp_path, [cell], settings)
    assert run.status == "completed"
    nb = nbformat.read(str(run.executed_path), as_version=4)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert len(text) < 2000 + 300
    assert text.startswith("line 0\n") and text.rstrip().endswith("THE END")
    assert "output truncated" in text


def test_probe_runs_in_same_kernel(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    (in_dir / "names.json").write_text(json.dumps(["model", "train", "missing"]))
    code = ("import json, hw_probe\n"
            "hw_probe.exists(json.load(open('/grader/in/names.json')), '/grader/out/exists.json')")
    cells = ["import os\nopen('seen.txt', 'w').write(str(os.listdir('/grader/in')))",
             "class Net: pass\nmodel = Net()\ndef train(): pass"]
    run = _run(tmp_path, cells, probe=ProbeRequest(code=code, in_dir=in_dir, out_dir=out_dir))
    assert run.status == "completed"
    assert run.probe.status == "ok", run.probe.error
    assert (tmp_path / "work" / "seen.txt").read_text() == "[]"   # inputs appear only for the probe
    got = json.loads((out_dir / "exists.json").read_text())
    assert got == {"model": {"exists": True, "type": "Net", "callable": False},
                   "train": {"exists": True, "type": "function", "callable": True},
                   "missing": {"exists": False, "type": None, "callable": False}}


def test_probe_error_reported_and_not_run_after_kernel_death(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    bad = _run(tmp_path, ["x = 1"], probe=ProbeRequest("import hw_probe\nhw_probe.nope()", in_dir, out_dir))
    assert bad.status == "completed" and bad.probe.status == "error"
    assert "AttributeError" in bad.probe.error
    died = _run(tmp_path, ["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "print(1)"],
                sub="work2", probe=ProbeRequest("open('/grader/out/ran', 'w')", in_dir, out_dir))
    assert died.status == "kernel_died"
    assert died.probe.status == "not_run"
    assert not (out_dir / "ran").exists()


def test_colab_lines_neutralized_in_real_run(tmp_path):
    cells = ["!pip install foo\nfrom google.colab import drive\ndrive.mount('/content/drive')",
             "uploaded = files.upload()\nprint(len(uploaded))"]
    run = _run(tmp_path, cells)
    assert run.status == "completed", run.message
    assert [n["cell"] for n in run.neutralized] == [0, 0, 0, 1]
    kept = _run(tmp_path, cells[1:], ExecSettings(cell_timeout_s=30, notebook_timeout_s=120, colab="keep"),
                sub="work2")
    assert kept.status == "errors"


def test_invalid_notebook(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    (tmp_path / "work").mkdir()
    run = execute_notebook(path, tmp_path / "work", FAST)
    assert run.status == "invalid" and not run.executable()
    assert run.cells == [] and run.executed_path is None


def test_malformed_outputs_do_not_make_a_notebook_invalid(tmp_path):
    # Saved by another tool: an output without its required keys, a cell without metadata.
    nb = {"nbformat": 4, "nbformat_minor": 4, "metadata": {},
          "cells": [{"cell_type": "code", "source": "x = 6 * 7", "execution_count": "one",
                     "outputs": [{"output_type": "stream", "text": "42"}]}]}
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(nb))
    (tmp_path / "work").mkdir()
    run = execute_notebook(path, tmp_path / "work", FAST)
    assert run.status == "completed", run.message
