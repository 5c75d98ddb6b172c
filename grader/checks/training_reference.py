"""The training kind's reference data, on the trusted side: the released data stream (its batches,
kept per machine, and the fingerprints of its first epochs), the replay of a recorded training's
losses with the reference model, and held-out sequences for the accuracy item."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from grader import reference_cache
from grader.checks.base import JudgeContext
from grader.checks.common import item_seed, resolve
from grader.checks.replay import BatchPool, Replay, replay
from grader.items import Item


_POOLS: dict[tuple, BatchPool] = {}


def replay_run(item: Item, ctx: JudgeContext, run: dict, answer: Any, steps: list[int]) -> Replay | str:
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
    batch_loss_fn = resolve(p["reference_batch_losses"], ctx.reference_dir) if p.get("reference_batch_losses") else None
    after = answer.tensors.get(f"r{run['index']}.after")
    end = answer.tensors.get(f"r{run['index']}.end")
    return replay(traj.float(), shapes, steps, recorded, digests, model, loss_fn, _POOLS[key],
                  after=after.float() if after is not None else None,
                  end=end.float() if end is not None else None, batch_loss_fn=batch_loss_fn)


@dataclass
class Stream:
    first: torch.Tensor
    prints: list[float]


_STREAMS: dict[tuple, Stream] = {}


def reference_stream(item: Item, ctx: JudgeContext) -> Stream:
    """The released training's first batch and the fingerprints of its first ``stream_epochs``
    epochs' batches, from the rubric's ``reference_stream`` hook (epochs -> the training inputs
    in the order the released notebook draws them)."""
    epochs = int(item.params.get("stream_epochs", 0))
    key = (item.params["reference_stream"], str(ctx.reference_dir), epochs)
    if key not in _STREAMS:
        inputs = resolve(item.params["reference_stream"], ctx.reference_dir)(epochs)
        n = epochs * int(item.params["steps_per_epoch"])
        _STREAMS[key] = Stream(inputs[0], [stream_fingerprint(x) for x in inputs[:n]])
    return _STREAMS[key]


def stream_fingerprint(x: torch.Tensor) -> float:
    flat = x.reshape(-1).double()
    return float((flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum())


def heldout(item: Item, seed: int, reference_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh inputs and class labels from the rubric's ``reference_heldout`` hook (seed, batches);
    the seed is the grader's secret one, per item; the labels stay on the trusted side."""
    batches = int(item.params.get("heldout", {}).get("batches", 16))
    inputs, labels = resolve(item.params["reference_heldout"], reference_dir)(item_seed(seed, item.id) % 2**31,
                                                                              batches)
    return inputs.float(), labels.to(torch.int64)


def same_multiset(got: list[torch.Tensor], want: list[torch.Tensor]) -> bool:
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


def rounded(values: list, digits: int) -> list:
    return [None if v is None or v != v else float(f"{v:.{digits}g}") for v in values]
