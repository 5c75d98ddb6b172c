"""The calibration behind the grader's time limits (grader/limits.py), measured in one run.

Times the calibration workload as plain Python with torch's default threads (the reference
machine's setting: what ``limits.REFERENCE_S`` holds, measured on this project's unloaded
2-core machines) and in the grader's sandboxed kernel with the rubric's threads, and prints
both, their ratio and the scale the rubric's limits get.

    .venv/bin/python bench/calibrate_limits.py [--rubric rubrics/hw2.toml] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader import limits  # noqa: E402
from grader.rubric import load_rubric  # noqa: E402


def plain(repeats: int) -> float:
    """Median of one repetition, in a plain python process with torch's default threads."""
    out = subprocess.run([sys.executable, "-c", limits.calibration_code(repeats)], check=True,
                         capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith(limits.CALIBRATION_MARK))
    return statistics.median(json.loads(line[len(limits.CALIBRATION_MARK):]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rubric", type=Path, default=REPO / "rubrics" / "hw2.toml")
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each kind (default 3)")
    args = ap.parse_args()
    e = load_rubric(args.rubric).execution
    ref = [plain(limits.REPEATS) for _ in range(args.repeat)]
    sbx = [limits.measure(e.threads, e.memory_mb) for _ in range(args.repeat)]
    r, s = statistics.median(ref), statistics.median(sbx)
    print(f"plain python, default threads : median {r:.3f} s  (runs {', '.join(f'{x:.3f}' for x in ref)})")
    print(f"sandbox kernel, {e.threads} thread(s)    : median {s:.3f} s  (runs {', '.join(f'{x:.3f}' for x in sbx)})")
    print(f"sandbox / plain               : {s / r:.2f}x")
    print(f"limits.REFERENCE_S            : {limits.REFERENCE_S:.3f} s")
    lim = limits.limits_for(e.cell_timeout_s, e.notebook_timeout_s, e.limits, e.limit_slack,
                            e.limit_max_scale, s)
    print(f"limits here                   : {lim.cell_s:g} s per cell, {lim.notebook_s:g} s per notebook "
          f"(x{lim.scale:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
