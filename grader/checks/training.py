"""Check kind ``training``: a training run measured by the grader, not by the notebook.

Instrumentation (grader/probe/training_instrument.py) is installed in the kernel before the
first student cell (``prelude``). It records, at every optimizer step, the loss of the
batch (the scalar that was back-propagated), the norm of the gradient the step applies,
the learning rate, IPython's execution count and a fingerprint of the model's input;
the weights before the first step, the first batch, and the weights at the end of each
cell. The trusted side maps steps to cells through the executed notebook and judges one run
from the section named by ``params.section`` on (the section and any the student added after
it): the student's fix, i.e. the last complete run of the released model whose per-step losses
are not those of the released training itself (``reference_released``, recomputed by the
grader on this machine: a notebook that keeps the original run first, or reruns it afterwards
for the extra credit, has it judged as the "before", never as the fix). A fix made inside the
shared training functions counts like any other: steps are observed wherever they come from.

``params.measure``:
  "spikes"        the run is the released one (parameter count, initial weights, first batch
                  and data stream as the reference, at least ``min_epochs``) and the
                  spike detector (``params.detector``) finds no spike in its per-step loss,
                  recomputed here (grader/checks/replay.py) from the weights before each
                  step; a back-propagated value that disagrees is tampering (0, review)
  "accuracy"      the run's model, with its weights at the end of the section's training cell,
                  classifies the grader's held-out batches (``heldout``) at least ``min_accuracy``
  "extra_credit"  plots after the training cell, a second run of the same model (before/after)
                  and code that reads gradients and weights; uncertain cases are flagged for review

Other params: section (heading regex), n_parameters, steps_per_epoch, min_epochs,
stream_epochs, reference_initial ("module:function" -> state_dict), reference_data
("module:function"(config=...) -> (train, test) generators), reference_config
("module:NAME", a dataclass with ``data_seed``), reference_released ("module:function" -> the
released training's per-step losses), reference_model ("module:function" -> a fresh module of the
released class), reference_batches ("module:function" -> iterator of (input, target), the released
stream's batches in order), reference_loss ("module:function"(model, input, target) -> the batch
loss), batch_pool (how many stream batches may be generated to find a run's batches),
heldout {batches},
min_accuracy, min_images, evidence {gradients = [regex], weights = [regex]}, requires.

The spike detector (grader/checks/spikes.py) takes every parameter from ``params.detector``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from grader import reference_cache
from grader.checks.base import JudgeContext, PlanContext, SubResult, not_run, result
from grader.checks.common import Params, item_seed, load_answer, resolve
from grader.checks.gating import required
from grader.checks.notebook_text import plain, read_cells, section
from grader.checks.replay import BatchPool, Replay, replay
from grader.checks.spikes import DETECTOR_KEYS, Detection, describe, detect
from grader.items import Item
from grader.probe import wire

MEASURES = ("spikes", "accuracy", "extra_credit")
KEYS = {"measure", "section", "n_parameters", "steps_per_epoch", "min_epochs", "stream_epochs",
        "reference_initial", "reference_data", "reference_config", "heldout", "min_accuracy",
        "min_images", "evidence", "detector", "requires", "curve_digits", "reference_released",
        "reference_model", "reference_batches", "reference_loss", "batch_pool", "seed_call"}

# Loaded from its file (grader/probe/wire.py: never by name); the probe finds the instance in
# sys.modules afterwards.
PRELUDE = wire.loader_code("training_instrument.py", "_gm.install(trajectory_sizes=[{n_params}])",
                           register_as="_grader_instrument")


# ---------------------------------------------------------------- reading the record

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


def _saved_evidence(ctx: JudgeContext, obs: Observed):
    """The judged training cell's outputs in the notebook as submitted (the student's own run)."""
    from grader import saved_curves
    if ctx.notebook_path is None or obs.train_cell_index is None:
        return None
    try:
        cells = read_cells(ctx.notebook_path)
        return saved_curves.evidence(cells[obs.train_cell_index].outputs)
    except Exception:
        return None


_RELEASED: dict[tuple, list[float]] = {}


def released_loss(item: Item, ctx: JudgeContext) -> list[float] | None:
    """The released training's per-step losses on this machine, computed once per machine."""
    ref = item.params.get("reference_released")
    if not ref:
        return None
    key = (ref, str(ctx.reference_dir))
    if key not in _RELEASED:
        _RELEASED[key] = list(reference_cache.cached(ref, ctx.reference_dir, ctx.cache_dir,
                                                     lambda: [float(v) for v in resolve(ref, ctx.reference_dir)()]))
    return _RELEASED[key]


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


def _none_observed(item: Item, obs: Observed) -> str:
    why = (f"Section {plain(item.params.get('section'), '')} did not train: the grader observed no optimizer step "
           f"in its cells")
    if obs.errors:
        why += f" (a cell there raised {obs.errors[0]})"
    return why


# ---------------------------------------------------------------- the kind

class Training:
    name = "training"

    def validate(self, item: Item) -> None:
        p = Params(item)
        p.only(KEYS)
        measure = p.str("measure", required=True)
        if measure not in MEASURES:
            raise p.err("measure", f"expected one of {', '.join(MEASURES)}, got {measure!r}")
        sec = p.str("section", required=True)
        try:
            re.compile(sec)
        except re.error:
            raise p.err("section", f"not a valid regular expression: {sec!r}") from None
        if (p.int("n_parameters", required=True) or 0) < 1:
            raise p.err("n_parameters", "expected a positive integer")
        if (p.int("steps_per_epoch", required=True) or 0) < 1:
            raise p.err("steps_per_epoch", "expected a positive integer")
        required(item)
        if measure == "spikes":
            for key in ("reference_initial", "reference_data", "reference_config", "reference_model",
                        "reference_batches", "reference_loss"):
                v = p.str(key, required=True)
                if ":" not in v:
                    raise p.err(key, "expected \"package.module:name\"")
            p.int("min_epochs", 1), p.int("stream_epochs", 1), p.int("curve_digits", 4)
            if (p.int("batch_pool", 1) or 0) < 1:
                raise p.err("batch_pool", "expected a positive integer")
            det = p.table("detector")
            unknown = set(det) - set(DETECTOR_KEYS)
            if unknown:
                raise p.err("detector", f"unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(DETECTOR_KEYS)}")
            missing = [k for k in DETECTOR_KEYS if k not in det]
            if missing:
                raise p.err("detector", f"missing key(s) {', '.join(missing)}: the detector has no defaults "
                                        "(each assignment calibrates its own)")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in det.values()):
                raise p.err("detector", "expected numbers")
            if int(det["window"]) < 1:
                raise p.err("detector.window", "expected a positive integer")
        elif measure == "accuracy":
            for key in ("reference_data", "reference_config"):
                if ":" not in (p.str(key, required=True) or ""):
                    raise p.err(key, "expected \"package.module:name\"")
            acc = p.num("min_accuracy", required=True)
            if not 0 <= acc <= 1:
                raise p.err("min_accuracy", f"expected a fraction between 0 and 1, got {acc!r}")
            held = p.table("heldout")
            if not isinstance(held.get("batches", 16), int) or held.get("batches", 16) < 1:
                raise p.err("heldout.batches", "expected a positive integer")
        else:
            if (p.int("min_images", 1) or 0) < 1:
                raise p.err("min_images", "expected a positive integer")
            ev = p.table("evidence")
            for k, v in ev.items():
                if k not in ("gradients", "weights") or not isinstance(v, list):
                    raise p.err(f"evidence.{k}", "expected gradients = [regex, ...] and weights = [regex, ...]")
                for rx in v:
                    try:
                        re.compile(rx)
                    except (re.error, TypeError):
                        raise p.err(f"evidence.{k}", f"not a valid regular expression: {rx!r}") from None

    def prelude(self, item: Item) -> str:
        # Every training item of a rubric names the same model size, so the preludes are one.
        return PRELUDE.format(n_params=int(item.params["n_parameters"]))

    def probe_actions(self, item: Item, plan: PlanContext | None = None) -> list[dict]:
        p = item.params
        action = {"action": "training", "item": item.id, "n_params": int(p["n_parameters"]),
                  "batches": int(p.get("stream_epochs", 0)) * int(p["steps_per_epoch"])}
        if p["measure"] == "spikes":
            action["trajectory"] = True
        if p["measure"] == "accuracy":
            if plan is None:
                raise ValueError("the accuracy measure needs a plan context")
            inputs, labels = heldout(item, plan.seed, plan.reference_dir)
            torch.save({"inputs": inputs}, plan.in_dir / f"{item.id}.pt")
            plan.private[item.id] = {"labels": labels}
        return [action]

    def judge(self, item: Item, ctx: JudgeContext):
        if not ctx.probe_ok:
            return not_run(item, ctx.probe_error or "the notebook did not run far enough to be checked")
        answer = load_answer(ctx.probe_dir, item.id)
        if answer.problem:
            return result(item, [SubResult("all", 0.0, item.points, answer.problem)])
        if answer.data.get("installed") is not True:
            return result(item, [SubResult("all", 0.0, item.points, "the grader's training instrumentation "
                                           "was not in place, so the training could not be measured")],
                          review=True)
        runs = [r for r in answer.data.get("runs", []) if type(r) is dict]
        obs = observe(item, ctx, runs)
        if isinstance(obs, str):
            return result(item, [SubResult("all", 0.0, item.points, obs)])
        measure = item.params["measure"]
        if measure == "spikes":
            return self._spikes(item, ctx, obs, answer)
        if measure == "accuracy":
            return self._accuracy(item, ctx, obs, answer)
        return self._extra(item, ctx, obs)

    # -- spikes

    def _spikes(self, item: Item, ctx: JudgeContext, obs: Observed, answer: Any):
        p = item.params
        spe = int(p["steps_per_epoch"])
        if obs.run is None:
            return result(item, [SubResult("all", 0.0, item.points, _none_observed(item, obs))])
        run = obs.run
        rep = _replay(item, ctx, run, answer, obs.steps)
        loss = [None] * len(obs.steps) if isinstance(rep, str) else rep.loss
        det = detect(loss, spe, p.get("detector"))
        observed = (f"observed {det.steps} optimizer steps ({det.steps / spe:g} epochs of {spe} batches, "
                    f"{run.get('optimizer')}) in the section's cells")
        problems = self._unchanged(item, ctx, run, answer, det)
        params = p["detector"]
        # A measurement near the threshold goes to staff whatever else was found.
        borderline = det.learning_epoch is not None and \
            abs(det.worst_rise - params["rise"]) <= params["review_margin"] * params["rise"]
        data = {"plot": "training_curve", "title": item.title, "steps_per_epoch": spe,
                "loss": _rounded(loss, int(p.get("curve_digits", 4))),
                "spikes": [[a, b] for a, b, _ in det.spikes],
                "learning_step": None if det.learning_epoch is None else (det.learning_epoch - 1) * spe,
                "steps": det.steps, "epochs": det.epochs, "optimizer": run.get("optimizer"),
                "worst_rise": round(det.worst_rise, 4), "runs_in_section": len(obs.section_runs)}
        if problems:
            why = f"{observed}; " + "; ".join(problems)
            if borderline:
                why += (f"; the largest sustained rise, {det.worst_rise:.2f}, is also close to the threshold of "
                        f"{params['rise']:g}: staff will look at the curve")
            return result(item, [SubResult("all", 0.0, item.points, why)], review=borderline, data=data)
        if isinstance(rep, str):
            return result(item, [SubResult("all", 0.0, item.points, f"{observed}; the grader could not recompute "
                                            f"the training's losses: {rep}")], review=True, data=data)
        if rep.tampered:
            if rep.disagree:
                step, got, want = rep.disagree[0]
                data["recorded_disagrees"] = len(rep.disagree)
                why = (f"the value the notebook back-propagated differs from the batch loss the grader computes "
                       f"with the same weights on the same batch at {len(rep.disagree)} of {det.steps} steps "
                       f"(first at step {step + 1}: {got:.4g} back-propagated, {want:.4g} computed), so the "
                       f"recorded curve is not the training's")
            else:
                why = f"{rep.fabricated}: the record of the training was altered"
            msg = (f"{observed}; {why}. The item scores 0 and goes to staff (a loss with a deliberate extra "
                   f"term is for them to accept)")
            return result(item, [SubResult("all", 0.0, item.points, msg)], message=msg, review=True, data=data)
        review = False
        notes = []
        if det.missing > 0.05 * max(det.steps, 1):
            return result(item, [SubResult("all", 0.0, item.points, f"{observed}, but the loss of {det.missing} "
                                            "training batches could not be recomputed: their inputs are not "
                                            "batches of the released data stream")], review=True, data=data)
        if rep.last_weights_differ:
            review = True
            notes.append("the weights after the last step are not those of the model at the end of its cell "
                         "(changed after training?); staff will look")
        if det.learning_epoch is None:
            return result(item, [SubResult("all", 0.0, item.points,
                                            f"{observed}: the training never learned (no epoch's mean batch loss "
                                            f"fell below {params['learned_below']:g}; the untrained loss is "
                                            f"{params['ceiling']:.3f}), so it has no spikes but does not fix them either")],
                          data=data)
        if borderline:
            review = True
            notes.append(f"borderline: the largest sustained rise is {det.worst_rise:.2f} against a threshold "
                         f"of {params['rise']:g}; staff will look at the curve")
        if len(obs.section_runs) > 1:
            n_orig = sum(1 for r in obs.originals if r is not run)
            notes.append(f"the notebook trains this model {len(obs.section_runs)} times from this section on; the "
                         + ("judged run is the last one that is not the released training" if run not in obs.originals
                            else "none differs from the released training, so the last one was judged")
                         + (f" ({n_orig} identical to the released training: the 'before' of the extra credit)"
                            if n_orig else ""))
            # Two different fixes that disagree: a person decides which one the student meant.
            candidates = [r for r in obs.section_runs if r is not run and r not in obs.originals
                          and r.get("n_params") == p["n_parameters"]]
            for r in candidates:
                where = expand(r.get("cells"))
                ls = r.get("loss") if type(r.get("loss")) is list else []
                mine = [ls[i] if i < len(ls) else None for i, c in enumerate(where) if c in set(obs.cells)]
                if len(mine) >= int(p.get("min_epochs", 1)) * spe and detect(mine, spe, p.get("detector")).spiky != det.spiky:
                    review = True
                    notes.append("another complete training from this section on gets a different verdict; staff will look")
                    break
        saved = _saved_evidence(ctx, obs)
        if saved is not None and saved.spiky != det.spiky:
            review = True
            shown = "its printed per-epoch losses" if saved.source == "printed" else "its plotted loss curve"
            notes.append(f"the notebook as handed in (its own run, {shown}) looks "
                         f"{'spiky' if saved.spiky else 'smooth'}, while the grader's run here is "
                         f"{'spiky' if det.spiky else 'smooth'}; staff will compare them (the saved output earns "
                         "no points: it is evidence for a person)")
            data["saved_output"] = {"source": saved.source, "spiky": saved.spiky, "worst_rise": saved.worst_rise}
        if det.spiky:
            msg = (f"{observed}: the grader's own measurement of every training batch's loss still has "
                   f"{describe(det, spe)}. A spike here is a rise of the running median of "
                   f"{int(params['window'])} batch losses more than {params['rise']:g} above the lowest "
                   f"epoch-mean loss reached so far, or above the untrained loss ({params['ceiling']:.3f}), after "
                   f"learning started (epoch "
                   f"{det.learning_epoch}). What the notebook plots or prints is not used: smoothing or "
                   f"averaging the plotted curve does not change the training")
            return result(item, [SubResult("all", 0.0, item.points, msg)], message=msg + (
                "; " + "; ".join(notes) if notes else ""), review=review, data=data)
        msg = (f"{observed}: no spike after learning started (epoch {det.learning_epoch}); largest sustained "
               f"rise {det.worst_rise:.2f} (threshold {params['rise']:g})")
        return result(item, [SubResult("all", item.points, item.points, msg)],
                      message=msg + ("; " + "; ".join(notes) if notes else ""), review=review, data=data)

    def _unchanged(self, item: Item, ctx: JudgeContext, run: dict, answer: Any, det: Detection) -> list[str]:
        """What differs from the released setup: parameter count, initial weights, first batch,
        data stream, length of the training."""
        p = item.params
        spe = int(p["steps_per_epoch"])
        out = []
        if run.get("n_params") != p["n_parameters"]:
            return [f"the section's training updates {run.get('n_params')} parameters (tensors of shapes "
                    f"{run.get('shapes')}), the released model has {p['n_parameters']}: the model was changed"]
        ref_init = resolve(p["reference_initial"], ctx.reference_dir)()
        got = [t for k, t in sorted(answer.tensors.items()) if k.startswith(f"r{run['index']}.init.")]
        if not got:
            out.append("the grader could not read the weights before the first training step")
        elif not _same_multiset(got, list(ref_init.values())):
            out.append(f"the model does not start from the weights that {p.get('seed_call', 'the released seed')} "
                       "gives in the released notebook: the seed (or the random draws before the model is built) "
                       "was changed")
        first = answer.tensors.get(f"r{run['index']}.input")
        stream = reference_stream(item, ctx)
        if first is None:
            out.append("the grader could not see the first training batch")
        elif tuple(first.shape) != tuple(stream.first.shape) or not torch.equal(first.float(), stream.first.float()):
            out.append("the first training batch is not the released data stream's: the data generators, "
                       "their seed or numpy's random state were changed")
        else:
            batch = run.get("batch") if type(run.get("batch")) is list else []
            for i, want in enumerate(stream.prints):
                if i >= len(batch) or i >= det.steps:
                    break
                if not isinstance(batch[i], (int, float)) or abs(batch[i] - want) > 1e-6 * max(1.0, abs(want)):
                    out.append(f"the training batches differ from the released data stream from step {i + 1} "
                               f"(epoch {i // spe + 1}) on: the data generators were re-created or re-seeded")
                    break
        need = int(p.get("min_epochs", 0))
        if det.steps < need * spe:
            out.append(f"only {det.steps / spe:g} epochs were trained; the released training runs {need} "
                       "(the spikes of the original appear late, so the fix is judged over the same length)")
        return out

    # -- accuracy

    def _accuracy(self, item: Item, ctx: JudgeContext, obs: Observed, answer: Any):
        if obs.run is None:
            return result(item, [SubResult("all", 0.0, item.points, _none_observed(item, obs))])
        priv = ctx.private.get(item.id)
        preds = obs.run.get("predictions") if type(obs.run.get("predictions")) is dict else {}
        entry = preds.get(str(obs.last_count))
        if priv is None:
            return result(item, [SubResult("all", 0.0, item.points, "the grader has no held-out data for this item")])
        if type(entry) is dict:
            return result(item, [SubResult("all", 0.0, item.points, f"the trained model could not be run on the "
                                            f"grader's data: {entry.get('error')}")])
        pred = answer.tensors.get(entry) if isinstance(entry, str) else None
        labels = priv["labels"]
        if pred is None or pred.shape != labels.shape:
            return result(item, [SubResult("all", 0.0, item.points, "the grader could not evaluate the model "
                                            "trained in the section (it was not found after the notebook)")])
        acc = float((pred == labels).double().mean())
        need = float(item.params["min_accuracy"])
        msg = (f"accuracy of the section's trained model on the grader's {labels.shape[0]} held-out "
               f"sequences: {100 * acc:.1f}% (needs at least {100 * need:g}%)")
        return result(item, [SubResult("all", item.points if acc >= need else 0.0, item.points, msg)], message=msg)

    # -- extra credit

    def _extra(self, item: Item, ctx: JudgeContext, obs: Observed):
        p = item.params
        need = int(p.get("min_images", 2))
        images = 0
        if obs.train_cell_index is not None and ctx.executed_path is not None:
            cells = read_cells(ctx.executed_path)
            images = sum(1 for c in cells if c.index > obs.train_cell_index and c.kind == "code"
                         for o in c.outputs for k in (o.get("data") or {}) if k.startswith("image/"))
        code = ""
        if ctx.notebook_path is not None:
            try:
                code = "\n".join(c.source for c in read_cells(ctx.notebook_path) if c.kind == "code")
            except Exception:
                code = ""
        evidence = p.get("evidence", {})
        found = {k: any(re.search(rx, code) for rx in v) for k, v in evidence.items()}
        if obs.run is None:
            return result(item, [SubResult("all", 0.0, item.points, _none_observed(item, obs))])
        if images < need:
            return result(item, [SubResult("all", 0.0, item.points, f"presence check: {images} plot(s) after the "
                                            f"section's training cell in the grader's run, at least {need} expected")])
        missing = []
        if not obs.others:
            missing.append("only one training of the model was observed (before and after the fix need two)")
        missing += [f"no code that reads the {k} was found" for k, ok in found.items() if not ok]
        what = (f"presence check: {images} plot(s) after the training cell, {1 + len(obs.others)} training run(s) "
                f"of the model observed")
        if missing:
            half = round(item.points / 2, 4)
            msg = f"{what}; uncertain: {'; '.join(missing)}; provisional points, staff will review"
            return result(item, [SubResult("all", half, item.points, msg)], message=msg, review=True)
        return result(item, [SubResult("all", item.points, item.points, what + " (content not judged)")],
                      message=what + " (content not judged)")


# ---------------------------------------------------------------- reference data (trusted side)

_POOLS: dict[tuple, BatchPool] = {}


def _replay(item: Item, ctx: JudgeContext, run: dict, answer: Any, steps: list[int]) -> Replay | str:
    """The judged steps' losses computed here from the weights the instrument handed back."""
    p = item.params
    traj = answer.tensors.get(f"r{run['index']}.traj")
    shapes = run.get("shapes")
    if traj is None:
        return ("the weights before each step were not handed back (the training ran more steps "
                "than the instrument keeps, or the instrument was disturbed)")
    if type(shapes) is not list or not all(type(s) is list and all(type(d) is int and d >= 0 for d in s)
                                           for s in shapes):
        return "the instrument's record of the parameter shapes is not readable"
    digests = run.get("digests") if type(run.get("digests")) is list else []
    recorded = run.get("loss") if type(run.get("loss")) is list else []
    limit = int(p.get("batch_pool", 4 * int(p.get("min_epochs", 1)) * int(p["steps_per_epoch"])))
    key = (p["reference_batches"], str(ctx.reference_dir), limit)
    if key not in _POOLS:
        # The whole pool is generated once per machine (the stream is the same for every student).
        state = reference_cache.cached(f"{p['reference_batches']} pool {limit}", ctx.reference_dir, ctx.cache_dir,
                                       lambda: BatchPool(resolve(p["reference_batches"], ctx.reference_dir)(),
                                                         limit).filled().state())
        _POOLS[key] = BatchPool.from_state(state)
    model = resolve(p["reference_model"], ctx.reference_dir)()
    loss_fn = resolve(p["reference_loss"], ctx.reference_dir)
    after = answer.tensors.get(f"r{run['index']}.after")
    end = answer.tensors.get(f"r{run['index']}.end")
    return replay(traj.float(), shapes, steps, recorded, digests, model, loss_fn, _POOLS[key],
                  after=after.float() if after is not None else None,
                  end=end.float() if end is not None else None)


@dataclass
class Stream:
    first: torch.Tensor
    prints: list[float]


_STREAMS: dict[tuple, Stream] = {}


def _generators(item: Item, reference_dir, data_seed: int | None = None):
    make = resolve(item.params["reference_data"], reference_dir)
    config = resolve(item.params["reference_config"], reference_dir)
    if data_seed is not None:
        config = dataclasses.replace(config, data_seed=data_seed)
    return make(config=config)


def reference_stream(item: Item, ctx: JudgeContext) -> Stream:
    """The released training batches of the first ``stream_epochs`` epochs (test batches are
    drawn from the same stream between epochs, as the notebook does)."""
    import numpy as np
    key = (item.params["reference_data"], item.params["reference_config"], str(ctx.reference_dir),
           int(item.params.get("stream_epochs", 0)))
    if key not in _STREAMS:
        state = np.random.get_state()
        try:
            train, test = _generators(item, ctx.reference_dir)
            prints, first = [], None
            for _ in range(max(1, key[3])):
                for b in range(len(train)):
                    x = torch.from_numpy(np.asarray(train[b][0])).float()
                    first = x if first is None else first
                    prints.append(_fingerprint(x))
                for b in range(len(test)):
                    test[b]
        finally:
            np.random.set_state(state)
        _STREAMS[key] = Stream(first, prints[: key[3] * len(train)])
    return _STREAMS[key]


def _fingerprint(x: torch.Tensor) -> float:
    flat = x.reshape(-1).double()
    return float((flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum())


def heldout(item: Item, seed: int, reference_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh sequences of the section's task from another data seed; labels stay here."""
    import numpy as np
    held = item.params.get("heldout", {})
    state = np.random.get_state()
    try:
        gen, _ = _generators(item, reference_dir, data_seed=item_seed(seed, item.id) % 2**31)
        xs, ys = [], []
        for b in range(int(held.get("batches", 16))):
            x, y = gen[b]
            xs.append(torch.from_numpy(np.asarray(x)).float())
            ys.append(torch.from_numpy(np.asarray(y)).argmax(dim=1))
    finally:
        np.random.set_state(state)
    return torch.cat(xs), torch.cat(ys).to(torch.int64)


def _same_multiset(got: list[torch.Tensor], want: list[torch.Tensor]) -> bool:
    if len(got) != len(want):
        return False
    left = list(want)
    for g in got:
        hit = next((i for i, w in enumerate(left) if tuple(w.shape) == tuple(g.shape)
                    and torch.equal(w.to(g.dtype), g)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _rounded(values: list, digits: int) -> list:
    return [None if v is None or v != v else float(f"{v:.{digits}g}") for v in values]
