"""Staff overrides: staff's points for an item win over the grader's, and say so.

An override is applied to the item's finding after judging and before scoring, every time a
record is scored (a first grading, a regrade, ``grader report``), so it survives them all;
the grader's own finding is kept beside it (``data.override.was``).
"""
from __future__ import annotations

from grader.items import ItemResult
from grader.record import to_jsonable


def _status(points: float, possible: float) -> str:
    if points >= possible - 1e-9:
        return "passed"
    return "partial" if points > 0 else "failed"


def undo(items: list[ItemResult]) -> list[ItemResult]:
    """The grader's own findings again (before applying a newer table)."""
    for it in items:
        was = it.data.pop("override", None)
        if was is not None:
            it.points, it.status, it.message = was["was_points"], was["was_status"], was["was_message"]
            it.subchecks = was.get("was_subchecks", it.subchecks)
    return items


def apply(items: list[ItemResult], table: dict[str, dict]) -> list[ItemResult]:
    """``table``: item id -> {"points", "comment"} for one student."""
    for it in items:
        o = table.get(it.id)
        if o is None:
            continue
        it.data["override"] = {"points": o["points"], "comment": o.get("comment", ""),
                               "was_points": it.points, "was_status": it.status, "was_message": it.message,
                               "was_subchecks": to_jsonable(it.subchecks)}
        it.subchecks = []      # the grader's sub-checks no longer add up to the item's points
        note = f"Staff override: {o['points']:g} / {it.possible:g}" + (f" ({o['comment']})" if o.get("comment") else "")
        it.message = note + (f"\nThe grader found: {it.points:g} / {it.possible:g}: {it.message}"
                             if it.status not in ("pending", "not_run") or it.message else "")
        it.points, it.status = o["points"], _status(o["points"], it.possible)
    return items


def overridden(items: list[dict]) -> list[str]:
    return [i["id"] for i in items if (i.get("data") or {}).get("override")]
