"""The whole path, zips in -> records, grades.csv and feedback out, through the real
intake, the real sandboxed kernel and the real check kinds, on a small rubric of its own."""
from __future__ import annotations


import pandas as pd
import pytest

from grader.batch import find_submissions, grade_batch
from grader.cli import main as cli_main
from grader.record import load as load_record
from grader.rubric import load_rubric
from grader.runner import GradeSettings
from support.builders import ANSWER_ITEM, F_ITEM, THEORY_ITEM, THEORY_PART, mini_rubric, notebook, pdf, write_zip

RUBRIC = mini_rubric(
    "mini", title="Mini homework", reference_dir="ref", due="2025-10-05T23:59:00",
    timezone="America/New_York",
    execution={"cell_timeout_s": 4, "notebook_timeout_s": 60, "probe_timeout_s": 30, "memory_mb": 2048},
    parts=[THEORY_PART, {"id": "nb", "file": "work.ipynb", "points": 6}],
    items=[THEORY_ITEM, F_ITEM, ANSWER_ITEM])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    (root / "ref").mkdir()
    (root / "mini.toml").write_text(RUBRIC)
    subs = root / "subs"
    subs.mkdir()
    sheet = pdf()
    good = notebook("def f(x):\n    return x + 1", "answer = f(41)")
    write_zip(subs / "aa111.zip", {"theory.pdf": sheet, "work.ipynb": good})
    # Raises in the middle; the cell after it still runs, so `answer` exists.
    write_zip(subs / "bb222.zip", {"theory.pdf": sheet, "work.ipynb": notebook(
        "def f(x):\n    return x", "undefined_name + 1", "answer = 2")})
    # Its own self-check asserts on a wrong answer: scored by the items, no execution penalty.
    write_zip(subs / "hh888.zip", {"theory.pdf": sheet, "work.ipynb": notebook(
        "def f(x):\n    return x", "assert f(1) == 2, 'f(1) should be 2'", "answer = 1")})
    # Loops forever in its second cell: interrupted at the 4 s cell limit; the cell after it still runs.
    write_zip(subs / "cc333.zip", {"theory.pdf": sheet, "work.ipynb": notebook(
        "def f(x):\n    return x", "while True:\n    pass", "answer = 3")})
    # Misnamed notebook plus an extra file, and late by 3 hours.
    write_zip(subs / "dd444.zip", {"theory.pdf": sheet, "Work (1).ipynb": good, "notes.txt": b"scratch"})
    # 30 hours late: not accepted.
    write_zip(subs / "ee555.zip", {"theory.pdf": sheet, "work.ipynb": good})
    # Not a zip at all.
    (subs / "ff666.zip").write_bytes(b"this is not a zip file")
    # The PDF is a renamed text file; the notebook is missing.
    write_zip(subs / "gg777.zip", {"theory.pdf": b"my answers in plain text\n"})
    tables = root / "course"     # the staff's tables folder, named with --tables (never beside the zips)
    tables.mkdir()
    (tables / "submission_times.csv").write_text(
        "net_id,submitted_at\n"
        "aa111,2025-10-05T20:00:00-04:00\nbb222,2025-10-05T23:59:00-04:00\ncc333,2025-10-05T10:00:00-04:00\n"
        "dd444,2025-10-06T02:59:00-04:00\nee555,2025-10-07T05:59:00-04:00\nff666,2025-10-05T10:00:00-04:00\n"
        "gg777,2025-10-05T10:00:00-04:00\nhh888,2025-10-05T10:00:00-04:00\n")
    (tables / "staff_scores.csv").write_text("net_id,theory.q1\naa111,3\n")
    out = root / "out"
    rc = cli_main(["grade", str(subs), "--rubric", str(root / "mini.toml"), "--out", str(out),
                   "--tables", str(tables)])
    assert rc == 0
    grades = pd.read_csv(out / "grades.csv", dtype={"net_id": str}).set_index("net_id")
    return out, grades


def test_one_row_per_submission(graded):
    out, grades = graded
    assert sorted(grades.index) == ["aa111", "bb222", "cc333", "dd444", "ee555", "ff666", "gg777", "hh888"]
    assert len(list((out / "records").glob("*.json"))) == 8
    assert len(list((out / "feedback").glob("*.md"))) == 8
    possible = pd.read_csv(out / "points_possible.csv")
    assert possible.loc[0, "final_score"] == 10 and possible.loc[0, "item:nb.f"] == 4


def test_perfect_with_staff_score(graded):
    out, g = graded
    row = g.loc["aa111"]
    assert row["status"] == "graded"
    assert row["item:nb.f"] == 4 and row["item:nb.answer"] == 2 and row["item:theory.q1"] == 3
    assert row["final_score"] == 9 and row["penalty_total_pct"] == 0
    rec = load_record(out / "records" / "aa111.zip.json")
    assert rec.notebooks["nb"]["status"] == "completed"
    assert rec.notebooks["nb"]["limits"], "the record says which limits were in force"


def test_error_in_the_middle_continues_and_costs_the_execution_penalty(graded):
    out, g = graded
    row = g.loc["bb222"]
    assert row["item:nb.f"] == 4 and row["item:nb.answer"] == 2      # the cell after the error ran
    assert row["penalty:not_executable_pct"] == 20
    assert row["final_score"] == pytest.approx(6 * 0.8)
    feedback = (out / "feedback" / "bb222.md").read_text()
    assert "NameError" in feedback and "undefined_name" in feedback


def test_a_failed_self_check_costs_no_execution_penalty(graded):
    out, g = graded
    row = g.loc["hh888"]
    assert row["penalty:not_executable_pct"] == 0 and row["item:nb.answer"] == 2
    rec = load_record(out / "records" / "hh888.zip.json")
    assert rec.notebooks["nb"]["status"] == "errors"
    feedback = (out / "feedback" / "hh888.md").read_text()
    assert "AssertionError: f(1) should be 2" in feedback and "costs no execution penalty" in feedback


def test_infinite_loop_is_stopped_and_the_batch_goes_on(graded):
    out, g = graded
    row = g.loc["cc333"]
    assert row["status"] == "graded"
    # Interrupted at its limit: the next cell still ran, and its answer counts; the loop costs
    # the not-executable penalty.
    assert row["item:nb.answer"] == 2 and row["penalty:not_executable_pct"] == 20
    rec = load_record(out / "records" / "cc333.zip.json")
    run = rec.notebooks["nb"]
    assert run["status"] == "timeout"
    assert [c["status"] for c in run["cells"]] == ["ok", "timeout", "ok"]
    assert run["seconds"] < 40


def test_naming_and_late_penalties_add_up(graded):
    out, g = graded
    row = g.loc["dd444"]
    assert row["penalty:naming_pct"] == 10 and row["penalty:late_pct"] == 20
    assert row["item:nb.f"] == 4 and row["item:nb.answer"] == 2
    assert row["final_score"] == pytest.approx(6 * 0.7)
    feedback = (out / "feedback" / "dd444.md").read_text()
    assert "notes.txt" in feedback and "late" in feedback.lower()


def test_rejections_have_a_reason(graded):
    out, g = graded
    assert g.loc["ee555", "status"] == "late_rejected" and g.loc["ee555", "final_score"] == 0
    assert "not accepted" in g.loc["ee555", "reason"]
    assert g.loc["ff666", "status"] == "rejected" and g.loc["ff666", "final_score"] == 0
    assert "zip" in g.loc["ff666", "reason"].lower()
    gg = load_record(out / "records" / "gg777.zip.json")
    assert gg.status in ("graded", "rejected")
    assert g.loc["gg777", "final_score"] == 0
    assert "PDF" in (out / "feedback" / "gg777.md").read_text()


def test_report_merges_staff_scores_later(graded, tmp_path):
    out, _ = graded
    staff = tmp_path / "staff.csv"
    staff.write_text("net_id,theory.q1\nbb222,4\n")
    root = out.parent
    assert cli_main(["report", "--out", str(out), "--rubric", str(root / "mini.toml"),
                     "--staff-scores", str(staff)]) == 0
    g = pd.read_csv(out / "grades.csv", dtype={"net_id": str}).set_index("net_id")
    assert g.loc["bb222", "item:theory.q1"] == 4
    assert g.loc["bb222", "final_score"] == pytest.approx(10 * 0.8)


def test_resume_reuses_complete_records(graded):
    out, _ = graded
    root = out.parent
    rubric = load_rubric(root / "mini.toml")
    zips = find_submissions(root / "subs")
    before = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    logs: list[str] = []
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache")
    grade_batch([z for z in zips if z.name == "ff666.zip"], rubric, settings, out / "again", log=logs.append)
    grade_batch([z for z in zips if z.name == "ff666.zip"], rubric, settings, out / "again", log=logs.append)
    assert any("reusing" in m for m in logs)
    assert before  # the first batch wrote records
