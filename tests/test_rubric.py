"""The bundled rubric loads; malformed rubrics fail with a message naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from grader.rubric import RubricError, load_rubric

REPO = Path(__file__).resolve().parents[1]
HW2 = REPO / "rubrics" / "hw2.toml"


def test_bundled_rubric_totals():
    r = load_rubric(HW2)
    assert r.name == "hw2"
    assert r.required_files == ("hw2_theory.pdf", "hw2_cnn.ipynb", "hw2_rnn.ipynb", "08-seq_classification.ipynb")
    assert {p.id: p.points for p in r.parts} == {"theory": 50, "hw2_cnn": 25, "hw2_rnn": 20, "seq": 5}
    assert r.total_points == 100 and r.total_extra == 5
    assert r.deadline.due.isoformat() == "2025-10-05T23:59:00-04:00"
    assert sum(i.points for i in r.items_of("theory")) == 50
    assert r.penalties.naming_pct == 10 and r.penalties.not_executable_pct == 20
    assert r.deadline.late_penalty_pct == 20 and r.deadline.late_window_hours == 24


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ref").mkdir(exist_ok=True)
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


GOOD = """
[assignment]
name = "t"
reference_dir = "ref"
[deadline]
due = "2025-10-05T23:59:00"
timezone = "America/New_York"
[penalties]
naming_pct = 10
[[parts]]
id = "nb"
file = "a.ipynb"
points = 2
[[items]]
id = "nb.x"
part = "nb"
kind = "exists"
title = "x exists"
target = "x"
points = 2
"""


def test_minimal_rubric_loads(tmp_path):
    r = load_rubric(write(tmp_path, GOOD))
    assert r.items[0].target == "x" and r.parts[0].kind == "notebook"


@pytest.mark.parametrize("old,new,message", [
    ('timezone = "America/New_York"', 'timezone = "Mars/Olympus"', "deadline.timezone: unknown time zone"),
    ('due = "2025-10-05T23:59:00"', 'due = "5 Oct"', "deadline.due: expected an ISO date-time"),
    ('naming_pct = 10', 'naming_pct = "ten"', "penalties.naming_pct: expected a number"),
    ('naming_pct = 10', 'naming_pct = 150', "penalties.naming_pct: expected a percentage"),
    ('kind = "exists"', 'kind = "magic"', "items[0].kind: unknown check kind 'magic'"),
    ('part = "nb"', 'part = "nope"', "items[0].part: 'nope' is not a declared part"),
    ('points = 2\n[[items]]', 'points = 3\n[[items]]', "points sum to 2, expected parts.points = 3"),
    ('title = "x exists"', 'title = "x exists"\ncolour = "red"', "items[0]: unknown key(s) colour"),
    ('reference_dir = "ref"', 'reference_dir = "missing"', "assignment.reference_dir: folder"),
    ('[penalties]', '[penalties]\nrule = "max"', "penalties.rule: expected one of sum_capped"),
    ('name = "t"', '', "assignment.name: missing; expected a string"),
])
def test_malformed_rubric_names_the_key(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(RubricError) as e:
        load_rubric(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in str(e.value)


def test_not_toml(tmp_path):
    with pytest.raises(RubricError, match="not valid TOML"):
        load_rubric(write(tmp_path, "[assignment\nname="))


def test_missing_file(tmp_path):
    with pytest.raises(RubricError, match="cannot read rubric"):
        load_rubric(tmp_path / "nope.toml")


def test_reseed_finds_the_first_matching_code_cell_of_the_notebook_as_submitted(tmp_path):
    import nbformat
    from grader.rubric import Part, Reseed
    from grader.kernel_code import reseed_cells
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("train_loader = DataLoader(  (in a comment of the text)"),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("N_EPOCHS = 3\ntrain_loader = torch.utils.data.DataLoader(ds)"),
                nbformat.v4.new_code_cell("train_loader = torch.utils.data.DataLoader(ds)")]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    part = Part(id="p", file="nb.ipynb", kind="notebook", points=1, reseed=Reseed(r"^train_loader\s*=\s*torch\.utils", 3))
    assert list(reseed_cells(part, path)) == [2]
    assert "manual_seed(3)" in reseed_cells(part, path)[2]
    assert reseed_cells(Part(id="p", file="nb.ipynb", kind="notebook", points=1), path) == {}
