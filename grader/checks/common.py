"""Trusted-side helpers shared by the probing check kinds: params validation, reference
lookup, input generation from the run's secret seed, and reading the probe's answers."""
from __future__ import annotations

import hashlib
import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from grader.checks.compare import MISSING, Opaque
from grader.rubric import Item, RubricError, Subcheck

MAX_ANSWER_BYTES = 20 << 20
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}
DISTS = ("normal", "uniform", "randint", "onehot", "arange")


# ---------------------------------------------------------------- params validation

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

    def str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        return self.get(key, (str,), "a string", default, required)

    def list(self, key: str, default: list | None = None, required: bool = False) -> list:
        return self.get(key, (list,), "an array", default if default is not None else [], required)

    def table(self, key: str, default: dict | None = None) -> dict:
        return self.get(key, (dict,), "a table", default if default is not None else {})

    def only(self, allowed: set[str]) -> None:
        unknown = set(self.data) - allowed
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
    """A literal (number, string, bool, array of literals) or a tensor spec table."""
    if isinstance(spec, dict):
        if "tensor" not in spec:
            raise p.err(key, f"a table here must be a tensor spec {{tensor = [shape], ...}}, got {spec!r}")
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


def make_value(spec: Any, gen: torch.Generator) -> Any:
    """Trusted-side input from a spec; arrays of literals become tuples."""
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
        return tuple(make_value(s, gen) for s in spec)
    return spec


def clone_value(v: Any) -> Any:
    if type(v) is torch.Tensor:
        return v.detach().clone()
    if isinstance(v, (list, tuple)):
        return type(v)(clone_value(x) for x in v)
    if isinstance(v, dict):
        return {k: clone_value(x) for k, x in v.items()}
    return v


def leaves(v: Any) -> list[torch.Tensor]:
    """Tensors of a value in a fixed order (the probe flattens the same way)."""
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (list, tuple)):
        return [t for x in v for t in leaves(x)]
    if isinstance(v, dict):
        return [t for k in sorted(v, key=str) for t in leaves(v[k])]
    return []


# ---------------------------------------------------------------- plan <-> probe encoding

def encode(value: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Plain JSON for the plan; tensors go to the item's input file, referenced by key."""
    if isinstance(value, torch.Tensor):
        key = f"{prefix}{len(tensors)}"
        tensors[key] = value.detach().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, tensors, prefix) for v in value]}
    if isinstance(value, list):
        return [encode(v, tensors, prefix) for v in value]
    if isinstance(value, dict):
        return {"__dict__": {str(k): encode(v, tensors, prefix) for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot hand a {type(value).__name__} to the probe")


def decode(obj: Any, tensors: dict[str, torch.Tensor], depth: int = 0) -> Any:
    """The probe's packed value -> Python values with plain tensors; unknown -> Opaque."""
    if depth > 20:
        return Opaque("deeply nested value")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [decode(v, tensors, depth + 1) for v in obj]
    if type(obj) is dict:
        if "__tensor__" in obj:
            t = tensors.get(str(obj["__tensor__"]))
            return t if t is not None else Opaque("tensor that could not be read")
        if "__tuple__" in obj and type(obj["__tuple__"]) is list:
            return tuple(decode(v, tensors, depth + 1) for v in obj["__tuple__"])
        if "__dict__" in obj and type(obj["__dict__"]) is dict:
            return {k: decode(v, tensors, depth + 1) for k, v in obj["__dict__"].items()}
        if "__object__" in obj:
            return Opaque(str(obj["__object__"])[:100])
        if "__float__" in obj:
            return float(str(obj["__float__"]))
    return Opaque("value the grader could not read")


@dataclass
class Answer:
    data: dict = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    problem: str | None = None     # why the answer could not be used

    def value(self, holder: dict, key: str) -> Any:
        return decode(holder[key], self.tensors) if type(holder) is dict and key in holder else MISSING


def _read_regular(path: Path) -> bytes | None:
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_ANSWER_BYTES:
        return None
    return path.read_bytes()


def load_answer(probe_dir: Path | None, item_id: str) -> Answer:
    """The probe's JSON and tensors for one item, believed only as plain data: tensors are
    loaded with weights_only=True and must be exactly ``torch.Tensor``."""
    if probe_dir is None:
        return Answer(problem="the grader's probe did not run")
    error_file = probe_dir / f"{item_id}.error.txt"
    try:
        raw = _read_regular(probe_dir / f"{item_id}.json")
        if raw is None:
            why = "the grader's probe wrote no answer for this item"
            if error_file.is_file() and not error_file.is_symlink():
                why += " (it failed: " + error_file.read_text(errors="replace")[-600:].strip() + ")"
            return Answer(problem=why)
        data = json.loads(raw.decode("utf-8"))
        if type(data) is not dict:
            return Answer(problem="the probe's answer is not a JSON object")
    except (OSError, ValueError) as e:
        return Answer(problem=f"the probe's answer could not be read ({type(e).__name__})")
    tensors: dict[str, torch.Tensor] = {}
    pt = probe_dir / f"{item_id}.pt"
    if pt.exists() or pt.is_symlink():
        try:
            raw = _read_regular(pt)
            if raw is None:
                return Answer(data, problem="the probe's tensor file is not a regular file of sensible size")
            import io
            loaded = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        except Exception as e:  # a corrupt or crafted file is the student's loss, not a crash
            return Answer(data, problem=f"the probe's tensor file could not be loaded ({type(e).__name__})")
        if type(loaded) is not dict:
            return Answer(data, problem="the probe's tensor file does not hold a dict of tensors")
        for k, v in loaded.items():
            if type(k) is not str or type(v) is not torch.Tensor:
                return Answer(data, problem=f"the probe's tensor file holds a {type(v).__name__} "
                                            f"instead of a plain tensor")
            tensors[k] = v
    return Answer(data, tensors)


def trim(text: Any, n: int = 1500) -> str:
    text = str(text or "").strip()
    return text if len(text) <= n else "... " + text[-n:]
