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
