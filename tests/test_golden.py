"""Golden test: grading the bundled samples reproduces sample_submissions/expected.csv.

Scores must match exactly; each reason by its key phrase (found in the record's
reason, penalties, notebook messages or feedback). expected.csv is edited by hand
after review, never regenerated from the grader's output.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from grader.batch import find_submissions
from grader.report import feedback_markdown
from grader.rubric import load_rubric
from grader.tables import load_staff_scores, load_times

SAMPLES = Path(__file__).resolve().parents[1] / "sample_submissions"
EXPECTED = SAMPLES / "expected.csv"
PARTS = {"theory": ("theory", "points"), "hw2_cnn": ("hw2_cnn", "points"), "hw2_rnn": ("hw2_rnn", "points"),
         "seq": ("seq", "points"), "seq_extra": ("seq", "extra")}


def expected_rows() -> list[dict[str, str]]:
    with open(EXPECTED, newline="") as f:
        return list(csv.DictReader(f))


def test_every_sample_has_an_expectation():
    zips = {p.name for p in find_submissions(SAMPLES)}
    assert zips == {row["zip"] for row in expected_rows()}


@pytest.fixture(scope="module")
def graded(grade_zip, hw2_rubric):
    times = load_times(SAMPLES / "submission_times.csv")
    staff = load_staff_scores(SAMPLES / "staff_scores.csv", {i.id for i in hw2_rubric.items if i.kind == "staff"})
    return {p.name: grade_zip(p, hw2_rubric, on_time=False, times=times, staff_scores=staff)
            for p in find_submissions(SAMPLES)}


@pytest.mark.slow
@pytest.mark.parametrize("row", expected_rows(), ids=lambda r: r["zip"])
def test_sample_grade(row, graded, hw2_rubric):
    rec = graded[row["zip"]]
    got = {"status": rec.status, "net_id": rec.net_id}
    for column, (part, key) in PARTS.items():
        got[column] = rec.score.get("parts", {}).get(part, {}).get(key, 0.0)
    pct = {p["kind"]: p["pct"] for p in rec.penalties}
    for kind in ("naming", "late", "not_executable"):
        got[f"{kind}_pct"] = pct.get(kind, 0.0)
    got["final_score"] = rec.score.get("final")
    want = {"status": row["status"], "net_id": row["net_id"],
            **{k: float(row[k]) for k in (*PARTS, "naming_pct", "late_pct", "not_executable_pct", "final_score")}}
    items = "\n".join(f"  {i['id']}: {i['points']:g}/{i['possible']:g} {i['status']} {i['message'][:120]}"
                      for i in rec.items if i["kind"] != "staff")
    assert got == pytest.approx(want), f"{row['zip']}: items were\n{items}"
    text = " ".join([rec.reason, *(p["reason"] for p in rec.penalties),
                     *(n.get("message", "") for n in rec.notebooks.values()),
                     feedback_markdown(hw2_rubric, rec)])
    assert row["reason_phrase"] in text, f"{row['zip']}: {row['reason_phrase']!r} not in its reasons"
