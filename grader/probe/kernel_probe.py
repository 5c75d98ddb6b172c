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
import random
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
_TYPE_NAME = type.__dict__["__name__"]
MAX_TB = 3000


def _type_name(obj: object) -> str:
    # Read the name through `type`'s own descriptor so a student metaclass cannot intercept it.
    return str(_TYPE_NAME.__get__(type(obj), type))


def _namespace() -> dict:
    main = sys.modules.get("__main__")
    ns = getattr(main, "__dict__", None)
    return ns if isinstance(ns, dict) else {}


def _tb() -> str:
    """The current exception with the student's frames only (the probe's say nothing to them)."""
    etype, value, tb = sys.exc_info()
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith("/grader/probe/")
              and "importlib" not in f.filename]
    # Library frames (torch's module call wrappers) say nothing to a student: keep their own
    # frames and the library frame that raised, named from the package on.
    lib = [f for f in frames if "site-packages" in f.filename or "/lib/python" in f.filename]
    frames = [f for f in frames if f not in lib or f is frames[-1]][-8:]
    for f in frames:
        if "site-packages/" in f.filename:
            f.filename = f.filename.split("site-packages/", 1)[1]
    text = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(etype, value))
    if frames:
        text = "Traceback (most recent call last):\n" + text
    return text if len(text) <= MAX_TB else "... " + text[-MAX_TB:]


def _replace(path: str, write) -> None:
    """Write a fresh file and rename it over ``path``: whatever the notebook planted there
    (a file, a symlink) is replaced, never written through."""
    tmp = f"{path}.{os.getpid()}.{random.random():.12f}.tmp"
    write(tmp)
    os.replace(tmp, path)


def _write_json(path: str, obj: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "x", encoding="utf-8") as f:
            json.dump(obj, f, indent=None, default=str)
    _replace(path, write)


def exists(names: list[str], out_path: str) -> dict:
    """Write {name: {"exists", "type", "callable"}} for each name to out_path as JSON."""
    ns = _namespace()
    report: dict[str, dict] = {}
    for name in names:
        name = str(name)
        if name in ns:
            obj = ns[name]
            report[name] = {"exists": True, "type": _type_name(obj), "callable": callable(obj)}
        else:
            report[name] = {"exists": False, "type": None, "callable": False}
    _write_json(out_path, report)
    return report


# ---------------------------------------------------------------- values in and out

def _seed(seed: int) -> None:
    import torch
    torch.manual_seed(seed)
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed(seed % 2**32)
        except Exception:
            pass


def _plain(t):
    """A plain CPU torch.Tensor holding the values of t, whatever subclass t is."""
    import torch
    with torch._C.DisableTorchFunctionSubclass():
        src = torch.Tensor.detach(t)
        src = torch.Tensor.to(src, "cpu")
        out = torch.empty(tuple(src.shape), dtype=src.dtype)
        torch.Tensor.copy_(out, src)
    return out


class _Pack:
    """Turns a student value into JSON plus a dict of plain tensors."""

    def __init__(self) -> None:
        self.tensors: dict = {}

    def __call__(self, v, depth: int = 0):
        import torch
        if depth > 12:
            return {"__object__": "deeply nested value"}
        if isinstance(v, torch.Tensor):
            key = f"o{len(self.tensors)}"
            self.tensors[key] = _plain(v)
            return {"__tensor__": key}
        t = type(v)
        if v is None or t in (bool, str):
            return v
        if t is int or t is float:
            return v if t is int or (v == v and v not in (float("inf"), float("-inf"))) else {"__float__": repr(v)}
        if isinstance(v, bool):
            return bool(v)
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return self(float(v), depth)
        if t is tuple or t is list or isinstance(v, (tuple, list)):
            items = [self(x, depth + 1) for x in list(v)[:10000]]
            return {"__tuple__": items} if isinstance(v, tuple) else items
        if isinstance(v, dict):
            return {"__dict__": {str(k): self(x, depth + 1) for k, x in list(v.items())[:1000]}}
        np = sys.modules.get("numpy")
        if np is not None and isinstance(v, np.ndarray):
            return self(torch.as_tensor(np.array(v)), depth)
        if np is not None and isinstance(v, np.generic):
            return self(v.item(), depth)
        return {"__object__": _type_name(v)}


def _build(spec: dict, tensors: dict, objs: dict):
    import torch
    name = str(spec["ctor"])
    if name not in _wire.ALLOWED_OBJECTS:       # the trusted side's list (wire.py)
        raise ValueError(f"{name} is not an allowed constructor")
    ctor = torch
    for part in name.split(".")[1:]:
        ctor = getattr(ctor, part)
    obj = ctor(*_unpack(spec.get("args", []), tensors, objs), **_unpack(spec.get("kwargs", {"__dict__": {}}), tensors, objs))
    state = _unpack(spec.get("state", {"__dict__": {}}), tensors, objs)
    if state:
        obj.load_state_dict(state)
    grad = _unpack(spec.get("grad", {"__dict__": {}}), tensors, objs)
    if grad:
        for n, q in obj.named_parameters():
            q.grad = grad[n].clone()
    if spec.get("name"):
        objs[str(spec["name"])] = obj
    return obj


def _unpack(obj, tensors: dict, objs: dict | None = None):
    if type(obj) is list:
        return [_unpack(v, tensors, objs) for v in obj]
    if type(obj) is dict:
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]].clone()
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors, objs) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: _unpack(v, tensors, objs) for k, v in obj["__dict__"].items()}
        if objs is not None and "__build__" in obj:
            return _build(obj["__build__"], tensors, objs)
        if objs is not None and "__params_of__" in obj:
            return list(objs[obj["__params_of__"]].parameters())
        if objs is not None and "__loss_of__" in obj:
            import torch
            spec = obj["__loss_of__"]
            with torch.enable_grad():
                return (objs[spec["module"]](_unpack(spec["input"], tensors)) * _unpack(spec["weights"], tensors)).sum()
    return obj


def _observe(objs: dict, after: dict) -> dict:
    import torch
    out = {}
    for name, what in after.items():
        obj = objs.get(name)
        params = dict(obj.named_parameters()) if isinstance(obj, torch.nn.Module) else {}
        entry = {}
        if what in ("parameters", "both"):
            entry["parameters"] = {n: q for n, q in params.items()}
        if what in ("gradients", "both"):
            entry["gradients"] = {n: q.grad for n, q in params.items()}
        out[name] = entry
    return out


def _load_inputs(in_dir: str, item: str) -> dict:
    import torch
    path = os.path.join(in_dir, item + ".pt")
    return torch.load(path, weights_only=True) if os.path.exists(path) else {}


def _backprop(outputs, upstream: list, wrt: list) -> list:
    """Gradients of sum(<out_i, upstream_i>) with respect to wrt (None entries skipped)."""
    import torch
    outs = _wire.leaves(outputs)
    if len(outs) != len(upstream):
        raise ValueError(f"the output holds {len(outs)} tensor(s); {len(upstream)} were expected")
    pairs = [(o, u) for o, u in zip(outs, upstream) if u is not None]
    for o, u in pairs:
        if tuple(o.shape) != tuple(u.shape):
            raise ValueError(f"an output has shape {tuple(o.shape)}, expected {tuple(u.shape)}")
        if not o.requires_grad:
            raise ValueError("the output does not depend on the inputs through autograd "
                             "(was it detached, computed in numpy or under torch.no_grad()?)")
    targets = [w for w in wrt if w is not None]
    got = torch.autograd.grad([o for o, _ in pairs], targets,
                              [u.to(o.dtype) for o, u in pairs], allow_unused=True)
    it = iter(got)
    return [None if w is None else next(it) for w in wrt]


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
    tensors = _load_inputs(in_dir, item)
    pack = _Pack()
    answer: dict = {"cases": []}
    for case in action["cases"]:
        got: dict = {}
        try:
            fn = _lookup(case["target"])
            if not callable(fn):
                raise TypeError(f"`{case['target']}` is a {_type_name(fn)}, not a function")
        except Exception as e:
            answer["cases"].append({"error": f"{type(e).__name__}: {e}", "lookup": True})
            continue
        objs: dict = {}
        _unpack(case.get("objects", []), tensors, objs)
        args = _unpack(case["args"], tensors, objs)
        kwargs = _unpack(case.get("kwargs", {"__dict__": {}}), tensors, objs)
        grad = [int(i) for i in case.get("grad", [])]
        wrt = []
        args = list(args)
        for i in grad:
            args[i] = args[i].clone().requires_grad_(True)
            wrt.append(args[i])
        _seed(int(action["seed"]))
        try:
            with torch.enable_grad():
                out = fn(*args, **kwargs)
            got["out"] = pack(out)
        except Exception:
            got["error"] = _tb()
            answer["cases"].append(got)
            continue
        if case.get("after"):
            try:
                got["after"] = pack(_observe(objs, case["after"]))
            except Exception:
                got["after_error"] = _tb()
        if grad:
            try:
                grads = _backprop(out, _unpack(case["upstream"], tensors), wrt)
                got["grads"] = [None if g is None else pack(g) for g in grads]
            except Exception:
                got["grad_error"] = _tb()
        answer["cases"].append(got)
    _finish(out_dir, item, answer, pack)


def _student_state(model, ref_state: dict, ref_order: list, mapping: dict, transpose: list, match: str) -> dict:
    own = model.state_dict()
    if match == "order":
        keys = list(own.keys())
        if len(keys) != len(ref_order):
            raise ValueError(f"the model has {len(keys)} parameters and buffers; the reference has {len(ref_order)}")
        pairs = dict(zip(keys, ref_order))
    else:
        pairs = {k: mapping.get(k, k) for k in own.keys()}
        missing = [k for k, r in pairs.items() if r not in ref_state]
        if missing:
            raise KeyError("no reference weight for " + ", ".join(missing[:8])
                           + ("" if mapping else " (declare params.mapping for different names)"))
        unused = [r for r in ref_order if r not in set(pairs.values())]
        if unused:
            raise KeyError("the model has nothing for the reference weight(s) " + ", ".join(unused[:8]))
    out = {}
    for k, r in pairs.items():
        w = ref_state[r]
        if k in transpose:
            w = w.t()
        if tuple(w.shape) != tuple(own[k].shape):
            raise ValueError(f"`{k}` has shape {tuple(own[k].shape)}; the reference weight "
                             f"`{r}` has shape {tuple(w.shape)}")
        out[k] = w.clone().to(own[k].dtype)
    return out, pairs


def _construct(action: dict, tensors: dict):
    """The student's module built as the action says, under the action's seed."""
    import torch
    cls = _lookup(action["target"])
    _seed(int(action["seed"]))
    model = cls(*_unpack(action["args"], tensors), **_unpack(action["kwargs"], tensors))
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`{action['target']}(...)` gave a {_type_name(model)}, not an nn.Module")
    return model


def module(action: dict, in_dir: str, out_dir: str) -> None:
    """Weight transplant: build the student's module, load the reference weights, run
    forward and backward of the grader's upstream gradient."""
    import torch
    item = action["item"]
    tensors = _load_inputs(in_dir, item)
    pack = _Pack()
    answer: dict = {}
    seed = int(action["seed"])
    try:
        model = _construct(action, tensors)
    except Exception:
        answer["construct_error"] = _tb()
        _finish(out_dir, item, answer, pack)
        return
    answer["parameters"] = [[n, list(p.shape)] for n, p in model.named_parameters()]
    try:
        ref_state = {k[len("w:"):]: v for k, v in tensors.items() if k.startswith("w:")}
        state, pairs = _student_state(model, ref_state, action["ref_order"], action.get("mapping", {}),
                                      action.get("transpose", []), action.get("match", "name"))
        model.load_state_dict(state, strict=True)
        answer["pairs"] = pairs
    except Exception:
        answer["load_error"] = _tb()
        _finish(out_dir, item, answer, pack)
        return
    model.train(action.get("mode", "eval") == "train")
    inputs = list(_unpack(action["inputs"], tensors))
    fkw = _unpack(action.get("forward_kwargs", {"__dict__": {}}), tensors)
    wrt = []
    for i in action.get("grad_inputs", []):
        inputs[i] = inputs[i].clone().requires_grad_(True)
        wrt.append(inputs[i])
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    method = action.get("method") or "forward"
    _seed(seed)
    try:
        with torch.enable_grad():
            out = model(*inputs, **fkw) if method == "forward" else getattr(model, method)(*inputs, **fkw)
        answer["out"] = pack(out)
    except Exception:
        answer["forward_error"] = _tb()
        _finish(out_dir, item, answer, pack)
        return
    try:
        grads = _backprop(out, _unpack(action["upstream"], tensors), wrt + params)
        answer["grad_inputs"] = [None if g is None else pack(g) for g in grads[:len(wrt)]]
        answer["grad_params"] = {n: (None if g is None else pack(g)) for n, g in zip(names, grads[len(wrt):])}
    except Exception:
        answer["backward_error"] = _tb()
    extra = {}
    for m in action.get("methods", []):
        _seed(seed)
        try:
            with torch.no_grad():
                extra[m] = {"out": pack(getattr(model, m)(*_unpack(action["inputs"], tensors)))}
        except Exception:
            extra[m] = {"error": _tb()}
    answer["methods"] = extra
    _finish(out_dir, item, answer, pack)


def structure(action: dict, in_dir: str, out_dir: str) -> None:
    """Build the student's model; count its parameters and components; run it once,
    recording the torch functions it calls and the additions that join two paths of
    different depth from the input (residual connections)."""
    import torch
    from torch.overrides import TorchFunctionMode
    item = action["item"]
    tensors = _load_inputs(in_dir, item)
    pack = _Pack()
    answer: dict = {}
    try:
        model = _construct(action, tensors)
    except Exception:
        answer["construct_error"] = _tb()
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
            answer["construct_error"] = _tb()
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
    _seed(int(action["seed"]))
    try:
        with torch.no_grad(), Recorder():
            out = model(x, *[e.clone() for e in extra])
        answer["out"] = pack(out)
    except Exception:
        answer["forward_error"] = _tb()
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
            answer["backward_error"] = _tb()
    _finish(out_dir, item, answer, pack)


def behaviour(action: dict, in_dir: str, out_dir: str) -> None:
    """Run a trained object on grader-held inputs (labels stay with the grader)."""
    import torch
    item = action["item"]
    tensors = _load_inputs(in_dir, item)
    pack = _Pack()
    answer: dict = {}
    captured = _captures()
    how = getattr(captured, "how", {}).get(str(action["target"]).split(".")[0]) if captured else None
    if isinstance(how, dict):
        answer["found"] = {"how": str(how.get("how", ""))[:200], "execution_count": int(how.get("execution_count", -1))}
    try:
        obj = _lookup(action["target"])
        fn = getattr(obj, action["method"]) if action.get("method") else obj
        if not callable(fn):
            raise TypeError(f"`{action['target']}` is a {_type_name(obj)}, which cannot be called")
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
    _seed(int(action["seed"]))
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
                    outs.append(_plain(fn(batch)))
            answer["out"] = pack(torch.cat(outs))
        except Exception:
            answer["error"] = _tb()
    else:
        results = []
        failures = 0
        alternatives = action.get("alt_cases") or [None] * len(action["cases"])
        with torch.no_grad():
            for case, alt in zip(action["cases"], alternatives):
                try:
                    results.append({"out": pack(fn(*_unpack(case, tensors)))})
                except Exception:
                    # The same data in the other form the rubric allows (letters as indices, say).
                    error = _tb()
                    try:
                        if alt is None:
                            raise RuntimeError
                        results.append({"out": pack(fn(*_unpack(alt, tensors))), "alternative": True})
                        continue
                    except Exception:
                        pass
                    failures += 1
                    results.append({"error": error if failures <= 3 else "error (as above)"})
        answer["cases"] = results
    _finish(out_dir, item, answer, pack)


def _finish(out_dir: str, item: str, answer: dict, pack: _Pack) -> None:
    import torch
    if pack.tensors:
        _replace(os.path.join(out_dir, item + ".pt"), lambda tmp: torch.save(pack.tensors, tmp))
    _write_json(os.path.join(out_dir, item + ".json"), answer)


def training(action: dict, in_dir: str, out_dir: str) -> None:
    """What the training instrumentation (training_instrument.py, installed before the first cell) saw."""
    inst = getattr(sys.modules.get("_grader_instrument"), "INSTANCE", None)
    if inst is None:
        _write_json(os.path.join(out_dir, str(action["item"]) + ".json"), {"installed": False})
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
