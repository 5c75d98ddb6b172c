"""Check kind ``structure``: what the student's model is made of, and that it runs.

The probe builds ``target(*args, **kwargs)``, counts its parameters and its modules by
class name (a subclass counts as its torch.nn base classes too), runs it once on a
grader-made input while recording the torch functions it calls and every addition that
joins two paths of different depth from the input (a residual connection), then runs a
backward pass. Shape, finiteness and the counts are judged on the trusted side.

Params:
  args, kwargs          constructor arguments
  input                 tensor spec of the input, e.g. {tensor = [2, 3, 32, 32]}
  extra_inputs          further forward arguments (tensor specs), e.g. per-sample delays
  alternative_inputs    other forms of the input the model may take instead (tensor specs, e.g.
                        letter indices for a one-hot input), tried in order when it raises on
                        ``input`` or gives another shape than ``output_shape``; accepted with a note
  attributes            {name = value}: attributes the built model must hold, e.g. {max_delay = 8}
  output_shape          expected output shape (array of ints)
  params_min, params_max
  components            array of {name, min, max, modules = [class names], functions = [torch
                        function names], residual = true}; the count is the larger of modules
                        found and function calls recorded (residual: additions found)
  mode                  "eval" (default) or "train" for the forward pass
  compare               {subcheck = facet}: "constructs", "output_shape", "finite", "parameters"
                        (count bounds), "components", "component:<name>", "backward" (every
                        parameter gets a gradient), "attributes"
"""
from __future__ import annotations

import re

import torch

from grader.checks.base import JudgeContext, PlanContext, SubResult, not_run, result
from grader.checks.common import Params, check_value_spec, item_seed, make_args, make_value, need_target, plan_facets
from grader.checks.answers import load_answer, trim
from grader.checks.compare import Verdict, compare
from grader.items import Item

_FACET = re.compile(r"^(constructs|output_shape|finite|parameters|components|component:[\w.-]+|backward|"
                    r"attributes|all)$")
ALIASES = {"construct": "constructs", "shape": "output_shape", "param_count": "parameters",
           "n_parameters": "parameters", "trains": "backward"}


class Structure:
    name = "structure"

    def prelude(self, item: Item) -> None:
        return None

    def validate(self, item: Item) -> None:
        p = Params(item)
        p.only({"args", "kwargs", "input", "extra_inputs", "alternative_inputs", "attributes", "output_shape", "params_min",
                "params_max", "components", "mode", "compare"})
        need_target(item)
        spec = p.get("input", (dict,), "a tensor spec {tensor = [shape]}", required=True)
        check_value_spec(p, "input", spec)
        extra = p.list("extra_inputs")
        if not all(isinstance(e, dict) and "tensor" in e for e in extra):
            raise p.err("extra_inputs", "expected an array of tensor specs")
        check_value_spec(p, "extra_inputs", extra)
        alts = p.list("alternative_inputs")
        if not all(isinstance(e, dict) and "tensor" in e for e in alts):
            raise p.err("alternative_inputs", "expected an array of tensor specs")
        check_value_spec(p, "alternative_inputs", alts)
        for k, v in p.table("attributes").items():
            check_value_spec(p, f"attributes.{k}", v)
        shape = p.list("output_shape")
        if not all(isinstance(s, int) for s in shape):
            raise p.err("output_shape", f"expected an array of ints, got {shape!r}")
        p.int("params_min"), p.int("params_max")
        names = set()
        for i, c in enumerate(p.list("components")):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise p.err(f"components[{i}]", "expected {name = ..., min = n, modules = [...], ...}")
            unknown = set(c) - {"name", "min", "max", "modules", "functions", "residual", "what"}
            if unknown:
                raise p.err(f"components[{i}]", f"unknown key(s) {', '.join(sorted(unknown))}")
            if not (c.get("modules") or c.get("functions") or c.get("residual")):
                raise p.err(f"components[{i}]", "say what counts: modules, functions or residual = true")
            names.add(c["name"])
        if p.str("mode", "eval") not in ("eval", "train"):
            raise p.err("mode", "expected \"eval\" or \"train\"")

        def ok(f: str) -> bool:
            return bool(_FACET.match(f)) and (not f.startswith("component:") or f[10:] in names)
        plan_facets(item, ok, ["all"], ALIASES)

    def probe_actions(self, item: Item, plan: PlanContext | None = None) -> list[dict]:
        if plan is None:
            raise ValueError("the structure check needs a plan context")
        gen = torch.Generator().manual_seed(item_seed(plan.seed, item.id))
        x = make_value(item.params["input"], gen)
        extra = {f"extra{i}": make_value(e, gen) for i, e in enumerate(item.params.get("extra_inputs", []))}
        alts = {f"alt{i}": make_value(e, gen) for i, e in enumerate(item.params.get("alternative_inputs", []))}
        torch.save({"input": x, **extra, **alts}, plan.in_dir / f"{item.id}.pt")
        from grader.checks.answers import encode
        scratch: dict = {}
        return [{"action": "structure", "item": item.id, "target": item.target,
                 "seed": item_seed(plan.seed, item.id, "probe") % 2**31,
                 "args": encode(make_args(item.params.get("args", [])), scratch),
                 "kwargs": encode(dict(item.params.get("kwargs", {})), scratch),
                 "mode": item.params.get("mode", "eval"), "n_extra": len(extra), "n_alt": len(alts),
                 "output_shape": list(item.params.get("output_shape", [])),
                 "attributes": sorted(item.params.get("attributes", {}))}]

    def judge(self, item: Item, ctx: JudgeContext):
        if not ctx.probe_ok:
            return not_run(item, ctx.probe_error or "the notebook did not run far enough to be checked")
        facets = plan_facets(item, lambda f: bool(_FACET.match(f)), ["all"], ALIASES)
        answer = load_answer(ctx.probe_dir, item.id)
        if answer.problem:
            return result(item, [SubResult(f.sub.name, 0.0, f.sub.points, answer.problem) for f in facets])
        rows = self.rows(item, answer)
        subs = []
        for f in facets:
            relevant = [v for name, v in rows if any(w == "all" or w == name or
                                                     (w == "components" and name.startswith("component:"))
                                                     for w in f.facets)]
            failed = [v for v in relevant if not v.ok]
            # The note on the input form goes with the sub-checks that ran the forward pass.
            note = [v.message for name, v in rows if name == "input_form"
                    if any(w in ("all", "output_shape", "finite") for w in f.facets)]
            if failed:
                subs.append(SubResult(f.sub.name, 0.0, f.sub.points, "; ".join([v.message for v in failed[:3]] + note)))
            else:
                subs.append(SubResult(f.sub.name, f.sub.points, f.sub.points, "; ".join(note)))
        return result(item, subs)

    def rows(self, item: Item, answer) -> list[tuple[str, Verdict]]:
        p, d = item.params, answer.data
        t = item.target
        comps = p.get("components", [])
        if "construct_error" in d:
            why = f"`{t}(...)` could not be built:\n{trim(d['construct_error'])}"
            return ([(n, Verdict(False, why)) for n in ("constructs", "output_shape", "finite", "parameters",
                                                        "backward", "attributes")]
                    + [(f"component:{c['name']}", Verdict(False, why)) for c in comps])
        rows = [("constructs", Verdict(True))]
        if p.get("attributes"):
            got_attrs = d.get("attributes") if type(d.get("attributes")) is dict else {}
            bad = []
            for name, want in sorted(p["attributes"].items()):
                v = compare(f"{t}(...).{name}", answer.value(got_attrs, name), want)
                if not v.ok:
                    bad.append(v.message)
            rows.append(("attributes", Verdict(not bad, "; ".join(bad))))
        n = d.get("n_params")
        if type(n) is not int:
            rows.append(("parameters", Verdict(False, "the parameter count did not come back")))
        else:
            lo, hi = p.get("params_min"), p.get("params_max")
            bad = (lo is not None and n < lo) or (hi is not None and n > hi)
            bounds = f"between {lo if lo is not None else 0} and {hi if hi is not None else 'any number of'}"
            rows.append(("parameters", Verdict(not bad, f"`{t}` has {n} parameters; expected {bounds}" if bad else "")))
        out = answer.value(d, "out")
        used = d.get("input_used") if type(d.get("input_used")) is int else 0
        specs = [p["input"]] + list(p.get("alternative_inputs", []))
        spec = specs[used] if 0 <= used < len(specs) else p["input"]
        shown = _describe_input(spec)
        if used:
            rows.append(("input_form", Verdict(True, f"note: `{t}` takes {shown} instead of {_describe_input(p['input'], definite=True)} "
                                                     f"described; it is checked on that form")))
        if "forward_error" in d:
            why = f"`{t}` raised an exception on {shown}:\n{trim(d['forward_error'])}"
            rows += [("output_shape", Verdict(False, why)), ("finite", Verdict(False, why))]
        elif type(out) is not torch.Tensor:
            why = f"`{t}` should return a tensor, got something else"
            rows += [("output_shape", Verdict(False, why)), ("finite", Verdict(False, why))]
        else:
            want = p.get("output_shape")
            if want is not None and list(out.shape) != list(want):
                rows.append(("output_shape", Verdict(False, f"for {shown} "
                                                            f"the output has shape {tuple(out.shape)}, expected {tuple(want)}")))
            else:
                rows.append(("output_shape", Verdict(True)))
            finite = not out.dtype.is_floating_point or bool(torch.isfinite(out).all())
            rows.append(("finite", Verdict(finite, "" if finite else "the output contains NaN or Inf")))
        if "backward_error" in d:
            rows.append(("backward", Verdict(False, f"a backward pass through `{t}` failed:\n{trim(d['backward_error'])}")))
        elif "forward_error" in d or type(d.get("no_grad")) is not list:
            rows.append(("backward", Verdict(False, "the backward pass was not run")))
        else:
            missing = [str(x) for x in d["no_grad"]]
            rows.append(("backward", Verdict(not missing, "" if not missing else
                                             "these parameters get no gradient: " + ", ".join(missing[:6]))))
        modules = d.get("modules") if type(d.get("modules")) is dict else {}
        functions = d.get("functions") if type(d.get("functions")) is dict else {}
        for c in comps:
            found = 0
            if c.get("modules"):
                found = max(found, sum(int(modules.get(m, 0)) for m in c["modules"]
                                       if type(modules.get(m, 0)) is int))
            if c.get("functions"):
                found = max(found, sum(int(functions.get(f, 0)) for f in c["functions"]
                                       if type(functions.get(f, 0)) is int))
            if c.get("residual"):
                r = d.get("residual_adds")
                found = max(found, r if type(r) is int else 0)
            lo, hi = c.get("min", 1), c.get("max")
            ok = found >= lo and (hi is None or found <= hi)
            what = c.get("what", c["name"])
            msg = "" if ok else (f"found {found} {what}, expected at least {lo}" if found < lo
                                 else f"found {found} {what}, expected at most {hi}")
            rows.append((f"component:{c['name']}", Verdict(ok, msg)))
        return rows


def _describe_input(spec: dict, definite: bool = False) -> str:
    """How the student reads an input spec: its full shape and what it holds."""
    shape = list(spec["tensor"])
    dist = spec.get("dist", "normal")
    if dist == "onehot":
        article, what, shape = "a", "one-hot input", shape + [int(spec.get("classes", spec.get("high")))]
    elif dist in ("randint", "arange"):
        article, what = "an", "integer input"
    else:
        article, what = "an", "input"
    return f"{'the' if definite else article} {what} of shape {tuple(shape)}"
