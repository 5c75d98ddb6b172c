"""Section 8's curve cannot be chosen from inside the kernel.

Fast: the trusted recomputation (grader/checks/replay.py) on a real short training of the
released model in this process: it reproduces the back-propagated losses, and it catches a
shifted loss and trajectories no optimizer takes (a jump, an interpolated path, weights that do
not move). Slow: the hostile notebooks of tests/hostile/section8_cases.py graded through the
real runner and sandbox; the released (spiky) training stays inside each, and none may earn a
point of the part.
"""
from __future__ import annotations

import itertools
import sys

import nbformat
import pytest
import torch

from conftest import REPO, hw2_members, write_zip
from grader.checks.replay import BatchPool, digest, implausible, replay
from hostile.section8_cases import CASES, Section8Case

HW2 = REPO / "reference" / "hw2"
sys.path.insert(0, str(HW2))
from hw2ref import seqcls  # noqa: E402

NB = "08-seq_classification.ipynb"


# ---------------------------------------------------------------- the recomputation (fast)

def _short_training(steps: int = 62, shift: bool = False):
    """The released training for two epochs (train then test batches, as the notebook draws
    them), recorded as the instrument does: weights before each step, the back-propagated value,
    the batch digests."""
    torch.manual_seed(1)
    train, test = seqcls.section8_generators()
    model = seqcls.SimpleLSTM(8, 12, 4)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    traj, recorded, digests = [], [], []
    for step in range(steps):
        x, y = train[0]
        x, y = torch.from_numpy(x).float(), torch.from_numpy(y).argmax(1)
        loss = seqcls.section8_batch_loss(model, x, y)
        shown = loss + (0.5 - loss.detach()) if shift else loss
        opt.zero_grad()
        shown.backward()
        traj.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone())
        recorded.append(float(shown.detach()))
        digests.append(digest(x))
        opt.step()
        if (step + 1) % 31 == 0:
            for _ in range(31):
                test[0]
    shapes = [list(p.shape) for p in model.parameters()]
    return torch.stack(traj), shapes, recorded, digests


def _replay(traj, shapes, recorded, digests, batched=False):
    pool = BatchPool(seqcls.section8_batches(), limit=400)
    return replay(traj, shapes, list(range(len(traj))), recorded, digests, seqcls.section8_fresh_model(),
                  seqcls.section8_batch_loss, pool,
                  batch_loss_fn=seqcls.section8_batch_losses if batched else None)


# The rubric's batched hook (the LSTM written out over many steps' weights) and the reference
# model called step by step must judge alike.
BOTH = pytest.mark.parametrize("batched", [False, True], ids=["step by step", "batched"])


@BOTH
def test_the_recomputed_losses_are_the_back_propagated_ones(batched):
    traj, shapes, recorded, digests = _short_training()
    rep = _replay(traj, shapes, recorded, digests, batched)
    assert rep.unknown_batches == 0 and not rep.tampered, (rep.disagree, rep.fabricated)
    assert max(abs(a - b) for a, b in zip(rep.loss, recorded)) < 1e-5


def test_the_batched_hook_gives_the_step_by_step_losses_past_one_call():
    # More steps than one batched call takes, in an order that is not the run's, one step twice.
    from grader.checks import replay as replay_module
    traj, shapes, recorded, digests = _short_training()
    per_call = replay_module.BATCHED_VALUES // (32 * 81 * 8)
    assert len(traj) > per_call
    steps = list(range(len(traj) - 1, -1, -1)) + [5]
    pool = BatchPool(seqcls.section8_batches(), limit=400)
    one = replay(traj, shapes, steps, recorded, digests, seqcls.section8_fresh_model(), seqcls.section8_batch_loss, pool)
    many = replay(traj, shapes, steps, recorded, digests, seqcls.section8_fresh_model(), seqcls.section8_batch_loss,
                  pool, batch_loss_fn=seqcls.section8_batch_losses)
    assert len(one.loss) == len(many.loss) == len(steps) and None not in many.loss
    assert max(abs(a - b) / max(abs(a), 1e-3) for a, b in zip(one.loss, many.loss)) < 1e-5


@BOTH
def test_a_shifted_loss_is_caught_at_every_step(batched):
    traj, shapes, recorded, digests = _short_training(shift=True)
    rep = _replay(traj, shapes, recorded, digests, batched)
    assert rep.tampered and len(rep.disagree) == len(recorded)
    assert all(abs(got - 0.5) < 1e-6 and abs(want - 0.5) > 0.3 for _, got, want in rep.disagree[:5])


@BOTH
def test_batches_outside_the_released_stream_are_not_recomputed(batched):
    traj, shapes, recorded, digests = _short_training(steps=10)
    rep = _replay(traj, shapes, recorded, [digest(torch.zeros(3)) for _ in digests], batched)
    assert rep.unknown_batches == 10 and rep.loss == [None] * 10 and not rep.disagree


def test_trajectories_no_optimizer_takes_are_caught():
    traj, _shapes, _recorded, _prints = _short_training()
    assert implausible(traj, True) is None
    jump = torch.cat([traj[:1], traj[-1:].expand(len(traj) - 1, -1)])
    assert "moves the recorded weights" in implausible(jump, True)
    line = torch.stack([traj[0] + (traj[-1] - traj[0]) * t / (len(traj) - 1) for t in range(len(traj))])
    assert "point the same way" in implausible(line, True)
    still = traj[:1].expand(len(traj), -1)
    assert "do not change" in implausible(still, True)
    assert "initial weights" in implausible(traj, False)


def test_the_pool_leaves_the_callers_numpy_stream_alone():
    import numpy as np
    np.random.seed(3)
    want = np.random.rand()
    np.random.seed(3)
    pool = BatchPool(seqcls.section8_batches(), limit=5)
    assert pool.find(digest(torch.zeros(3))) is None and len(pool) == 5
    assert np.random.rand() == want
    first = next(itertools.islice(seqcls.section8_batches(), 0, None))
    assert torch.equal(pool.batch(0)[0], first[0])


# ---------------------------------------------------------------- hostile notebooks (slow)

def _notebook(case: Section8Case) -> bytes:
    nb = nbformat.read(str(HW2 / "release" / NB), as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## 5. Simple RNN"))
    end = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## 8."))
    del nb.cells[start:end]          # Section 8 builds its own data and model
    if case.train_backward:
        cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("def train("))
        assert "loss.backward()  # Step ④" in cell.source
        cell.source = cell.source.replace("loss.backward()  # Step ④", case.train_backward)
    if case.last_cell:
        nb.cells.append(nbformat.v4.new_code_cell(case.last_cell))
    return nbformat.writes(nb).encode()


@pytest.fixture(scope="module")
def graded_cases(grade_zips, hw2_rubric, tmp_path_factory) -> dict:
    """net id -> record: the cases graded as one batch on two workers (two notebooks at a time)."""
    folder = tmp_path_factory.mktemp("hostile_section8")
    zips = [write_zip(folder / f"{c.net_id}.zip", hw2_members("solution", **{"08_seq_classification_ipynb": _notebook(c)}))
            for c in CASES]
    recs = grade_zips(zips, hw2_rubric, on_time=True)
    return {c.net_id: recs[f"{c.net_id}.zip"] for c in CASES}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.net_id for c in CASES])
def test_a_curve_chosen_in_the_kernel_earns_nothing(case, graded_cases):
    rec = graded_cases[case.net_id]
    items = {i["id"]: i for i in rec.items if i["part"] == "seq"}
    part = rec.score["parts"]["seq"]
    assert (part["points"], part["extra"]) == (0, 0), case.what
    spikes = items["seq.no_spikes"]
    assert spikes["points"] == 0 and spikes["review"], spikes["message"]
    for words in case.message:
        assert words in spikes["message"], (words, spikes["message"])
    # The curve in the record (and the report's figure) is the grader's: the released training's spikes.
    assert bool(spikes["data"]["spikes"]) == case.released_curve, case.what


def test_the_stream_has_batches_with_equal_fingerprints_but_distinct_digests():
    """Why batches are found by digest: the instrument's fingerprint (a weighted sum of one-hot
    entries) repeats within the released stream."""
    from grader.checks.training_reference import stream_fingerprint as _fingerprint
    pool = list(itertools.islice(seqcls.section8_batches(), 1500))
    prints = [_fingerprint(x) for x, _ in pool]
    assert len(set(prints)) < len(pool)
    assert len({digest(x) for x, _ in pool}) == len(pool)
