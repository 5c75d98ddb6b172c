"""Check kind ``module``: module equivalence by weight transplant.

The reference module is built on the trusted side (seeded from the run's secret seed);
its state_dict goes to the probe, which builds the student's module with the same
constructor arguments, loads those weights, runs forward on the grader's inputs and
backward of a random upstream gradient. Outputs, input gradients and every parameter's
gradient are compared on the trusted side.

Params:
  args, kwargs        constructor arguments (literals)
  reference_args, reference_kwargs   for the reference, when they differ
  inputs              forward inputs: literals or tensor specs (see ``function``)
  forward_kwargs      keyword arguments of the forward call (literals or tensor specs),
                      e.g. {return_gates = true} or {h0 = {tensor = [2, 4]}}
  grad_inputs         indices of inputs to differentiate w.r.t. (default: every float tensor)
  cases               array of tables overriding any of args, kwargs, reference_args,
                      reference_kwargs, inputs, forward_kwargs, grad_inputs, method, with a
                      `group` name: one transplant per case (several sizes, keyword calls)
  mapping             {student_name = "reference_name"} for state_dict keys with other names
  transpose           student state_dict keys that hold the transpose of the reference weight
  match               "name" (default; after mapping) or "order" (registration order, shapes must agree)
  mode                "eval" (default) or "train"
  method              the method to run instead of forward
  methods             further methods called with the same inputs, compared as "method:<name>"
  rtol, atol
  compare             {subcheck = facet}: "parameters" (constructs and takes the reference
                      weights), "output", "grad_inputs", "grad_params", "grad_param:<reference name>",
                      "method:<name>"; with cases also "output:<group>", "grad_inputs:<group>",
                      "grad_params:<group>", "parameters:<group>" and "group:<group>" (all of
                      that group); aliases: forward = output, grad_input = grad_inputs,
                      grad_weights = grad_params
"""
from __future__ import annotations

import re
from typing import Any

import torch

from grader.checks import fingerprint
from grader.checks.base import JudgeContext, PlanContext, SubResult, not_run, result
from grader.checks.cases import tolerance
from grader.checks.common import (Params, check_value_spec, clone_value, detach, item_seed, make_args, make_value,
                                  need_reference, need_target, plan_facets, resolve)
from grader.checks.answers import encode, load_answer, trim
from grader.checks.compare import MISSING, Tolerance, Verdict, compare
from grader.items import Item
from grader.probe.wire import leaves

ALIASES = {"forward": "output", "outputs": "output", "grad_input": "grad_inputs",
           "grad_weights": "grad_params", "weights": "parameters", "transplant": "output"}
_FACET = re.compile(r"^((parameters|output|grad_inputs|grad_params)(:[\w.-]+)?|grad_param:[\w.]+|method:\w+|"
                    r"group:[\w.-]+|all)$")
CASE_KEYS = {"args", "kwargs", "reference_args", "reference_kwargs", "inputs", "forward_kwargs", "grad_inputs",
             "method", "methods", "mode"}
KEYS = CASE_KEYS | {"cases", "mapping", "transpose", "match", "rtol", "atol", "compare"}


def module_cases(item: Item) -> list[dict]:
    """The item's transplants: each a full set of case params, with its group (None without cases)."""
    p = item.params
    base = {k: p[k] for k in CASE_KEYS if k in p}
    if "cases" not in p:
        return [{**base, "group": None, "key": item.id}]
    return [{**base, **{k: v for k, v in c.items() if k != "group"}, "group": c.get("group"),
             "key": f"{item.id}~{i}"} for i, c in enumerate(p["cases"])]


def reference_run(cls: Any, c: dict, state: dict, inputs: tuple, grad_inputs: list[int],
                  upstream: list | None, fkw: dict | None = None) -> dict:
    """Build cls with the case's reference arguments, load ``state``, run as the probe does."""
    model = cls(*make_args(c.get("reference_args", c.get("args", []))),
                **c.get("reference_kwargs", c.get("kwargs", {})))
    model.load_state_dict(state)
    model.train(c.get("mode", "eval") == "train")
    xs = [clone_value(x) for x in inputs]
    fkw = clone_value(fkw or {})
    wrt = []
    for i in grad_inputs:
        xs[i] = xs[i].clone().requires_grad_(True)
        wrt.append(xs[i])
    names = [n for n, q in model.named_parameters() if q.requires_grad]
    params = [q for n, q in model.named_parameters() if q.requires_grad]
    method = c.get("method", "forward")
    with torch.enable_grad():
        out = model(*xs, **fkw) if method == "forward" else getattr(model, method)(*xs, **fkw)
    res: dict = {"out": detach(out)}
    if upstream is not None:
        pairs = [(o, u) for o, u in zip(leaves(out), upstream) if u is not None]
        grads = torch.autograd.grad([o for o, _ in pairs], wrt + params, [u for _, u in pairs], allow_unused=True)
        targets = wrt + params
        grads = [torch.zeros_like(t) if g is None else g.detach() for g, t in zip(grads, targets)]
        res["grad_inputs"] = grads[:len(wrt)]
        res["grad_params"] = dict(zip(names, grads[len(wrt):]))
    res["methods"] = {}
    for m in c.get("methods", []):
        with torch.no_grad():
            res["methods"][m] = detach(getattr(model, m)(*[clone_value(x) for x in inputs]))
    return res


class Module:
    name = "module"

    def prelude(self, item: Item) -> None:
        return None

    def validate(self, item: Item) -> None:
        p = Params(item)
        p.only(KEYS)
        need_target(item)
        need_reference(item)
        cases = p.list("cases")
        if not all(isinstance(c, dict) for c in cases):
            raise p.err("cases", "expected an array of tables")
        for i, c in enumerate(cases):
            unknown = set(c) - CASE_KEYS - {"group"}
            if unknown:
                raise p.err(f"cases[{i}]", f"unknown key(s) {', '.join(sorted(unknown))}")
            if "group" in c and not (isinstance(c["group"], str) and re.match(r"^[\w.-]+$", c["group"])):
                raise p.err(f"cases[{i}].group", f"expected a name, got {c['group']!r}")
        for n, c in enumerate(module_cases(item)):
            where = f"cases[{n}]." if cases else ""
            for key in ("args", "reference_args"):
                for i, v in enumerate(c.get(key, [])):
                    if isinstance(v, dict):
                        raise p.err(f"{where}{key}[{i}]", "constructor arguments must be literals")
            inputs = c.get("inputs")
            if not isinstance(inputs, list):
                raise p.err(f"{where}inputs", "missing; expected an array of inputs")
            check_value_spec(p, f"{where}inputs", inputs)
            fkw = c.get("forward_kwargs", {})
            if not isinstance(fkw, dict):
                raise p.err(f"{where}forward_kwargs", "expected a table")
            for k, v in fkw.items():
                check_value_spec(p, f"{where}forward_kwargs.{k}", v)
            gi = c.get("grad_inputs")
            if gi is not None and not (isinstance(gi, list) and all(isinstance(i, int) and 0 <= i < len(inputs) for i in gi)):
                raise p.err(f"{where}grad_inputs", f"expected indices 0..{len(inputs) - 1}, got {gi!r}")
            if not isinstance(c.get("method", "forward"), str):
                raise p.err(f"{where}method", "expected a method name")
            if not all(isinstance(m, str) and m.isidentifier() for m in c.get("methods", [])):
                raise p.err(f"{where}methods", "expected an array of method names")
            if c.get("mode", "eval") not in ("eval", "train"):
                raise p.err(f"{where}mode", "expected \"eval\" or \"train\"")
        mapping = p.table("mapping")
        if not all(isinstance(v, str) for v in mapping.values()):
            raise p.err("mapping", "expected {student_name = \"reference_name\"}")
        if not all(isinstance(v, str) for v in p.list("transpose")):
            raise p.err("transpose", "expected an array of student state_dict keys")
        if p.str("match", "name") not in ("name", "order"):
            raise p.err("match", "expected \"name\" or \"order\"")
        p.num("rtol"), p.num("atol")
        groups = {c["group"] for c in module_cases(item) if c["group"]}

        def ok(f: str) -> bool:
            if not _FACET.match(f):
                return False
            head, _, tail = f.partition(":")
            return not tail or head in ("grad_param", "method") or tail in groups
        plan_facets(item, ok, ["all"], ALIASES)

    def probe_actions(self, item: Item, plan: PlanContext | None = None) -> list[dict]:
        if plan is None:
            raise ValueError("the module check needs a plan context")
        p = item.params
        cls = resolve(need_reference(item), plan.reference_dir)
        actions, private = [], []
        for n, c in enumerate(module_cases(item)):
            salt = "" if c["group"] is None and "cases" not in p else f"~{n}"
            gen = torch.Generator().manual_seed(item_seed(plan.seed, item.id, salt))
            torch.manual_seed(item_seed(plan.seed, item.id, "weights" + salt))
            ref = cls(*make_args(c.get("reference_args", c.get("args", []))),
                      **c.get("reference_kwargs", c.get("kwargs", {})))
            # Fresh random values for every tensor, so the transplant is not checked on a default init
            # (zero biases, unit norms) that a wrong wiring could still match.
            state = {k: (torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.dtype) * 0.5
                         if v.dtype.is_floating_point and not k.endswith(("running_var",)) else v.clone())
                     for k, v in ref.state_dict().items()}
            inputs = tuple(make_value(s, gen) for s in c["inputs"])
            fkw = {k: make_value(v, gen) for k, v in c.get("forward_kwargs", {}).items()}
            grad_inputs = c.get("grad_inputs")
            if grad_inputs is None:
                grad_inputs = [i for i, x in enumerate(inputs)
                               if isinstance(x, torch.Tensor) and x.dtype.is_floating_point]
            first = reference_run(cls, c, state, inputs, [], None, fkw)
            upstream = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)
                        if o.dtype.is_floating_point else None for o in leaves(first["out"])]
            want = reference_run(cls, c, state, inputs, list(grad_inputs), upstream, fkw)
            tensors = {f"w:{k}": v.contiguous() for k, v in state.items()}
            actions.append({"action": "module", "item": c["key"], "target": item.target,
                            "seed": item_seed(plan.seed, item.id, "probe" + salt) % 2**31,
                            "args": encode(make_args(c.get("args", [])), tensors),
                            "kwargs": encode(dict(c.get("kwargs", {})), tensors),
                            "ref_order": list(state), "mapping": dict(p.get("mapping", {})),
                            "transpose": list(p.get("transpose", [])), "match": p.get("match", "name"),
                            "mode": c.get("mode", "eval"), "method": c.get("method", "forward"),
                            "methods": list(c.get("methods", [])), "grad_inputs": list(grad_inputs),
                            "inputs": encode(list(inputs), tensors), "forward_kwargs": encode(fkw, tensors),
                            "upstream": encode(upstream, tensors)})
            torch.save(tensors, plan.in_dir / f"{c['key']}.pt")
            private.append({"case": c, "state": state, "inputs": inputs, "fkw": fkw,
                            "grad_inputs": list(grad_inputs), "upstream": upstream, "want": want})
        plan.private[item.id] = private
        return actions

    def judge(self, item: Item, ctx: JudgeContext):
        if not ctx.probe_ok:
            return not_run(item, ctx.probe_error or "the notebook did not run far enough to be checked")
        facets = plan_facets(item, lambda f: bool(_FACET.match(f)), ["all"], ALIASES)
        privs = ctx.private.get(item.id)
        if privs is None:
            return result(item, [SubResult(f.sub.name, 0.0, f.sub.points, "the grader has no inputs for this item")
                                 for f in facets])
        tol = tolerance(item)
        answers = [load_answer(ctx.probe_dir, pv["case"]["key"]) for pv in privs]
        rows = []
        for pv, answer in zip(privs, answers):
            if answer.problem:
                rows.append(("case", Verdict(False, answer.problem), "*", pv["case"]["group"]))
                continue
            rows += [(n, v, f, pv["case"]["group"]) for n, v, f in compare_module(item, pv["case"], pv["want"], answer, tol)]
        subs = []
        for f in facets:
            relevant = [(n, v) for n, v, facet, group in rows if _applies(f.facets, facet, group)]
            failed = [(n, v) for n, v in relevant if not v.ok]
            if not failed:
                notes = sorted({x for _, v in relevant for x in v.notes})
                subs.append(SubResult(f.sub.name, f.sub.points, f.sub.points, "; ".join(notes[:2])))
                continue
            message = failed[0][1].message
            if len(failed) > 1:
                message += f" (and {len(failed) - 1} more failed comparison(s) in this sub-check)"
            hint = self._fingerprint(item, ctx, f, privs, answers, tol)
            subs.append(SubResult(f.sub.name, 0.0, f.sub.points, f"{hint} ({message})" if hint else message))
        return result(item, subs)

    def _fingerprint(self, item: Item, ctx: JudgeContext, f: Any, privs: list, answers: list, tol: Tolerance):
        def matches(variant: Any) -> bool:
            rows = []
            for pv, answer in zip(privs, answers):
                c = pv["case"]
                if answer.problem:
                    continue
                try:
                    alt = reference_run(variant, c, pv["state"], pv["inputs"], pv["grad_inputs"], pv["upstream"], pv["fkw"])
                except Exception:
                    alt = reference_run(variant, c, pv["state"], pv["inputs"], [], None, pv["fkw"])
                rows += [(n, v) for n, v, facet in compare_module(item, c, alt, answer, tol)
                         if _applies(f.facets, facet, c["group"]) and facet != "parameters"]
            return bool(rows) and all(v.ok for _, v in rows)
        return fingerprint.first_match(item, ctx, f.sub.name, matches)


def _applies(wanted: list[str], facet: str, group: str | None = None) -> bool:
    if facet == "*":          # a case without a usable answer fails whatever touches it
        for w in wanted:
            head, _, tail = w.partition(":")
            if not tail or head in ("grad_param", "method") or tail == group:
                return True
        return False
    for w in wanted:
        if w == "all" or w == facet:
            return True
        if w == "grad_params" and facet.startswith("grad_param:"):
            return True
        if group is not None:
            if w == f"group:{group}" or w == f"{facet}:{group}":
                return True
            if w == f"grad_params:{group}" and facet.startswith("grad_param:"):
                return True
    return False


def compare_module(item: Item, c: dict, want: dict, answer: Any, tol: Tolerance) -> list[tuple[str, Verdict, str]]:
    data = answer.data
    target = item.target
    rows: list[tuple[str, Verdict, str]] = []
    stop = None
    if "construct_error" in data:
        stop = f"`{target}(...)` could not be built:\n{trim(data['construct_error'])}"
    elif "load_error" in data:
        stop = f"the reference weights could not be loaded into `{target}`:\n{trim(data['load_error'])}"
    rows.append(("parameters", Verdict(stop is None, stop or ""), "parameters"))
    if stop is None and "forward_error" in data:
        stop = f"`{target}` raised an exception in {c.get('method', 'forward')}:\n{trim(data['forward_error'])}"
    if stop:
        rows.append(("output", Verdict(False, stop), "output"))
        rows.append(("grad_inputs", Verdict(False, stop), "grad_inputs"))
        rows += [(f"grad of {n}", Verdict(False, stop), f"grad_param:{n}") for n in want.get("grad_params", {})]
        rows += [(m, Verdict(False, stop), f"method:{m}") for m in want.get("methods", {})]
        return rows
    # With several cases, each name says which call it is about.
    call = f" of {_call_text(target, c)}" if "cases" in item.params else ""
    rows.append(("output", compare(f"output{call}", answer.value(data, "out"), want["out"], tol), "output"))
    back = data.get("backward_error")
    if "grad_inputs" in want:
        got = data.get("grad_inputs")
        for i, w in enumerate(want["grad_inputs"]):
            name = f"gradient w.r.t. input {i}{call}"
            if back:
                v = Verdict(False, f"backward through `{target}` failed:\n{trim(back)}")
            else:
                g = answer.value({"g": got[i]}, "g") if type(got) is list and i < len(got) else MISSING
                v = compare(name, torch.zeros_like(w) if g is None else g, w, tol)
            rows.append((name, v, "grad_inputs"))
        pairs = data.get("pairs") if type(data.get("pairs")) is dict else {}
        by_ref = {str(r): str(s) for s, r in pairs.items()}
        transposed = set(item.params.get("transpose", []))
        got_params = data.get("grad_params") if type(data.get("grad_params")) is dict else {}
        for ref_name, w in want["grad_params"].items():
            student = by_ref.get(ref_name, ref_name)
            name = f"gradient of {student}{call}"
            if back:
                v = Verdict(False, f"backward through `{target}` failed:\n{trim(back)}")
            elif student not in got_params:
                v = Verdict(False, f"{name}: no parameter of that name took part in the backward pass")
            else:
                g = answer.value(got_params, student)
                if g is None:
                    g = torch.zeros_like(w.t() if student in transposed else w)
                if student in transposed and type(g) is torch.Tensor and g.dim() == 2:
                    g = g.t()
                v = compare(name, g, w, tol)
            rows.append((name, v, f"grad_param:{ref_name}"))
    methods = data.get("methods") if type(data.get("methods")) is dict else {}
    for m, w in want.get("methods", {}).items():
        got = methods.get(m) if type(methods.get(m)) is dict else {}
        if "error" in got:
            v = Verdict(False, f"`{target}.{m}` raised an exception:\n{trim(got['error'])}")
        else:
            v = compare(f"{m}(...)", answer.value(got, "out"), w, tol)
        rows.append((m, v, f"method:{m}"))
    return rows


def _call_text(target: str | None, c: dict) -> str:
    """`GatedRNN(3, 4)(<tensor (2, 6, 3)>, return_gates=True)`: which case a message is about."""
    def short(v: Any) -> str:
        if isinstance(v, dict) and "tensor" in v:
            return f"<tensor {tuple(v['tensor'])}>"
        return repr(v)
    ctor = ", ".join([short(a) for a in c.get("args", [])] + [f"{k}={short(v)}" for k, v in c.get("kwargs", {}).items()])
    fwd = ", ".join([short(a) for a in c.get("inputs", [])]
                    + [f"{k}={short(v)}" for k, v in c.get("forward_kwargs", {}).items()])
    method = c.get("method", "forward")
    return f"{target}({ctor})" + (f".{method}" if method != "forward" else "") + f"({fwd})"
