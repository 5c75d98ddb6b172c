"""Check kind ``behaviour``: the student's trained object on grader-held data.

The reference generator (``reference``, called on the trusted side with a seed derived
from the run's secret seed and ``params.generator_args``) makes fresh inputs and their
labels or targets; only the inputs go to the probe. The grader computes the score.

mode = "classify": the generator returns {inputs = Tensor (N, ...), labels = Tensor (N,)};
  the probe calls ``target`` (or ``target.<method>``) on batches (optionally after the
  student's per-sample ``transform``), in eval mode without gradients; predictions are the
  argmax over the last axis of what comes back (or the values, if integer).
mode = "cases": the generator returns a list of {args = [...], target = ..., group = "..."};
  the probe calls ``target(*args)`` (or the method) per case; ``scorer`` ("module:function",
  (student output, target) -> (correct, counted)) scores each, or exact equality. A case may
  carry ``alt_args``, the same data in another form the assignment allows, tried when ``args``
  raise (a note in the feedback says so). Without ``method`` the object itself is called: for
  a model, its forward pass on the grader's inputs against the grader's hidden targets, which
  is what earns accuracy points (a helper such as ``test_run`` can compute an answer by rule).

Params: mode, generator_args, method, transform, batch_size, eval (default true),
  min_accuracy (0..1), per_group (every group must reach min_accuracy), scorer,
  thresholds = [{min = 0.99, fraction = 1.0}, {min = 0.95, fraction = 0.5}]: graded credit, the
    fraction of the highest threshold reached (min_accuracy defaults to the highest min),
  input_format = "pil": classify inputs are uint8 (N, H, W, 3) images handed to the student's
    ``transform`` as PIL images, so the model sees them as the notebook prepares its own data,
  recorded = "name": a number or list of numbers the notebook computed (last one counts),
    compared with min_accuracy as the "recorded" facet; it is what the notebook claims, so
    rubrics give it little weight,
  printed = {section = "heading regex", tolerance = 0.02}: the notebook's own run printed the
    accuracy the grader measures: some number printed in that section of the grader's run (a
    fraction, a percentage, or "912 of 1000" / "912/1000") is within ``tolerance`` of the
    accuracy the grader measured on these inputs (facet "printed"). With inputs that are the
    notebook's own test set, this checks that the test accuracy was computed, without ever
    believing the number: a hard-coded print earns nothing unless the model does it,
  compare {subcheck = "accuracy" | "all_groups" | "group:<name>" | "runs" | "recorded" | "printed"}.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from grader.checks.base import JudgeContext, PlanContext, SubResult, not_run, result
from grader.checks.common import Params, item_seed, need_reference, need_target, plan_facets, resolve
from grader.checks.answers import encode, load_answer, trim
from grader.checks.compare import Tolerance, compare
from grader.items import Item

_FACET = re.compile(r"^(accuracy|all_groups|group:.+|runs|recorded|printed|all)$")
_RATIO = re.compile(r"(\d+)\s*(?:/|of|out of)\s*(\d+)")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(%?)")


class Behaviour:
    name = "behaviour"

    def prelude(self, item: Item) -> None:
        return None

    def validate(self, item: Item) -> None:
        p = Params(item)
        p.only({"mode", "generator_args", "method", "transform", "batch_size", "eval", "min_accuracy",
                "per_group", "scorer", "compare", "rtol", "atol", "thresholds", "input_format", "recorded",
                "printed"})
        need_target(item)
        need_reference(item)
        if p.str("mode", "classify") not in ("classify", "cases"):
            raise p.err("mode", "expected \"classify\" or \"cases\"")
        p.table("generator_args")
        for key in ("method", "transform"):
            v = p.str(key)
            if v is not None and not v.isidentifier():
                raise p.err(key, f"expected a name, got {v!r}")
        if (p.int("batch_size", 64) or 0) < 1:
            raise p.err("batch_size", "expected a positive integer")
        p.get("eval", (bool,), "true or false")
        thresholds = p.list("thresholds")
        for i, t in enumerate(thresholds):
            if not (isinstance(t, dict) and set(t) == {"min", "fraction"}
                    and all(isinstance(t[k], (int, float)) and not isinstance(t[k], bool) and 0 <= t[k] <= 1
                            for k in t)):
                raise p.err(f"thresholds[{i}]", f"expected {{min = 0..1, fraction = 0..1}}, got {t!r}")
        acc = p.num("min_accuracy", required=not thresholds)
        if acc is None:
            acc = max(t["min"] for t in thresholds)
        if thresholds and not any(t["min"] == acc and t["fraction"] == 1 for t in thresholds):
            raise p.err("thresholds", f"one threshold must give full credit (fraction = 1) at min_accuracy = {acc:g}")
        if p.str("input_format", "tensor") not in ("tensor", "pil"):
            raise p.err("input_format", "expected \"tensor\" or \"pil\"")
        if p.str("input_format") == "pil" and not p.str("transform"):
            raise p.err("input_format", "PIL inputs need the student's `transform` to turn them into tensors")
        printed = p.table("printed")
        if printed:
            if set(printed) - {"section", "tolerance"} or not isinstance(printed.get("section"), str):
                raise p.err("printed", "expected {section = \"heading regex\", tolerance = 0.02}")
            try:
                re.compile(printed["section"])
            except re.error:
                raise p.err("printed.section", f"not a valid regular expression: {printed['section']!r}") from None
        rec = p.str("recorded")
        if rec is not None and not rec.isidentifier():
            raise p.err("recorded", f"expected a name, got {rec!r}")
        if not 0 <= acc <= 1:
            raise p.err("min_accuracy", f"expected a fraction between 0 and 1, got {acc!r}")
        p.get("per_group", (bool,), "true or false")
        scorer = p.str("scorer")
        if scorer is not None and ":" not in scorer:
            raise p.err("scorer", "expected \"package.module:function\"")
        plan_facets(item, lambda f: bool(_FACET.match(f)), ["all"], {"acc": "accuracy"})

    def probe_actions(self, item: Item, plan: PlanContext | None = None) -> list[dict]:
        if plan is None:
            raise ValueError("the behaviour check needs a plan context")
        p = item.params
        gen = resolve(need_reference(item), plan.reference_dir)
        data = gen(item_seed(plan.seed, item.id) % 2**31, **p.get("generator_args", {}))
        tensors: dict[str, torch.Tensor] = {}
        action: dict[str, Any] = {"action": "behaviour", "item": item.id, "target": item.target,
                                  "mode": p.get("mode", "classify"), "method": p.get("method"),
                                  "transform": p.get("transform"), "batch_size": p.get("batch_size", 64),
                                  "eval": p.get("eval", True), "seed": item_seed(plan.seed, item.id, "probe") % 2**31,
                                  "input_format": p.get("input_format", "tensor"), "recorded": p.get("recorded")}
        if action["mode"] == "classify":
            tensors["inputs"] = data["inputs"].detach().clone().contiguous()
            plan.private[item.id] = {"labels": data["labels"].detach().clone()}
        else:
            action["cases"] = [encode(list(c["args"]), tensors) for c in data]
            if any("alt_args" in c for c in data):
                action["alt_cases"] = [encode(list(c["alt_args"]), tensors) if "alt_args" in c else None
                                       for c in data]
            plan.private[item.id] = {"cases": [{"target": c["target"], "group": c.get("group")} for c in data]}
        torch.save(tensors, plan.in_dir / f"{item.id}.pt")
        return [action]

    def judge(self, item: Item, ctx: JudgeContext):
        if not ctx.probe_ok:
            return not_run(item, ctx.probe_error or "the notebook did not run far enough to be checked")
        facets = plan_facets(item, lambda f: bool(_FACET.match(f)), ["all"], {"acc": "accuracy"})
        priv = ctx.private.get(item.id)
        answer = load_answer(ctx.probe_dir, item.id)
        if answer.problem or priv is None or "error" in answer.data:
            why = answer.problem or ("the grader has no data for this item" if priv is None else
                                     f"`{item.target}` could not be run on the grader's data:\n{trim(answer.data['error'])}")
            return result(item, [SubResult(f.sub.name, 0.0, f.sub.points, why) for f in facets])
        p = item.params
        thresholds = sorted(p.get("thresholds", []), key=lambda t: -t["min"])
        need = float(p["min_accuracy"]) if "min_accuracy" in p else max(t["min"] for t in thresholds)
        groups: dict[str, list[int]] = {}
        errors = 0
        first_error = ""
        if p.get("mode", "classify") == "classify":
            out = answer.value(answer.data, "out")
            labels = priv["labels"]
            if type(out) is not torch.Tensor or out.shape[0] != labels.shape[0]:
                why = (f"`{item.target}` should return one prediction (or a row of scores) per input "
                       f"for {labels.shape[0]} inputs")
                return result(item, [SubResult(f.sub.name, 0.0, f.sub.points, why) for f in facets])
            pred = out.argmax(-1) if out.dtype.is_floating_point and out.dim() > 1 else out.reshape(-1)
            if pred.shape != labels.shape:
                pred = pred.reshape(-1)[: labels.shape[0]]
            correct = int((pred.to(torch.int64) == labels.to(torch.int64)).sum())
            groups["all"] = [correct, int(labels.shape[0])]
        else:
            scorer = resolve(p["scorer"], ctx.reference_dir) if p.get("scorer") else None
            got = answer.data.get("cases")
            got = got if type(got) is list else []
            alternative = 0
            for i, case in enumerate(priv["cases"]):
                g = got[i] if i < len(got) and type(got[i]) is dict else {}
                key = str(case["group"]) if case["group"] is not None else "all"
                c, n = 0, 1
                if "out" not in g:
                    errors += 1
                    first_error = first_error or trim(g.get("error", "no result came back"), 800)
                    if scorer is not None:
                        n = _score(scorer, None, case["target"])[1]
                else:
                    alternative += g.get("alternative") is True
                    value = answer.value(g, "out")
                    if scorer is not None:
                        c, n = _score(scorer, value, case["target"])
                    else:
                        c = int(compare("output", value, case["target"], Tolerance(
                            float(p.get("rtol", 1e-4)), float(p.get("atol", 1e-5)))).ok)
                acc = groups.setdefault(key, [0, 0])
                acc[0] += c
                acc[1] += n
        total_c = sum(c for c, _ in groups.values())
        total_n = sum(n for _, n in groups.values())
        overall = total_c / total_n if total_n else 0.0
        lines = {"accuracy": (overall >= need, f"accuracy on the grader's {self._count(priv)} fresh inputs is "
                                               f"{overall:.3f}, needs at least {need:g}")}
        if p.get("mode", "classify") != "classify" and alternative:
            ok, msg = lines["accuracy"]
            lines["accuracy"] = (ok, msg + f"; note: `{item.target}` took the inputs in the other form the "
                                           f"assignment allows ({alternative} of {len(priv['cases'])} batches)")
        if p.get("per_group") or any(g != "all" for g in groups):
            low = [(k, c / n if n else 0.0) for k, (c, n) in sorted(groups.items()) if (c / n if n else 0.0) < need]
            lines["all_groups"] = (not low, "below the threshold: " + ", ".join(f"{k}: {a:.3f}" for k, a in low[:8]))
            for k, (c, n) in groups.items():
                a = c / n if n else 0.0
                lines[f"group:{k}"] = (a >= need, f"{k}: accuracy {a:.3f}, needs at least {need:g}")
        lines["runs"] = (errors == 0, f"{errors} call(s) raised an exception; the first:\n{first_error}")
        if p.get("recorded"):
            lines["recorded"] = self._recorded(p["recorded"], answer, need)
        if p.get("printed"):
            lines["printed"] = self._printed(p["printed"], ctx, overall)
        partial = {}
        for t in thresholds:
            if t["fraction"] < 1 and overall >= t["min"]:
                partial["accuracy"] = (t["fraction"], f"accuracy on the grader's {self._count(priv)} fresh inputs is "
                                                      f"{overall:.3f}: at least {t['min']:g} gives {t['fraction']:g} "
                                                      f"of the points, {need:g} all of them")
                break
        per_group_required = bool(p.get("per_group"))
        subs = []
        for f in facets:
            wanted = f.facets
            if "all" in wanted:
                wanted = ["accuracy", "runs"] + (["all_groups"] if per_group_required else [])
            failed = []
            fraction, partial_msg = 1.0, ""
            for w in wanted:
                ok, msg = lines.get(w, (False, f"no result for {w}"))
                if not ok and w in partial and len(wanted) == 1:
                    fraction, partial_msg = partial[w]
                elif not ok:
                    failed.append(msg)
            note = (lines["printed"][1] if wanted == ["printed"] else
                    lines["accuracy"][1].replace("needs at least", "threshold"))
            if failed:
                subs.append(SubResult(f.sub.name, 0.0, f.sub.points, "; ".join(failed)))
            elif partial_msg:
                subs.append(SubResult(f.sub.name, round(f.sub.points * fraction, 6), f.sub.points, partial_msg))
            else:
                subs.append(SubResult(f.sub.name, f.sub.points, f.sub.points, note))
        found = answer.data.get("found")
        data = {"found": str(found.get("how", ""))[:200]} if isinstance(found, dict) and found.get("how") else {}
        return result(item, subs, message="; ".join(s.message for s in subs if s.points < s.possible)
                      or "; ".join(dict.fromkeys(s.message for s in subs if s.message)), data=data)

    @staticmethod
    def _printed(spec: dict, ctx: JudgeContext, measured: float) -> tuple[bool, str]:
        """Whether the notebook printed the accuracy the grader measured (read from the
        grader's own run of it, never from the outputs a student saved)."""
        from grader.checks.notebook_text import output_text, read_cells, section
        tol = float(spec.get("tolerance", 0.02))
        if ctx.executed_path is None:
            return False, "the notebook did not run, so it printed nothing"
        scope = section(read_cells(ctx.executed_path), spec["section"]) or []
        text = "\n".join(output_text(o) for c in scope if c.kind == "code" for o in c.outputs)
        candidates = [int(a) / int(b) for a, b in _RATIO.findall(text) if int(b) > 0]
        for number, pct in _NUMBER.findall(text):
            v = float(number)
            candidates += [v / 100] if pct else ([v] if v <= 1 else [v / 100] if v <= 100 else [])
        if not text.strip() or not candidates:
            return False, "the section prints no accuracy (the grader found no number in its output)"
        best = min(candidates, key=lambda v: abs(v - measured))
        if abs(best - measured) <= tol:
            return True, f"the printed accuracy {best:.3f} is what the model does (the grader measured {measured:.3f})"
        return False, (f"the accuracy printed in the section ({best:.3f}, the closest number there) is not what the "
                       f"model does on those images: the grader measured {measured:.3f}")

    @staticmethod
    def _recorded(name: str, answer: Any, need: float) -> tuple[bool, str]:
        if "recorded_error" in answer.data:
            return False, f"`{name}` could not be read: {trim(answer.data['recorded_error'], 300)}"
        v = answer.value(answer.data, "recorded")
        if type(v) in (list, tuple) and v:
            v = v[-1]
        if type(v) is torch.Tensor and v.numel() == 1:
            v = float(v.reshape(-1)[0])
        if type(v) not in (int, float) or not 0 <= v <= 1:
            return False, f"`{name}` should hold accuracies between 0 and 1 (the last one counts)"
        return v >= need, f"the notebook's own `{name}` ends at {v:.3f}, needs at least {need:g}"

    @staticmethod
    def _count(priv: dict) -> int:
        return int(priv["labels"].shape[0]) if "labels" in priv else len(priv["cases"])


def _score(scorer: Any, value: Any, target: Any) -> tuple[int, int]:
    try:
        c, n = scorer(value, target)
        return int(c), int(n)
    except Exception:
        return 0, 1
