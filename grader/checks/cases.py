"""A function item's cases on the trusted side: the reference run of each case, and the
comparison of every output and gradient that came back with it (also used to hold a
deliberately wrong variant against the student's results, grader/checks/fingerprint.py)."""
from __future__ import annotations

from typing import Any

import torch

from grader.checks.common import Built, LossOf, ParamsOf, Params, detach, instantiate, observe
from grader.checks.answers import trim
from grader.checks.compare import MISSING, Tolerance, Verdict, compare
from grader.items import Item
from grader.probe.wire import leaves


def tolerance(item: Item) -> Tolerance:
    p = Params(item)
    d = Tolerance()
    return Tolerance(float(p.num("rtol", d.rtol)), float(p.num("atol", d.atol)),
                     bool(p.bool("integral_floats", False)))


def run_reference(fn: Any, args: tuple, kwargs: dict, grad: list[int], upstream: list | None,
                  objects: tuple = (), after: dict | None = None):
    """Output, gradients and observed objects of a reference (or variant) function, as the
    probe computes them (objects are built afresh from their recipes for every run)."""
    objs: dict = {}
    for o in objects:
        instantiate(o, objs)
    args = [instantiate(a, objs) for a in args]
    kwargs = instantiate(dict(kwargs), objs)
    wrt = []
    for i in grad:
        args[i] = args[i].clone().requires_grad_(True)
        wrt.append(args[i])
    with torch.enable_grad():
        out = fn(*args, **kwargs)
    grads = None
    if grad and upstream is not None:
        outs = leaves(out)
        pairs = [(o, u) for o, u in zip(outs, upstream) if u is not None]
        got = torch.autograd.grad([o for o, _ in pairs], wrt, [u for _, u in pairs], allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g.detach() for g, w in zip(got, wrt)]
    return detach(out), grads, (observe(objs, after) if after else None)


def applies(wanted: list[str], facet: tuple[str, str | None]) -> bool:
    kind, group = facet
    for w in wanted:
        if w == "all":
            return True
        if w.startswith("group:") and group == w[len("group:"):] and kind != "runs":
            return True
        if w.startswith("after:") and kind == "after" and group == w[len("after:"):]:
            return True
        if w == "output" and kind == "output":
            return True
        if w.startswith("output:") and kind == "output" and group == w[len("output:"):]:
            return True
        if w == "grads" and kind.startswith("grad:"):
            return True
        if w == kind:
            return True
    return False


def case_name(item: Item, i: int, case: dict) -> str:
    args = [short_arg(a) for a in case["args"]] + [f"{k}={short_arg(v)}" for k, v in case["kwargs"].items()]
    return f"{case.get('target') or item.target}({', '.join(args)})"


def short_arg(a: Any) -> str:
    """An argument as the student may see it: shapes and kinds, never the grader's values."""
    if isinstance(a, torch.Tensor):
        return f"<tensor {tuple(a.shape)}>"
    if isinstance(a, tuple):
        return "(" + ", ".join(short_arg(x) for x in a) + ("," if len(a) == 1 else "") + ")"
    if isinstance(a, list):
        return "[" + ", ".join(short_arg(x) for x in a) + "]"
    if isinstance(a, dict):
        return "{" + ", ".join(f"{k!r}: {short_arg(v)}" for k, v in a.items()) + "}"
    if isinstance(a, Built):
        inner = ", ".join([short_arg(x) for x in a.args] + [f"{k}={short_arg(v)}" for k, v in a.kwargs.items()])
        return f"{a.ctor.split('.')[-1]}({inner})"
    if isinstance(a, ParamsOf):
        return f"{a.name}.parameters()"
    if isinstance(a, LossOf):
        return f"<a loss of {a.module} on an input {tuple(a.input.shape)}>"
    if isinstance(a, (int, float, str, bool)) or a is None:
        return repr(a)
    return f"<{type(a).__name__}>"


def compare_cases(item: Item, cases: list[dict], got_cases: list, answer, tol: Tolerance):
    """[(label, Verdict, (facet kind, group))] for every output and gradient."""
    out = []
    for i, case in enumerate(cases):
        got = got_cases[i] if i < len(got_cases) and type(got_cases[i]) is dict else {}
        label = case_name(item, i, case)
        if got.get("lookup") is True:
            v = Verdict(False, trim(got.get("error")))
        elif "error" in got:
            v = Verdict(False, f"{label} raised an exception:\n{trim(got['error'])}")
        elif "out" not in got:
            v = Verdict(False, f"{label}: no result came back")
        elif case.get("select") is not None:
            v = compare_selected(label, answer.value(got, "out"), case["out"], case["select"], tol)
        else:
            v = compare(f"{label}", answer.value(got, "out"), case["out"], tol)
        out.append((label, v, ("output", case["group"])))
        if case.get("after"):
            if "error" in got or got.get("lookup") is True:
                av = Verdict(False, f"{label}: the call raised an exception")
            elif "after_error" in got:
                av = Verdict(False, f"{label}: the objects could not be read after the call:\n{trim(got['after_error'])}")
            else:
                av = compare(f"after {label}", answer.value(got, "after"), case["observed"], tol)
            out.append((label, av, ("after", case["group"])))
        ran = "out" in got and "error" not in got
        out.append((label, Verdict(ran, "" if ran else v.message), ("runs", case["group"])))
        for j, idx in enumerate(case["grad"]):
            name = f"gradient of {label} w.r.t. argument {idx}"
            if "error" in got:
                gv = Verdict(False, f"{name}: the call raised an exception")
            elif "grad_error" in got:
                gv = Verdict(False, f"{name} could not be computed:\n{trim(got['grad_error'])}")
            else:
                grads = got.get("grads")
                g = answer.value({"g": grads[j]}, "g") if type(grads) is list and j < len(grads) else MISSING
                want = case["grads"][j] if case["grads"] is not None else None
                if want is None:
                    gv = Verdict(False, f"{name}: no gradient to compare with")
                else:
                    gv = compare(name, torch.zeros_like(want) if g is None else g, want, tol)
            out.append((name, gv, (f"grad:{idx}", case["group"])))
    return out


def compare_selected(label: str, got: Any, want: Any, index: int, tol: Tolerance) -> Verdict:
    name = f"{label}[{index}]"
    if type(got) not in (list, tuple) or len(got) <= index:
        return Verdict(False, f"`{label}` should return a tuple of at least {index + 1} values")
    g, w = got[index], want[index]
    if type(w) is torch.Tensor and w.numel() == 1 and type(g) is torch.Tensor and g.numel() == 1 \
            and g.dtype.is_floating_point != w.dtype.is_floating_point:
        g = g.reshape(-1)[0].item()
    if type(w) is torch.Tensor and w.numel() == 1 and type(g) in (int, float):
        w = w.reshape(-1)[0].item()
        if isinstance(w, int) and type(g) is float and g.is_integer():
            g = int(g)
    return compare(name, g, w, tol)
