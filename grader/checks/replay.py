"""A recorded training's per-step losses, recomputed on the trusted side.

The instrument in the kernel hands back, for a run of a size the rubric names, the weights
before every optimizer step and a digest of every step's model input. Here each batch
is found in the reference data stream by its digest, the step's weights are loaded into
the reference model, and the batch loss is computed by the grader. The value the notebook
handed to ``backward`` is only compared with that: a curve the student chose (a loss shifted
by a detached term, records rewritten after the fact) disagrees with the recomputation.

Rubric hooks (``module:function`` in the reference folder): ``reference_model`` -> a fresh
module of the released class; ``reference_batches`` -> an iterator of ``(input, target)``, the
batches the released data generators hand out, in order; ``reference_loss(model, input,
target)`` -> the batch loss as the assignment defines it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

# A trajectory the kernel could have written after the fact instead of training: one step that
# covers a quarter of the whole way (real trainings of the released model: at most 3% measured,
# unclipped, and 1.6% for the reference fix), updates that all point one way (median cosine of
# consecutive updates 0.13 and -0.22 measured; an interpolated path gives 1), or weights that do
# not move at most steps.
MAX_STEP_SHARE = 0.25
MAX_MEDIAN_COSINE = 0.995
MAX_STILL_SHARE = 0.5

# Loss values are recorded to 5 significant digits; float noise between the kernel's run and
# this one (thread counts, the order of a reduction) is far below this.
RTOL = 1e-3
ATOL = 1e-4


def digest(x: torch.Tensor) -> str:
    """The instrument's digest of a batch (grader/probe/training_instrument.py: same formula): a hash
    of its float32 bytes, so two batches share one only if they are the same batch."""
    import hashlib
    data = x.detach().float().cpu().contiguous().reshape(-1).numpy().tobytes()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


class BatchPool:
    """The reference stream's batches, generated as far as needed, indexed by digest and kept
    compact (a tensor of zeros and ones is stored bit-packed: one-hot sequences cost 1/32)."""

    def __init__(self, batches: Iterator, limit: int) -> None:
        self._source = iter(batches)
        self.limit = limit
        self._stored: list[tuple] = []
        self._index: dict[str, int] = {}
        self.exhausted = False

    def __len__(self) -> int:
        return len(self._stored)

    def _grow(self) -> bool:
        if self.exhausted or len(self._stored) >= self.limit:
            return False
        try:
            x, y = next(self._source)
        except StopIteration:
            self.exhausted = True
            return False
        x = torch.as_tensor(x).float()
        self._index.setdefault(digest(x), len(self._stored))
        self._stored.append((_pack(x), torch.as_tensor(y)))
        return True

    def find(self, key: Any) -> int | None:
        if type(key) is not str or not key:
            return None
        while key not in self._index:
            if not self._grow():
                return None
        return self._index[key]

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        packed, y = self._stored[i]
        return _unpack(packed), y

    def shapes(self, i: int) -> tuple[tuple, tuple]:
        """(input shape, target shape) of batch ``i``, without unpacking it."""
        (_kind, shape, _data), y = self._stored[i]
        return tuple(shape), tuple(y.shape)

    # -- kept on disk (grader/reference_cache.py): the whole pool, as plain tensors and lists

    def filled(self) -> "BatchPool":
        while self._grow():
            pass
        return self

    def state(self) -> dict:
        """The pool as a few flat tensors (thousands of small ones save and load slowly)."""
        order = sorted(self._index, key=self._index.get)
        bits = [(i, shape, data) for i, ((kind, shape, data), _y) in enumerate(self._stored) if kind == "bits"]
        dense = {str(i): data for i, ((kind, _s, data), _y) in enumerate(self._stored) if kind == "dense"}
        ys = [y.reshape(-1) for _x, y in self._stored]
        return {"limit": self.limit, "exhausted": self.exhausted, "digests": order,
                "at": [self._index[d] for d in order], "bits_index": [i for i, _s, _d in bits],
                "bits_shapes": [list(shape) for _i, shape, _d in bits],
                "bits_sizes": [int(d.size) for _i, _s, d in bits],
                "bits": torch.from_numpy(np.concatenate([d for _i, _s, d in bits])) if bits else torch.zeros(0, dtype=torch.uint8),
                "dense": dense, "y_shapes": [list(y.shape) for _x, y in self._stored],
                "y": torch.cat(ys) if ys else torch.zeros(0)}

    @classmethod
    def from_state(cls, state: dict) -> "BatchPool":
        pool = cls(iter(()), int(state["limit"]))
        pool.exhausted = True       # everything the stream gives up to the limit is here
        pool._index = dict(zip(state["digests"], state["at"]))
        n = len(state["y_shapes"])
        xs: list = [None] * n
        flat = state["bits"].numpy()
        start = 0
        for i, shape, size in zip(state["bits_index"], state["bits_shapes"], state["bits_sizes"]):
            xs[i] = ("bits", tuple(shape), flat[start:start + size])
            start += size
        for i, data in state["dense"].items():
            xs[int(i)] = ("dense", tuple(data.shape), data)
        ys, start = [], 0
        for shape in state["y_shapes"]:
            size = int(np.prod(shape)) if shape else 1
            ys.append(state["y"][start:start + size].reshape(shape))
            start += size
        pool._stored = list(zip(xs, ys))
        return pool


def _pack(x: torch.Tensor):
    if bool(((x == 0) | (x == 1)).all()):
        return ("bits", tuple(x.shape), np.packbits(x.numpy().astype(bool).reshape(-1)))
    return ("dense", tuple(x.shape), x.clone())


def _unpack(packed) -> torch.Tensor:
    kind, shape, data = packed
    if kind == "bits":
        n = int(np.prod(shape))
        return torch.from_numpy(np.unpackbits(data)[:n].astype(np.float32)).reshape(shape)
    return data


@dataclass
class Replay:
    loss: list[float | None]                  # recomputed per judged step; None: not recomputable
    unknown_batches: int = 0                  # steps whose batch is not in the reference stream
    disagree: list[tuple[int, float, float]] = field(default_factory=list)   # (step, recorded, recomputed)
    problem: str | None = None                # why nothing could be recomputed
    last_weights_differ: bool = False         # weights after the last step are not the model's at the cell's end
    fabricated: str | None = None             # why the trajectory is not one a training takes

    @property
    def tampered(self) -> bool:
        return bool(self.disagree) or self.fabricated is not None


def implausible(trajectory: torch.Tensor, start_ok: bool) -> str | None:
    """Why a recorded sequence of weights is not one an optimizer takes (None: it is)."""
    if not start_ok:
        return "the recorded weights before the first step are not the model's initial weights"
    if trajectory.shape[0] < 3:
        return None
    d = trajectory[1:].double() - trajectory[:-1].double()
    n = d.norm(dim=1)
    total = float((trajectory[-1].double() - trajectory[0].double()).norm())
    if total > 0 and float(n.max()) > MAX_STEP_SHARE * total:
        i = int(n.argmax())
        return (f"one step (step {i + 1}) moves the recorded weights {float(n.max()) / total:.0%} of the "
                f"way from the first to the last")
    if float((n == 0).double().mean()) > MAX_STILL_SHARE:
        return f"the recorded weights do not change at {int((n == 0).sum())} of {int(n.numel())} steps"
    moving = (n[1:] > 0) & (n[:-1] > 0)
    if int(moving.sum()) >= 2:
        cos = torch.nn.functional.cosine_similarity(d[1:][moving], d[:-1][moving], dim=1)
        if float(cos.median()) > MAX_MEDIAN_COSINE:
            return "the recorded updates all point the same way (an interpolated path, not a training)"
    return None


def parameter_order(first: list[torch.Tensor], model: torch.nn.Module) -> list[str] | None:
    """The reference parameter name of each recorded tensor (the optimizer's order), matched by
    value against the reference model's initial weights; a model that starts elsewhere (another
    seed) is matched in the reference's own order when the shapes follow it."""
    named = dict(model.named_parameters())
    free = dict(named)
    order: list[str] = []
    for t in first:
        hit = next((n for n, p in free.items() if tuple(p.shape) == tuple(t.shape)
                    and torch.equal(p.detach().float(), t)), None)
        if hit is None:
            break
        order.append(hit)
        del free[hit]
    else:
        if not free:
            return order
    if [tuple(t.shape) for t in first] == [tuple(p.shape) for p in named.values()]:
        return list(named)
    return None


def replay(trajectory: torch.Tensor, shapes: list, steps: list[int], recorded: list, digests: list,
           model: torch.nn.Module, loss_fn: Callable, pool: BatchPool,
           after: torch.Tensor | None = None, end: torch.Tensor | None = None,
           batch_loss_fn: Callable | None = None) -> Replay:
    """Recompute the loss of each of ``steps`` (indices into the run) and compare it with the
    recorded value. ``batch_loss_fn(weights, x, target)``, where the rubric has one, computes many
    steps in one call (``weights[name]``: (K, *shape), ``x``: (K, *batch), -> (K,) losses);
    otherwise each step's weights are loaded into ``model`` and ``loss_fn`` is called."""
    sizes = [int(np.prod(s)) if s else 1 for s in shapes]
    if trajectory.dim() != 2 or trajectory.shape[1] != sum(sizes) or trajectory.shape[0] < 1:
        return Replay([None] * len(steps), problem="the recorded weights do not have the model's size")
    first = [c.reshape(s) for c, s in zip(trajectory[0].split(sizes), shapes)]
    order = parameter_order(first, model)
    if order is None:
        return Replay([None] * len(steps), problem="the recorded weights could not be matched to the "
                                                   "reference model's parameters")
    params = dict(model.named_parameters())
    start_ok = all(torch.equal(params[n].detach().float(), t) for n, t in zip(order, first))
    out = Replay([], fabricated=implausible(trajectory, start_ok))
    found = {i: pool.find(digests[i] if i < len(digests) else None) for i in steps}
    known = [(i, at) for i, at in found.items() if at is not None and i < trajectory.shape[0]]
    was = model.training
    model.train()   # as in training: the loss handed to backward is the training-mode one
    try:
        with torch.no_grad():
            if batch_loss_fn is not None:
                values = _batched_losses(known, trajectory, order, sizes, shapes, pool, batch_loss_fn)
            else:
                values = {}
                for i, at in known:
                    for name, chunk, shape in zip(order, trajectory[i].split(sizes), shapes):
                        params[name].copy_(chunk.reshape(shape))
                    x, y = pool.batch(at)
                    values[i] = float(loss_fn(model, x, y))
    finally:
        model.train(was)
    for i in steps:
        value = values.get(i) if found[i] is not None and i < trajectory.shape[0] else None
        if value is None:
            out.unknown_batches += 1
            out.loss.append(None)
            continue
        out.loss.append(value)
        got = recorded[i] if i < len(recorded) else None
        # A value the instrument did not see is no claim; one it saw must be the batch's loss.
        if isinstance(got, (int, float)) and not abs(got - value) <= RTOL * max(abs(value), 0.1) + ATOL:
            out.disagree.append((i, float(got), value))
    if after is not None and end is not None and after.shape == end.shape:
        out.last_weights_differ = not torch.allclose(after, end, rtol=1e-5, atol=1e-6)
    return out


# Input values per batched call: the hook's intermediate tensors grow with it (a small recurrent
# model's: about 6 floats per input value), and past a few hundred thousand a larger call is no
# faster here.
BATCHED_VALUES = 500_000


def _batched_losses(known: list[tuple[int, int]], trajectory: torch.Tensor, order: list[str], sizes: list[int],
                    shapes: list, pool: BatchPool, batch_loss_fn: Callable) -> dict[int, float]:
    """{step: loss} of the ``known`` (step, pool index) pairs, steps whose batches have one shape
    computed together, a bounded number per call (batches unpacked only for their call)."""
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for i, at in known:
        groups.setdefault(pool.shapes(at), []).append((i, at))
    values: dict[int, float] = {}
    for (x_shape, _y_shape), members in groups.items():
        per_call = max(1, BATCHED_VALUES // max(1, int(np.prod(x_shape))))
        for start in range(0, len(members), per_call):
            part = members[start:start + per_call]
            batches = [pool.batch(at) for _i, at in part]
            rows = trajectory[[i for i, _at in part]]
            weights = {name: chunk.reshape(len(part), *shape)
                       for name, chunk, shape in zip(order, rows.split(sizes, dim=1), shapes)}
            losses = batch_loss_fn(weights, torch.stack([x for x, _y in batches]), torch.stack([y for _x, y in batches]))
            values.update(zip((i for i, _at in part), losses.reshape(-1).tolist()))
    return values
