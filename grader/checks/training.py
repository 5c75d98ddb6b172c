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
  "before_after"  plots after the training cell, a second run of the same model (before and
                  after the fix) and code that reads what ``evidence`` names (gradients,
                  weights); uncertain cases are flagged for review

Other params: section (heading regex), n_parameters, steps_per_epoch, min_epochs,
stream_epochs, reference_initial ("module:function" -> state_dict), reference_stream
("module:function"(epochs) -> the released training's inputs of its first epochs, in the order the
released notebook draws them), reference_released ("module:function" -> the released training's
per-step losses), reference_model ("module:function" -> a fresh module of the released class),
reference_batches ("module:function" -> iterator of (input, target), the released stream's batches
in order), reference_loss ("module:function"(model, input, target) -> the batch loss),
reference_batch_losses (optional, "module:function"(weights, inputs, targets) -> the losses of many
steps in one call: weights[name] (K, *shape), inputs (K, *batch); the same values, faster), batch_pool
(how many stream batches may be generated to find a run's batches), reference_heldout
("module:function"(seed, batches) -> (inputs, class indices) the notebook never saw), heldout
{batches}, min_accuracy, min_images, evidence {gradients = [regex], weights = [regex]}, requires.

The spike detector (grader/checks/spikes.py) takes every parameter from ``params.detector``.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from grader.checks.base import JudgeContext, PlanContext, SubResult, not_run, result
from grader.checks.common import Params, resolve
from grader.checks.answers import load_answer
from grader.checks.gating import required
from grader.checks.notebook_text import read_cells
from grader.checks.training_reference import (heldout, reference_stream, replay_run, rounded,
                                              same_multiset)
from grader.checks.training_runs import Observed, expand, none_observed, observe, saved_evidence
from grader.checks.spikes import DETECTOR_KEYS, Detection, describe, detect, only_borderline
from grader.checks.spikes import borderline as is_borderline
from grader.items import Item
from grader.probe import wire

MEASURES = ("spikes", "accuracy", "before_after")
KEYS = {"measure", "section", "n_parameters", "steps_per_epoch", "min_epochs", "stream_epochs",
        "reference_initial", "reference_stream", "reference_heldout", "heldout", "min_accuracy",
        "min_images", "evidence", "detector", "requires", "curve_digits", "reference_released",
        "reference_model", "reference_batches", "reference_loss", "reference_batch_losses", "batch_pool",
        "seed_call"}

# Loaded from its file (grader/probe/wire.py: never by name); the probe finds the instance in
# sys.modules afterwards.
PRELUDE = wire.loader_code("training_instrument.py", "_gm.install(trajectory_sizes=[{n_params}])",
                           register_as="_grader_instrument")


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
            for key in ("reference_initial", "reference_stream", "reference_model",
                        "reference_batches", "reference_loss"):
                v = p.str(key, required=True)
                if ":" not in v:
                    raise p.err(key, "expected \"package.module:name\"")
            batched = p.str("reference_batch_losses")
            if batched is not None and ":" not in batched:
                raise p.err("reference_batch_losses", "expected \"package.module:name\"")
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
            if ":" not in (p.str("reference_heldout", required=True) or ""):
                raise p.err("reference_heldout", "expected \"package.module:name\"")
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
            return result(item, [SubResult("all", 0.0, item.points, none_observed(item, obs))])
        run = obs.run
        rep = replay_run(item, ctx, run, answer, obs.steps)
        loss = [None] * len(obs.steps) if isinstance(rep, str) else rep.loss
        det = detect(loss, spe, p.get("detector"))
        observed = (f"observed {det.steps} optimizer steps ({det.steps / spe:g} epochs of {spe} batches, "
                    f"{run.get('optimizer')}) in the section's cells")
        problems = self._unchanged(item, ctx, run, answer, det)
        params = p["detector"]
        # A measurement near the threshold goes to staff whatever else was found.
        borderline = is_borderline(det, params)
        data = {"plot": "training_curve", "title": item.title, "steps_per_epoch": spe,
                "loss": rounded(loss, int(p.get("curve_digits", 4))),
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
        saved = saved_evidence(ctx, obs)
        if saved is not None and saved.spiky != det.spiky:
            review = True
            shown = "its printed per-epoch losses" if saved.source == "printed" else "its plotted loss curve"
            notes.append(f"the notebook as handed in (its own run, {shown}) looks "
                         f"{'spiky' if saved.spiky else 'smooth'}, while the grader's run here is "
                         f"{'spiky' if det.spiky else 'smooth'}; staff will compare them (the saved output earns "
                         "no points: it is evidence for a person)")
            data["saved_output"] = {"source": saved.source, "spiky": saved.spiky, "worst_rise": saved.worst_rise}
        if only_borderline(det, params):
            msg = (f"{observed}: the grader's own measurement of every training batch's loss rises by at "
                   f"most {det.worst_rise:.2f} ({describe(det, spe)}), just above the threshold of {params['rise']:g}: "
                   "too close to tell from how this machine's arithmetic differs from yours, so the points are "
                   "given provisionally and staff will look at the curve")
            return result(item, [SubResult("all", item.points, item.points, msg)],
                          message=msg + ("; " + "; ".join(notes) if notes else ""), review=True, data=data)
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
        elif not same_multiset(got, list(ref_init.values())):
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
            return result(item, [SubResult("all", 0.0, item.points, none_observed(item, obs))])
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

    # -- before and after

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
            return result(item, [SubResult("all", 0.0, item.points, none_observed(item, obs))])
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


