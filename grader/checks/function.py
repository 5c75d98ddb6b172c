"""Check kind ``function``: the student's function against the reference on the same inputs.

Params:
  cases      array of tables {args = [...], kwargs = {...}, group = "name", grad = [i, ...],
             target = "other_student_function", reference = "package.module:other_reference",
             objects = [object specs built before the call], select = i, after = {name = what}};
             a target may be dotted ("Conv1dStrided.apply": an attribute of a notebook object);
             an arg is a literal (arrays become tuples) or a tensor spec
             {tensor = [shape], dtype = "float32", dist = "normal"|"uniform"|"randint"|"onehot"|"arange",
             low, high, scale, classes}, generated from the run's secret seed,
             or an object spec (common.py: allow-listed torch constructors such as
             {object = "torch.nn.Linear", args = [4, 2], name = "model"}, {params_of = "model"},
             {loss_of = "model", input = <tensor>, weights = <tensor>}), which the probe builds
             with the grader's random weights.
             select = i compares only element i of the returned tuple (a number is accepted for a
             one-element tensor there: the type is another case's business).
             after = {model = "parameters" | "gradients" | "both"}: after the call, compare the
             named object's parameters and/or their .grad (e.g. an optimizer step).
             Without cases: one case from ``args``/``kwargs``/``grad`` at the top level.
  grad       default for cases: indices of tensor args to differentiate w.r.t. (through the
             student's function with autograd, so a hand-written autograd.Function backward is used)
  rtol, atol tolerances (compare.py defaults otherwise)
  compare    {subcheck = facet or [facets]}: "output" (every case's output), "output:<group>",
             "grad:<i>" (gradient w.r.t. arg i in every case that asks for it), "grads" (all),
             "runs" (every case returns without an exception), "after", "after:<group>" (the
             observed objects), "group:<group>" (everything compared in that group's cases).
             A sub-check named like a facet needs no entry.
"""
from __future__ import annotations

import re

import torch

from grader.checks import fingerprint
from grader.checks.base import JudgeContext, PlanContext, SubResult, not_run, result
from grader.checks.cases import applies, compare_cases, run_reference, tolerance
from grader.checks.common import (Facet, Params, check_value_spec, item_seed, make_value, need_reference, need_target,
                                  plan_facets, resolve)
from grader.checks.answers import encode, load_answer
from grader.items import Item
from grader.probe.wire import leaves

ALIASES = {"forward": "output", "outputs": "output"}
_FACET = re.compile(r"^(output|output:[\w.-]+|grad:\d+|grads|runs|after|after:[\w.-]+|group:[\w.-]+|all)$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _cases(item: Item) -> list[dict]:
    p = Params(item)
    cases = p.list("cases")
    if not cases:
        cases = [{k: item.params[k] for k in ("args", "kwargs", "grad") if k in item.params}]
    return cases


class Function:
    name = "function"

    def prelude(self, item: Item) -> None:
        return None

    def validate(self, item: Item) -> None:
        p = Params(item)
        p.only({"cases", "args", "kwargs", "grad", "rtol", "atol", "compare", "integral_floats", "forbid"})
        for i, rule in enumerate(p.list("forbid")):
            if not (isinstance(rule, dict) and set(rule) <= {"functions", "calls", "subchecks", "why"}
                    and all(isinstance(rule.get(k, []), list) and all(isinstance(x, str) for x in rule.get(k, []))
                            for k in ("functions", "calls", "subchecks"))
                    and rule.get("functions") and rule.get("calls")):
                raise p.err(f"forbid[{i}]", "expected {functions = [\"name\" or \"Class.method\"], calls = "
                                          "[\"conv1d\", ...], subchecks = [...], why = \"...\"}")
            unknown = set(rule.get("subchecks", [])) - {sub.name for sub in item.subchecks}
            if unknown:
                raise p.err(f"forbid[{i}].subchecks", f"unknown sub-check(s) {', '.join(sorted(unknown))}")
        if not all(isinstance(c, dict) and "target" in c for c in _cases(item)):
            need_target(item)
        need_reference(item)
        for i, case in enumerate(_cases(item)):
            key = f"cases[{i}]" if "cases" in item.params else "args"
            if not isinstance(case, dict):
                raise p.err(key, f"expected a table {{args = [...], ...}}, got {case!r}")
            unknown = set(case) - {"args", "kwargs", "group", "grad", "target", "reference", "objects",
                                   "select", "after"}
            if unknown:
                raise p.err(key, f"unknown key(s) {', '.join(sorted(unknown))}")
            if "target" in case and not (isinstance(case["target"], str) and _DOTTED.match(case["target"])):
                raise p.err(f"{key}.target", f"expected the name of a student function, got {case['target']!r}")
            if "reference" in case and (not isinstance(case["reference"], str) or ":" not in case["reference"]):
                raise p.err(f"{key}.reference", "expected \"package.module:name\"")
            args = case.get("args", [])
            if not isinstance(args, list):
                raise p.err(f"{key}.args", f"expected an array, got {args!r}")
            check_value_spec(p, f"{key}.args", args)
            objects = case.get("objects", [])
            if not isinstance(objects, list) or not all(isinstance(o, dict) and "object" in o for o in objects):
                raise p.err(f"{key}.objects", "expected an array of object specs {object = ...}")
            check_value_spec(p, f"{key}.objects", objects)
            if "select" in case and not (isinstance(case["select"], int) and case["select"] >= 0):
                raise p.err(f"{key}.select", f"expected an index into the returned tuple, got {case['select']!r}")
            after = case.get("after", {})
            if not isinstance(after, dict) or not all(v in ("parameters", "gradients", "both") for v in after.values()):
                raise p.err(f"{key}.after", "expected {name = \"parameters\" | \"gradients\" | \"both\"}")
            if not isinstance(case.get("kwargs", {}), dict):
                raise p.err(f"{key}.kwargs", "expected a table")
            for k, v in case.get("kwargs", {}).items():
                check_value_spec(p, f"{key}.kwargs.{k}", v)
            grad = case.get("grad", item.params.get("grad", []))
            if not isinstance(grad, list) or not all(isinstance(g, int) and 0 <= g < len(args) for g in grad):
                raise p.err(f"{key}.grad", f"expected indices of tensor args (0..{len(args) - 1}), got {grad!r}")
            for g in grad:
                if not (isinstance(args[g], dict) and DTYPE_FLOAT(args[g])):
                    raise p.err(f"{key}.grad", f"arg {g} is not a floating-point tensor spec")
        for key in ("rtol", "atol"):
            p.num(key)
        plan_facets(item, lambda f: bool(_FACET.match(f)), ["all"], ALIASES)

    def probe_actions(self, item: Item, plan: PlanContext | None = None) -> list[dict]:
        if plan is None:
            raise ValueError("the function check needs a plan context")
        gen = torch.Generator().manual_seed(item_seed(plan.seed, item.id))
        tensors: dict[str, torch.Tensor] = {}
        enc_cases, private = [], []
        for case in _cases(item):
            fn = resolve(case.get("reference", need_reference(item)), plan.reference_dir)
            scratch: dict = {}
            objects = tuple(make_value(o, gen, scratch) for o in case.get("objects", []))
            args = tuple(make_value(a, gen, scratch) for a in case.get("args", []))
            kwargs = {k: make_value(v, gen, scratch) for k, v in case.get("kwargs", {}).items()}
            grad = list(case.get("grad", item.params.get("grad", [])))
            after = dict(case.get("after", {}))
            upstream = None
            if grad:
                out, _, _ = run_reference(fn, args, kwargs, [], None, objects)
                upstream = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)
                            if o.dtype.is_floating_point else None for o in leaves(out)]
            out, grads, observed = run_reference(fn, args, kwargs, grad, upstream, objects, after)
            enc = {"args": encode(list(args), tensors), "kwargs": encode(kwargs, tensors), "grad": grad,
                   "target": case.get("target", item.target), "objects": encode(list(objects), tensors),
                   "after": after}
            if grad:
                enc["upstream"] = encode(upstream, tensors)
            enc_cases.append(enc)
            private.append({"target": case.get("target", item.target), "reference": case.get("reference"),
                            "args": args, "kwargs": kwargs, "grad": grad, "upstream": upstream,
                            "objects": objects, "after": after, "select": case.get("select"),
                            "group": case.get("group"), "out": out, "grads": grads, "observed": observed})
        torch.save(tensors, plan.in_dir / f"{item.id}.pt")
        plan.private[item.id] = private
        return [{"action": "call", "item": item.id, "target": item.target, "cases": enc_cases,
                 "seed": item_seed(plan.seed, item.id, "probe") % 2**31}]

    def judge(self, item: Item, ctx: JudgeContext):
        if not ctx.probe_ok:
            return not_run(item, ctx.probe_error or "the notebook did not run far enough to be checked")
        cases = ctx.private.get(item.id)
        answer = load_answer(ctx.probe_dir, item.id)
        facets = plan_facets(item, lambda f: bool(_FACET.match(f)), ["all"], ALIASES)
        if answer.problem or cases is None:
            why = answer.problem or "the grader has no inputs for this item"
            return result(item, [SubResult(f.sub.name, 0.0, f.sub.points, why) for f in facets])
        got_cases = answer.data.get("cases")
        if type(got_cases) is not list:
            got_cases = []
        tol = tolerance(item)
        verdicts = compare_cases(item, cases, got_cases, answer, tol)
        subs = []
        for f in facets:
            relevant = [(name, v) for name, v, facet in verdicts if applies(f.facets, facet)]
            subs.append(decide(item, ctx, f, relevant, cases, got_cases, answer, tol))
        return result(item, _forbidden(item, ctx, subs))


def DTYPE_FLOAT(spec: dict) -> bool:
    return spec.get("dtype", "float32") in ("float32", "float64", "float16", "bfloat16") and \
        spec.get("dist", "normal") not in ("randint", "arange")


def _forbidden(item: Item, ctx: JudgeContext, subs: list[SubResult]) -> list[SubResult]:
    """``params.forbid``: calls the notebook forbids inside hand-written functions, read from the
    submitted code as AST (never run). A sub-check a rule names scores 0 when one is there."""
    rules = item.params.get("forbid") or []
    if not rules or ctx.notebook_path is None:
        return subs
    from grader.checks.notebook_text import calls_in_function, parse_cells, read_cells
    try:
        trees = parse_cells(read_cells(ctx.notebook_path))[0]
    except Exception:
        return subs
    out = list(subs)
    for rule in rules:
        found = []
        for fn in rule["functions"]:
            for call, line, via in calls_in_function(trees, fn):
                if call.split(".")[-1] in rule["calls"]:
                    found.append(f"`{fn}` calls `{call}`" + (f" (in `{via}`, which it calls)" if via else ""))
        if not found:
            continue
        why = "; ".join(dict.fromkeys(found)) + (f": {rule['why']}" if rule.get("why") else
                                                  ": the notebook asks for this part without it")
        names = set(rule.get("subchecks") or [sub.name for sub in out])
        out = [SubResult(sub.name, 0.0, sub.possible, why) if sub.name in names else sub for sub in out]
    return out


def decide(item: Item, ctx: JudgeContext, f: Facet, relevant, cases, got_cases, answer, tol) -> SubResult:
    failed = [(n, v) for n, v in relevant if not v.ok]
    if not failed:
        notes = sorted({note for _, v in relevant for note in v.notes})
        return SubResult(f.sub.name, f.sub.points, f.sub.points, notes[0] if notes else "")
    message = failed[0][1].message
    if len(failed) > 1:
        message += f" (and {len(failed) - 1} more failed comparison(s) in this sub-check)"
    hint = fingerprint.match_function(item, ctx, f, cases, got_cases, answer, tol)
    if hint:
        message = f"{hint} ({message})"
    return SubResult(f.sub.name, 0.0, f.sub.points, message)
