"""Trusted-side helpers shared by the probing check kinds: params validation, reference
lookup, input generation from the run's secret seed, and reading the probe's answers."""
from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from grader.probe.wire import ALLOWED_OBJECTS
from grader.items import Item, RubricError, Subcheck

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}
DISTS = ("normal", "uniform", "randint", "onehot", "arange")


# ---------------------------------------------------------------- params validation

# Params read by the engine for every kind (grader/checks/gating.py), not by the kind itself.
ENGINE_KEYS = {"requires"}


class Params:
    """Reads ``item.params`` and raises RubricError naming ``items[i].params.<key>``."""

    def __init__(self, item: Item):
        self.item = item
        self.data = item.params
        self.where = f"{item.where or item.id}.params"

    def err(self, key: str, what: str) -> RubricError:
        return RubricError(f"{self.where}.{key}: {what}")

    def get(self, key: str, types: tuple[type, ...], what: str, default: Any = None,
            required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise self.err(key, f"missing; expected {what}")
            return default
        value = self.data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise self.err(key, f"expected {what}, got {value!r}")
        return value

    def num(self, key: str, default: float | None = None, required: bool = False) -> float | None:
        return self.get(key, (int, float), "a number", default, required)

    def int(self, key: str, default: int | None = None, required: bool = False) -> int | None:
        return self.get(key, (int,), "an integer", default, required)

    def bool(self, key: str, default: bool | None = None, required: bool = False) -> bool | None:
        return self.get(key, (bool,), "true or false", default, required)

    def str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        return self.get(key, (str,), "a string", default, required)

    def list(self, key: str, default: list | None = None, required: bool = False) -> list:
        return self.get(key, (list,), "an array", default if default is not None else [], required)

    def table(self, key: str, default: dict | None = None) -> dict:
        return self.get(key, (dict,), "a table", default if default is not None else {})

    def only(self, allowed: set[str]) -> None:
        unknown = set(self.data) - allowed - ENGINE_KEYS
        if unknown:
            raise RubricError(f"{self.where}: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"this kind reads {', '.join(sorted(allowed))}")


def need_reference(item: Item) -> str:
    if not item.reference:
        raise RubricError(f"{item.where or item.id}.reference: missing; the {item.kind} check needs "
                          f"\"package.module:name\" of the reference implementation")
    return item.reference


def need_target(item: Item) -> str:
    if not item.target or not item.target.isidentifier():
        raise RubricError(f"{item.where or item.id}.target: expected the name of the student's object "
                          f"in the notebook (an identifier), got {item.target!r}")
    return item.target


def check_value_spec(p: Params, key: str, spec: Any) -> None:
    """A literal (number, string, bool, array of literals), a tensor spec table or an object spec."""
    if isinstance(spec, dict) and any(k in spec for k in OBJECT_KEYS):
        check_object_spec(p, key, spec)
        return
    if isinstance(spec, dict):
        if "tensor" not in spec:
            raise p.err(key, f"a table here must be a tensor spec {{tensor = [shape], ...}} or an object "
                             f"spec {{object = \"torch.nn.Linear\", ...}}, got {spec!r}")
        shape = spec["tensor"]
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise p.err(key, f"tensor: expected a shape (array of sizes), got {shape!r}")
        unknown = set(spec) - {"tensor", "dtype", "dist", "low", "high", "scale", "classes"}
        if unknown:
            raise p.err(key, f"unknown tensor spec key(s) {', '.join(sorted(unknown))}")
        if spec.get("dtype", "float32") not in DTYPES:
            raise p.err(key, f"dtype: expected one of {', '.join(DTYPES)}, got {spec.get('dtype')!r}")
        if spec.get("dist", "normal") not in DISTS:
            raise p.err(key, f"dist: expected one of {', '.join(DISTS)}, got {spec.get('dist')!r}")
        if spec.get("dist") in ("randint", "onehot") and not isinstance(spec.get("high", spec.get("classes")), int):
            raise p.err(key, "randint/onehot tensors need an integer `high` (or `classes`)")
    elif isinstance(spec, list):
        for i, s in enumerate(spec):
            check_value_spec(p, f"{key}[{i}]", s)
    elif not isinstance(spec, (int, float, str, bool)):
        raise p.err(key, f"expected a literal or a tensor spec, got {spec!r}")


# ---------------------------------------------------------------- sub-checks and what they compare

@dataclass
class Facet:
    sub: Subcheck
    facets: list[str]          # what the sub-check compares, e.g. ["output"], ["grad:0"]


def plan_facets(item: Item, is_facet: Callable[[str], bool], default: list[str],
                aliases: dict[str, str] | None = None) -> list[Facet]:
    """Bind each declared sub-check to what it compares: ``params.compare[name]`` (a string
    or array of strings), else the sub-check's own name when it names a facet. Without
    declared sub-checks the whole item is one sub-check comparing ``default``."""
    p = Params(item)
    mapping = p.table("compare")
    if not item.subchecks:
        return [Facet(Subcheck("all", item.points), default)]
    out = []
    for s in item.subchecks:
        spec = mapping.get(s.name, s.name)
        facets = [spec] if isinstance(spec, str) else spec
        if isinstance(facets, list) and aliases:
            facets = [aliases.get(f, f) if isinstance(f, str) else f for f in facets]
        if not isinstance(facets, list) or not facets or not all(isinstance(f, str) for f in facets):
            raise p.err(f"compare.{s.name}", f"expected a facet name or an array of them, got {spec!r}")
        for f in facets:
            if not is_facet(f):
                raise p.err(f"compare.{s.name}" if s.name in mapping else "compare",
                            f"sub-check {s.name!r} compares {f!r}, which this {item.kind} check does not "
                            f"know; declare params.compare.{s.name} = one of the facets in the README")
        out.append(Facet(s, facets))
    for name in mapping:
        if name not in {s.name for s in item.subchecks}:
            raise p.err(f"compare.{name}", "is not a declared sub-check of this item")
    return out


# ---------------------------------------------------------------- the reference package

def resolve(ref: str, reference_dir: Path | None) -> Any:
    module_name, _, attr = ref.partition(":")
    if reference_dir is not None and str(reference_dir) not in sys.path:
        sys.path.insert(0, str(reference_dir))
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def item_seed(seed: int, item_id: str, salt: str = "") -> int:
    h = hashlib.sha256(f"{seed}\0{item_id}\0{salt}".encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**62 - 1)


def make_value(spec: Any, gen: torch.Generator, scratch: dict | None = None) -> Any:
    """Trusted-side input from a spec; arrays of literals become tuples. ``scratch`` holds the
    objects of the current case by name (for ``params_of`` and ``loss_of``)."""
    if isinstance(spec, dict) and any(k in spec for k in OBJECT_KEYS):
        return make_object(spec, gen, {} if scratch is None else scratch)
    if isinstance(spec, dict):
        shape = tuple(spec["tensor"])
        dist = spec.get("dist", "normal")
        dtype = DTYPES[spec.get("dtype", "int64" if dist in ("randint", "arange") else "float32")]
        if dist == "randint":
            return torch.randint(int(spec.get("low", 0)), int(spec["high"]), shape, generator=gen).to(dtype)
        if dist == "onehot":
            k = int(spec.get("classes", spec.get("high")))
            idx = torch.randint(int(spec.get("low", 0)), k, shape, generator=gen)
            return torch.nn.functional.one_hot(idx, k).to(dtype)
        if dist == "arange":
            return torch.arange(int(torch.tensor(shape).prod())).reshape(shape).to(dtype)
        if dist == "uniform":
            low, high = float(spec.get("low", 0.0)), float(spec.get("high", 1.0))
            t = torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low
        else:
            t = torch.randn(shape, generator=gen, dtype=torch.float64) * float(spec.get("scale", 1.0))
        return t.to(dtype)
    if isinstance(spec, list):
        return tuple(make_value(s, gen, scratch) for s in spec)
    return spec


# ---------------------------------------------------------------- object specs
# Objects the probe builds in the student's kernel, declared as data: a constructor from a
# fixed allow-list (the plan cannot name anything else, and the probe holds the same list),
# literal or nested arguments, and the trusted side's random state. Forms:
#   {object = "torch.nn.Linear", args = [...], kwargs = {...}, name = "model", stale_grad = true}
#   {params_of = "model"}                      the parameters of a named object of the case
#   {loss_of = "model", input = <tensor spec>, weights = <tensor spec>}
#                                              sum(model(input) * weights), a scalar with a graph
OBJECT_KEYS = ("object", "params_of", "loss_of")


@dataclass
class Built:
    ctor: str
    args: tuple
    kwargs: dict
    name: str | None
    state: dict            # state_dict entries set by the grader
    grad: dict             # .grad of parameters before the call (stale gradients), by name


@dataclass
class ParamsOf:
    name: str


@dataclass
class LossOf:
    module: str
    input: torch.Tensor
    weights: torch.Tensor


def check_object_spec(p: Params, key: str, spec: dict) -> None:
    kinds = [k for k in OBJECT_KEYS if k in spec]
    if len(kinds) != 1:
        raise p.err(key, f"an object spec has exactly one of {', '.join(OBJECT_KEYS)}")
    kind = kinds[0]
    allowed = {"object": {"object", "args", "kwargs", "name", "stale_grad"},
               "params_of": {"params_of"}, "loss_of": {"loss_of", "input", "weights"}}[kind]
    unknown = set(spec) - allowed
    if unknown:
        raise p.err(key, f"unknown key(s) {', '.join(sorted(unknown))} in a {kind} spec")
    if kind == "object":
        if spec["object"] not in ALLOWED_OBJECTS:
            raise p.err(f"{key}.object", f"{spec['object']!r} is not an allowed constructor; "
                                         f"expected one of {', '.join(ALLOWED_OBJECTS)}")
        if not isinstance(spec.get("args", []), list) or not isinstance(spec.get("kwargs", {}), dict):
            raise p.err(key, "args must be an array and kwargs a table")
        check_value_spec(p, f"{key}.args", spec.get("args", []))
        for k, v in spec.get("kwargs", {}).items():
            check_value_spec(p, f"{key}.kwargs.{k}", v)
        if "name" in spec and not (isinstance(spec["name"], str) and spec["name"].isidentifier()):
            raise p.err(f"{key}.name", f"expected an identifier, got {spec['name']!r}")
    elif kind == "params_of":
        if not isinstance(spec["params_of"], str):
            raise p.err(key, "params_of names an object of the case")
    else:
        if not isinstance(spec["loss_of"], str):
            raise p.err(key, "loss_of names a module of the case")
        for k in ("input", "weights"):
            if not isinstance(spec.get(k), dict) or "tensor" not in spec[k]:
                raise p.err(f"{key}.{k}", "expected a tensor spec")
            check_value_spec(p, f"{key}.{k}", spec[k])


def _constructor(name: str) -> Any:
    if name not in ALLOWED_OBJECTS:
        raise ValueError(f"{name} is not an allowed constructor")
    obj: Any = torch
    for part in name.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def make_object(spec: dict, gen: torch.Generator, scratch: dict) -> Any:
    """The trusted-side recipe of an object spec, with fresh random state from ``gen``."""
    if "params_of" in spec:
        return ParamsOf(spec["params_of"])
    if "loss_of" in spec:
        return LossOf(spec["loss_of"], make_value(spec["input"], gen), make_value(spec["weights"], gen))
    args = tuple(make_value(a, gen, scratch) for a in spec.get("args", []))
    kwargs = {k: make_value(v, gen, scratch) for k, v in spec.get("kwargs", {}).items()}
    recipe = Built(spec["object"], args, kwargs, spec.get("name"), {}, {})
    probe_obj = instantiate(recipe, dict(scratch))
    if isinstance(probe_obj, torch.nn.Module):
        # Nested modules get their values from the outermost one's state_dict.
        recipe.args = tuple(_stateless(a) for a in args)
        recipe.state = {k: (torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.dtype) * 0.5
                            if v.dtype.is_floating_point and not k.endswith("running_var") else v.clone())
                        for k, v in probe_obj.state_dict().items()}
        if spec.get("stale_grad"):
            recipe.grad = {n: torch.randn(q.shape, generator=gen, dtype=torch.float64).to(q.dtype)
                           for n, q in probe_obj.named_parameters()}
    if recipe.name:
        scratch[recipe.name] = instantiate(recipe, dict(scratch))
    return recipe


def _stateless(v: Any) -> Any:
    if isinstance(v, Built):
        return Built(v.ctor, tuple(_stateless(a) for a in v.args), v.kwargs, v.name, {}, {})
    return v


def instantiate(v: Any, objs: dict) -> Any:
    """A fresh object (or value) from a recipe, as the probe builds it."""
    if isinstance(v, Built):
        obj = _constructor(v.ctor)(*[instantiate(a, objs) for a in v.args],
                                   **{k: instantiate(x, objs) for k, x in v.kwargs.items()})
        if v.state:
            obj.load_state_dict({k: t.clone() for k, t in v.state.items()})
        for n, q in (obj.named_parameters() if v.grad else ()):
            q.grad = v.grad[n].clone()
        if v.name:
            objs[v.name] = obj
        return obj
    if isinstance(v, ParamsOf):
        return list(objs[v.name].parameters())
    if isinstance(v, LossOf):
        with torch.enable_grad():
            return (objs[v.module](v.input.clone()) * v.weights).sum()
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, (list, tuple)):
        return type(v)(instantiate(x, objs) for x in v)
    if isinstance(v, dict):
        return {k: instantiate(x, objs) for k, x in v.items()}
    return v


def observe(objs: dict, after: dict) -> dict:
    """What a case compares after the call: parameters and/or gradients of named objects."""
    out = {}
    for name, what in after.items():
        obj = objs.get(name)
        entry = {}
        params = dict(obj.named_parameters()) if isinstance(obj, torch.nn.Module) else {}
        if what in ("parameters", "both"):
            entry["parameters"] = {n: q.detach().clone() for n, q in params.items()}
        if what in ("gradients", "both"):
            entry["gradients"] = {n: (None if q.grad is None else q.grad.detach().clone()) for n, q in params.items()}
        out[name] = entry
    return out


def clone_value(v: Any) -> Any:
    if type(v) is torch.Tensor:
        return v.detach().clone()
    if isinstance(v, (list, tuple)):
        return type(v)(clone_value(x) for x in v)
    if isinstance(v, dict):
        return {k: clone_value(x) for k, x in v.items()}
    return v


def detach(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().clone().as_subclass(torch.Tensor)
    if isinstance(v, (list, tuple)):
        return type(v)(detach(x) for x in v)
    if isinstance(v, dict):
        return {k: detach(x) for k, x in v.items()}
    return v


def make_args(values: list) -> list:
    """A recipe's argument list as a call takes it (TOML arrays become tuples)."""
    return [tuple(v) if isinstance(v, list) else v for v in values]


