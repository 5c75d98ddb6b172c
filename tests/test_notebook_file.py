"""grader/notebook_file.py: the one set of rules intake, the executor and the checks read
notebooks by."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from grader.checks.notebook_text import read_cells
from grader.execute import read_notebook
from grader.file_checks import check_notebook
from grader.notebook_file import NotebookError, read


def _write(path: Path, data, prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + (data if isinstance(data, bytes) else json.dumps(data).encode()))
    return path


def _notebook(**extra) -> dict:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1\nprint(x)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    cell.execution_count = 3
    nb.cells = [nbformat.v4.new_markdown_cell("# Part 1"), cell]
    data = json.loads(nbformat.writes(nb))
    data.update(extra)
    return data


def test_a_byte_order_mark_is_read_alike_by_intake_the_executor_and_the_checks(tmp_path):
    path = _write(tmp_path / "bom.ipynb", _notebook(), prefix=b"\xef\xbb\xbf")
    assert check_notebook(path, "bom.ipynb").problem is None
    nb, why = read_notebook(path)
    assert why == "" and nb.cells[1].source.startswith("x = 1")
    assert [c.kind for c in read_cells(path)] == ["markdown", "code"]


def test_outputs_are_kept_for_the_checks_and_dropped_for_running(tmp_path):
    path = _write(tmp_path / "nb.ipynb", _notebook())
    kept = read(path).nb.cells[1]
    assert kept.outputs[0]["text"] == "1\n" and kept.execution_count == 3
    nb, _ = read_notebook(path)
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None


def test_a_malformed_output_does_not_stop_a_run_but_a_schema_violation_of_the_cells_does(tmp_path):
    data = _notebook()
    data["cells"][1]["outputs"] = [{"output_type": "no such type"}]
    del data["cells"][0]["metadata"]
    path = _write(tmp_path / "outputs.ipynb", data)
    assert read_notebook(path)[1] == ""           # outputs dropped, metadata added: runs
    assert check_notebook(path, "outputs.ipynb").warnings      # intake says it is off the schema

    data = _notebook()
    data["cells"][1]["source"] = 42               # not a string: no way to run it
    path = _write(tmp_path / "cells.ipynb", data)
    findings = check_notebook(path, "cells.ipynb")
    assert findings.problem is None and any("does not fully follow" in w for w in findings.warnings)
    nb, why = read_notebook(path)
    assert nb is None and why.startswith("The notebook file could not be read as a Jupyter notebook")


@pytest.mark.parametrize("raw, problem", [
    (b"\xff\xfe{\x00}\x00", "the file is not UTF-8 text"),
    (b'{"cells": [', "invalid JSON at line 1"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"nbformat": "4"}', "no 'nbformat' version field"),
    (b'{"nbformat": 5, "nbformat_minor": 0, "cells": []}', "unsupported nbformat version 5"),
])
def test_one_reason_for_an_unreadable_file_everywhere(tmp_path, raw, problem):
    path = _write(tmp_path / "bad.ipynb", raw)
    assert problem in read(path).problem
    assert check_notebook(path, "bad.ipynb").problem == f"not a valid notebook: {read(path).problem}"
    nb, why = read_notebook(path)
    assert nb is None and problem in why
    with pytest.raises(NotebookError, match="not a readable notebook"):
        read_cells(path)


def test_an_old_format_is_converted_once_by_intake(tmp_path):
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {},
          "worksheets": [{"cells": [{"cell_type": "code", "input": "y = 2", "outputs": [],
                                     "language": "python", "metadata": {}}]}]}
    path = _write(tmp_path / "old.ipynb", v3)
    findings = check_notebook(path, "old.ipynb")
    assert any("old nbformat 3" in w for w in findings.warnings)
    assert json.loads(path.read_text())["nbformat"] == 4
    assert read(path).major == 4 and read_notebook(path)[0].cells[0].source == "y = 2"
