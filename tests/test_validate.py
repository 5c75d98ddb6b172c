"""`grader validate` grades an assignment's own solution and release notebooks against its rubric."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from grader.cli import main as cli_main
from support.builders import mini_rubric

REPO = Path(__file__).resolve().parents[1]

RUBRIC = mini_rubric(
    "mini", reference_dir="ref", due="2025-10-05T23:59:00", timezone="America/New_York", penalties={},
    execution={"cell_timeout_s": 10, "notebook_timeout_s": 60},
    parts=[{"id": "theory", "file": "theory.pdf", "kind": "pdf", "points": 1},
           {"id": "nb", "file": "work.ipynb", "points": 3}],
    items=[{"id": "theory.q", "part": "theory", "kind": "staff", "title": "q", "points": 1},
           {"id": "nb.given", "part": "nb", "kind": "exists", "title": "given helper", "target": "helper",
            "points": 1, "release": "full"},
           {"id": "nb.todo", "part": "nb", "kind": "exists", "title": "student function", "target": "answer",
            "points": 2}])


def setup(tmp_path: Path, release_of_todo: str = "zero") -> Path:
    ref = tmp_path / "ref"
    for version, cells in {"solution": ["def helper(): pass", "def answer(): return 42"],
                           "release": ["def helper(): pass", "# TODO: write answer()"]}.items():
        (ref / version).mkdir(parents=True)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, str(ref / version / "work.ipynb"))
    rubric = tmp_path / "mini.toml"
    rubric.write_text(RUBRIC.replace('target = "answer"\npoints = 2\n',
                                     f'target = "answer"\npoints = 2\nrelease = "{release_of_todo}"\n'))
    return rubric


def test_consistent_assignment_validates(tmp_path, capsys):
    assert cli_main(["validate", "--rubric", str(setup(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "solution: 3 / 3 automatic points" in out
    assert "release: 1 / 3 automatic points" in out


def test_inconsistent_rubric_fails_with_a_table(tmp_path, capsys):
    assert cli_main(["validate", "--rubric", str(setup(tmp_path, release_of_todo="full"))]) == 1
    out = capsys.readouterr().out
    assert "release  nb.todo  full" in out
    assert "`answer` is not defined" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hw2.toml", "hw2_course.toml"])
def test_the_assignments_own_notebooks_score_what_their_rubric_declares(name, run_cache):
    """Both rubrics against their notebooks (this project's, and the course template's), with the
    session's seed and run cache: CI's `grader validate` afterwards reuses these runs."""
    from conftest import SESSION_SEED
    from grader.rubric import load_rubric
    from grader.validate import validate
    problems, records = validate(load_rubric(REPO / "rubrics" / name), seed=SESSION_SEED, cache_dir=run_cache)
    assert problems == [], problems
    assert records["solution"].notebooks and all(n["status"] == "completed" for n in records["solution"].notebooks.values())
