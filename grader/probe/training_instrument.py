"""Training instrumentation, installed in the student's kernel before the first cell.

The grader measures training itself instead of believing the curves a notebook
records, prints or plots. Installed once per kernel (standard library and torch):

* a global optimizer step pre-hook: at every step of every optimizer, the total L2
  norm of the gradients that step applies (after any clipping the student does), the
  learning rate of the first parameter group, and the loss of the last backward pass;
* a wrapper of ``torch.autograd.backward`` (``Tensor.backward`` goes through it): the
  value of the scalar being differentiated is the training batch's loss, whatever
  computed it (a loss module, ``F.cross_entropy``, a hand-written formula);
* a global module forward pre-hook that remembers the latest input of each module
  between two steps, so the model an optimizer trains (the module whose parameters
  are exactly the optimizer's) and its training batches can be named;
* IPython's execution count at each step, so the trusted side maps steps to cells
  through the executed notebook, and a snapshot of each trained model's weights at
  the end of every cell in which it trained;
* for models of the sizes the rubric names (``trajectory_sizes``), the weights before
  every step and after the last one, so the trusted side recomputes every batch's loss
  itself with the reference model: the value handed to ``backward`` is only compared
  with that recomputation, never judged.

Nothing here is trusted beyond plain values; the grader decides outside the kernel.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import weakref

MAX_STEPS = 200_000            # per run; a runaway loop must not exhaust memory
MAX_RUNS = 64
MAX_SNAPSHOT_PARAMS = 1_000_000
MAX_TRAJECTORY_VALUES = 32_000_000   # all runs together: 128 MB of float32 in the kernel
SMALL_MODEL = 100_000          # parameters: one copy of all gradients per step costs less than a call per tensor
NAME = "_grader_instrument"


class _Run:
    def __init__(self, index: int, opt) -> None:
        self.index = index
        self.optimizer = type(opt).__name__
        params = [p for g in opt.param_groups for p in g["params"]]
        self.param_ids = {id(p) for p in params}
        self.params = params
        self.n_params = int(sum(p.numel() for p in params))
        self.shapes = [list(p.shape) for p in params]
        self.cells: list[int] = []
        self.loss: list[float] = []
        self.gnorm: list[float] = []
        self.step_open = False                # a recorded step whose optimizer update has not returned yet
        self.lr: list[float] = []
        self.batch: list[float] = []      # fingerprint of the model's input at each step
        self.model = None
        self.initial = None               # parameter values before the first step
        self.first_input = None
        self.snapshots: dict[int, list] = {}   # execution count -> parameter values at the cell's end
        self.dirty = False
        self.trajectory: list | None = None    # flat weights before each step (sizes the rubric names)
        self.digests: list[str] = []           # digest of each step's model input (those runs only)
        self.after = None                      # flat weights after the last step


class Instrument:
    def __init__(self, torch, trajectory_sizes=()) -> None:
        self.torch = torch
        self.trajectory_sizes = {int(n) for n in trajectory_sizes}
        self._index: dict[tuple, object] = {}    # (numel, device) -> 1..numel as float64, for fingerprints
        self.trajectory_values = 0
        self.runs: list[_Run] = []
        self.by_opt: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        self.pending_loss = math.nan
        self.recent: dict[int, tuple] = {}
        self.handles: list = []
        self.errors = 0
        # Optimizers whose step is running: an optimizer subclass whose step calls
        # super().step() fires the step hooks twice for one update; the inner call is not a step.
        self.stepping: dict[int, int] = {}
        self.cell_marks: dict[int, int] = {}    # run index -> its number of steps when the current cell began

    # -- hooks

    def execution_count(self) -> int:
        ip = sys.modules.get("IPython")
        shell = ip.get_ipython() if ip is not None else None
        return int(getattr(shell, "execution_count", -1) or -1)

    def on_backward(self, tensors) -> None:
        self.stepping.clear()       # a step that raised never ran its post hook
        t = tensors[0] if isinstance(tensors, (list, tuple)) and len(tensors) == 1 else tensors
        if isinstance(t, self.torch.Tensor) and t.numel() == 1:
            with self.torch.no_grad():
                self.pending_loss = float(t.detach().reshape(()).double())

    def on_forward(self, module, args) -> None:
        if not self.torch.is_grad_enabled() or not args:
            return
        x = args[0]
        if isinstance(x, self.torch.Tensor) and x.is_floating_point():
            self.recent[id(module)] = (module, x)

    def on_step(self, opt, args, kwargs) -> None:
        depth = self.stepping.get(id(opt), 0)
        self.stepping[id(opt)] = depth + 1
        if depth:
            return
        torch = self.torch
        run = self.by_opt.get(opt)
        if run is None:
            if len(self.runs) >= MAX_RUNS:
                return
            run = _Run(len(self.runs), opt)
            self.runs.append(run)
            self.by_opt[opt] = run
            run.initial = [p.detach().clone() for p in run.params] if run.n_params <= MAX_SNAPSHOT_PARAMS else None
            run.model = self._find_model(run)
            if run.n_params in self.trajectory_sizes:
                run.trajectory = []
        if len(run.loss) >= MAX_STEPS:
            return
        if run.trajectory is not None:
            # Over the budget, the oldest other run gives its record up: the last run is the fix.
            while self.trajectory_values + run.n_params > MAX_TRAJECTORY_VALUES and self._evict(run):
                pass
            if self.trajectory_values + run.n_params <= MAX_TRAJECTORY_VALUES:
                run.trajectory.append(self._flat(run))
                self.trajectory_values += run.n_params
            else:
                run.trajectory.append(None)
        x = self.recent.get(id(run.model))[1] if run.model is not None and id(run.model) in self.recent else None
        if run.first_input is None and x is not None and not run.loss and x.numel() <= 1_000_000:
            run.first_input = x.detach().clone()
        run.cells.append(self.execution_count())
        run.loss.append(self.pending_loss)
        run.gnorm.append(math.nan)            # the applied gradients' norm, set when the step is done
        run.step_open = True
        lr = opt.param_groups[0].get("lr", math.nan) if opt.param_groups else math.nan
        run.lr.append(float(lr) if isinstance(lr, (int, float)) else math.nan)
        run.batch.append(self._fingerprint(x) if x is not None else math.nan)
        if run.trajectory is not None:
            run.digests.append(digest(x) if x is not None else "")
        run.dirty = True
        self.pending_loss = math.nan
        self.recent.clear()

    def _evict(self, keep: _Run) -> bool:
        for other in self.runs:
            if other is not keep and other.trajectory:
                self.trajectory_values -= other.n_params * sum(1 for t in other.trajectory if t is not None)
                other.trajectory, other.digests = None, []
                return True
        return False

    def _flat(self, run: _Run):
        torch = self.torch
        with torch.no_grad():
            try:
                # One copy on the parameters' device, then one transfer (a new tensor either way).
                return torch.cat([p.detach().reshape(-1) for p in run.params]).float().cpu()
            except (RuntimeError, TypeError):     # parameters on several devices
                return torch.cat([p.detach().reshape(-1).float().cpu() for p in run.params])

    def _grad_norm(self, opt) -> float:
        torch = self.torch
        with torch.no_grad():
            grads = [p.grad.detach() for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if not grads:
                return 0.0
            if sum(t.numel() for t in grads) <= SMALL_MODEL:
                try:
                    return float(torch.cat([t.reshape(-1) for t in grads]).double().norm())
                except (RuntimeError, TypeError):  # gradients on several devices
                    pass
            # One value read back per step, not one per parameter (each a device sync on a GPU).
            return float(torch.stack([t.double().norm() for t in grads]).norm())

    def _fingerprint(self, x) -> float:
        key = (x.numel(), str(x.device))
        idx = self._index.get(key)
        if idx is None:
            idx = self.torch.arange(1, key[0] + 1, dtype=self.torch.float64, device=x.device)
            if key[0] <= 1_000_000 and len(self._index) < 8:    # the few batch sizes a training uses
                self._index[key] = idx
        return fingerprint(self.torch, x, idx)

    def on_step_done(self, opt, args, kwargs) -> None:
        depth = self.stepping.get(id(opt), 0)
        if depth > 1:
            self.stepping[id(opt)] = depth - 1
            return
        self.stepping.pop(id(opt), None)
        # After the update the gradients are the ones it applied, after whatever an optimizer
        # subclass's step did to them first (clipping, say).
        run = self.by_opt.get(opt)
        if run is not None and run.step_open:
            run.gnorm[-1] = self._grad_norm(opt)
            run.step_open = False
        if run is not None and run.trajectory is not None:
            run.after = self._flat(run)

    def _find_model(self, run: _Run):
        for module, _x in self.recent.values():
            try:
                ids = {id(p) for p in module.parameters()}
            except Exception:
                continue
            if ids == run.param_ids:
                return module
        return None

    def on_cell_start(self, *_args) -> None:
        self.cell_marks = {run.index: len(run.cells) for run in self.runs}

    def on_cell_end(self, result=None, *_args) -> None:
        self.stepping.clear()
        # The count the notebook shows for this cell is the result's: while a cell runs,
        # IPython's own counter already holds the next one (IPython 9), so the steps taken in
        # it are relabelled here.
        count = getattr(result, "execution_count", None)
        if type(count) is not int:
            count = self.execution_count()
        for run in self.runs:
            for i in range(self.cell_marks.get(run.index, 0), len(run.cells)):
                run.cells[i] = count
            if run.dirty and run.n_params <= MAX_SNAPSHOT_PARAMS:
                run.snapshots[count] = [p.detach().clone() for p in run.params]
            run.dirty = False
        self.cell_marks = {}
        self.recent.clear()

    # -- the probe's side

    def dump(self, action: dict, in_dir: str, out_dir: str) -> None:
        torch = self.torch
        item = str(action["item"])
        want = int(action.get("n_params", 0))
        inputs = None
        path = os.path.join(in_dir, item + ".pt")
        if os.path.exists(path):
            inputs = torch.load(path, weights_only=True).get("inputs")
        tensors: dict = {}
        runs = []
        for run in self.runs:
            entry = {"index": run.index, "optimizer": run.optimizer, "n_params": run.n_params,
                     "shapes": run.shapes, "steps": len(run.loss), "cells": _rle(run.cells),
                     "loss": _round(run.loss), "grad_norm": _round(run.gnorm), "lr": _rle(_round(run.lr)),
                     "batch": run.batch if action.get("trajectory") else run.batch[: int(action.get("batches", 0))],
                     "model_found": run.model is not None, "snapshot_cells": sorted(run.snapshots)}
            if run.n_params == want:
                if run.initial is not None:
                    for i, t in enumerate(run.initial):
                        tensors[f"r{run.index}.init.{i}"] = t
                if action.get("trajectory") and run.trajectory:
                    kept = [t for t in run.trajectory if t is not None]
                    entry["trajectory_steps"] = len(kept)
                    entry["digests"] = run.digests
                    if len(kept) == len(run.trajectory):
                        tensors[f"r{run.index}.traj"] = torch.stack(kept)
                    if run.after is not None:
                        tensors[f"r{run.index}.after"] = run.after
                    if run.snapshots:
                        last = max(run.snapshots)
                        tensors[f"r{run.index}.end"] = torch.cat([v.reshape(-1).float().cpu()
                                                                  for v in run.snapshots[last]])
                        entry["end_cell"] = last
                if run.first_input is not None:
                    tensors[f"r{run.index}.input"] = run.first_input
                if inputs is not None and run.model is not None:
                    entry["predictions"] = self._predict(run, inputs, tensors)
            runs.append(entry)
        answer = {"installed": True, "runs": runs, "errors": self.errors}
        if tensors:
            _replace(os.path.join(out_dir, item + ".pt"), lambda tmp: torch.save(tensors, tmp))
        _replace(os.path.join(out_dir, item + ".json"), lambda tmp: _dump_json(tmp, answer))

    def _predict(self, run: _Run, inputs, tensors: dict) -> dict:
        """Class predictions of the run's model on the grader's inputs, with the weights it had
        at the end of each cell it trained in (later cells may have changed it)."""
        torch = self.torch
        out = {}
        model = run.model
        current = [p.detach().clone() for p in run.params]
        was_training = getattr(model, "training", False)
        try:
            model.eval()
            for count, values in sorted(run.snapshots.items()):
                try:
                    with torch.no_grad():
                        for p, v in zip(run.params, values):
                            p.copy_(v)
                        preds = []
                        for start in range(0, inputs.shape[0], 64):
                            y = model(inputs[start:start + 64].clone())
                            preds.append(y[:, -1, :].argmax(-1).to(torch.int64).cpu())
                        key = f"r{run.index}.pred.{count}"
                        tensors[key] = torch.cat(preds)
                        out[str(count)] = key
                except Exception as e:
                    out[str(count)] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        finally:
            with torch.no_grad():
                for p, v in zip(run.params, current):
                    p.copy_(v)
            model.train(was_training)
        return out


def fingerprint(torch, x, idx=None) -> float:
    """A number that tells batches apart: sum over non-zero entries of (flat index + 1) * value.
    The trusted side computes the same from the reference data stream. ``idx``: 1..numel as
    float64 (made here when not given)."""
    with torch.no_grad():
        flat = x.detach().reshape(-1).double()
        if idx is None:
            idx = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
        return float((flat * idx.to(flat.device)).sum())


def digest(x) -> str:
    """The batch itself, exactly: a hash of its float32 bytes (the fingerprint above can collide),
    read in place (a copy of the bytes costs as much as the hash)."""
    import hashlib
    data = x.detach().float().cpu().contiguous().reshape(-1).numpy()
    return hashlib.blake2b(memoryview(data).cast("B"), digest_size=12).hexdigest()


def _round(values: list[float]) -> list:
    out = []
    for v in values:
        if v != v or v in (math.inf, -math.inf):
            out.append(None)
        else:
            out.append(float(f"{v:.5g}"))
    return out


def _rle(values: list) -> list:
    """[[value, count], ...]: cells and learning rates change rarely."""
    out: list = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


def _dump_json(path: str, obj: dict) -> None:
    with open(path, "x", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))


def _replace(path: str, write) -> None:
    tmp = f"{path}.{os.getpid()}.{random.random():.12f}.tmp"
    write(tmp)
    os.replace(tmp, path)


def install(trajectory_sizes=()) -> Instrument:
    """Install the hooks once per kernel; the loader puts this module in sys.modules[NAME]
    first, and the probe finds the instance there after the notebook."""
    existing = sys.modules.get(NAME)
    if existing is not None and getattr(existing, "INSTANCE", None) is not None:
        return existing.INSTANCE
    import torch
    import torch.autograd
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    inst = Instrument(torch, trajectory_sizes)
    original_backward = torch.autograd.backward

    def backward(tensors, *args, **kwargs):
        try:
            inst.on_backward(tensors)
        except Exception:
            inst.errors += 1
        return original_backward(tensors, *args, **kwargs)

    backward.__wrapped__ = original_backward
    backward.__doc__ = original_backward.__doc__
    torch.autograd.backward = backward

    def guarded(method):
        """A hook that never lets the instrument's own failure reach the student's code."""
        def hook(*args):
            try:
                method(*args)
            except Exception:
                inst.errors += 1
            return None            # a forward pre-hook that returns None leaves the input as it is
        return hook

    step_hook, step_done, forward_hook = guarded(inst.on_step), guarded(inst.on_step_done), guarded(inst.on_forward)
    cell_start, cell_end = guarded(inst.on_cell_start), guarded(inst.on_cell_end)

    inst.handles.append(register_optimizer_step_pre_hook(step_hook))
    inst.handles.append(register_optimizer_step_post_hook(step_done))
    inst.handles.append(register_module_forward_pre_hook(forward_hook))
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None else None
    if shell is not None:
        shell.events.register("pre_run_cell", cell_start)
        shell.events.register("post_run_cell", cell_end)
    module = sys.modules.get(NAME)
    if module is not None:
        module.INSTANCE = inst
    return inst


INSTANCE: Instrument | None = None
