"""Staff scores and overrides merged into records already graded: no kernel, no notebook, only
the record's own items judged again where a new staff table says so, then scored again."""
from __future__ import annotations

from grader import overrides
from grader.checks import KINDS, JudgeContext
from grader.items import ItemResult
from grader.record import to_jsonable
from grader.score import Penalty, score


def rescore(rubric, rec, staff: dict[str, float] | None, table: dict[str, dict] | None = None):
    """Merge new staff scores and overrides into a record: re-judge staff items only when a staff
    table is given (``staff``), apply the overrides afresh only when an override table is given
    (``table``); what was not given stays as it is. Then score again."""
    if rec.status != "graded":
        return rec
    ctx = JudgeContext(rec.net_id, None, False, None, staff or {}, None)
    items = []
    by_id = {i.id: i for i in rubric.items}
    for it in rec.items:
        item = by_id.get(it["id"])
        kept = ItemResult(**{k: v for k, v in it.items() if k != "subchecks"}, subchecks=[])
        kept.subchecks = it.get("subchecks", [])
        standing = bool((kept.data or {}).get("override"))    # an override no new table replaces
        if table is not None:
            overrides.undo([kept])
            standing = False
        if staff is not None and item is not None and item.kind == "staff" and kept.status != "not_run" \
                and not standing:
            items.append(KINDS["staff"].judge(item, ctx))
        else:
            items.append(kept)
    if table is not None:
        overrides.apply(items, table)
    penalties = [Penalty(**p) for p in rec.penalties]
    rec.items = to_jsonable(items)
    rec.score = to_jsonable(score(rubric, items, penalties, rejected=False))
    return rec
