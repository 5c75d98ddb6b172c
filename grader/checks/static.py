"""Check kind ``static``: the notebook's code as submitted, read as AST (never executed).

Params:
  release   path (under the reference folder) of the release notebook, for ``unchanged``
  rules     array of tables, each with one of
              unchanged = "name"      the def/class ``name`` is the release notebook's (ast.dump)
              assign = "name", value = literal   every assignment to ``name`` gives ``value``
              call = "torch.manual_seed(1)"     this call is present (present = false: absent)
              pattern = "regex"       present in the code (present = false: absent)
            and optionally section = "heading regex" (cells under that heading) and
            subcheck = "name" (which declared sub-check it counts for).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from grader.checks.base import JudgeContext, SubResult, not_run, result
from grader.checks.common import Params
from grader.checks.notebook_text import parse_cells, plain, read_cells, section, top_level_nodes
from grader.items import Item, RubricError

RULES = ("unchanged", "assign", "call", "pattern")


def rules_by_subcheck(item: Item, allowed: tuple[str, ...], extra_keys: set[str]) -> list[tuple[Any, list[dict]]]:
    """Validate params.rules and group them by sub-check (all into one when none declared)."""
    p = Params(item)
    rules = p.list("rules", required=True)
    names = [s.name for s in item.subchecks]
    for i, r in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            raise p.err(where, f"expected a table, got {r!r}")
        kinds = [k for k in allowed if k in r]
        if len(kinds) != 1:
            raise p.err(where, f"expected exactly one of {', '.join(allowed)}")
        unknown = set(r) - set(allowed) - extra_keys - {"section", "subcheck", "present"}
        if unknown:
            raise p.err(where, f"unknown key(s) {', '.join(sorted(unknown))}")
        if "section" in r:
            try:
                re.compile(r["section"])
            except (re.error, TypeError):
                raise p.err(f"{where}.section", f"not a valid regular expression: {r['section']!r}") from None
        if names:
            if r.get("subcheck") not in names:
                raise p.err(f"{where}.subcheck", f"expected one of the item's sub-checks ({', '.join(names)}), "
                                                 f"got {r.get('subcheck')!r}")
        elif "subcheck" in r:
            raise p.err(f"{where}.subcheck", "the item declares no sub-checks")
    if names:
        for s in item.subchecks:
            if not any(r.get("subcheck") == s.name for r in rules):
                raise p.err("rules", f"no rule counts for sub-check {s.name!r}")
        return [(s, [r for r in rules if r.get("subcheck") == s.name]) for s in item.subchecks]
    from grader.items import Subcheck
    return [(Subcheck("all", item.points), rules)]


class Static:
    name = "static"

    def prelude(self, item: Item) -> None:
        return None

    def validate(self, item: Item) -> None:
        p = Params(item)
        p.only({"release", "rules"})
        groups = rules_by_subcheck(item, RULES, {"value", "message"})
        for _, rules in groups:
            for r in rules:
                if "unchanged" in r and not p.str("release"):
                    raise p.err("release", "an `unchanged` rule needs the release notebook's path")
                if "assign" in r and ("value" not in r or not str(r["assign"]).isidentifier()):
                    raise p.err("rules", f"an assign rule needs a name and a value: {r!r}")
                if "call" in r:
                    try:
                        node = ast.parse(str(r["call"]), mode="eval").body
                    except SyntaxError:
                        node = None
                    if not isinstance(node, ast.Call):
                        raise p.err("rules", f"call = {r['call']!r} is not a Python call expression")
                if "pattern" in r:
                    try:
                        re.compile(r["pattern"])
                    except (re.error, TypeError):
                        raise p.err("rules", f"pattern {r['pattern']!r} is not a valid regular expression") from None

    def probe_actions(self, item: Item, plan=None) -> list[dict]:
        return []

    def judge(self, item: Item, ctx: JudgeContext):
        if ctx.notebook_path is None:
            return not_run(item, ctx.probe_error or "the notebook is missing")
        try:
            cells = read_cells(ctx.notebook_path)
        except Exception as e:
            return not_run(item, f"the notebook could not be read ({type(e).__name__})")
        release = None
        if item.params.get("release"):
            try:
                release = read_cells(Path(ctx.reference_dir or ".") / item.params["release"])
            except Exception as e:
                return not_run(item, f"the release notebook for this check could not be read: {e}")
        subs = []
        for sub, rules in rules_by_subcheck(item, RULES, {"value", "message"}):
            failed = [m for r in rules if (m := self.rule(r, cells, release))]
            subs.append(SubResult(sub.name, 0.0 if failed else sub.points, sub.points, "; ".join(failed)))
        return result(item, subs)

    def rule(self, r: dict, cells, release) -> str | None:
        """None when the rule holds, else what is wrong."""
        where = f" under the heading {plain(r['section'])}" if r.get("section") else ""
        scope = section(cells, r.get("section"))
        if scope is None:
            return f"the heading {plain(r['section'], 'of this part')} was not found in the notebook"
        trees, _bad = parse_cells(scope)
        present = r.get("present", True)
        if "unchanged" in r:
            name = r["unchanged"]
            mine = _definition(trees, name)
            theirs = _definition(parse_cells(section(release, r.get("section")) or [])[0], name)
            if theirs is None:
                raise RubricError(f"`{name}` is not defined in the release notebook")
            if mine is None:
                return f"`{name}` (given code that must stay unchanged) is missing{where}"
            if ast.dump(mine) != ast.dump(theirs):
                return f"`{name}` was changed; it is given code and must stay as released"
            return None
        if "assign" in r:
            name, want = r["assign"], r["value"]
            values = []
            for tree in trees:
                for node in top_level_nodes(tree):
                    targets = node.targets if isinstance(node, ast.Assign) else (
                        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
                    if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                        try:
                            values.append(ast.literal_eval(node.value) if node.value is not None
                                          and not isinstance(node, ast.AugAssign) else _Changed())
                        except ValueError:
                            values.append(_Changed())
            if not values:
                return f"`{name} = {want!r}` is missing{where}"
            if any(v != want or type(v) is not type(want) for v in values):
                return f"`{name}` must stay {want!r}{where}; it was changed"
            return None
        if "call" in r:
            want = ast.dump(ast.parse(r["call"], mode="eval").body)
            found = any(isinstance(n, ast.Call) and ast.dump(n) == want for t in trees for n in ast.walk(t))
            if found != present:
                return (f"`{r['call']}` is missing{where}" if present else f"`{r['call']}` must not be called{where}")
            return None
        rx = re.compile(r["pattern"], re.MULTILINE)
        found = any(rx.search(c.source) for c in scope if c.kind == "code")
        if found != present:
            what = r.get("message") or plain(r["pattern"], "the expected code")
            return (f"the code{where} should have {what}" if present else f"the code{where} must not have {what}")
        return None


class _Changed:
    """An assigned value that is not a literal: never equal to the required one."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


def _definition(trees: list[ast.Module], name: str) -> ast.AST | None:
    found = None
    for tree in trees:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                found = node
    return found
