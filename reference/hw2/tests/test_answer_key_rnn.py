"""The 1.2 answer key and the hw2_rnn reference, checked against autograd and
against plain per-sample loops written independently of hw2ref."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hw2ref import rnn  # noqa: E402



@pytest.fixture(autouse=True)
def float64_math(request):
    """Gradient checks in float64; echo tests (test_echo_*) keep float32 like the notebook."""
    old = torch.get_default_dtype()
    if not request.node.name.startswith("test_echo_"):
        torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)

SIZES = [(1, 3, 2, 1), (2, 5, 3, 4), (3, 7, 4, 4), (2, 9, 6, 3)]  # (B, T, n, m)


# ---------------------------------------------------------------- loops


def loop_gated(Wc, Wh, Wx, x, deltas=None):
    """Eq. (1)-(2) one vector at a time; deltas[t] is added to h[t] (for total grads)."""
    T, m = x.shape[0], Wh.shape[0]
    h = torch.zeros(m)
    hs = []
    for t in range(T):
        c = torch.sigmoid(Wc @ x[t] + Wh @ h)
        h = c * h + (1 - c) * (Wx @ x[t])
        if deltas is not None:
            h = h + deltas[t]
        hs.append(h)
    return torch.stack(hs)


def loop_attention(Q, K, V, x, deltas=None):
    """AttentionRNN(k) one vector at a time with explicit zero states h[t<1]."""
    k, n = len(Q) - 1, x.shape[1]
    hist = {t: torch.zeros(n) for t in range(1 - k, 1)}
    for t in range(1, x.shape[0] + 1):
        s = [x[t - 1]] + [hist[t - i] for i in range(1, k + 1)]
        w = torch.stack([(Q[i] @ s[i]).dot(K[i] @ s[i]) for i in range(k + 1)])
        a = torch.exp(w - w.max())
        a = a / a.sum()
        h = sum(a[i] * (V[i] @ s[i]) for i in range(k + 1))
        if deltas is not None:
            h = h + deltas[t - 1]
        hist[t] = h
    return torch.stack([hist[t] for t in range(1, x.shape[0] + 1)])


def total_grads(loop, params, x, r):
    """dl/dh[t] through every later step, for l = sum_t r[t] . h[t]: perturb h[t] by deltas[t]."""
    deltas = torch.zeros(x.shape[0], r.shape[1], requires_grad=True)
    l = (loop(*params, x, deltas) * r).sum()
    return torch.autograd.grad(l, deltas)[0]


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- 1.2 Part 1


@pytest.mark.parametrize("B,T,n,m", SIZES)
def test_gated_rnn_matches_loop(B, T, n, m):
    torch.manual_seed(B * 100 + T)
    model = rnn.GatedRNN(n, m).double()
    x = torch.randn(B, T, n)
    H, C = model(x, return_gates=True)
    assert H.shape == C.shape == (B, T, m)
    for b in range(B):
        ref = loop_gated(model.W_c, model.W_h, model.W_x, x[b])
        torch.testing.assert_close(H[b], ref)
    torch.testing.assert_close(model(x[0]), H[0])  # unbatched input
    assert {name for name, _ in model.named_parameters()} == {"W_c", "W_h", "W_x"}
    assert model.W_c.shape == model.W_x.shape == (m, n) and model.W_h.shape == (m, m)


def test_gated_rnn_h0_continues_a_run():
    torch.manual_seed(3)
    model = rnn.GatedRNN(3, 4).double()
    x = torch.randn(2, 8, 3)
    H = model(x)
    torch.testing.assert_close(model(x[:, 5:], h0=H[:, 4]), H[:, 5:])


@pytest.mark.parametrize("B,T,n,m", SIZES)
def test_bptt_total_grads_match_autograd(B, T, n, m):
    torch.manual_seed(7 + T)
    model = rnn.GatedRNN(n, m).double()
    x, r = torch.randn(B, T, n), torch.randn(B, T, m)
    mine = rnn.gated_rnn_total_grads(model, x, r)
    for b in range(B):
        auto = total_grads(loop_gated, (model.W_c, model.W_h, model.W_x), x[b], r[b])
        torch.testing.assert_close(mine[b], auto)


@pytest.mark.parametrize("B,T,n,m", SIZES)
def test_key_1_2c_wx_gradient_needs_total_derivatives(B, T, n, m):
    """sum_t (g_t * (1 - c[t])) x[t]^T is dl/dW_x exactly when g_t is the total dl/dh[t]."""
    torch.manual_seed(11 + T * n)
    model = rnn.GatedRNN(n, m).double()
    x, r = torch.randn(B, T, n), torch.randn(B, T, m)
    H, C = model(x, return_gates=True)
    auto = torch.autograd.grad((H * r).sum(), model.W_x)[0]
    g = rnn.gated_rnn_total_grads(model, x, r)
    got = rnn.gated_rnn_grad_Wx(x, C.detach(), g)
    assert got.shape == (m, n)
    torch.testing.assert_close(got, auto)
    if T > 1:
        # with the explicit partials (r) in place of g_t the key's formula is wrong
        assert not torch.allclose(rnn.gated_rnn_grad_Wx(x, C.detach(), r), auto, atol=1e-6)


def test_key_1_2c_single_step_needs_no_bptt():
    torch.manual_seed(5)
    model = rnn.GatedRNN(3, 2).double()
    x, r = torch.randn(1, 1, 3), torch.randn(1, 1, 2)
    H, C = model(x, return_gates=True)
    auto = torch.autograd.grad((H * r).sum(), model.W_x)[0]
    torch.testing.assert_close(rnn.gated_rnn_grad_Wx(x, C.detach(), r), auto)


def test_gated_wrong_variants_differ():
    torch.manual_seed(2)
    good, bad = rnn.GatedRNN(4, 3).double(), rnn.GatedRNNGateSwapped(4, 3).double()
    bad.load_state_dict(good.state_dict())
    x = torch.randn(2, 6, 4)
    assert not torch.allclose(good(x), bad(x), atol=1e-3)
    # the swap is exactly the substitution c -> 1 - c in eq. (2)
    ref = []
    for b in range(2):
        h, hs = torch.zeros(3), []
        for t in range(6):
            c = torch.sigmoid(good.W_c @ x[b, t] + good.W_h @ h)
            h = (1 - c) * h + c * (good.W_x @ x[b, t])
            hs.append(h)
        ref.append(torch.stack(hs))
    torch.testing.assert_close(bad(x), torch.stack(ref))

    x, c, g = torch.randn(5, 4), torch.rand(5, 3), torch.randn(5, 3)
    right = rnn.gated_rnn_grad_Wx(x, c, g)
    assert rnn.gated_rnn_grad_Wx_transposed(x, c, g).shape == (4, 3) != right.shape
    xs, cs, gs = torch.randn(5, 3), torch.rand(5, 3), torch.randn(5, 3)  # square: values differ
    assert not torch.allclose(rnn.gated_rnn_grad_Wx_transposed(xs, cs, gs), rnn.gated_rnn_grad_Wx(xs, cs, gs))
    assert not torch.allclose(rnn.gated_rnn_grad_Wx_gate_swapped(x, c, g), right, atol=1e-3)


# ---------------------------------------------------------------- 1.2 Part 2


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("B,T,n", [(1, 1, 2), (2, 6, 3), (3, 8, 5)])
def test_attention_rnn_matches_loop(k, B, T, n):
    torch.manual_seed(k * 10 + T)
    model = rnn.AttentionRNN(n, k).double()
    x = torch.randn(B, T, n)
    H, A = model(x, return_weights=True)
    assert H.shape == (B, T, n) and A.shape == (B, T, k + 1)
    torch.testing.assert_close(A.sum(-1), torch.ones(B, T))
    for b in range(B):
        torch.testing.assert_close(H[b], loop_attention(model.Q, model.K, model.V, x[b]))
    torch.testing.assert_close(model(x[0]), H[0])
    names = {name for name, _ in model.named_parameters()}
    assert names == {f"{p}.{i}" for p in "QKV" for i in range(k + 1)}


def test_attention_first_step_closed_form():
    """At t = 1 every state source is zero: h[1] = a_0 V_0 x[1], a_0 = e^w0 / (e^w0 + k)."""
    torch.manual_seed(0)
    for k in (1, 2, 3):
        model = rnn.AttentionRNN(4, k).double()
        x = torch.randn(1, 4)
        w0 = (model.Q[0] @ x[0]).dot(model.K[0] @ x[0])
        a0 = torch.exp(w0) / (torch.exp(w0) + k)
        torch.testing.assert_close(model(x)[0], a0 * (model.V[0] @ x[0]))


@pytest.mark.parametrize("seed", range(4))
def test_key_1_2e_jacobian_matches_autograd(seed):
    torch.manual_seed(seed)
    n = 3 + seed
    model = rnn.AttentionRNN(n, 2).double()
    x_t, h1, h2 = torch.randn(n), torch.randn(n), torch.randn(n)

    def step(h_prev):
        s = [x_t, h_prev, h2]
        w = torch.stack([(model.Q[i] @ s[i]).dot(model.K[i] @ s[i]) for i in range(3)])
        a = torch.softmax(w, 0)
        return sum(a[i] * (model.V[i] @ s[i]) for i in range(3))

    auto = torch.autograd.functional.jacobian(step, h1)
    with torch.no_grad():
        got = rnn.attention_rnn2_jacobian(model.Q, model.K, model.V, x_t, h1, h2)
        wrong = rnn.attention_rnn2_jacobian_transposed(model.Q, model.K, model.V, x_t, h1, h2)
    torch.testing.assert_close(got, auto)
    assert not torch.allclose(wrong, auto, atol=1e-4)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_source_jacobian_every_lag(k):
    torch.manual_seed(40 + k)
    n = 3
    model = rnn.AttentionRNN(n, k).double()
    srcs = [torch.randn(n) for _ in range(k + 1)]
    for i in range(k + 1):
        def step(s_i, i=i):
            s = list(srcs)
            s[i] = s_i
            return loop_attention_step(model, s)
        auto = torch.autograd.functional.jacobian(step, srcs[i])
        with torch.no_grad():
            got = rnn.attention_source_jacobian(model.Q, model.K, model.V, srcs, i)
        torch.testing.assert_close(got, auto)


def loop_attention_step(model, s):
    w = torch.stack([(model.Q[i] @ s[i]).dot(model.K[i] @ s[i]) for i in range(len(s))])
    a = torch.softmax(w, 0)
    return sum(a[i] * (model.V[i] @ s[i]) for i in range(len(s)))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_key_1_2f_aggregation_reading(k):
    """Sum over the next k states holds with TOTAL dl/dh[t] and DIRECT Jacobians (+ the
    explicit term of h[T]); with explicit partials it needs total Jacobians and every t > T."""
    torch.manual_seed(60 + k)
    n, T = 3, 9
    model = rnn.AttentionRNN(n, k).double()
    x, r = torch.randn(T, n), torch.randn(T, n)
    params = (model.Q, model.K, model.V)
    auto = total_grads(loop_attention, params, x, r)
    torch.testing.assert_close(rnn.attention_rnn_total_grads(model, x, r), auto)

    with torch.no_grad():
        H = model(x)
    padded = torch.cat([torch.zeros(k, n), H], 0)

    def direct(t, i):  # dh[t]/dh[t-i], homework time
        srcs = [x[t - 1]] + [padded[k + t - 1 - j] for j in range(1, k + 1)]
        with torch.no_grad():
            return rnn.attention_source_jacobian(model.Q, model.K, model.V, srcs, i)

    Tq = 2  # homework time T; later states T+1..T+k all exist
    later = range(Tq + 1, Tq + k + 1)
    agg = rnn.attention_aggregate([auto[t - 1] for t in later], [direct(t, t - Tq) for t in later])
    torch.testing.assert_close(agg + r[Tq - 1], auto[Tq - 1])
    # explicit partials with direct Jacobians miss the longer paths
    wrong = rnn.attention_aggregate([r[t - 1] for t in later], [direct(t, t - Tq) for t in later])
    assert not torch.allclose(wrong + r[Tq - 1], auto[Tq - 1], atol=1e-6)

    # other reading: total Jacobians dh[t]/dh[T] (through the recurrence), explicit dl/dh[t]
    def tail(hT):
        states = {t: padded[k + t - 1] for t in range(Tq - k + 1, Tq)}
        states[Tq] = hT
        outs = []
        for t in range(Tq + 1, T + 1):
            states[t] = loop_attention_step(model, [x[t - 1]] + [states[t - i] for i in range(1, k + 1)])
            outs.append(states[t])
        return torch.stack(outs)

    totJ = torch.autograd.functional.jacobian(tail, H[Tq - 1].detach())  # (T-Tq, n, n)
    full = r[Tq - 1] + sum(r[t - 1] @ totJ[t - Tq - 1] for t in range(Tq + 1, T + 1))
    torch.testing.assert_close(full, auto[Tq - 1])
    if T > Tq + k:
        cut = r[Tq - 1] + sum(r[t - 1] @ totJ[t - Tq - 1] for t in later)
        assert not torch.allclose(cut, auto[Tq - 1], atol=1e-6)


def test_attention_wrong_variants_differ():
    torch.manual_seed(9)
    x = torch.randn(3, 7, 4)
    for k in (1, 2, 3):
        good = rnn.AttentionRNN(4, k).double()
        ref = good(x)
        for cls in (rnn.AttentionRNNSoftmaxOverBatch, rnn.AttentionRNNFeaturewise,
                    rnn.AttentionRNNNoInputSource, rnn.AttentionRNNMaskedStart):
            bad = cls(4, k).double()
            bad.load_state_dict(good.state_dict())
            out = bad(x)
            assert out.shape == ref.shape
            assert not torch.allclose(out, ref, atol=1e-3), cls.__name__
    # missing the x source, the recurrence never leaves zero
    assert torch.count_nonzero(rnn.AttentionRNNNoInputSource(4, 2).double()(x)) == 0
    # dropping the zero states changes h[1] already
    good = rnn.AttentionRNN(4, 2).double()
    masked = rnn.AttentionRNNMaskedStart(4, 2).double()
    masked.load_state_dict(good.state_dict())
    assert not torch.allclose(good(x)[:, 0], masked(x)[:, 0])


# ---------------------------------------------------------------- echo task


def test_echo_onehot_and_targets():
    idx = torch.tensor([[0, 5, 26], [1, 2, 3]])
    oh = rnn.idx_to_onehot(idx)
    assert oh.shape == (2, 3, 27) and oh.dtype == torch.float32
    assert torch.equal(oh.argmax(-1), idx) and torch.equal(oh.sum(-1), torch.ones(2, 3, dtype=torch.float32))
    assert rnn.echo_target("abacaba", 3) == "   abac"
    assert rnn.echo_target("abc", 0) == "abc"
    assert rnn.echo_target("abc", 5) == "   "
    seq = torch.tensor([[3, 4, 5, 6]])
    assert torch.equal(rnn.echo_target(seq, 0), seq)
    assert torch.equal(rnn.echo_target(seq, 2), torch.tensor([[0, 0, 3, 4]]))
    assert rnn.echo_score("   abac", "abacaba", 3) == (4, 4)
    assert rnn.echo_score("   abXc", "abacaba", 3) == (3, 4)
    assert rnn.echo_score("zzzabac", "abacaba", 3) == (4, 4)  # blanks unscored
    assert rnn.echo_score("abc", "abacaba", 3) == (0, 4)


def test_echo_datasets_follow_the_rule():
    torch.manual_seed(1)
    ds = rnn.EchoDataset(delay=4, seq_length=15, size=20)
    items = list(ds)
    assert len(items) == len(ds) == 20
    for seq, res in items:
        assert seq.shape == res.shape == (15,) and seq.dtype == torch.long
        assert int(seq.min()) >= 1 and int(seq.max()) <= 26
        assert torch.equal(res, rnn.echo_target(seq, 4))
    vds = rnn.VariableDelayEchoDataset(max_delay=8, seq_length=20, size=300)
    delays = set()
    for seq, d, res in vds:
        delays.add(d)
        assert torch.equal(res, rnn.echo_target(seq, d))
    assert delays == set(range(9))
    batch = next(iter(torch.utils.data.DataLoader(vds, batch_size=7)))
    assert batch[1].dtype == torch.long and batch[1].shape == (7,)


def test_echo_reference_models_contracts():
    torch.manual_seed(0)
    m = rnn.GRUMemory(16)
    x = rnn.idx_to_onehot(torch.randint(1, 27, (3, 11)))
    assert m(x.float()).shape == (3, 11, 27)
    out = m.test_run("hello")
    assert isinstance(out, str) and len(out) == 5 and set(out) <= set(rnn.ALPHABET)
    vm = rnn.VariableDelayGRUMemory(16, 8)
    assert vm.max_delay == 8
    d = torch.tensor([0, 8, 3])
    y = vm(x.float(), d)
    assert y.shape == (3, 11, 27)
    allh = vm.all_delay_logits(x.float())
    for b in range(3):
        torch.testing.assert_close(y[b], allh[b, :, int(d[b])])
    assert len(vm.test_run("abcdefg", 2)) == 7


def test_echo_string_roundtrip():
    rng = random.Random(4)
    s = rnn.random_letters(rng, 30)
    assert rnn.idx_to_string(rnn.string_to_idx(s)) == s and set(s) <= set("abcdefghijklmnopqrstuvwxyz")


def test_echo_cases_and_scorer():
    cases = rnn.echo_cases(7, delays=range(9), n_per_delay=20, pass_delay=True)
    assert len(cases) == 180 and {c["group"] for c in cases} == {f"delay={d}" for d in range(9)}
    assert cases == rnn.echo_cases(7, delays=range(9), n_per_delay=20, pass_delay=True)
    for c in cases:
        s, d = c["args"]
        assert 15 <= len(s) <= 25 and d == c["target"]["delay"] and s == c["target"]["seq"]
        assert rnn.echo_scorer(rnn.echo_target(s, d), c["target"]) == (len(s) - d, len(s) - d)
        assert rnn.echo_scorer(None, c["target"]) == (0, len(s) - d)
        assert rnn.echo_scorer(s, c["target"])[0] < len(s) - d or d == 0
    fixed = rnn.echo_cases(1, n_per_delay=5)
    assert all(len(c["args"]) == 1 and c["target"]["delay"] == 4 for c in fixed)


def test_echo_forward_cases_hold_the_strings_of_echo_cases_and_score_logits():
    strings = rnn.echo_cases(7, delays=range(9), n_per_delay=20, pass_delay=True)
    batches = rnn.echo_forward_cases(7, delays=range(9), n_per_delay=20, pass_delay=True)
    assert sorted(s for b in batches for s in b["target"]["seqs"]) == sorted(c["target"]["seq"] for c in strings)
    for b in batches:
        x, d = b["args"]
        idx, d2 = b["alt_args"]
        seqs, delay = b["target"]["seqs"], b["target"]["delay"]
        assert x.shape == (len(seqs), len(seqs[0]), 27) and torch.equal(x.argmax(-1), idx) and torch.equal(d, d2)
        assert (d == delay).all() and b["group"] == f"delay={delay}"
        perfect = rnn.idx_to_onehot(torch.stack([rnn.string_to_idx(rnn.echo_target(s, delay)) for s in seqs]))
        counted = sum(len(s) - delay for s in seqs)
        assert rnn.echo_forward_scorer(perfect, b["target"]) == (counted, counted)
        assert rnn.echo_forward_scorer((perfect, torch.zeros(1)), b["target"]) == (counted, counted)
        assert rnn.echo_forward_scorer(perfect[:, :-1], b["target"]) == (0, counted)
        # A model that copies its input instead of delaying it is right only where the letters repeat.
        assert rnn.echo_forward_scorer(x, b["target"])[0] < counted or delay == 0
