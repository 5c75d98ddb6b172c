"""What a notebook's own saved outputs say about a training curve: evidence for a person.

A submitted notebook holds the outputs of the student's run (on Colab, on a GPU, with another
torch): the loss it printed per epoch, or the curve it plotted. The grader never believes them
for points (it measures the training itself); when they disagree with its own measurement
(smooth there, spiky here, or the reverse) the item is flagged for a staff review with both
facts. This module reads such a curve from printed text or from a plotted PNG, and says
whether it looks spiky, on a scale of the curve's own range (a PNG has no axis values).
"""
from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

_LOSS = re.compile(r"loss\W{0,3}\s*[:=]?\s*(\d+(?:\.\d+)?(?:e-?\d+)?)", re.IGNORECASE)
MIN_POINTS = 10


@dataclass(frozen=True)
class Evidence:
    source: str          # "printed" | "plotted"
    points: int
    spiky: bool
    worst_rise: float    # largest rise above the running minimum after learning, in units of the curve's range


def printed_series(text: str) -> list[float] | None:
    """The first loss number of each printed line that has one ("[Epoch 3/100] loss: 0.41, ..."),
    when there are at least MIN_POINTS such lines."""
    values = []
    for line in text.splitlines():
        m = _LOSS.search(line)
        if m:
            try:
                values.append(float(m.group(1)))
            except ValueError:
                continue
    return values if len(values) >= MIN_POINTS else None


def plotted_series(png: bytes, left_fraction: float = 0.5) -> list[float] | None:
    """The most drawn coloured line in the left part of a figure (the loss panel of a two-panel
    plot), one value per pixel column, larger = higher on the plot; None without such a line."""
    from PIL import Image
    import numpy as np
    try:
        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    except Exception:
        return None
    h, w, _ = img.shape
    img = img[:, : max(1, int(w * left_fraction))]
    colourful = (img.max(axis=2) - img.min(axis=2)) > 60
    if colourful.sum() < 50:
        return None
    # The dominant colour among the colourful pixels, coarsely binned: the first line drawn.
    bins = (img[colourful] // 32)
    keys, counts = np.unique(bins[:, 0] * 64 + bins[:, 1] * 8 + bins[:, 2], return_counts=True)
    key = keys[counts.argmax()]
    mask = colourful & (((img // 32)[:, :, 0] * 64 + (img // 32)[:, :, 1] * 8 + (img // 32)[:, :, 2]) == key)
    # Follow the line from left to right: in each column, the run of line pixels nearest to
    # where it was in the last column (a legend swatch elsewhere in the column is not the line).
    series: list[float] = []
    prev = None
    for x in range(mask.shape[1]):
        rows = np.nonzero(mask[:, x])[0]
        if not rows.size:
            continue
        runs = np.split(rows, np.nonzero(np.diff(rows) > 2)[0] + 1)
        if prev is None:
            pick = max(runs, key=len)
        else:
            pick = min(runs, key=lambda r: min(abs(r[0] - prev), abs(r[-1] - prev)))
        prev = float(np.median(pick))
        series.append(float(h - prev))
    # Legend swatches and markers are short; a curve spans much of the panel.
    return series if len(series) >= 0.3 * mask.shape[1] and len(series) >= MIN_POINTS else None


def judge(series: list[float], learned: float = 0.5, rise: float = 0.25) -> tuple[bool, float]:
    """(spiky, worst rise): after the curve first falls below ``learned`` of its range, a rise of
    more than ``rise`` of its range above the lowest value so far is a spike."""
    lo, hi = min(series), max(series)
    span = hi - lo
    if span <= 0:
        return False, 0.0
    norm = [(v - lo) / span for v in series]
    start = next((i for i, v in enumerate(norm) if v < learned), None)
    if start is None:
        return False, 0.0
    best, worst = norm[start], 0.0
    for v in norm[start:]:
        best = min(best, v)
        worst = max(worst, v - best)
    return worst > rise, round(worst, 3)


def evidence(outputs: list[dict]) -> Evidence | None:
    """The curve a cell's saved outputs show: printed per-epoch losses first, else its first plot."""
    text = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for o in outputs if o.get("output_type") == "stream")
    series = printed_series(text)
    if series is not None:
        spiky, worst = judge(series)
        return Evidence("printed", len(series), spiky, worst)
    for o in outputs:
        data = o.get("data") or {}
        png = data.get("image/png")
        if isinstance(png, list):
            png = "".join(png)
        if isinstance(png, str):
            try:
                raw = base64.b64decode(png)
            except ValueError:
                continue
            series = plotted_series(raw)
            if series is not None:
                spiky, worst = judge(series)
                return Evidence("plotted", len(series), spiky, worst)
    return None
