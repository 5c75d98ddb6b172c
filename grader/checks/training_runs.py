"""Reading the instrument's record of a notebook's trainings: which run of the section is judged
(the student's fix, not the released training kept as the "before"), in which cells it trained."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


from grader import reference_cache
from grader.checks.base import JudgeContext
from grader.checks.common import resolve
from grader.checks.notebook_text import plain, read_cells, section
from grader.items import Item


@dataclass
class Observed:
    run: dict | None                     # the judged run
    steps: list[int]                     # its step indices in the section's cells
    others: list[dict]                   # other runs of the same size anywhere in the notebook
    section_runs: list[dict]             # every run with a step in the section
    cells: list[int]                     # execution counts of the section's code cells
    train_cell_index: int | None         # notebook index of the last cell the judged run trained in
    last_count: int | None               # its execution count
    errors: list[str]                    # errors raised in the section's cells
    originals: list[dict] = field(default_factory=list)   # runs that are the released training itself


def expand(rle: Any) -> list:
    out: list = []
    if type(rle) is not list:
        return out
    for pair in rle:
        if type(pair) is list and len(pair) == 2 and type(pair[1]) is int and 0 <= pair[1] <= 10_000_000:
            out += [pair[0]] * pair[1]
    return out


def observe(item: Item, ctx: JudgeContext, runs: list[dict]) -> Observed | str:
    """The judged run: the student's fixed training, the last complete run of the released model in
    the section or in a section after it that is not the released training itself (its per-step
    losses, recomputed by the grader, are ``params.reference_released``); without one, the last
    complete run there (the original, judged as it is); without that, the first run there."""
    if ctx.executed_path is None:
        return "the notebook did not run, so no training could be observed"
    import nbformat
    try:
        nb = nbformat.read(str(ctx.executed_path), as_version=4)
        cells = read_cells(ctx.executed_path)
    except Exception:
        return "the grader's run of the notebook could not be read"
    scope = section(cells, item.params.get("section"))
    if scope is None:
        return f"the heading {plain(item.params.get('section'), 'of this section')} was not found in the notebook"
    start = scope[0].index if scope else len(cells)
    later = [c for c in cells if c.index >= start]          # the section and any the student added after it
    counts, errors, index_of = [], [], {}
    for c in later:
        if c.kind != "code":
            continue
        count = nb.cells[c.index].get("execution_count")
        if isinstance(count, int):
            counts.append(count)
            index_of[count] = c.index
        for o in c.outputs:
            if o.get("output_type") == "error":
                errors.append(f"{o.get('ename')}: {str(o.get('evalue'))[:300]}")
    wanted = set(counts)
    section_runs, steps_of = [], {}
    for run in runs:
        where = expand(run.get("cells"))
        mine = [i for i, c in enumerate(where) if c in wanted]
        if mine:
            section_runs.append(run)
            steps_of[id(run)] = mine
    spe = int(item.params.get("steps_per_epoch", 1))
    n_expected = item.params.get("n_parameters")
    complete = [r for r in section_runs if r.get("n_params") == n_expected
                and len(steps_of[id(r)]) >= int(item.params.get("min_epochs", 1)) * spe]
    released = released_loss(item, ctx)
    originals = [r for r in complete if released is not None and same_curve(r, steps_of[id(r)], released)]
    fixes = [r for r in complete if r not in originals]
    first = fixes[-1] if fixes else complete[-1] if complete else (section_runs[0] if section_runs else None)
    steps = steps_of.get(id(first), []) if first is not None else []
    others = [r for r in runs if r is not first and r.get("n_params") == n_expected
              and int(r.get("steps", 0)) >= spe]
    last_count = expand(first.get("cells"))[steps[-1]] if first is not None else None
    return Observed(first, steps, others, section_runs, counts,
                    index_of.get(last_count) if last_count is not None else None, last_count, errors,
                    originals=originals)


def saved_evidence(ctx: JudgeContext, obs: Observed):
    """The judged training cell's outputs in the notebook as submitted (the student's own run)."""
    from grader import saved_curves
    if ctx.notebook_path is None or obs.train_cell_index is None:
        return None
    try:
        cells = read_cells(ctx.notebook_path)
        return saved_curves.evidence(cells[obs.train_cell_index].outputs)
    except Exception:
        return None


def released_loss(item: Item, ctx: JudgeContext) -> list[float] | None:
    """The released training's per-step losses on this machine, computed once per machine (and
    held once per process by grader/reference_cache.py)."""
    ref = item.params.get("reference_released")
    if not ref:
        return None
    return reference_cache.cached(ref, ctx.reference_dir, ctx.cache_dir,
                                  lambda: [float(v) for v in resolve(ref, ctx.reference_dir)()])


def same_curve(run: dict, steps: list[int], reference: list[float], rtol: float = 1e-3) -> bool:
    """The run's recorded losses are the reference's, step for step (to the 5 digits recorded)."""
    loss = run.get("loss") if type(run.get("loss")) is list else []
    if len(steps) != len(reference):
        return False
    for i, want in zip(steps, reference):
        got = loss[i] if i < len(loss) else None
        if not isinstance(got, (int, float)) or abs(got - want) > rtol * max(abs(want), 1e-3):
            return False
    return True


def none_observed(item: Item, obs: Observed) -> str:
    why = (f"Section {plain(item.params.get('section'), '')} did not train: the grader observed no optimizer step "
           f"in its cells")
    if obs.errors:
        why += f" (a cell there raised {obs.errors[0]})"
    return why
