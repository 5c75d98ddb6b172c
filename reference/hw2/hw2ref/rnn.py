"""Reference implementations for hw2_rnn (theory 1.2 and the echo notebook).

Conventions shared with the notebook ``hw2_rnn.ipynb``:

* Sequences are batch first: ``x`` has shape ``(B, T, n)``; an unbatched
  ``(T, n)`` input is accepted too and gives an unbatched result.
* Time index ``t = 1..T`` of the homework is position ``t - 1`` on the time
  axis. Modules return every state ``h[1..T]``; ``h[0]`` (and, for
  AttentionRNN, every ``h[t]`` with ``t < 1``) is zero and not returned.
* Matrices act on column vectors as in the homework (``W_c x[t]``), so in
  batch form a step computes ``x_t @ W_c.T``.
* Jacobians use numerator layout: ``dh[t]/dh[t-1]`` has shape
  ``(out, in)``; a loss gradient ``dl/dh`` is a row vector (a 1-d tensor).

Deliberately wrong variants (``*Swapped``, ``*_transposed``, ...) exist so the
grader can recognise common mistakes and say which one a submission made.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N = 26  # letters; class 0 is the blank / "no output yet"
N_CLASSES = N + 1
ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # index -> character


def _batched(x: Tensor) -> tuple[Tensor, bool]:
    if x.dim() == 2:
        return x.unsqueeze(0), True
    if x.dim() != 3:
        raise ValueError(f"expected (B, T, n) or (T, n), got shape {tuple(x.shape)}")
    return x, False


def _uniform(rows: int, cols: int, fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(rows, cols).uniform_(-bound, bound))


# --------------------------------------------------------------------------
# 1.2 Part 1: gated RNN, eq. (1)-(2)
# --------------------------------------------------------------------------


class GatedRNN(nn.Module):
    """c[t] = sigmoid(W_c x[t] + W_h h[t-1]);  h[t] = c[t]*h[t-1] + (1-c[t])*W_x x[t]."""

    def __init__(self, n: int, m: int):
        super().__init__()
        self.n, self.m = n, m
        self.W_c = _uniform(m, n, n)
        self.W_h = _uniform(m, m, m)
        self.W_x = _uniform(m, n, n)

    def combine(self, c: Tensor, h_prev: Tensor, u: Tensor) -> Tensor:
        return c * h_prev + (1 - c) * u

    def forward(
        self, x: Tensor, h0: Tensor | None = None, return_gates: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Return ``H`` (and ``C`` if ``return_gates``), both ``(B, T, m)``."""
        xb, unbatched = _batched(x)
        h = xb.new_zeros(xb.shape[0], self.m) if h0 is None else h0.reshape(xb.shape[0], self.m)
        hs, cs = [], []
        for t in range(xb.shape[1]):
            xt = xb[:, t]
            c = torch.sigmoid(xt @ self.W_c.T + h @ self.W_h.T)
            h = self.combine(c, h, xt @ self.W_x.T)
            hs.append(h)
            cs.append(c)
        H = torch.stack(hs, 1) if hs else xb.new_zeros(xb.shape[0], 0, self.m)
        C = torch.stack(cs, 1) if cs else H.clone()
        if unbatched:
            H, C = H[0], C[0]
        return (H, C) if return_gates else H


class GatedRNNGateSwapped(GatedRNN):
    """WRONG: c[t] and 1 - c[t] exchanged in eq. (2)."""

    def combine(self, c: Tensor, h_prev: Tensor, u: Tensor) -> Tensor:
        return (1 - c) * h_prev + c * u


def gated_rnn_grad_Wx(x: Tensor, c: Tensor, grad_h: Tensor) -> Tensor:
    """1.2(c): dl/dW_x = sum_t (g_t * (1 - c[t])) x[t]^T, shape (m, n).

    ``grad_h[t]`` must be the TOTAL derivative dl/dh[t]: the gradient through
    every later step as well (what backpropagation through time carries into
    step t). W_x enters h[t] directly only through (1 - c[t]) * W_x x[t]; its
    influence on later steps through h[t] is already inside g_t, which is why
    one sum over t suffices. With only the explicit partials of l in place of
    g_t the formula is wrong (see ``gated_rnn_total_grads``). Batched inputs
    ``(B, T, .)`` are summed over the batch as well.
    """
    return torch.einsum("...tm,...tn->mn", grad_h * (1 - c), x)


def gated_rnn_grad_Wx_transposed(x: Tensor, c: Tensor, grad_h: Tensor) -> Tensor:
    """WRONG: denominator layout, (n, m)."""
    return gated_rnn_grad_Wx(x, c, grad_h).T


def gated_rnn_grad_Wx_gate_swapped(x: Tensor, c: Tensor, grad_h: Tensor) -> Tensor:
    """WRONG: weights the outer products by c[t] instead of 1 - c[t]."""
    return torch.einsum("...tm,...tn->mn", grad_h * c, x)


def gated_rnn_total_grads(
    model: GatedRNN, x: Tensor, explicit: Tensor, h0: Tensor | None = None
) -> Tensor:
    """Backpropagation through time by hand.

    ``explicit[t]`` is the partial derivative of l with respect to h[t] where
    l touches h[t] directly (for l = sum_t r[t]^T h[t] it is r[t]). Returns the
    total derivatives g_t = explicit[t] + g_{t+1} dh[t+1]/dh[t], where the
    one-step Jacobian is diag(c[t+1]) + diag((h[t] - W_x x[t+1]) * c'(t+1)) W_h
    with c' = c (1 - c).
    """
    xb, unbatched = _batched(x)
    eb, _ = _batched(explicit)
    with torch.no_grad():
        H, C = model(xb, h0=h0, return_gates=True)
        U = xb @ model.W_x.T
        start = xb.new_zeros(H[:, :1].shape) if h0 is None else h0.reshape(H[:, :1].shape)
        H_prev = torch.cat([start, H[:, :-1]], 1)
        g = torch.zeros_like(eb)
        carry = torch.zeros_like(eb[:, 0])
        for t in range(xb.shape[1] - 1, -1, -1):
            g[:, t] = eb[:, t] + carry
            c = C[:, t]
            # carry becomes g_t dh[t]/dh[t-1], handed to step t-1
            carry = g[:, t] * c + (g[:, t] * (H_prev[:, t] - U[:, t]) * c * (1 - c)) @ model.W_h
    return g[0] if unbatched else g


# --------------------------------------------------------------------------
# 1.2 Part 2: AttentionRNN(k)
# --------------------------------------------------------------------------


class AttentionRNN(nn.Module):
    """AttentionRNN(k) of 1.2(c).

    Sources s_0[t] = x[t], s_i[t] = h[t-i] (i = 1..k); per source
    q_i = Q[i] s_i, k_i = K[i] s_i, v_i = V[i] s_i, w_i = q_i^T k_i,
    a = softmax over the k+1 sources, h[t] = sum_i a_i v_i.
    ``h[t] = 0`` for t < 1: those zero states stay in the softmax (score 0,
    value 0), exactly as the definition reads. Parameters: ParameterLists
    ``Q``, ``K``, ``V`` of k+1 matrices (n, n) each (state_dict keys "Q.0", ...).
    """

    def __init__(self, n: int, k: int):
        super().__init__()
        if k < 1:
            raise ValueError("k must be at least 1")
        self.n, self.k = n, k
        self.Q = nn.ParameterList([_uniform(n, n, n) for _ in range(k + 1)])
        self.K = nn.ParameterList([_uniform(n, n, n) for _ in range(k + 1)])
        self.V = nn.ParameterList([_uniform(n, n, n) for _ in range(k + 1)])

    def sources(self, xt: Tensor, past: list[Tensor]) -> list[Tensor]:
        """``past[-i]`` is h[t-i]."""
        return [xt] + [past[-i] for i in range(1, self.k + 1)]

    def scores(self, srcs: list[Tensor]) -> Tensor:
        return torch.stack(
            [((s @ self.Q[i].T) * (s @ self.K[i].T)).sum(-1) for i, s in enumerate(srcs)], -1
        )

    def weights(self, w: Tensor, t: int) -> Tensor:
        return torch.softmax(w, dim=-1)

    def mix(self, a: Tensor, srcs: list[Tensor]) -> Tensor:
        vals = torch.stack([s @ self.V[i].T for i, s in enumerate(srcs)], -2)  # (B, k+1, n)
        return (a.unsqueeze(-1) * vals).sum(-2)

    def forward(self, x: Tensor, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Return ``H`` ``(B, T, n)`` (and the attention ``A`` ``(B, T, k+1)``)."""
        xb, unbatched = _batched(x)
        zero = xb.new_zeros(xb.shape[0], self.n)
        past = [zero] * self.k
        hs, as_ = [], []
        for t in range(xb.shape[1]):
            srcs = self.sources(xb[:, t], past)
            a = self.weights(self.scores(srcs), t + 1)
            h = self.mix(a, srcs)
            past = past[1:] + [h]
            hs.append(h)
            as_.append(a)
        H, A = torch.stack(hs, 1), torch.stack(as_, 1)
        if unbatched:
            H, A = H[0], A[0]
        return (H, A) if return_weights else H


class AttentionRNNSoftmaxOverBatch(AttentionRNN):
    """WRONG: softmax normalises each source's score across the batch."""

    def weights(self, w: Tensor, t: int) -> Tensor:
        return torch.softmax(w, dim=0)


class AttentionRNNFeaturewise(AttentionRNN):
    """WRONG: q_i * k_i not summed over features; softmax over sources per feature."""

    def scores(self, srcs: list[Tensor]) -> Tensor:
        return torch.stack([(s @ self.Q[i].T) * (s @ self.K[i].T) for i, s in enumerate(srcs)], -2)

    def mix(self, a: Tensor, srcs: list[Tensor]) -> Tensor:
        vals = torch.stack([s @ self.V[i].T for i, s in enumerate(srcs)], -2)
        return (a * vals).sum(-2)

    def weights(self, w: Tensor, t: int) -> Tensor:
        return torch.softmax(w, dim=-2)


class AttentionRNNNoInputSource(AttentionRNN):
    """WRONG: attends over h[t-1..t-k] only (lag-0 source x[t] missing).

    Starting from zero states this network outputs zeros for ever.
    """

    def sources(self, xt: Tensor, past: list[Tensor]) -> list[Tensor]:
        return [past[-i] for i in range(1, self.k + 1)]

    def scores(self, srcs: list[Tensor]) -> Tensor:
        return torch.stack(
            [((s @ self.Q[i + 1].T) * (s @ self.K[i + 1].T)).sum(-1) for i, s in enumerate(srcs)], -1
        )

    def mix(self, a: Tensor, srcs: list[Tensor]) -> Tensor:
        vals = torch.stack([s @ self.V[i + 1].T for i, s in enumerate(srcs)], -2)
        return (a.unsqueeze(-1) * vals).sum(-2)


class AttentionRNNMaskedStart(AttentionRNN):
    """WRONG against the stated convention: states before t = 1 are dropped
    from the softmax instead of taking part with score 0."""

    def weights(self, w: Tensor, t: int) -> Tensor:
        lags = torch.arange(self.k + 1, device=w.device)
        return torch.softmax(w.masked_fill(lags >= t, float("-inf")), dim=-1)


def attention_source_jacobian(
    Q: Sequence[Tensor], K: Sequence[Tensor], V: Sequence[Tensor], srcs: Sequence[Tensor], i: int
) -> Tensor:
    """Direct Jacobian dh[t]/ds_i[t] (n, n) of one AttentionRNN step, unbatched.

    ``srcs`` = [x[t], h[t-1], ..., h[t-k]]. With a = softmax(w),
    J = diag(a) - a a^T, Vm = [v_0 .. v_k] (n, k+1) and
    g_i = (Q_i^T K_i + K_i^T Q_i) s_i:   a_i V_i + (Vm J e_i) g_i^T.
    """
    vals = torch.stack([V[j] @ s for j, s in enumerate(srcs)], 1)
    w = torch.stack([(Q[j] @ s) @ (K[j] @ s) for j, s in enumerate(srcs)])
    a = torch.softmax(w, 0)
    J = torch.diag(a) - torch.outer(a, a)
    g = (Q[i].T @ K[i] + K[i].T @ Q[i]) @ srcs[i]
    return a[i] * V[i] + torch.outer(vals @ J[:, i], g)


def attention_rnn2_jacobian(
    Q: Sequence[Tensor], K: Sequence[Tensor], V: Sequence[Tensor],
    x_t: Tensor, h_tm1: Tensor, h_tm2: Tensor,
) -> Tensor:
    """1.2(e): dh[t]/dh[t-1] for AttentionRNN(2) = a_1 V_1 + (V J e_1) g_1^T."""
    return attention_source_jacobian(Q, K, V, [x_t, h_tm1, h_tm2], 1)


def attention_rnn2_jacobian_transposed(
    Q: Sequence[Tensor], K: Sequence[Tensor], V: Sequence[Tensor],
    x_t: Tensor, h_tm1: Tensor, h_tm2: Tensor,
) -> Tensor:
    """WRONG: denominator layout."""
    return attention_rnn2_jacobian(Q, K, V, x_t, h_tm1, h_tm2).T


def attention_aggregate(dl_dh_later: Sequence[Tensor], dh_later_dh: Sequence[Tensor]) -> Tensor:
    """1.2(f): dl/dh[T] = sum_{t=T+1}^{T+k} dl/dh[t] dh[t]/dh[T].

    The reading under which this is right: ``dl_dh_later[j]`` is the TOTAL
    derivative dl/dh[T+1+j] (backpropagated from everything after it) and
    ``dh_later_dh[j]`` the DIRECT one-step Jacobian of h[T+1+j] with respect to
    its source h[T] (``attention_source_jacobian`` with i = j + 1), every other
    source held fixed. Paths through h[T+1] -> h[T+2] are inside the total
    dl/dh[T+2]... so summing only k terms counts each path once. If l also
    depends on h[T] directly (e.g. a per-step loss), add that partial.
    The other reading (explicit partials of l with the TOTAL Jacobians
    dh[t]/dh[T]) needs the sum over every t > T, not just the next k.
    """
    out = torch.zeros_like(dl_dh_later[0])
    for g, J in zip(dl_dh_later, dh_later_dh, strict=True):
        out = out + g @ J
    return out


def attention_rnn_total_grads(model: AttentionRNN, x: Tensor, explicit: Tensor) -> Tensor:
    """BPTT by hand for an unbatched sequence x (T, n).

    ``explicit[t]`` = partial of l in h[t+1] (time index shifted as above).
    g_T = explicit_T + sum_{i=1..k, T+i <= len} g_{T+i} dh[T+i]/dh[T] (direct).
    """
    if x.dim() != 2:
        raise ValueError("unbatched (T, n) input expected")
    T, k = x.shape[0], model.k
    with torch.no_grad():
        H = model(x)
        padded = torch.cat([x.new_zeros(k, model.n), H], 0)  # padded[k + t - 1] = h[t]
        g = explicit.clone()
        for t in range(T, 0, -1):  # homework time t = 1..T; row t-1
            srcs = [x[t - 1]] + [padded[k + t - 1 - i] for i in range(1, k + 1)]
            for i in range(1, k + 1):
                if t - i >= 1:
                    J = attention_source_jacobian(model.Q, model.K, model.V, srcs, i)
                    g[t - i - 1] = g[t - i - 1] + g[t - 1] @ J
    return g


# --------------------------------------------------------------------------
# Part 2 of the notebook: echo task
# --------------------------------------------------------------------------


def idx_to_onehot(x: Tensor, k: int = N_CLASSES) -> Tensor:
    """Integer tensor (...) -> float one-hot (..., k) on x's device."""
    return F.one_hot(x.long(), k).to(torch.float32)


def echo_target(seq: str | Tensor, delay: int) -> str | Tensor:
    """What an echo network must output: ``delay`` blanks, then ``seq`` shifted."""
    if delay < 0:
        raise ValueError("delay must be >= 0")
    if isinstance(seq, str):
        d = min(delay, len(seq))
        return " " * d + seq[: len(seq) - d]
    out = torch.zeros_like(seq)
    L = seq.shape[-1]
    if delay < L:
        out[..., delay:] = seq[..., : L - delay]
    return out


def echo_score(pred: str, seq: str, delay: int) -> tuple[int, int]:
    """(correct, counted) over the positions that echo a letter (t >= delay),
    as the notebook's tests count them; the leading blanks are not scored."""
    if len(pred) != len(seq):
        return 0, max(len(seq) - delay, 0)
    want = echo_target(seq, delay)
    tail = range(min(delay, len(seq)), len(seq))
    return sum(pred[i] == want[i] for i in tail), len(tail)


def random_letters(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALPHABET[1:]) for _ in range(length))


def string_to_idx(s: str) -> Tensor:
    return torch.tensor([ALPHABET.index(ch) for ch in s], dtype=torch.long)


def idx_to_string(idx: Tensor) -> str:
    return "".join(ALPHABET[int(i)] for i in idx)


class EchoDataset(torch.utils.data.IterableDataset):
    """Samples (seq, result): seq uniform in 1..26, result = echo_target(seq, delay)."""

    def __init__(self, delay: int = 4, seq_length: int = 15, size: int = 1000):
        self.delay, self.seq_length, self.size = delay, seq_length, size

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        for _ in range(self.size):
            seq = torch.randint(1, N_CLASSES, (self.seq_length,))
            yield seq, echo_target(seq, self.delay)


class VariableDelayEchoDataset(torch.utils.data.IterableDataset):
    """Samples (seq, delay, result), one delay in 0..max_delay per sample."""

    def __init__(self, max_delay: int = 8, seq_length: int = 20, size: int = 1000):
        self.max_delay, self.seq_length, self.size = max_delay, seq_length, size

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        for _ in range(self.size):
            seq = torch.randint(1, N_CLASSES, (self.seq_length,))
            delay = int(torch.randint(0, self.max_delay + 1, ()))
            yield seq, delay, echo_target(seq, delay)


class GRUMemory(nn.Module):
    """GRU over one-hot letters and a linear decoder to 27 classes per step."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.gru = nn.GRU(N_CLASSES, hidden_size, batch_first=True)
        self.decoder = nn.Linear(hidden_size, N_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.gru(x)[0])

    @torch.no_grad()
    def test_run(self, s: str) -> str:
        x = idx_to_onehot(string_to_idx(s)).unsqueeze(0)
        return idx_to_string(self(x)[0].argmax(-1))


class VariableDelayGRUMemory(nn.Module):
    """GRU memory of the recent letters with one decoder head per delay.

    The GRU needs no delay input: it keeps the last max_delay + 1 letters and
    head d reads the letter d steps back. Training every head on each sample
    (``all_delay_logits``) uses each sequence for all delays at once.
    """

    def __init__(self, hidden_size: int, max_delay: int):
        super().__init__()
        self.max_delay = max_delay
        self.gru = nn.GRU(N_CLASSES, hidden_size, batch_first=True)
        self.decoder = nn.Linear(hidden_size, N_CLASSES * (max_delay + 1))

    def all_delay_logits(self, x: Tensor) -> Tensor:
        out = self.decoder(self.gru(x)[0])
        return out.view(*out.shape[:2], self.max_delay + 1, N_CLASSES)

    def forward(self, x: Tensor, delays: Tensor) -> Tensor:
        logits = self.all_delay_logits(x)
        B, T = logits.shape[:2]
        idx = delays.long().view(B, 1, 1, 1).expand(B, T, 1, N_CLASSES)
        return logits.gather(2, idx).squeeze(2)

    @torch.no_grad()
    def test_run(self, s: str, delay: int) -> str:
        x = idx_to_onehot(string_to_idx(s)).unsqueeze(0)
        return idx_to_string(self(x, torch.tensor([delay]))[0].argmax(-1))


# --------------------------------------------------------------------------
# Grader data for the behaviour checks (mode "cases")
# --------------------------------------------------------------------------


def echo_cases(
    seed: int,
    delays: Sequence[int] = (4,),
    n_per_delay: int = 1000,
    min_length: int = 15,
    max_length: int = 25,
    pass_delay: bool = False,
) -> list[dict]:
    """Fresh strings for ``test_run``: args [s] (or [s, d] with ``pass_delay``),
    target {"seq", "delay"} scored by ``echo_scorer``, group "delay=<d>"."""
    rng = random.Random(seed)
    cases = []
    for d in delays:
        for _ in range(n_per_delay):
            s = random_letters(rng, rng.randint(min_length, max_length))
            cases.append({"args": [s, d] if pass_delay else [s],
                          "target": {"seq": s, "delay": int(d)}, "group": f"delay={d}"})
    return cases


def echo_scorer(output: object, target: dict) -> tuple[int, int]:
    """(correct, counted) for one case; anything but a str of the right length scores 0."""
    seq, delay = target["seq"], target["delay"]
    if not isinstance(output, str):
        return 0, max(len(seq) - delay, 0)
    return echo_score(output, seq, delay)


def test_run_format(output: object, target: dict) -> tuple[int, int]:
    """(1, 1) when ``test_run`` gave a str of the input's length made of blanks and letters."""
    seq = target["seq"]
    ok = isinstance(output, str) and len(output) == len(seq) and all(ch in ALPHABET for ch in output)
    return int(ok), 1


def echo_forward_cases(
    seed: int,
    delays: Sequence[int] = (4,),
    n_per_delay: int = 1000,
    min_length: int = 15,
    max_length: int = 25,
    pass_delay: bool = False,
) -> list[dict]:
    """The strings of ``echo_cases`` (same seed, same strings) as batches for the model's own
    forward pass: one batch per delay and length, one-hot (B, T, 27) with int64 delays (B,)
    for ``pass_delay``; ``alt_args`` hold the letters as indices (B, T), for a forward that
    embeds them. The targets stay with the grader: ``echo_forward_scorer`` reads the logits."""
    buckets: dict[tuple[int, int], list[str]] = {}
    for case in echo_cases(seed, delays, n_per_delay, min_length, max_length, pass_delay):
        s, d = case["target"]["seq"], case["target"]["delay"]
        buckets.setdefault((d, len(s)), []).append(s)
    cases = []
    for (d, _n), seqs in sorted(buckets.items()):
        idx = torch.stack([string_to_idx(s) for s in seqs])
        extra = [torch.full((len(seqs),), d, dtype=torch.int64)] if pass_delay else []
        cases.append({"args": [idx_to_onehot(idx)] + extra, "alt_args": [idx] + extra,
                      "target": {"seqs": seqs, "delay": int(d)}, "group": f"delay={d}"})
    return cases


def echo_forward_scorer(output: object, target: dict) -> tuple[int, int]:
    """(correct, counted) letters of one batch from the model's logits (B, T, 27) (the first
    such tensor when the forward returns several); anything else scores 0."""
    seqs, delay = target["seqs"], target["delay"]
    counted = sum(max(len(s) - delay, 0) for s in seqs)
    candidates = list(output) if isinstance(output, (tuple, list)) else [output]
    shape = (len(seqs), len(seqs[0]), N_CLASSES)
    logits = next((o for o in candidates if isinstance(o, Tensor) and tuple(o.shape) == shape), None)
    if logits is None:
        return 0, counted
    pred = logits.argmax(-1)
    return sum(echo_score(idx_to_string(p), s, delay)[0] for p, s in zip(pred, seqs)), counted
