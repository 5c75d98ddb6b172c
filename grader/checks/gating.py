"""``params.requires``: an item counts only when the items it names passed.

Used where credit for one thing makes sense only under another, e.g. no credit for
smooth training curves from a changed model or seed. Items are gated in rubric order,
so a chain of requirements works transitively; the gated item keeps its own findings
in the message, prefixed by why it scored nothing.
"""
from __future__ import annotations

from grader.checks.base import ItemResult, SubResult
from grader.items import Item, RubricError
from grader.text_safety import one_line


def required(item: Item) -> list[str]:
    value = item.params.get("requires", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RubricError(f"{item.where or item.id}.params.requires: expected an array of item ids, got {value!r}")
    return value


def apply_requires(items: list[Item], results: list[ItemResult]) -> list[ItemResult]:
    by_id = {r.id: r for r in results}
    for item in items:
        res = by_id.get(item.id)
        needs = required(item)
        if res is None or not needs or res.status in ("not_run", "pending"):
            continue
        missing = [n for n in needs if n not in by_id or by_id[n].status != "passed"]
        if not missing:
            continue
        why = "; ".join(f"\"{by_id[n].title}\" ({one_line(by_id[n].message, 160) or by_id[n].status})" if n in by_id
                        else f"{n} was not checked" for n in missing)
        res.message = (f"no credit: this counts only when the following passed: {why}"
                       + (f". What the check itself found: {res.message}" if res.message else ""))
        res.subchecks = [SubResult(s.name, 0.0, s.possible, s.message) for s in res.subchecks] or \
            [SubResult("requires", 0.0, res.possible, "")]
        res.points = 0.0
        res.status = "failed"
    return results
