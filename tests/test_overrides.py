"""Staff overrides (net_id,item,points,comment) win over the grader, are marked in the CSV, the
feedback and the summary, and survive a regrade and `grader report`."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from test_scale import EXACT, ROUGH, rubric_file, student_zip

REPO = Path(__file__).resolve().parents[1]


def _grader(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", newline="") as f:
        return {r["net_id"]: r for r in csv.DictReader(f)}


def test_overrides_win_are_marked_and_survive_a_regrade(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    student_zip(subs, "aa1000", EXACT, "answer = 42")
    student_zip(subs, "bb1001", "x = 1")                    # no conv1d, no answer: 0 points
    course = tmp_path / "course"
    course.mkdir()
    (course / "overrides.csv").write_text(
        "net_id,item,points,comment\n"
        "bb1001,nb.conv,1.5,\"conv1d was in a cell the grader could not see; checked by hand\"\n"
        "aa1000,nb.answer,0,answer was copied (academic integrity case 17)\n")
    rubric_file(tmp_path)
    out = tmp_path / "out"
    first = _grader("grade", str(subs), "--rubric", str(tmp_path / "scale.toml"), "--out", str(out),
                    "--tables", str(course), "--jobs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = _rows(out)
    assert rows["bb1001"]["item:nb.conv"] == "1.5" and rows["bb1001"]["overridden"] == "nb.conv"
    assert rows["aa1000"]["item:nb.answer"] == "0.0" and rows["aa1000"]["final_score"] == "2.0"
    assert "overrides: 2 item(s) of 2 student(s)" in first.stdout
    assert f"overrides {course / 'overrides.csv'}" in first.stdout
    feedback = (out / "feedback" / "bb1001.md").read_text()
    assert "Staff override: 1.5 / 2" in feedback and "checked by hand" in feedback
    assert "The grader found: 0 / 2" in feedback

    # A scoring-only rubric change: judged again from the kept runs, the override still stands.
    rubric_file(tmp_path, atol=1e-6)
    again = _grader("grade", str(subs), "--rubric", str(tmp_path / "scale.toml"), "--out", str(out),
                    "--tables", str(course), "--jobs", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert _rows(out)["bb1001"]["item:nb.conv"] == "1.5"

    # New table through `grader report`: the old override is undone, the new one applied.
    (course / "overrides.csv").write_text("net_id,item,points,comment\nbb1001,nb.answer,1,\n")
    rep = _grader("report", "--out", str(out), "--rubric", str(tmp_path / "scale.toml"), "--tables", str(course))
    assert rep.returncode == 0, rep.stderr
    rows = _rows(out)
    assert rows["bb1001"]["item:nb.conv"] == "0.0" and rows["bb1001"]["item:nb.answer"] == "1.0"
    assert rows["aa1000"]["item:nb.answer"] == "1.0" and rows["aa1000"]["overridden"] == ""

    # Staff scores merged later, with no override table named: the overrides stand.
    staff = tmp_path / "staff_scores.csv"
    staff.write_text("net_id\naa1000\n")
    rep = _grader("report", "--out", str(out), "--rubric", str(tmp_path / "scale.toml"), "--staff-scores", str(staff))
    assert rep.returncode == 0, rep.stderr
    assert _rows(out)["bb1001"]["overridden"] == "nb.answer" and _rows(out)["bb1001"]["item:nb.answer"] == "1.0"


def test_a_bad_override_says_what_to_fix(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    student_zip(subs, "aa1000", ROUGH, "answer = 42")
    rubric_file(tmp_path)
    bad = tmp_path / "o.csv"
    bad.write_text("net_id,item,points\naa1000,nb.conv,3\n")
    done = _grader("grade", str(subs), "--rubric", str(tmp_path / "scale.toml"), "--out", str(tmp_path / "out"),
                   "--overrides", str(bad))
    assert done.returncode == 2
    assert "o.csv line 2: points '3' must be between 0 and 2 (what nb.conv is worth)" in done.stderr
