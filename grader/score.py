"""Score: item points -> part points -> raw total -> penalties -> final score.

Penalty rule ``sum_capped`` (the default, stated in the README and the rubric):
each penalty is a percentage of the final score; the percentages are added,
the sum is capped at 100%, and final = raw x (1 - sum/100). Each kind of
penalty applies at most once per submission. A rejected submission scores 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from grader.items import ItemResult
from grader.rubric import Rubric


@dataclass
class Penalty:
    kind: str            # "naming" | "late" | "not_executable"
    pct: float
    reason: str


@dataclass
class PartScore:
    points: float
    possible: float
    extra: float
    extra_possible: float


@dataclass
class Score:
    parts: dict[str, PartScore]
    raw: float                       # base points + extra credit, before penalties
    possible: float                  # base points possible (extra credit not counted)
    penalties: list[Penalty] = field(default_factory=list)
    penalty_pct: float = 0.0
    final: float = 0.0
    rejected: bool = False
    pending_items: int = 0           # staff items not yet graded


def combine_penalties(rule: str, penalties: list[Penalty]) -> float:
    if rule == "sum_capped":
        return min(100.0, sum(p.pct for p in penalties))
    raise ValueError(f"unknown penalty rule {rule!r}")


def score(rubric: Rubric, items: list[ItemResult], penalties: list[Penalty], rejected: bool) -> Score:
    parts = {}
    for part in rubric.parts:
        mine = [i for i in items if i.part == part.id]
        base = min(part.points, sum(i.points for i in mine if not i.extra))
        extra = min(part.extra_credit, sum(i.points for i in mine if i.extra))
        parts[part.id] = PartScore(round(base, 4), part.points, round(extra, 4), part.extra_credit)
    raw = round(sum(p.points + p.extra for p in parts.values()), 4)
    pct = combine_penalties(rubric.penalties.rule, penalties)
    final = 0.0 if rejected else round(raw * (1 - pct / 100), 4)
    pending = sum(1 for i in items if i.status == "pending")
    return Score(parts, raw, rubric.total_points, penalties, pct, final, rejected, pending)
