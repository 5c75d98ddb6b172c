"""Penalty combination and scoring."""
from __future__ import annotations

from pathlib import Path

import pytest

from grader.checks.base import ItemResult
from grader.rubric import load_rubric
from grader.score import Penalty, combine_penalties, score

HW2 = load_rubric(Path(__file__).resolve().parents[1] / "rubrics" / "hw2.toml")


def full_marks() -> list[ItemResult]:
    return [ItemResult(i.id, i.part, i.title, i.kind, i.points, i.points, i.extra, "passed", "")
            for i in HW2.items]


@pytest.mark.parametrize("pcts,total", [([], 0), ([10], 10), ([10, 20], 30), ([10, 20, 20], 50),
                                        ([60, 50], 100)])
def test_sum_capped(pcts, total):
    assert combine_penalties("sum_capped", [Penalty("k", p, "") for p in pcts]) == total


def test_full_marks_with_extra_credit_and_penalties():
    s = score(HW2, full_marks(), [], rejected=False)
    assert s.raw == 105 and s.final == 105 and s.possible == 100
    s = score(HW2, full_marks(), [Penalty("naming", 10, ""), Penalty("late", 20, "")], rejected=False)
    assert s.penalty_pct == 30 and s.final == pytest.approx(73.5)


def test_rejected_scores_zero():
    assert score(HW2, full_marks(), [], rejected=True).final == 0


def test_part_points_are_capped():
    items = full_marks()
    items.append(ItemResult("bogus", "hw2_cnn", "", "exists", 50, 0, False, "passed", ""))
    assert score(HW2, items, [], rejected=False).parts["hw2_cnn"].points == 25
