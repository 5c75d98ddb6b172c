"""Check kind ``exists``: named objects are defined after the notebook ran.

Params: ``names`` (list of names; defaults to ``[target]``), ``callable`` (bool,
require each to be callable). Points are split equally between the names.

What the probe reports comes from the student's process, which can lie (patch json,
rewrite the answer file from a thread). So a name also has to be bound by the
submitted code itself (a def, class, assignment or import, read as AST on the
trusted side): a fake report cannot create a definition the code does not have.
"""
from __future__ import annotations

from grader.checks.base import JudgeContext, SubResult, not_run, result
from grader.checks.notebook_text import bound_names, parse_cells, read_cells
from grader.items import Item, RubricError


class Exists:
    name = "exists"

    def prelude(self, item: Item) -> None:
        return None

    @staticmethod
    def names(item: Item) -> list[str]:
        names = item.params.get("names") or ([item.target] if item.target else [])
        if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise ValueError(f"item {item.id}: 'exists' needs target or params.names (identifiers)")
        return list(names)

    def validate(self, item: Item) -> None:
        try:
            self.names(item)
        except ValueError as e:
            raise RubricError(f"{item.where or item.id}: {e}") from None

    def probe_actions(self, item: Item, plan=None) -> list[dict]:
        return [{"action": "exists", "item": item.id, "names": self.names(item)}]

    def judge(self, item: Item, ctx: JudgeContext):
        if not ctx.probe_ok:
            return not_run(item, ctx.probe_error or "the notebook did not run far enough to be checked")
        answer = ctx.probe_json(item.id)
        if answer is None:
            return not_run(item, "the grader found no answer for this item (the notebook may have "
                                 "replaced or broken the grader's probe)")
        names = self.names(item)
        share = item.points / len(names)
        try:
            in_code = bound_names(parse_cells(read_cells(ctx.notebook_path))[0]) if ctx.notebook_path else set()
        except Exception:
            in_code = set()
        subs = []
        for name in names:
            info = answer.get(name) if isinstance(answer.get(name), dict) else {}
            if info.get("exists") is not True:
                subs.append(SubResult(name, 0.0, share, f"`{name}` is not defined after the notebook ran"))
            elif name not in in_code:
                subs.append(SubResult(name, 0.0, share, f"`{name}` is not defined by the notebook's code "
                                                        f"(no def, class, assignment or import of it)"))
            elif item.params.get("callable") and info.get("callable") is not True:
                subs.append(SubResult(name, 0.0, share, f"`{name}` is defined but is not callable "
                                                        f"(it is a {info.get('type')})"))
            else:
                subs.append(SubResult(name, share, share, ""))
        return result(item, subs)
