"""Probes run inside the student's kernel after the notebook (standard library and torch only).

Student code shares this process, so nothing found here is trusted beyond plain values:
student objects are called on the grader's inputs and what comes back is written as
plain tensors (exactly ``torch.Tensor``, copied out of whatever the student returned)
and JSON. The grader decides everything outside this process. An exception in student
code is caught per call and written back as a trimmed traceback.
"""
from __future__ import annotations

import json
import os
import sys
import traceback

def _load_wire():
    """wire.py beside this file, by path (this file is itself loaded by path, never by name)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire.py")
    spec = importlib.util.spec_from_file_location("_grader_wire", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_wire = _load_wire()
_v = _wire.sibling("values")
_v.ALLOWED, _v.leaves = _wire.ALLOWED_OBJECTS, _wire.leaves
_TYPE_NAME = type.__dict__["__name__"]


def _namespace() -> dict:
    main = sys.modules.get("__main__")
    ns = getattr(main, "__dict__", None)
    return ns if isinstance(ns, dict) else {}


def exists(names: list[str], out_path: str) -> dict:
    """Write {name: {"exists", "type", "callable"}} for each name to out_path as JSON."""
    ns = _namespace()
    report: dict[str, dict] = {}
    for name in names:
        name = str(name)
        if name in ns:
            obj = ns[name]
            report[name] = {"exists": True, "type": _v.type_name(obj), "callable": callable(obj)}
        else:
            report[name] = {"exists": False, "type": None, "callable": False}
    _v.write_json(out_path, report)
    return report


def _captures():
    return getattr(sys.modules.get("_grader_capture"), "INSTANCE", None)


def _lookup(name: str):
    """A captured object (capture.py), a notebook global, or an attribute path below one
    ("Conv1dStrided.apply")."""
    ns = _namespace()
    first, *rest = name.split(".")
    captured = _captures()
    spec = next((c for c in getattr(captured, "specs", []) if c["name"] == first), None)
    if captured is not None and first in captured.objects:
        obj = captured.objects[first]
    elif spec is not None and first not in ns:
        fallback = f", and `{spec['fallback']}` was not set" if spec.get("fallback") else ""
        raise NameError(f"no trained model was found: nothing was passed to the notebook's "
                        f"`{spec['call']}(...)`{fallback} at the end of the cell that calls it")
    elif first not in ns:
        raise NameError(f"`{first}` is not defined after the notebook ran")
    else:
        obj = ns[first]
    for attr in rest:
        obj = getattr(obj, attr)
    return obj


# ---------------------------------------------------------------- actions

def call(action: dict, in_dir: str, out_dir: str) -> None:
    """Call a student function on each case; outputs and gradients w.r.t. chosen inputs."""
    import torch
    item = action["item"]
    tensors = _v.load_inputs(in_dir, item)
    pack = _v.Pack()
    answer: dict = {"cases": []}
    for case in action["cases"]:
        got: dict = {}
        try:
            fn = _lookup(case["target"])
            if not callable(fn):
                raise TypeError(f"`{case['target']}` is a {_v.type_name(fn)}, not a function")
        except Exception as e:
            answer["cases"].append({"error": f"{type(e).__name__}: {e}", "lookup": True})
            continue
        objs: dict = {}
        _v.unpack(case.get("objects", []), tensors, objs)
        args = _v.unpack(case["args"], tensors, objs)
        kwargs = _v.unpack(case.get("kwargs", {"__dict__": {}}), tensors, objs)
        grad = [int(i) for i in case.get("grad", [])]
        wrt = []
        args = list(args)
        for i in grad:
            args[i] = args[i].clone().requires_grad_(True)
            wrt.append(args[i])
        _v.seed(int(action["seed"]))
        try:
            with torch.enable_grad():
                out = fn(*args, **kwargs)
            got["out"] = pack(out)
        except Exception:
            got["error"] = _v.tb()
            answer["cases"].append(got)
            continue
        if case.get("after"):
            try:
                got["after"] = pack(_v.observe(objs, case["after"]))
            except Exception:
                got["after_error"] = _v.tb()
        if grad:
            try:
                grads = _v.backprop(out, _v.unpack(case["upstream"], tensors), wrt)
                got["grads"] = [None if g is None else pack(g) for g in grads]
            except Exception:
                got["grad_error"] = _v.tb()
        answer["cases"].append(got)
    _finish(out_dir, item, answer, pack)


def _construct(action: dict, tensors: dict):
    """The student's module built as the action says, under the action's seed."""
    import torch
    cls = _lookup(action["target"])
    _v.seed(int(action["seed"]))
    model = cls(*_v.unpack(action["args"], tensors), **_v.unpack(action["kwargs"], tensors))
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`{action['target']}(...)` gave a {_v.type_name(model)}, not an nn.Module")
    return model


def module(action: dict, in_dir: str, out_dir: str) -> None:
    """Weight transplant: build the student's module, load the reference weights, run
    forward and backward of the grader's upstream gradient."""
    import torch
    item = action["item"]
    tensors = _v.load_inputs(in_dir, item)
    pack = _v.Pack()
    answer: dict = {}
    seed = int(action["seed"])
    try:
        model = _construct(action, tensors)
    except Exception:
        answer["construct_error"] = _v.tb()
        _finish(out_dir, item, answer, pack)
        return
    answer["parameters"] = [[n, list(p.shape)] for n, p in model.named_parameters()]
    try:
        ref_state = {k[len("w:"):]: v for k, v in tensors.items() if k.startswith("w:")}
        state, pairs = _v.student_state(model, ref_state, action["ref_order"], action.get("mapping", {}),
                                      action.get("transpose", []), action.get("match", "name"))
        model.load_state_dict(state, strict=True)
        answer["pairs"] = pairs
    except Exception:
        answer["load_error"] = _v.tb()
        _finish(out_dir, item, answer, pack)
        return
    model.train(action.get("mode", "eval") == "train")
    inputs = list(_v.unpack(action["inputs"], tensors))
    fkw = _v.unpack(action.get("forward_kwargs", {"__dict__": {}}), tensors)
    wrt = []
    for i in action.get("grad_inputs", []):
        inputs[i] = inputs[i].clone().requires_grad_(True)
        wrt.append(inputs[i])
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    method = action.get("method") or "forward"
    _v.seed(seed)
    try:
        with torch.enable_grad():
            out = model(*inputs, **fkw) if method == "forward" else getattr(model, method)(*inputs, **fkw)
        answer["out"] = pack(out)
    except Exception:
        answer["forward_error"] = _v.tb()
        _finish(out_dir, item, answer, pack)
        return
    try:
        grads = _v.backprop(out, _v.unpack(action["upstream"], tensors), wrt + params)
        answer["grad_inputs"] = [None if g is None else pack(g) for g in grads[:len(wrt)]]
        answer["grad_params"] = {n: (None if g is None else pack(g)) for n, g in zip(names, grads[len(wrt):])}
    except Exception:
        answer["backward_error"] = _v.tb()
    extra = {}
    for m in action.get("methods", []):
        _v.seed(seed)
        try:
            with torch.no_grad():
                extra[m] = {"out": pack(getattr(model, m)(*_v.unpack(action["inputs"], tensors)))}
        except Exception:
            extra[m] = {"error": _v.tb()}
    answer["methods"] = extra
    _finish(out_dir, item, answer, pack)


def structure(action: dict, in_dir: str, out_dir: str) -> None:
    """Build the student's model; count its parameters and components; run it once,
    recording the torch functions it calls and the additions that join two paths of
    different depth from the input (residual connections)."""
    import torch
    from torch.overrides import TorchFunctionMode
    item = action["item"]
    tensors = _v.load_inputs(in_dir, item)
    pack = _v.Pack()
    answer: dict = {}
    try:
        model = _construct(action, tensors)
    except Exception:
        answer["construct_error"] = _v.tb()
        _finish(out_dir, item, answer, pack)
        return
    extra = [tensors[f"extra{i}"] for i in range(int(action.get("n_extra", 0)))]
    # The declared input first, then the rubric's alternative forms of it (letter indices for a
    # one-hot input, say): the first the model runs on, with the expected output shape, is used.
    candidates = [tensors["input"]] + [tensors[f"alt{i}"] for i in range(int(action.get("n_alt", 0)))]
    want = action.get("output_shape")
    used = 0
    if len(candidates) > 1:
        model.eval()
        for k, cand in enumerate(candidates):
            try:
                with torch.no_grad():
                    y = _wire.leaves(model(cand.clone(), *[e.clone() for e in extra]))
                if not want or (y and list(y[0].shape) == list(want)):
                    used = k
                    break
            except Exception:
                pass
    answer["input_used"] = used
    x = candidates[used].clone()
    from torch.nn.parameter import is_lazy
    if any(is_lazy(p) for p in model.parameters()):
        # Lazy layers (nn.LazyLinear) get their shapes from a first forward pass.
        try:
            model.eval()
            with torch.no_grad():
                model(x.clone(), *[e.clone() for e in extra])
            answer["materialized"] = True
        except Exception:
            answer["construct_error"] = _v.tb()
            _finish(out_dir, item, answer, pack)
            return
    seen = set()
    n_params = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n_params += int(p.numel())
    answer["n_params"] = n_params
    counts: dict = {}
    for m in model.modules():
        for klass in type(m).__mro__:
            # By identity with the real torch.nn class of that name: a class of the notebook's
            # own called GRU, or one that claims to live in torch.nn, is not one.
            if getattr(torch.nn, _TYPE_NAME.__get__(klass, type), None) is klass:
                name = _TYPE_NAME.__get__(klass, type)
                counts[name] = counts.get(name, 0) + 1
    answer["modules"] = counts

    depth: dict = {}
    keep: list = []
    calls: dict = {}
    residual = [0]
    add_names = {"add", "__add__", "__radd__", "__iadd__", "add_"}

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", str(func))
            calls[name] = calls.get(name, 0) + 1
            ins = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
            ds = [depth[id(a)] for a in ins if id(a) in depth]
            out = func(*args, **kwargs)
            if name in add_names and len(ins) >= 2 and len(ds) == 2 and abs(ds[0] - ds[1]) >= 2 \
                    and tuple(ins[0].shape) == tuple(ins[1].shape):
                residual[0] += 1
            if ds:
                for o in _wire.leaves(out):
                    depth[id(o)] = max(ds) + 1
                    keep.append(o)
            return out

    depth[id(x)] = 0
    attrs = {}
    for a in action.get("attributes", []):
        try:
            attrs[str(a)] = pack(getattr(model, str(a)))
        except Exception:
            attrs[str(a)] = {"__object__": "missing attribute"}
    answer["attributes"] = attrs
    model.train(action.get("mode", "eval") == "train")
    _v.seed(int(action["seed"]))
    try:
        with torch.no_grad(), Recorder():
            out = model(x, *[e.clone() for e in extra])
        answer["out"] = pack(out)
    except Exception:
        answer["forward_error"] = _v.tb()
    answer["functions"] = calls
    answer["residual_adds"] = residual[0]
    del keep
    if "forward_error" not in answer:
        try:
            model.train()
            model.zero_grad()
            y = model(candidates[used].clone(), *[e.clone() for e in extra])
            y = _wire.leaves(y)[0]
            (y.float().square().mean()).backward()
            answer["no_grad"] = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        except Exception:
            answer["backward_error"] = _v.tb()
    _finish(out_dir, item, answer, pack)


def behaviour(action: dict, in_dir: str, out_dir: str) -> None:
    """Run a trained object on grader-held inputs (labels stay with the grader)."""
    import torch
    item = action["item"]
    tensors = _v.load_inputs(in_dir, item)
    pack = _v.Pack()
    answer: dict = {}
    captured = _captures()
    how = getattr(captured, "how", {}).get(str(action["target"]).split(".")[0]) if captured else None
    if isinstance(how, dict):
        answer["found"] = {"how": str(how.get("how", ""))[:200], "execution_count": int(how.get("execution_count", -1))}
    try:
        obj = _lookup(action["target"])
        fn = getattr(obj, action["method"]) if action.get("method") else obj
        if not callable(fn):
            raise TypeError(f"`{action['target']}` is a {_v.type_name(obj)}, which cannot be called")
        transform = _lookup(action["transform"]) if action.get("transform") else None
    except Exception as e:
        answer["error"] = f"{type(e).__name__}: {e}"
        _finish(out_dir, item, answer, pack)
        return
    if action.get("recorded"):
        try:
            answer["recorded"] = pack(_lookup(str(action["recorded"])))
        except Exception as e:
            answer["recorded_error"] = f"{type(e).__name__}: {e}"
    if action.get("eval", True) and isinstance(obj, torch.nn.Module):
        obj.eval()
    _v.seed(int(action["seed"]))
    if action["mode"] == "classify":
        x = tensors["inputs"]
        device = None
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                device = p.device
                break
        outs = []
        try:
            with torch.no_grad():
                for start in range(0, x.shape[0], int(action.get("batch_size", 64))):
                    batch = x[start:start + int(action.get("batch_size", 64))].clone()
                    if action.get("input_format") == "pil":
                        from PIL import Image
                        batch = [Image.fromarray(b.numpy(), "RGB") for b in batch]
                    if transform is not None:
                        batch = torch.stack([transform(b) for b in batch])
                    if device is not None:
                        batch = batch.to(device)
                    outs.append(_v.plain(fn(batch)))
            answer["out"] = pack(torch.cat(outs))
        except Exception:
            answer["error"] = _v.tb()
    else:
        results = []
        failures = 0
        alternatives = action.get("alt_cases") or [None] * len(action["cases"])
        with torch.no_grad():
            for case, alt in zip(action["cases"], alternatives):
                try:
                    results.append({"out": pack(fn(*_v.unpack(case, tensors)))})
                except Exception:
                    # The same data in the other form the rubric allows (letters as indices, say).
                    error = _v.tb()
                    try:
                        if alt is None:
                            raise RuntimeError
                        results.append({"out": pack(fn(*_v.unpack(alt, tensors))), "alternative": True})
                        continue
                    except Exception:
                        pass
                    failures += 1
                    results.append({"error": error if failures <= 3 else "error (as above)"})
        answer["cases"] = results
    _finish(out_dir, item, answer, pack)


def _finish(out_dir: str, item: str, answer: dict, pack: _v.Pack) -> None:
    import torch
    if pack.tensors:
        _v.replace(os.path.join(out_dir, item + ".pt"), lambda tmp: torch.save(pack.tensors, tmp))
    _v.write_json(os.path.join(out_dir, item + ".json"), answer)


def training(action: dict, in_dir: str, out_dir: str) -> None:
    """What the training instrumentation (training_instrument.py, installed before the first cell) saw."""
    inst = getattr(sys.modules.get("_grader_instrument"), "INSTANCE", None)
    if inst is None:
        _v.write_json(os.path.join(out_dir, str(action["item"]) + ".json"), {"installed": False})
        return
    inst.dump(action, in_dir, out_dir)


# Each action is a plain-JSON dict from the trusted side's plan; its answer goes to
# <out_dir>/<item id>.json (+ .pt). One failing action never stops the others.
_ACTIONS = {
    "exists": lambda a, i, o: exists(list(a.get("names", [])), os.path.join(o, str(a["item"]) + ".json")),
    "call": call,
    "module": module,
    "structure": structure,
    "behaviour": behaviour,
    "training": training,
}


def run_plan(plan_path: str, out_dir: str) -> None:
    in_dir = os.path.dirname(plan_path)
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    for action in plan.get("actions", []):
        item = str(action.get("item", "item"))
        try:
            _ACTIONS[action["action"]](action, in_dir, out_dir)
        except BaseException:
            with open(os.path.join(out_dir, item + ".error.txt"), "w", encoding="utf-8") as f:
                f.write(traceback.format_exc(limit=6)[-4000:])
