"""Mistake fingerprints: when a comparison fails, hold the student's result against the
reference package's deliberately wrong variants named by the item; a match tells the
student which classic mistake it is."""
from __future__ import annotations

from typing import Any, Callable

from grader.checks.base import JudgeContext
from grader.checks.cases import applies, compare_cases, run_reference
from grader.checks.common import resolve
from grader.items import Fingerprint, Item


def applicable(item: Item, sub_name: str) -> list[Fingerprint]:
    return [fp for fp in item.fingerprints if not fp.subchecks or sub_name in fp.subchecks]


def first_match(item: Item, ctx: JudgeContext, sub_name: str,
                matches: Callable[[Any], bool]) -> str | None:
    """The message of the first applicable variant for which ``matches(variant)`` holds.
    A variant that cannot be computed on these inputs simply does not match."""
    for fp in applicable(item, sub_name):
        try:
            variant = resolve(fp.variant, ctx.reference_dir)
            if matches(variant):
                return fp.message
        except Exception:
            continue
    return None


def match_function(item: Item, ctx: JudgeContext, facet: Any, cases: list[dict], got_cases: list,
                   answer: Any, tol: Any) -> str | None:
    def matches(variant: Any) -> bool:
        alt = []
        for case in cases:
            kinds = ["output"] + [f"grad:{i}" for i in case["grad"]] + (["after"] if case.get("after") else [])
            if not any(applies(facet.facets, (k, case["group"])) for k in kinds):
                alt.append(case)          # not compared in this sub-check (maybe another function)
                continue
            objects, after = case.get("objects", ()), case.get("after") or None
            out, grads, observed = run_reference(variant, case["args"], case["kwargs"], [], None, objects, after)
            if case["grad"]:
                try:
                    out, grads, observed = run_reference(variant, case["args"], case["kwargs"], case["grad"],
                                                         case["upstream"], objects, after)
                except Exception:   # another output shape: no gradient of the variant to match
                    grads = [None] * len(case["grad"])
            alt.append({**case, "out": out, "grads": grads, "observed": observed})
        verdicts = [v for _, v, f in compare_cases(item, alt, got_cases, answer, tol)
                    if applies(facet.facets, f) and f[0] != "runs"]
        return bool(verdicts) and all(v.ok for v in verdicts)

    return first_match(item, ctx, facet.sub.name, matches)
