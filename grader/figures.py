"""Small figures for the feedback, drawn from plain data stored in the record."""
from __future__ import annotations

import io
import math


def training_curve_png(data: dict) -> bytes:
    """The measured per-step training loss, epoch means, and the spikes found (shaded)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    loss = [math.nan if v is None else float(v) for v in data.get("loss", [])]
    spe = max(1, int(data.get("steps_per_epoch", 1)))
    fig = Figure(figsize=(7, 3.2), dpi=80)
    ax = fig.add_subplot()
    ax.plot(range(len(loss)), loss, lw=0.5, color="#4a7ab5", label="loss of each training batch")
    means = []
    for e in range(len(loss) // spe):
        chunk = [v for v in loss[e * spe:(e + 1) * spe] if v == v]
        means.append(sum(chunk) / len(chunk) if chunk else math.nan)
    ax.plot([e * spe + spe / 2 for e in range(len(means))], means, lw=1.2, color="black", label="epoch mean")
    for i, (a, b) in enumerate(data.get("spikes", [])):
        ax.axvspan(a - 0.5, b + 0.5, color="#d62728", alpha=0.35, lw=0, label="spike" if i == 0 else None)
    if data.get("learning_step") is not None:
        ax.axvline(data["learning_step"], color="gray", ls=":", lw=0.8, label="learning started")
    ax.axhline(math.log(4), color="gray", ls="--", lw=0.6)
    ax.set_xlabel(f"training step ({spe} per epoch)")
    ax.set_ylabel("loss")
    ax.set_title(f"{data.get('title', 'training')}: {len(data.get('spikes', []))} spike(s) found", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
