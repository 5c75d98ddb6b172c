"""Reference for 08-seq_classification: models, Section 8 configuration, instrumented reruns.

The homework asks students to change the *training* of Section 8 ("Visualize
LSTM") so that its loss curves lose their spikes, keeping the model and the
seed. The grader therefore needs: the models exactly as given (parameter names
``lstm.*``/``rnn.*`` and ``linear.*``), the Section 8 configuration, and a way
to rerun Section 8 recording the *true* training signal (every batch's loss and
the gradient norm before each step), not the curve a notebook chooses to plot.

Data stream: each ``get_predefined_generator`` call seeds numpy's global RNG;
Section 8 builds the train then the test generator, and every epoch consumes 31
train batches then 31 test batches from the one stream. ``section8_run`` keeps
that order exactly, so its numbers match the notebook's on the same torch build.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import torch
from torch import nn

SUPPORT_DIR = Path(__file__).resolve().parents[1] / "support"
LN4 = math.log(4.0)


# --------------------------------------------------------------------------- models
class SimpleRNN(nn.Module):
    """ReLU RNN followed by a linear read-out at every time step."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="relu", batch_first=True)
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.rnn(x)[0]
        return self.linear(h)


class SimpleLSTM(nn.Module):
    """LSTM followed by a linear read-out at every time step."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lstm(x)[0]
        return self.linear(h)

    def get_states_across_time(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden and cell states after every step: two tensors of shape (T, B, hidden)."""
        h_c = None
        hs, cs = [], []
        with torch.no_grad():
            for t in range(x.size(1)):
                h_c = self.lstm(x[:, [t], :], h_c)[1]
                hs.append(h_c[0])
                cs.append(h_c[1])
        return torch.cat(hs), torch.cat(cs)


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Section8Config:
    """Section 8 as released; the homework forbids changing anything but the training."""

    difficulty: int = 2  # TemporalOrderExp6aSequence.DifficultyLevel.MODERATE
    difficulty_name: str = "MODERATE"
    input_size: int = 8
    hidden_size: int = 12
    output_size: int = 4
    batch_size: int = 32
    torch_seed: int = 1
    data_seed: int = 8382
    optimizer: str = "RMSprop"
    lr: float = 1e-3
    max_epochs: int = 100
    n_parameters: int = 1108


SECTION8 = Section8Config()


@dataclass(frozen=True)
class TrainingVariant:
    """One way of training the Section 8 model (model, seed and data fixed)."""

    name: str
    description: str
    optimizer: str = "rmsprop"  # "rmsprop" | "adam"
    lr: float = 1e-3
    clip_norm: float | None = None
    scheduler: str | None = None  # None | "plateau" | "cosine"
    # Not a training change: the curve a notebook reports is an EMA of epoch-mean
    # losses. The true signal stays that of the underlying training.
    reported_ema: float | None = None


VARIANTS: dict[str, TrainingVariant] = {v.name: v for v in [
    TrainingVariant("original", "released Section 8: RMSprop lr 1e-3, no clipping"),
    TrainingVariant("solution", "reference fix: clip_grad_norm_ 0.25 + RMSprop lr 5e-4",
                    lr=5e-4, clip_norm=0.25),
    TrainingVariant("clip0.5_lr5e-4", "clip_grad_norm_ 0.5 + RMSprop lr 5e-4", lr=5e-4, clip_norm=0.5),
    TrainingVariant("clip1_lr5e-4", "clip_grad_norm_ 1.0 + RMSprop lr 5e-4", lr=5e-4, clip_norm=1.0),
    TrainingVariant("clip1_lr1e-3", "clip_grad_norm_ 1.0, RMSprop lr 1e-3", clip_norm=1.0),
    TrainingVariant("lr5e-4", "RMSprop lr 5e-4, no clipping", lr=5e-4),
    TrainingVariant("adam_clip1", "Adam lr 1e-3 + clip_grad_norm_ 1.0", optimizer="adam",
                    clip_norm=1.0),
    TrainingVariant("plateau_clip1", "RMSprop lr 1e-3 + clip 1.0 + ReduceLROnPlateau(0.5, patience 3) "
                    "on the epoch-mean train loss", clip_norm=1.0, scheduler="plateau"),
    TrainingVariant("plateau_clip1_lr5e-4", "RMSprop lr 5e-4 + clip 1.0 + ReduceLROnPlateau(0.5, patience 3): "
                    "the rate decays during the initial plateau and learning never starts",
                    lr=5e-4, clip_norm=1.0, scheduler="plateau"),
    TrainingVariant("cosine_clip1", "RMSprop lr 1e-3 + clip 1.0 + CosineAnnealingLR over the epochs",
                    clip_norm=1.0, scheduler="cosine"),
    TrainingVariant("cosmetic_ema", "original training; only the reported curve is an EMA (0.9) of "
                    "epoch-mean losses", reported_ema=0.9),
]}

# Name of a wrong "fix" that a fingerprint should recognise: smoothing the plotted
# curve instead of the training (spikes remain in the true signal).
COSMETIC_VARIANT = "cosmetic_ema"


# --------------------------------------------------------------------------- data
@lru_cache(maxsize=None)
def sequential_tasks(support_dir: Path = SUPPORT_DIR) -> ModuleType:
    """The ``res.sequential_tasks`` module shipped beside the notebook."""
    path = Path(support_dir) / "res" / "sequential_tasks.py"
    spec = importlib.util.spec_from_file_location("_hw2_res_sequential_tasks", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def section8_generators(config: Section8Config = SECTION8, support_dir: Path = SUPPORT_DIR):
    """Train and test generators, built in the notebook's order (each reseeds numpy)."""
    qrsu = sequential_tasks(support_dir).TemporalOrderExp6aSequence
    train = qrsu.get_predefined_generator(config.difficulty, config.batch_size, config.data_seed)
    test = qrsu.get_predefined_generator(config.difficulty, config.batch_size, config.data_seed)
    return train, test


def section8_model(config: Section8Config = SECTION8) -> SimpleLSTM:
    """The Section 8 model right after ``torch.manual_seed(config.torch_seed)``."""
    torch.manual_seed(config.torch_seed)
    return SimpleLSTM(config.input_size, config.hidden_size, config.output_size)


def initial_state_dict(config: Section8Config = SECTION8) -> dict[str, torch.Tensor]:
    """Initial weights of Section 8; a submission that changed the seed starts elsewhere."""
    state = torch.random.get_rng_state()
    try:
        return {k: v.clone() for k, v in section8_model(config).state_dict().items()}
    finally:
        torch.random.set_rng_state(state)


# --------------------------------------------------------------------------- instrumented run
@dataclass
class Section8Record:
    """What one Section 8 run did, step by step and epoch by epoch."""

    variant: str
    epochs: int
    steps_per_epoch: int
    step_loss: list[float] = field(default_factory=list)        # every training batch
    step_grad_norm: list[float] = field(default_factory=list)   # total L2 norm before clipping/step
    step_lr: list[float] = field(default_factory=list)
    epoch_train_loss: list[float] = field(default_factory=list)  # last batch, as the notebook plots
    epoch_train_mean_loss: list[float] = field(default_factory=list)
    epoch_train_acc: list[float] = field(default_factory=list)   # percent
    epoch_test_loss: list[float] = field(default_factory=list)   # last batch
    epoch_test_acc: list[float] = field(default_factory=list)
    epoch_reported_loss: list[float] | None = None               # only for cosmetic variants
    # Per parameter: max gradient norm within each epoch, weight norm at each epoch end.
    param_grad_norm_max: dict[str, list[float]] = field(default_factory=dict)
    param_weight_norm: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def _optimizer(variant: TrainingVariant, params) -> torch.optim.Optimizer:
    if variant.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=variant.lr)
    if variant.optimizer == "adam":
        return torch.optim.Adam(params, lr=variant.lr)
    raise ValueError(f"unknown optimizer {variant.optimizer!r}")


def _scheduler(variant: TrainingVariant, opt: torch.optim.Optimizer, epochs: int):
    if variant.scheduler is None:
        return None
    if variant.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
    if variant.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    raise ValueError(f"unknown scheduler {variant.scheduler!r}")


def section8_run(train_fn_variant: TrainingVariant | str = "original", epochs: int | None = None, *,
                 config: Section8Config = SECTION8, support_dir: Path = SUPPORT_DIR,
                 on_epoch: Callable[[int, Section8Record], None] | None = None) -> Section8Record:
    """Rerun Section 8 outside a notebook with the given training, recording the true signal.

    The seed, model, data order and test pass are those of the notebook; only
    the optimiser, clipping and schedule come from the variant.
    """
    variant = VARIANTS[train_fn_variant] if isinstance(train_fn_variant, str) else train_fn_variant
    epochs = config.max_epochs if epochs is None else epochs
    t0 = time.perf_counter()
    torch.manual_seed(config.torch_seed)
    train_gen, test_gen = section8_generators(config, support_dir)
    model = SimpleLSTM(config.input_size, config.hidden_size, config.output_size)
    criterion = nn.CrossEntropyLoss()
    opt = _optimizer(variant, model.parameters())
    sched = _scheduler(variant, opt, epochs)
    names = [n for n, _ in model.named_parameters()]
    rec = Section8Record(variant.name, epochs, len(train_gen),
                         param_grad_norm_max={n: [] for n in names},
                         param_weight_norm={n: [] for n in names})
    n_seen = len(train_gen) * config.batch_size
    ema: float | None = None
    reported: list[float] = []

    for _ in range(epochs):
        model.train()
        correct, losses = 0, []
        gmax = dict.fromkeys(names, 0.0)
        for batch_idx in range(len(train_gen)):
            data, target = train_gen[batch_idx]
            data = torch.from_numpy(data).float()
            target = torch.from_numpy(target).long()
            output = model(data)[:, -1, :]
            target = target.argmax(dim=1)
            loss = criterion(output, target)
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():
                per = {n: float(p.grad.norm()) for n, p in model.named_parameters()}
            for n, g in per.items():
                gmax[n] = max(gmax[n], g)
            if variant.clip_norm is not None:
                total = float(torch.nn.utils.clip_grad_norm_(model.parameters(), variant.clip_norm))
            else:
                total = math.sqrt(sum(g * g for g in per.values()))
            rec.step_lr.append(opt.param_groups[0]["lr"])
            opt.step()
            rec.step_loss.append(loss.item())
            rec.step_grad_norm.append(total)
            losses.append(loss.item())
            correct += (output.argmax(dim=1) == target).sum().item()
        rec.epoch_train_loss.append(losses[-1])
        rec.epoch_train_mean_loss.append(float(np.mean(losses)))
        rec.epoch_train_acc.append(100.0 * correct / n_seen)
        with torch.no_grad():
            for n, p in model.named_parameters():
                rec.param_grad_norm_max[n].append(gmax[n])
                rec.param_weight_norm[n].append(float(p.norm()))

        model.eval()
        correct = 0
        with torch.no_grad():
            for batch_idx in range(len(test_gen)):
                data, target = test_gen[batch_idx]
                data = torch.from_numpy(data).float()
                target = torch.from_numpy(target).long().argmax(dim=1)
                output = model(data)[:, -1, :]
                test_loss = criterion(output, target).item()
                correct += (output.argmax(dim=1) == target).sum().item()
        rec.epoch_test_loss.append(test_loss)
        rec.epoch_test_acc.append(100.0 * correct / n_seen)

        if variant.reported_ema is not None:
            m = rec.epoch_train_mean_loss[-1]
            ema = m if ema is None else variant.reported_ema * ema + (1 - variant.reported_ema) * m
            reported.append(ema)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(rec.epoch_train_mean_loss[-1])
        elif sched is not None:
            sched.step()
        if on_epoch is not None:
            on_epoch(len(rec.epoch_train_loss), rec)

    if variant.reported_ema is not None:
        rec.epoch_reported_loss = reported
    rec.seconds = time.perf_counter() - t0
    return rec


# --------------------------------------------------------------------------- simple spike figures
@dataclass(frozen=True)
class SpikeSummary:
    """Plain figures about a run's curves; the grader's detector lives elsewhere."""

    learning_epoch: int | None          # first epoch (1-based) with epoch-mean train loss < 1.2
    max_step_loss_after_learning: float | None
    max_grad_norm: float
    max_grad_norm_after_learning: float | None
    epochs_last_loss_above_ln4: int     # after learning started, train or test last-batch loss
    epochs_mean_loss_above_ln4: int     # after learning started, epoch-mean train loss
    jumps_over_0_3: int                 # epoch-to-epoch rises > 0.3 of train or test last-batch loss
    steps_above_ln4_after_learning: int
    final_train_acc: float
    final_test_acc: float


def spike_summary(rec: Section8Record, learned_below: float = 1.2, jump: float = 0.3) -> SpikeSummary:
    start = next((i for i, m in enumerate(rec.epoch_train_mean_loss) if m < learned_below), None)
    steps = rec.step_loss
    gn = rec.step_grad_norm
    if start is None:
        after_steps: list[float] = []
        after_gn: list[float] = []
        ep_range: range = range(0)
    else:
        after_steps = steps[start * rec.steps_per_epoch:]
        after_gn = gn[start * rec.steps_per_epoch:]
        ep_range = range(start, rec.epochs)
    above_last = sum(1 for e in ep_range
                     if max(rec.epoch_train_loss[e], rec.epoch_test_loss[e]) > LN4)
    above_mean = sum(1 for e in ep_range if rec.epoch_train_mean_loss[e] > LN4)
    jumps = 0
    for curve in (rec.epoch_train_loss, rec.epoch_test_loss):
        jumps += sum(1 for a, b in zip(curve, curve[1:]) if b - a > jump)
    return SpikeSummary(
        learning_epoch=None if start is None else start + 1,
        max_step_loss_after_learning=max(after_steps) if after_steps else None,
        max_grad_norm=max(gn),
        max_grad_norm_after_learning=max(after_gn) if after_gn else None,
        epochs_last_loss_above_ln4=above_last,
        epochs_mean_loss_above_ln4=above_mean,
        jumps_over_0_3=jumps,
        steps_above_ln4_after_learning=sum(1 for s in after_steps if s > LN4),
        final_train_acc=rec.epoch_train_acc[-1],
        final_test_acc=rec.epoch_test_acc[-1],
    )


def released_step_loss() -> list[float]:
    """Every training batch's loss of the released Section 8 training, on this machine with one
    thread (what a kernel of the grader does): a run in a notebook with these losses is the
    original training, kept as the "before" of the extra credit, not the student's fix."""
    import numpy as np
    threads = torch.get_num_threads()
    state = np.random.get_state()
    torch.set_num_threads(1)
    try:
        return [float(v) for v in section8_run("original").step_loss]
    finally:
        torch.set_num_threads(threads)
        np.random.set_state(state)


# --------------------------------------------------------------------------- the grader's recomputation
def section8_fresh_model(config: Section8Config = SECTION8) -> SimpleLSTM:
    """A Section 8 model for the grader to load recorded weights into (the global RNG is left
    as it was)."""
    state = torch.random.get_rng_state()
    try:
        return section8_model(config)
    finally:
        torch.random.set_rng_state(state)


def section8_batches(config: Section8Config = SECTION8, support_dir: Path = SUPPORT_DIR):
    """Every batch Section 8's generators hand out, in order, as (input, class index).

    Both generators reseed numpy with the same seed and draw each batch from the one global
    stream, and both draw batches alike (same difficulty, same batch size), so the batches
    of a training are a subsequence of these, however often it evaluates in between. The
    stream is generated on a state of its own: the caller's numpy state is left as it was.
    """
    outer = np.random.get_state()
    try:
        train, _test = section8_generators(config, support_dir)
        own = np.random.get_state()
    finally:
        np.random.set_state(outer)
    while True:
        outer = np.random.get_state()
        try:
            np.random.set_state(own)
            x, y = train[0]
            own = np.random.get_state()
        finally:
            np.random.set_state(outer)
        yield torch.from_numpy(x).float(), torch.from_numpy(y).argmax(dim=1)


def section8_first_inputs(epochs: int, config: Section8Config = SECTION8,
                          support_dir: Path = SUPPORT_DIR) -> list[torch.Tensor]:
    """The training inputs of Section 8's first ``epochs`` epochs (at least one), in the order
    the notebook draws them: each epoch's training batches, then its test batches from the
    same numpy stream (not returned). The caller's numpy state is left as it was."""
    outer = np.random.get_state()
    try:
        train, test = section8_generators(config, support_dir)
        inputs = []
        for _ in range(max(1, epochs)):
            inputs += [torch.from_numpy(np.asarray(train[b][0])).float() for b in range(len(train))]
            for b in range(len(test)):
                test[b]
    finally:
        np.random.set_state(outer)
    return inputs


def section8_heldout(seed: int, batches: int, config: Section8Config = SECTION8,
                     support_dir: Path = SUPPORT_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh sequences of Section 8's task from another data seed (``seed``), as one-hot inputs
    and class indices. The caller's numpy state is left as it was."""
    outer = np.random.get_state()
    try:
        gen, _ = section8_generators(dataclasses.replace(config, data_seed=seed), support_dir)
        xs, ys = [], []
        for b in range(batches):
            x, y = gen[b]
            xs.append(torch.from_numpy(np.asarray(x)).float())
            ys.append(torch.from_numpy(np.asarray(y)).argmax(dim=1))
    finally:
        np.random.set_state(outer)
    return torch.cat(xs), torch.cat(ys).to(torch.int64)


def section8_batch_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss Section 8 back-propagates: cross-entropy of the last step's output."""
    return nn.functional.cross_entropy(model(x)[:, -1, :], target)


def section8_batch_losses(weights: dict[str, torch.Tensor], x: torch.Tensor,
                          target: torch.Tensor) -> torch.Tensor:
    """``section8_batch_loss`` for K recorded steps at once: ``weights[name]`` is (K, *shape) with
    the Section 8 model's parameter names, ``x`` (K, batch, time, symbols), ``target`` (K, batch)
    -> (K,) losses. The LSTM's recurrence (torch's gate order i, f, g, o) is written out here so
    that one pass runs every step's own weights side by side: ``nn.LSTM`` takes one set of weights
    per call, and half of each call on 32 short sequences is per-call overhead (measured: 1.8 ms a
    step one by one, 0.9 ms here)."""
    w_ih, w_hh = weights["lstm.weight_ih_l0"], weights["lstm.weight_hh_l0"]
    bias = weights["lstm.bias_ih_l0"] + weights["lstm.bias_hh_l0"]
    k, batch, steps, _ = x.shape
    hidden = w_hh.shape[-1]
    # Every time step's input term at once, laid out (time, K, batch, 4 * hidden).
    gates_x = torch.baddbmm(bias[:, None, :], x.reshape(k, batch * steps, -1), w_ih.transpose(1, 2))
    gates_x = gates_x.reshape(k, batch, steps, -1).permute(2, 0, 1, 3).contiguous()
    w_hh_t = w_hh.transpose(1, 2).contiguous()
    h = x.new_zeros(k, batch, hidden)
    c = x.new_zeros(k, batch, hidden)
    for t in range(steps):
        gates = torch.baddbmm(gates_x[t], h, w_hh_t)
        s = torch.sigmoid(gates)
        i, f, o = s[..., :hidden], s[..., hidden:2 * hidden], s[..., 3 * hidden:]
        c = torch.addcmul(f * c, i, torch.tanh(gates[..., 2 * hidden:3 * hidden]))
        h = o * torch.tanh(c)
    logits = torch.baddbmm(weights["linear.bias"][:, None, :], h, weights["linear.weight"].transpose(1, 2))
    per_sequence = nn.functional.cross_entropy(logits.reshape(k * batch, -1), target.reshape(-1), reduction="none")
    return per_sequence.reshape(k, batch).mean(dim=1)
