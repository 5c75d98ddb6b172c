"""The wire's two ends on the trusted side: a plan's values encoded as plain JSON and tensors for
the probe, and the probe's answer read back (size-limited, tensors only with weights_only, the
student's objects never rebuilt)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grader.checks.common import Built, LossOf, ParamsOf
from grader.checks.compare import MISSING, Opaque

MAX_ANSWER_BYTES = 20 << 20
# Tensors may hold a training's weights before every step (the instrument keeps at most 128 MB).
MAX_TENSOR_BYTES = 192 << 20


def encode(value: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Plain JSON for the plan; tensors go to the item's input file, referenced by key."""
    if isinstance(value, torch.Tensor):
        key = f"{prefix}{len(tensors)}"
        tensors[key] = value.detach().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(value, Built):
        return {"__build__": {"ctor": value.ctor, "args": encode(list(value.args), tensors, prefix),
                              "kwargs": encode(dict(value.kwargs), tensors, prefix), "name": value.name,
                              "state": encode(dict(value.state), tensors, prefix),
                              "grad": encode(dict(value.grad), tensors, prefix)}}
    if isinstance(value, ParamsOf):
        return {"__params_of__": value.name}
    if isinstance(value, LossOf):
        return {"__loss_of__": {"module": value.module, "input": encode(value.input, tensors, prefix),
                                "weights": encode(value.weights, tensors, prefix)}}
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


def _read_regular(path: Path, limit: int = MAX_ANSWER_BYTES) -> bytes | None:
    if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
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
            raw = _read_regular(pt, MAX_TENSOR_BYTES)
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
