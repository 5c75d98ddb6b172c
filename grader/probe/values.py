"""Values between the grader and the student's kernel, on the kernel's side (standard library and
torch only; loaded by path by kernel_probe.py): the grader's inputs unpacked (tensors copied,
allow-listed objects built), what student code returns packed as plain tensors and JSON, and
tracebacks cut to the student's frames."""
from __future__ import annotations

import json
import os
import random
import sys
import traceback

_TYPE_NAME = type.__dict__["__name__"]
MAX_TB = 3000
# Set from wire.py by the probe when it loads this file (the trusted side reads the same): the
# constructors a plan may name, and the order in which a value's tensors are flattened.
ALLOWED: tuple = ()
leaves = None


def type_name(obj: object) -> str:
    # Read the name through `type`'s own descriptor so a student metaclass cannot intercept it.
    return str(_TYPE_NAME.__get__(type(obj), type))


def tb() -> str:
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


def replace(path: str, write) -> None:
    """Write a fresh file and rename it over ``path``: whatever the notebook planted there
    (a file, a symlink) is replaced, never written through."""
    tmp = f"{path}.{os.getpid()}.{random.random():.12f}.tmp"
    write(tmp)
    os.replace(tmp, path)


def write_json(path: str, obj: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "x", encoding="utf-8") as f:
            json.dump(obj, f, indent=None, default=str)
    replace(path, write)


def seed(seed: int) -> None:
    import torch
    torch.manual_seed(seed)
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed(seed % 2**32)
        except Exception:
            pass


def plain(t):
    """A plain CPU torch.Tensor holding the values of t, whatever subclass t is."""
    import torch
    with torch._C.DisableTorchFunctionSubclass():
        src = torch.Tensor.detach(t)
        src = torch.Tensor.to(src, "cpu")
        out = torch.empty(tuple(src.shape), dtype=src.dtype)
        torch.Tensor.copy_(out, src)
    return out


class Pack:
    """Turns a student value into JSON plus a dict of plain tensors."""

    def __init__(self) -> None:
        self.tensors: dict = {}

    def __call__(self, v, depth: int = 0):
        import torch
        if depth > 12:
            return {"__object__": "deeply nested value"}
        if isinstance(v, torch.Tensor):
            key = f"o{len(self.tensors)}"
            self.tensors[key] = plain(v)
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
        return {"__object__": type_name(v)}


def build(spec: dict, tensors: dict, objs: dict):
    import torch
    name = str(spec["ctor"])
    if name not in ALLOWED:       # the trusted side's list (wire.py), set by the probe
        raise ValueError(f"{name} is not an allowed constructor")
    ctor = torch
    for part in name.split(".")[1:]:
        ctor = getattr(ctor, part)
    obj = ctor(*unpack(spec.get("args", []), tensors, objs), **unpack(spec.get("kwargs", {"__dict__": {}}), tensors, objs))
    state = unpack(spec.get("state", {"__dict__": {}}), tensors, objs)
    if state:
        obj.load_state_dict(state)
    grad = unpack(spec.get("grad", {"__dict__": {}}), tensors, objs)
    if grad:
        for n, q in obj.named_parameters():
            q.grad = grad[n].clone()
    if spec.get("name"):
        objs[str(spec["name"])] = obj
    return obj


def unpack(obj, tensors: dict, objs: dict | None = None):
    if type(obj) is list:
        return [unpack(v, tensors, objs) for v in obj]
    if type(obj) is dict:
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]].clone()
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors, objs) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: unpack(v, tensors, objs) for k, v in obj["__dict__"].items()}
        if objs is not None and "__build__" in obj:
            return build(obj["__build__"], tensors, objs)
        if objs is not None and "__params_of__" in obj:
            return list(objs[obj["__params_of__"]].parameters())
        if objs is not None and "__loss_of__" in obj:
            import torch
            spec = obj["__loss_of__"]
            with torch.enable_grad():
                return (objs[spec["module"]](unpack(spec["input"], tensors)) * unpack(spec["weights"], tensors)).sum()
    return obj


def observe(objs: dict, after: dict) -> dict:
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


def load_inputs(in_dir: str, item: str) -> dict:
    import torch
    path = os.path.join(in_dir, item + ".pt")
    return torch.load(path, weights_only=True) if os.path.exists(path) else {}


def backprop(outputs, upstream: list, wrt: list) -> list:
    """Gradients of sum(<out_i, upstream_i>) with respect to wrt (None entries skipped)."""
    import torch
    outs = leaves(outputs)
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


def student_state(model, ref_state: dict, ref_order: list, mapping: dict, transpose: list, match: str) -> dict:
    """The reference weights as the student's model names and shapes them (by order or by a
    name mapping, transposed where declared): what is loaded into the model for a check."""
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
