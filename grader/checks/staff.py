"""Check kind ``staff``: points that course staff give (e.g. the theory PDF).

The grader only merges them; until staff enter a score the item is pending.
"""
from __future__ import annotations

from grader.checks.base import ItemResult, JudgeContext
from grader.items import Item


class Staff:
    name = "staff"

    def prelude(self, item: Item) -> None:
        return None

    def validate(self, item: Item) -> None:
        pass

    def probe_actions(self, item: Item, plan=None) -> list[dict]:
        return []

    def judge(self, item: Item, ctx: JudgeContext) -> ItemResult:
        value = ctx.staff_scores.get(item.id)
        if value is None:
            return ItemResult(item.id, item.part, item.title, item.kind, 0.0, item.points, item.extra,
                              "pending", "to be graded by course staff")
        points = min(max(float(value), 0.0), item.points)
        status = "passed" if points >= item.points - 1e-9 else ("partial" if points > 0 else "failed")
        return ItemResult(item.id, item.part, item.title, item.kind, points, item.points, item.extra,
                          status, "graded by course staff")
