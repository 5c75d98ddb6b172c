"""How often a CNN notebook passes the held-out accuracy item, over the seeds of the grader's reseed.

The rubric reseeds the random generators just before the given training setup cell
(``parts[].reseed``), so a notebook's held-out accuracy no longer depends on what earlier cells
drew; what is left is the spread over seeds. This runs the notebook's code in a fresh Python
process per seed (one torch thread, as in the grader's kernels; shell lines skipped; plots off),
reseeded with that seed before the same cell, and measures the trained ``model`` on the
rubric's held-out images through the notebook's own ``validation_transforms``.

    .venv/bin/python bench/heldout_seeds.py --rubric rubrics/hw2.toml \\
        --notebook reference/hw2/solution/hw2_cnn.ipynb --seeds 100
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r'''
import json, os, re, sys
sys.path[:0] = [{env!r}, {ref!r}]
import _grader_env
_grader_env.install(cuda_fallback=True)
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.show = lambda *a, **k: plt.close("all")
import importlib, nbformat, torch
torch.set_num_threads(1)
nb = nbformat.read({notebook!r}, as_version=4)
rx = re.compile({before!r}, re.MULTILINE)
ns = {{"__name__": "__main__"}}
done = False
for cell in nb.cells:
    if cell.cell_type != "code":
        continue
    src = "\n".join("pass" if l.strip().startswith(("!", "%")) else l for l in cell.source.splitlines())
    if not done and rx.search(cell.source):
        import random, numpy
        random.seed({seed}); numpy.random.seed({seed}); torch.manual_seed({seed})
        done = True
    try:
        exec(compile(src, "<cell>", "exec"), ns)
    except Exception as e:
        print("cell error:", type(e).__name__, str(e)[:200], file=sys.stderr)
    plt.close("all")
module, func = {reference!r}.split(":")
data = getattr(importlib.import_module(module), func)(0, **{generator_args!r})
from PIL import Image
model, transform = ns["model"], ns["validation_transforms"]
model.eval()
with torch.no_grad():
    xs = torch.stack([transform(Image.fromarray(x.numpy(), "RGB")) for x in data["inputs"]])
    pred = torch.cat([model(xs[i:i + 50]).argmax(-1) for i in range(0, len(xs), 50)])
print(json.dumps({{"seed": {seed}, "accuracy": float((pred == data["labels"]).float().mean())}}))
'''


def main() -> int:
    from grader.rubric import load_rubric
    from grader.runner import prepare_datasets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rubric", type=Path, default=REPO / "rubrics" / "hw2.toml")
    ap.add_argument("--part", default="hw2_cnn")
    ap.add_argument("--item", default="hw2_cnn.validation_accuracy")
    ap.add_argument("--notebook", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--first", type=int, default=0)
    args = ap.parse_args()
    rubric = load_rubric(args.rubric)
    part, item = rubric.part(args.part), next(i for i in rubric.items if i.id == args.item)
    need = max(t["min"] for t in item.params["thresholds"]) if "thresholds" in item.params else item.params["min_accuracy"]
    with tempfile.TemporaryDirectory(prefix="heldout-") as tmp:
        datasets = prepare_datasets(rubric, Path(tmp) / "cache")
        work = Path(tmp) / "work"
        work.mkdir()
        for m in part.mounts:
            (work / m.target).symlink_to(datasets[m.source])
        results = []
        for seed in range(args.first, args.first + args.seeds):
            code = CHILD.format(env=str(REPO / "grader" / "kernel_env"), ref=str(rubric.reference_dir),
                                notebook=str(args.notebook.resolve()), before=part.reseed.before, seed=seed,
                                reference=item.reference, generator_args=item.params.get("generator_args", {}))
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
            line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
            acc = json.loads(line)["accuracy"] if line else float("nan")
            results.append(acc)
            print(f"seed {seed}: held-out accuracy {acc:.3f}" + ("" if line else f"  ({out.stderr[-300:]})"), flush=True)
    passed = sum(1 for a in results if a >= need)
    print(f"{passed} of {len(results)} seeds reach {need:g}; lowest {min(results):.3f}, median "
          f"{sorted(results)[len(results) // 2]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
