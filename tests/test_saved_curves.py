"""Reading a curve from a notebook's saved outputs (evidence for staff, never points)."""
import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from grader import saved_curves  # noqa: E402


def _curves(spike: bool) -> tuple[list[float], list[float]]:
    train = [1.39 if e < 12 else max(0.02, 1.39 * math.exp(-(e - 12) / 8)) for e in range(100)]
    test = [v * 1.1 for v in train]
    if spike:
        for e in (39, 40, 74):
            train[e] = 2.5
            test[e] = 2.2
    return train, test


def _png(train, test, style="default") -> str:
    with plt.style.context(style):
        fig, axes = plt.subplots(ncols=2, figsize=(9, 4.5))
        for ax, metric in zip(axes, ["loss", "acc"]):
            ax.plot(train if metric == "loss" else [100 - 30 * v for v in train])
            ax.plot(test if metric == "loss" else [100 - 30 * v for v in test])
            ax.legend(["Train", "Test"], loc="best")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def test_plotted_curves_of_the_templates_figure_are_told_apart():
    for style in ("default", ["dark_background", "bmh"]):
        smooth = saved_curves.evidence([{"output_type": "display_data", "data": {"image/png": _png(*_curves(False), style)}}])
        spiky = saved_curves.evidence([{"output_type": "display_data", "data": {"image/png": _png(*_curves(True), style)}}])
        assert smooth.source == spiky.source == "plotted"
        assert smooth.spiky is False and spiky.spiky is True, (style, smooth, spiky)


def test_printed_epochs_are_read_and_a_last_epoch_alone_is_not_a_curve():
    train, _ = _curves(True)
    text = "".join(f"[Epoch {e + 1}/100] loss: {v:.4f}, acc: 50.0% - test_loss: {v:.4f}, test_acc: 50.0%\n"
                   for e, v in enumerate(train))
    ev = saved_curves.evidence([{"output_type": "stream", "name": "stdout", "text": text}])
    assert ev.source == "printed" and ev.points == 100 and ev.spiky
    one = saved_curves.evidence([{"output_type": "stream", "name": "stdout", "text": text.splitlines()[-1]}])
    assert one is None
