"""The grader's own code that runs hidden in a student's kernel, as generated for one part: the
probe after the notebook, the captures of trained objects before it, and the reseeds a rubric
asks for before a given cell (from the code as submitted)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from grader.probe import wire
from grader.rubric import Part

# The probe after the notebook, loaded from its file (grader/probe/wire.py: never by name).
PROBE_CODE = wire.loader_code("kernel_probe.py", "_gm.run_plan('/grader/in/plan.json', '/grader/out')")


RESEED_CODE = ("import random as _gr, numpy as _gn, torch as _gt\n"
               "_gr.seed({seed}); _gn.random.seed({seed}); _gt.manual_seed({seed})\n"
               "del _gr, _gn, _gt\n")


def reseed_cells(part: Part, nb_path: Path) -> dict[int, str]:
    """{notebook cell index: hidden reseed} for the part's ``reseed`` (rubric), from the code as
    submitted: the first code cell matching ``reseed.before``."""
    if part.reseed is None:
        return {}
    from grader.checks.notebook_text import read_cells
    try:
        cells = read_cells(nb_path)
    except Exception:
        return {}
    rx = re.compile(part.reseed.before, re.MULTILINE)
    hit = next((c.index for c in cells if c.kind == "code" and rx.search(c.source)), None)
    return {} if hit is None else {hit: RESEED_CODE.format(seed=int(part.reseed.seed))}


def capture_prelude(captures) -> str:
    """Install grader/probe/capture.py hidden before the first cell; loaded from its file, so a
    module a notebook plants under that name is not what runs."""
    specs = json.dumps([{"name": c.name, "call": c.call, "fallback": c.fallback} for c in captures])
    return wire.loader_code("capture.py", f"_gm.install(_gj.loads({specs!r}))", register_as="_grader_capture",
                            imports="json as _gj")
