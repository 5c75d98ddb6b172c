"""Identical notebooks with identical inputs run once per run; anything different runs again."""
from __future__ import annotations

from pathlib import Path

import nbformat

from grader.cache import cached_execute
from grader.execute import ExecSettings, execute_notebook

SETTINGS = ExecSettings(cell_timeout_s=20, notebook_timeout_s=60)


def workdir(root: Path, name: str, code: str) -> Path:
    d = root / name / "run"
    d.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(code)
    cell.id = "fixed-id"  # byte-identical notebooks, as two copies of one file are
    nb.cells = [cell]
    nbformat.write(nb, str(d / "work.ipynb"))
    return d


def test_identical_notebook_is_reused_and_a_changed_one_is_not(tmp_path):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return execute_notebook(*args, **kwargs)

    cache = tmp_path / "cache"
    code = "import os\nprint(os.getpid())"
    a = workdir(tmp_path, "a", code)
    b = workdir(tmp_path, "b", code)
    c = workdir(tmp_path, "c", code + "\n")
    run_a, reused_a = cached_execute(cache, a / "work.ipynb", a, SETTINGS, {}, [], None, counting)
    run_b, reused_b = cached_execute(cache, b / "work.ipynb", b, SETTINGS, {}, [], None, counting)
    run_c, reused_c = cached_execute(cache, c / "work.ipynb", c, SETTINGS, {}, [], None, counting)
    assert (reused_a, reused_b, reused_c) == (False, True, False)
    assert len(calls) == 2
    assert run_b.status == run_a.status == "completed"
    assert [x.status for x in run_b.cells] == ["ok"]
    assert run_b.executed_path and run_b.executed_path.is_file()
    assert run_b.executed_path.parent == b.parent / "executed"
    # Other time limits reuse the run while it fits in them (a calibration that moved a little
    # must not re-execute a class); other limits are another key.
    _, reused = cached_execute(cache, b / "work.ipynb", b, ExecSettings(cell_timeout_s=21, notebook_timeout_s=70),
                               {}, [], None, counting)
    assert reused is True
    _, reused = cached_execute(cache, b / "work.ipynb", b, ExecSettings(cell_timeout_s=1e-6), {}, [], None, counting)
    assert reused is False
    _, reused = cached_execute(cache, b / "work.ipynb", b, ExecSettings(cell_timeout_s=20, notebook_timeout_s=60,
                                                                         memory_mb=3000), {}, [], None, counting)
    assert reused is False


def test_a_timeout_is_never_reused(tmp_path):
    cache = tmp_path / "cache"
    settings = ExecSettings(cell_timeout_s=2, notebook_timeout_s=30)
    a = workdir(tmp_path, "a", "while True:\n    pass")
    run, _ = cached_execute(cache, a / "work.ipynb", a, settings, {}, [], None, execute_notebook)
    assert run.status == "timeout"
    assert not (cache / "runs").exists() or not any((cache / "runs").iterdir())


def _probe(root: Path, code: str):
    from grader.execute import ProbeRequest
    (root / "probe_in").mkdir(parents=True, exist_ok=True)
    (root / "probe_out").mkdir(parents=True, exist_ok=True)
    return ProbeRequest(code=code, in_dir=root / "probe_in", out_dir=root / "probe_out")


def test_a_probe_that_timed_out_is_never_stored_nor_reused(tmp_path):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return execute_notebook(*args, **kwargs)

    cache = tmp_path / "cache"
    settings = ExecSettings(cell_timeout_s=20, notebook_timeout_s=60, probe_timeout_s=2)
    slow = "import time\ntime.sleep(30)"
    a = workdir(tmp_path, "a", "x = 1")
    b = workdir(tmp_path, "b", "x = 1")
    run_a, reused_a = cached_execute(cache, a / "work.ipynb", a, settings, {}, [], _probe(tmp_path / "a", slow), counting)
    assert run_a.status == "completed" and run_a.probe.status == "timeout", (run_a.status, run_a.probe)
    assert not (cache / "runs").exists() or not any((cache / "runs").iterdir())
    run_b, reused_b = cached_execute(cache, b / "work.ipynb", b, settings, {}, [], _probe(tmp_path / "b", slow), counting)
    assert (reused_a, reused_b) == (False, False) and len(calls) == 2
    assert run_b.probe.status == "timeout"


def test_a_stored_run_whose_probe_did_not_finish_is_not_reused(tmp_path):
    import json
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return execute_notebook(*args, **kwargs)

    cache = tmp_path / "cache"
    settings = ExecSettings(cell_timeout_s=20, notebook_timeout_s=60, probe_timeout_s=20)
    a = workdir(tmp_path, "a", "x = 1")
    b = workdir(tmp_path, "b", "x = 1")
    c = workdir(tmp_path, "c", "x = 1")
    probe = lambda name: _probe(tmp_path / name, "pass")  # noqa: E731
    run_a, _ = cached_execute(cache, a / "work.ipynb", a, settings, {}, [], probe("a"), counting)
    assert run_a.probe.status == "ok"
    [entry] = list((cache / "runs").iterdir())
    # An entry whose probe timed out (as an older grader stored them) is run again, not reused.
    meta = entry / "run.json"
    data = json.loads(meta.read_text())
    data["probe"] = {"status": "timeout", "seconds": 2.0, "error": "the probe ran longer than 2 s"}
    meta.write_text(json.dumps(data))
    run_b, reused_b = cached_execute(cache, b / "work.ipynb", b, settings, {}, [], probe("b"), counting)
    assert reused_b is False and run_b.probe.status == "ok" and len(calls) == 2
    # The fresh, complete run replaced it and is what the next identical notebook gets.
    run_c, reused_c = cached_execute(cache, c / "work.ipynb", c, settings, {}, [], probe("c"), counting)
    assert reused_c is True and run_c.probe.status == "ok" and len(calls) == 2


def test_the_key_ignores_compiled_caches_of_the_graders_own_files(tmp_path):
    """Importing a probe file on the trusted side (as tests and tools do) writes __pycache__
    beside it; identical runs before and after must share one key."""
    from grader.cache import GRADER, run_key
    a = workdir(tmp_path, "a", "x = 1")
    before = run_key(a / "work.ipynb", a, SETTINGS, {}, [], None)
    stray = GRADER / "probe" / "__pycache__" / "keytest.cpython-311.pyc"
    made_dir = not stray.parent.exists()
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"compiled")
    try:
        assert run_key(a / "work.ipynb", a, SETTINGS, {}, [], None) == before
    finally:
        stray.unlink()
        if made_dir:
            stray.parent.rmdir()
    changed = workdir(tmp_path, "b", "x = 2")    # while another notebook is another key
    assert run_key(changed / "work.ipynb", changed, SETTINGS, {}, [], None) != before
