"""Spikes in a per-step training loss curve: a pure function of the curve and its parameters.

Spike detector: after learning starts (the first epoch whose mean batch loss is below
``learned_below``), a spike is a stretch of steps whose running median loss (``window``
steps, centred) lies more than ``rise`` above the lowest epoch-mean loss reached so far,
or above ``ceiling`` (the untrained loss). The median ignores a single hard batch
(per-step noise) but not a jump that lasts (window + 1) / 2 steps or more. A worst rise
within ``review_margin`` (a fraction of ``rise``) of the threshold is flagged for review.
The values, and their calibration, belong to the assignment (its rubric and reference folder).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# Every one is required (the rubric's ``detector`` table): learned_below (a mean epoch loss below
# it means the training learned), window (steps of the running median), rise (above the best
# epoch mean so far), ceiling (the untrained loss), review_margin (a fraction of ``rise``).
DETECTOR_KEYS = ("learned_below", "window", "rise", "ceiling", "review_margin")


@dataclass
class Detection:
    steps: int
    epochs: int                          # complete epochs
    learning_epoch: int | None           # 1-based
    spikes: list[tuple[int, int, float]] = field(default_factory=list)   # (first step, last step, peak loss)
    worst_rise: float = 0.0
    worst_step: int | None = None
    missing: int = 0                     # steps whose loss was not observed

    @property
    def spiky(self) -> bool:
        return bool(self.spikes)


def running_median(values: list[float], window: int) -> list[float]:
    half = window // 2
    out = []
    for i in range(len(values)):
        chunk = sorted(v for v in values[max(0, i - half):i + half + 1] if v == v)
        n = len(chunk)
        out.append(math.nan if n == 0 else (chunk[n // 2] if n % 2 else 0.5 * (chunk[n // 2 - 1] + chunk[n // 2])))
    return out


def detect(loss: list[float | None], steps_per_epoch: int, params: dict) -> Detection:
    """Spikes in a per-step training loss curve (see the module docstring); ``params`` has every
    key of ``DETECTOR_KEYS``."""
    missing = [k for k in DETECTOR_KEYS if k not in params]
    if missing:
        raise ValueError(f"spike detector: missing parameter(s) {', '.join(missing)}")
    p = params
    values = [math.nan if v is None else float(v) for v in loss]
    n = len(values)
    epochs = n // steps_per_epoch
    det = Detection(steps=n, epochs=epochs, learning_epoch=None, missing=sum(1 for v in values if v != v))
    means = []
    for e in range(epochs):
        chunk = [v for v in values[e * steps_per_epoch:(e + 1) * steps_per_epoch] if v == v]
        means.append(sum(chunk) / len(chunk) if chunk else math.nan)
    start = next((e for e, m in enumerate(means) if m == m and m < p["learned_below"]), None)
    if start is None:
        return det
    det.learning_epoch = start + 1
    smooth = running_median(values, int(p["window"]))
    best = means[start]
    open_spike: list | None = None
    worst, worst_step = -math.inf, None
    for i in range((start + 1) * steps_per_epoch, n):
        e = i // steps_per_epoch
        if e - 1 > start and e - 1 < epochs and means[e - 1] == means[e - 1] and i % steps_per_epoch == 0:
            best = min(best, means[e - 1])
        v = smooth[i]
        if v != v:
            continue
        rise = v - best
        if rise > worst:
            worst, worst_step = rise, i
        if rise > p["rise"] or v > p["ceiling"]:
            peak = max(x for x in values[max(0, i - 2):i + 3] if x == x)
            # Steps closer than a window apart belong to one excursion of the training.
            if open_spike is not None and open_spike[1] >= i - int(p["window"]):
                open_spike[1] = i
                open_spike[2] = max(open_spike[2], peak)
            else:
                open_spike = [i, i, peak]
                det.spikes.append(open_spike)  # type: ignore[arg-type]
    det.spikes = [(a, b, c) for a, b, c in det.spikes]
    det.worst_rise = 0.0 if worst == -math.inf else worst
    det.worst_step = worst_step
    return det


def borderline(det: Detection, params: dict) -> bool:
    """The worst sustained rise lies within ``review_margin`` of the threshold: the measurement
    cannot tell the training's own behaviour from this machine's numerics (a fix rerun on another
    CPU takes a slightly different path), so a person looks."""
    return det.learning_epoch is not None and \
        abs(det.worst_rise - params["rise"]) <= params["review_margin"] * params["rise"]


def only_borderline(det: Detection, params: dict) -> bool:
    """Spiky only by a rise within the review margin above the threshold (no spike can then have
    crossed the untrained loss): the benefit of the doubt goes to the student, with a review."""
    return det.spiky and borderline(det, params) and det.worst_rise <= params["rise"] * (1 + params["review_margin"])


def describe(det: Detection, steps_per_epoch: int, limit: int = 5) -> str:
    bits = [f"epoch {a // steps_per_epoch + 1} (steps {a + 1}-{b + 1}, batch loss up to {peak:.2f})"
            for a, b, peak in det.spikes[:limit]]
    more = f" and {len(det.spikes) - limit} more" if len(det.spikes) > limit else ""
    return f"{len(det.spikes)} spike(s): " + "; ".join(bits) + more
