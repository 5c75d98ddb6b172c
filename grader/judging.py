"""An item judged once per change of what its judgement depends on: the digest of the item, its
part, the run it reads, staff scores and the judging code; a regrade reuses a previous finding
with the same digest instead of judging again."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from grader.checks import KINDS, ItemResult, JudgeContext
from grader.items import SubResult
from grader.planning import item_json, tree_digest
from grader.record import Record, to_jsonable
from grader.reference_cache import package_digest
from grader.rubric import Item, Part, Rubric

_CODE: dict[str, str] = {}


def judging_code_digest(reference_dir: Path | None) -> str:
    """What any item's judgement depends on besides its entry and its run: the check kinds'
    code and the reference package."""
    ref = str(reference_dir)
    if ref not in _CODE:
        h = hashlib.sha256(tree_digest(Path(__file__).resolve().parent / "checks").encode())
        if reference_dir is not None and Path(reference_dir).is_dir():
            h.update(package_digest(Path(reference_dir)).encode())
        _CODE[ref] = h.hexdigest()
    return _CODE[ref]


def judge_digest(item: Item, part: Part | None, key: str, staff: dict[str, float], reference_dir) -> str:
    return hashlib.sha256(json.dumps([item_json(item), str(part), key, staff.get(item.id),
                                      judging_code_digest(reference_dir)]).encode()).hexdigest()


def judge(item: Item, ctx: JudgeContext, key: str, rubric: Rubric, staff: dict[str, float],
           record: Record, previous: Record | None) -> ItemResult:
    """The item's own finding (before gating): the previous record's when its digest is the same,
    else judged now. Kept in ``record.judged``."""
    digest = judge_digest(item, next((p for p in rubric.parts if p.id == item.part), None), key, staff,
                          rubric.reference_dir)
    old = previous.judged.get(item.id) if previous is not None else None
    found = None
    if old is not None and old.get("digest") == digest:
        try:
            found = result_from_json(old["result"])
        except (KeyError, TypeError):
            found = None
    if found is None:
        found = KINDS[item.kind].judge(item, ctx)
    record.judged[item.id] = {"digest": digest, "result": to_jsonable(found)}
    return found


def result_from_json(data: dict) -> ItemResult:
    fields = dict(data)
    subs = [SubResult(**s) for s in fields.pop("subchecks", [])]
    return ItemResult(**fields, subchecks=subs)
