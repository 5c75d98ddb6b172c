"""The comparison policy, in one place: how a student's value is held against the reference's.

Order: existence -> type -> shape -> dtype -> non-finite values -> values.

* Existence: a value the student did not produce fails with "missing".
* Type: a tensor must be a plain ``torch.Tensor`` (anything else the probe could not
  turn into one fails); numbers must be numbers; sequences must have the same length
  (a list and a tuple count as the same).
* Shape: must be equal; the message gives both shapes (the shape of the reference is
  part of the assignment, never a secret).
* dtype: the families (bool, integer, floating, complex) must agree: an integer or bool
  result where one is required and a float given fails, and vice versa. Within the
  floating family any precision is accepted: both sides are cast to float64 and a
  different precision is mentioned in the message, never failed.
* Non-finite: NaN or Inf where the reference is finite fails, with the first index.
* Values: ``|got - want| <= atol + rtol * |want|`` element-wise (integers and bools
  exactly). The message names the value, how many elements differ, and the index and
  size of the largest difference; never a reference value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

# A correct float32 implementation differs from a float64 reference by rounding only;
# these pass it (and float64) on the small inputs the rubric uses, and fail any real mistake.
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


class Missing:
    """Marks a value that the student's code did not produce."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


@dataclass(frozen=True)
class Opaque:
    """A student value of a type the probe does not hand back (only its type name is known)."""
    type_name: str


@dataclass
class Verdict:
    ok: bool
    message: str = ""
    notes: list[str] = field(default_factory=list)   # passed, but worth telling (e.g. a dtype cast)

    def text(self) -> str:
        return self.message if not self.ok else "; ".join(self.notes)


@dataclass(frozen=True)
class Tolerance:
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    # A float tensor holding whole numbers stands for an integer result (a count returned as
    # 12.0): a rubric sets it where the reference's integers are counts, not indices.
    integral_floats: bool = False


def family(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating"
    return "integer"


def describe(value: Any) -> str:
    if isinstance(value, Opaque):
        return f"a {value.type_name}"
    if type(value) is torch.Tensor:
        return f"a tensor of shape {tuple(value.shape)} ({value.dtype})"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    idx = []
    for size in reversed(shape):
        idx.append(flat % size)
        flat //= size
    return tuple(reversed(idx))


def _fmt_index(idx: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(i) for i in idx) + ("," if len(idx) == 1 else "") + ")"


def compare_tensors(name: str, got: torch.Tensor, want: torch.Tensor, tol: Tolerance) -> Verdict:
    if tuple(got.shape) != tuple(want.shape):
        return Verdict(False, f"`{name}` has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    fg, fw = family(got.dtype), family(want.dtype)
    notes = []
    if tol.integral_floats and fw == "integer" and fg == "floating" and bool(torch.isfinite(got).all()) \
            and bool((got == got.round()).all()):
        notes.append(f"`{name}` holds whole numbers as {got.dtype}; compared as integers")
        got, fg = got.round().to(torch.int64), "integer"
    if fg != fw:
        if fw in ("integer", "bool"):
            return Verdict(False, f"`{name}` has dtype {got.dtype}, expected an {fw} tensor ({want.dtype})")
        return Verdict(False, f"`{name}` has dtype {got.dtype}, expected a {fw} tensor ({want.dtype})")
    if fw in ("floating", "complex"):
        if got.dtype != want.dtype:
            notes.append(f"`{name}` is {got.dtype} (the reference is {want.dtype}); "
                         f"both were cast to float64 to compare them")
        cast = torch.complex128 if fw == "complex" else torch.float64
        g, w = got.to(cast), want.to(cast)
        bad_g = ~torch.isfinite(g)
        bad_w = ~torch.isfinite(w)
        wrong = bad_g & ~bad_w
        if bool(wrong.any()):
            flat = int(wrong.reshape(-1).nonzero()[0])
            kind = "NaN" if bool(torch.isnan(g.reshape(-1)[flat])) else "Inf"
            return Verdict(False, f"`{name}` contains {int(wrong.sum())} non-finite value(s) "
                                  f"(first: {kind} at index {_fmt_index(_index(flat, tuple(got.shape)))})")
        # Non-finite reference entries (rare) must be matched exactly in place.
        both = bad_g & bad_w
        same_special = torch.zeros_like(both)
        if bool(both.any()):
            same_special = both & ((g == w) | (torch.isnan(g) & torch.isnan(w)))
        if bool((bad_w & ~same_special).any()):
            flat = int((bad_w & ~same_special).reshape(-1).nonzero()[0])
            return Verdict(False, f"`{name}` differs at index {_fmt_index(_index(flat, tuple(got.shape)))} "
                                  f"where a non-finite value was expected")
        g = torch.where(bad_w, torch.zeros_like(g), g)
        w = torch.where(bad_w, torch.zeros_like(w), w)
        diff = (g - w).abs()
        allowed = tol.atol + tol.rtol * w.abs()
        bad = diff > allowed
        how = f"rtol={tol.rtol:g}, atol={tol.atol:g}"
    else:
        diff = (got.to(torch.int64) - want.to(torch.int64)).abs() if got.numel() else got.to(torch.int64)
        bad = diff != 0
        how = "exact"
    if got.numel() == 0 or not bool(bad.any()):
        return Verdict(True, "", notes)
    flat = int(diff.reshape(-1).argmax())
    size = float(diff.reshape(-1)[flat])
    return Verdict(False, f"`{name}`: {int(bad.sum())} of {got.numel()} values differ ({how}); the largest "
                          f"difference is {size:.3g} at index {_fmt_index(_index(flat, tuple(got.shape)))}", notes)


def compare(name: str, got: Any, want: Any, tol: Tolerance | None = None) -> Verdict:
    """Compare a decoded student value with the trusted reference value."""
    tol = tol or Tolerance()
    if isinstance(got, Missing):
        return Verdict(False, f"`{name}` is missing (nothing was returned for it)")
    if type(want) is torch.Tensor:
        if type(got) is not torch.Tensor:
            return Verdict(False, f"`{name}` should be a tensor of shape {tuple(want.shape)}, got {describe(got)}")
        return compare_tensors(name, got, want, tol)
    if isinstance(want, bool):
        if type(got) is not bool:
            return Verdict(False, f"`{name}` should be True or False, got {describe(got)}")
        return Verdict(got == want, "" if got == want else f"`{name}` is wrong")
    if isinstance(want, int):
        if type(got) is torch.Tensor and got.numel() == 1 and (family(got.dtype) == "integer" or (
                tol.integral_floats and family(got.dtype) == "floating"
                and float(got.reshape(-1)[0]) == round(float(got.reshape(-1)[0])))):
            v = compare(name, int(round(float(got.reshape(-1)[0]))), want, tol)
            v.notes.append(f"`{name}` was returned as a tensor and compared as a number")
            return v
        if type(got) is not int:
            return Verdict(False, f"`{name}` should be an int, got {describe(got)}")
        return Verdict(got == want, "" if got == want else f"`{name}` is wrong (off by {abs(got - want)})")
    if isinstance(want, float):
        if type(got) is torch.Tensor and got.numel() == 1:
            got = float(got.reshape(-1)[0])
        if type(got) not in (int, float):
            return Verdict(False, f"`{name}` should be a number, got {describe(got)}")
        g = float(got)
        if not math.isfinite(g) and math.isfinite(want):
            return Verdict(False, f"`{name}` is {g}, not a finite number")
        ok = abs(g - want) <= tol.atol + tol.rtol * abs(want) or g == want
        return Verdict(ok, "" if ok else f"`{name}` differs by {abs(g - want):.3g}")
    if isinstance(want, str) or want is None:
        ok = type(got) is type(want) and got == want
        return Verdict(ok, "" if ok else f"`{name}` is wrong (got {describe(got)})")
    if isinstance(want, (list, tuple)):
        if type(got) not in (list, tuple):
            return Verdict(False, f"`{name}` should be a sequence of {len(want)}, got {describe(got)}")
        if len(got) != len(want):
            return Verdict(False, f"`{name}` has {len(got)} elements, expected {len(want)}")
        notes = []
        for i, (g, w) in enumerate(zip(got, want)):
            v = compare(f"{name}[{i}]", g, w, tol)
            if not v.ok:
                return v
            notes += v.notes
        return Verdict(True, "", notes)
    if isinstance(want, dict):
        if type(got) is not dict:
            return Verdict(False, f"`{name}` should be a dict, got {describe(got)}")
        missing = [k for k in want if k not in got]
        if missing:
            return Verdict(False, f"`{name}` lacks the key(s) {', '.join(map(str, missing))}")
        notes = []
        for k, w in want.items():
            v = compare(f"{name}[{k!r}]", got[k], w, tol)
            if not v.ok:
                return v
            notes += v.notes
        return Verdict(True, "", notes)
    raise TypeError(f"cannot compare against a reference value of type {type(want).__name__}")
