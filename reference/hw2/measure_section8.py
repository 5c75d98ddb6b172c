"""Measure Section 8 of 08-seq_classification under several trainings; record the curves.

Writes reference/hw2/data/section8_curves.json: the configuration, library
versions and, per training variant, the per-step loss and gradient norm, the
per-epoch curves the notebook plots, per-parameter gradient/weight norms and a
summary. Values are rounded to 4 significant digits to keep the file small.

Usage: python reference/hw2/measure_section8.py [--variants a,b] [--epochs N] [--out PATH]
Each 100-epoch run takes about a minute on one core.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hw2ref import seqcls  # noqa: E402

DEFAULT_OUT = HERE / "data" / "section8_curves.json"


def _r(values):
    return [float(f"{v:.4g}") for v in values]


def record_to_json(rec: seqcls.Section8Record) -> dict:
    variant = seqcls.VARIANTS[rec.variant]
    out = {
        "description": variant.description,
        "training": {k: v for k, v in dataclasses.asdict(variant).items() if k not in ("name", "description")},
        "seconds": round(rec.seconds, 1),
        "summary": dataclasses.asdict(seqcls.spike_summary(rec)),
        "steps_per_epoch": rec.steps_per_epoch,
        "step_loss": _r(rec.step_loss),
        "step_grad_norm": _r(rec.step_grad_norm),
        "epoch_train_loss": _r(rec.epoch_train_loss),
        "epoch_train_mean_loss": _r(rec.epoch_train_mean_loss),
        "epoch_train_acc": _r(rec.epoch_train_acc),
        "epoch_test_loss": _r(rec.epoch_test_loss),
        "epoch_test_acc": _r(rec.epoch_test_acc),
        "param_grad_norm_max": {k: _r(v) for k, v in rec.param_grad_norm_max.items()},
        "param_weight_norm": {k: _r(v) for k, v in rec.param_weight_norm.items()},
    }
    if len(set(rec.step_lr)) > 1:
        out["step_lr"] = _r(rec.step_lr[:: rec.steps_per_epoch])  # per epoch is enough
    if rec.epoch_reported_loss is not None:
        out["epoch_reported_loss"] = _r(rec.epoch_reported_loss)
        out["true_signal"] = "step_loss/step_grad_norm: the training itself is the original's"
    return out


def table(results: dict[str, dict]) -> str:
    head = (f"{'variant':15} {'learn@':>6} {'maxStepL':>8} {'maxGN':>8} {'maxGN>L':>8} "
            f"{'ep>ln4':>6} {'mean>ln4':>8} {'jumps':>5} {'st>ln4':>6} {'trAcc':>6} {'teAcc':>6} {'sec':>5}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        s = r["summary"]
        f = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        lines.append(
            f"{name:15} {str(s['learning_epoch']):>6} {f(s['max_step_loss_after_learning']):>8} "
            f"{s['max_grad_norm']:8.1f} {f(s['max_grad_norm_after_learning'], 1):>8} "
            f"{s['epochs_last_loss_above_ln4']:6d} {s['epochs_mean_loss_above_ln4']:8d} {s['jumps_over_0_3']:5d} "
            f"{s['steps_above_ln4_after_learning']:6d} {s['final_train_acc']:6.1f} {s['final_test_acc']:6.1f} "
            f"{r['seconds']:5.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(seqcls.VARIANTS))
    ap.add_argument("--epochs", type=int, default=seqcls.SECTION8.max_epochs)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    doc = {
        "what": "Section 8 of 08-seq_classification rerun per training variant (hw2ref.seqcls.section8_run)",
        "config": dataclasses.asdict(seqcls.SECTION8),
        "epochs": args.epochs,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": args.threads,
        "summary_rules": {
            "learning_epoch": "first epoch whose mean train loss < 1.2",
            "epochs_last_loss_above_ln4": "epochs after learning_epoch whose last-batch train or test loss > ln 4",
            "epochs_mean_loss_above_ln4": "epochs after learning_epoch whose mean train loss > ln 4",
            "jumps_over_0_3": "epoch-to-epoch rises > 0.3 of last-batch train loss plus those of test loss",
            "steps_above_ln4_after_learning": "training batches after learning_epoch with loss > ln 4",
        },
        "variants": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants.split(","):
        rec = seqcls.section8_run(name, args.epochs)
        doc["variants"][name] = record_to_json(rec)
        # Written after every run so a long session keeps what it measured.
        args.out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        print(f"{name}: {rec.seconds:.0f} s", flush=True)
    print(table(doc["variants"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
