"""Homework 2, theory 1.1 (the key in homework2.txt) checked against torch, and the reference
functions of hw2ref.cnn the grader compares students with.

The key uses 1-based indices with s_p = 2p - 1; the translations below keep its formulas
literally (``x1(c, n)`` is x[c, n] in the key's numbering). Every statement of the key checked
here holds; its remark under (iv) ("same local products") is made precise in
``test_1_1_c_iv_weight_gradient_is_a_dilated_correlation``: dl/dW is the cross-correlation of x
with the upstream gradient dilated by the stride.
"""
from __future__ import annotations

import random
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

REPO = Path(__file__).resolve().parents[3]
HW2 = REPO / "reference" / "hw2"
sys.path.insert(0, str(HW2))

from hw2ref import cnn  # noqa: E402

RUBRIC = HW2.parents[1] / "rubrics" / "hw2.toml"


def _torch_out_hw(h, w, k, p, s, d):
    conv = torch.nn.Conv2d(1, 1, k, padding=p, stride=s, dilation=d, bias=False)
    return tuple(conv(torch.zeros(1, 1, h, w)).shape[-2:])


# ----------------------------------------------------------------------------- 1.1(a), (b)

def test_1_1_a_output_is_5_by_2():
    conv = torch.nn.Conv2d(1, 1, (4, 5), stride=4)
    assert tuple(conv(torch.zeros(1, 1, 21, 12)).shape[-2:]) == (5, 2)
    assert cnn.conv_output_size((21, 12), (4, 5), stride=4) == (5, 2)
    assert (21 - 4 + 0) // 4 + 1 == 5 and (12 - 5 + 0) // 4 + 1 == 2  # the key's arithmetic


def test_1_1_b_formula_matches_conv2d_for_random_settings():
    rng = random.Random(7)
    for _ in range(60):
        k, d, s, p = rng.randint(1, 5), rng.randint(1, 3), rng.randint(1, 4), rng.randint(0, 3)
        k_eff = d * (k - 1) + 1
        h, w = rng.randint(k_eff, 30), rng.randint(k_eff, 30)
        f = rng.randint(1, 4)
        conv = torch.nn.Conv2d(3, f, k, padding=p, stride=s, dilation=d)
        out = conv(torch.zeros(1, 3, h, w)).shape
        key = ((h - k_eff + 2 * p) // s + 1, (w - k_eff + 2 * p) // s + 1)
        assert tuple(out[1:]) == (f, *key)
        assert cnn.conv_output_size((h, w), k, p, s, d) == key
        assert cnn.conv_output_size(h, k, p, s, d) == key[0]


def test_conv_output_size_conventions():
    assert cnn.conv_output_size((9, 12), (3, 5), padding=(1, 0), stride=2) == _torch_out_hw(9, 12, (3, 5), (1, 0), 2, 1)
    assert isinstance(cnn.conv_output_size(9, 3), int)
    assert cnn.conv_output_size([9], 3) == (7,)
    with pytest.raises(ValueError):
        cnn.conv_output_size(4, 3, dilation=2)
    with pytest.raises(ValueError):
        cnn.conv_output_size((4, 5), (3, 3, 3))


def test_conv_output_size_fingerprints_are_told_apart_by_the_rubric_cases():
    """Each wrong variant must give a different answer on at least one case the grader uses,
    and the right function must agree with torch on every case."""
    item = next(i for i in tomllib.loads(RUBRIC.read_text())["items"] if i["id"] == "hw2_cnn.conv_output_size")
    cases = [tuple(c["args"]) + (c.get("kwargs", {}).get("stride", 1),) if len(c["args"]) == 2 else tuple(c["args"])
             for c in item["params"]["cases"]]
    # (size, kernel, padding, stride, dilation); the 1.1(a) case gives only size, kernel and stride.
    cases = [(c[0], c[1], 0, c[2], 1) if len(c) == 3 else c for c in cases]
    for size, kernel, padding, stride, dilation in cases:
        if isinstance(size, list):
            args = (tuple(size), kernel, padding, stride, dilation)
            assert cnn.conv_output_size(*args) == _torch_out_hw(*size, *args[1:]), args
    for fp in item["fingerprints"]:
        wrong = getattr(cnn, fp["variant"].split(":")[1])
        differing = [c for c in cases if wrong(*c) != cnn.conv_output_size(*c)]
        assert differing, fp["variant"]


# ----------------------------------------------------------------------------- 1.1(c): the key's example

C, L, K, S = 5, 7, 3, 2


@pytest.fixture
def example():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(C, L, generator=g, dtype=torch.float64)
    w = torch.randn(1, C, K, generator=g, dtype=torch.float64)
    return x, w


def _f(x, w):
    return F.conv1d(x[None], w, stride=S)[0]


def _sp(p):  # the key's window start, 1-based
    return 2 * p - 1


def test_1_1_c_i_output(example):
    x, w = example
    out = _f(x, w)
    assert out.shape == (1, 3)
    for p in (1, 2, 3):
        key = sum(x[c - 1, _sp(p) + m - 1 - 1] * w[0, c - 1, m - 1] for c in range(1, 6) for m in range(1, 4))
        assert torch.isclose(out[0, p - 1], key)
    assert torch.allclose(cnn.conv1d_strided(x, w, S), out)


def test_1_1_c_ii_jacobian_wrt_weight(example):
    x, w = example
    jac = jacobian(lambda w_: _f(x, w_), w)
    assert jac.shape == (1, 3, 1, 5, 3)  # numerator layout
    key = torch.zeros_like(jac)
    for p in (1, 2, 3):
        for c in range(1, 6):
            for m in range(1, 4):
                key[0, p - 1, 0, c - 1, m - 1] = x[c - 1, _sp(p) + m - 1 - 1]
    assert torch.equal(jac, key)
    assert torch.equal(cnn.conv1d_jacobian_weight(x, w, S), key)


def test_1_1_c_iii_jacobian_wrt_input(example):
    x, w = example
    jac = jacobian(lambda x_: _f(x_, w), x)
    assert jac.shape == (1, 3, 5, 7)
    key = torch.zeros_like(jac)
    for p in (1, 2, 3):
        for c in range(1, 6):
            for n in range(1, 8):
                if n in (_sp(p), _sp(p) + 1, _sp(p) + 2):
                    key[0, p - 1, c - 1, n - 1] = w[0, c - 1, n - _sp(p) + 1 - 1]
    assert torch.equal(jac, key)
    assert torch.equal(cnn.conv1d_jacobian_input(x, w, S), key)


def test_1_1_c_iv_gradients_for_random_upstream(example):
    x, w = example
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        up = torch.randn(1, 3, generator=g, dtype=torch.float64)
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        (_f(xr, wr) * up).sum().backward()
        key_w = torch.zeros(1, 5, 3, dtype=torch.float64)
        for c in range(1, 6):
            for m in range(1, 4):
                key_w[0, c - 1, m - 1] = sum(up[0, p - 1] * x[c - 1, _sp(p) + m - 1 - 1] for p in (1, 2, 3))
        assert key_w.shape == (1, 5, 3)
        assert torch.allclose(wr.grad, key_w)
        # dl/dx = J_x^T g with the Jacobian of (iii): the chain rule in numerator layout.
        key_x = torch.einsum("fp,fpcn->cn", up, cnn.conv1d_jacobian_input(x, w, S))
        assert torch.allclose(xr.grad, key_x)
        assert torch.allclose(cnn.conv1d_grad_weight(x, up, S, K), wr.grad)
        assert torch.allclose(cnn.conv1d_grad_input(w, up, S, L), xr.grad)


def test_1_1_c_iv_weight_gradient_is_a_dilated_correlation(example):
    x, w = example
    up = torch.randn(1, 3, dtype=torch.float64)
    # sum_p g[p] x[c, S p + m]: correlate each channel of x with g spread out by the stride.
    as_corr = F.conv1d(x[:, None, :], up.view(1, 1, 3), dilation=S)[:, 0, :K]
    assert torch.allclose(as_corr[None], cnn.conv1d_grad_weight(x, up, S, K))


# ----------------------------------------------------------------------------- hw2ref.cnn in general

SHAPES = [(1, 3, 9, 2, 3, 2), (2, 4, 11, 3, 4, 3), (3, 2, 10, 1, 1, 1), (2, 5, 7, 2, 3, 2), (4, 1, 13, 3, 5, 4)]


@pytest.mark.parametrize("b,c,length,f,k,s", SHAPES)
def test_reference_conv1d_matches_torch(b, c, length, f, k, s):
    g = torch.Generator().manual_seed(b * 100 + length)
    x = torch.randn(b, c, length, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(f, c, k, generator=g, dtype=torch.float64, requires_grad=True)
    out = F.conv1d(x, w, stride=s)
    assert torch.allclose(cnn.conv1d_strided(x, w, s), out)
    assert torch.allclose(cnn.conv1d_strided(x[0], w, s), out[0])
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad(out, (x, w), up)
    assert torch.allclose(cnn.conv1d_grad_weight(x, up, s, k), gw)
    assert torch.allclose(cnn.conv1d_grad_input(w, up, s, length), gx)
    gx0, gw0 = torch.autograd.grad(F.conv1d(x[:1], w, stride=s), (x, w), up[:1])
    assert torch.allclose(cnn.conv1d_grad_input(w, up[0], s, length), gx0[0])
    assert torch.allclose(cnn.conv1d_grad_weight(x[0], up[0], s, k), gw0)
    assert torch.autograd.gradcheck(lambda a, v: cnn.Conv1dStrided.apply(a, v, s), (x, w))
    jw = jacobian(lambda v: F.conv1d(x[0].detach()[None], v, stride=s)[0], w.detach())
    jx = jacobian(lambda a: F.conv1d(a[None], w.detach(), stride=s)[0], x[0].detach())
    assert torch.allclose(cnn.conv1d_jacobian_weight(x[0].detach(), w.detach(), s), jw)
    assert torch.allclose(cnn.conv1d_jacobian_input(x[0].detach(), w.detach(), s), jx)


def test_conv1d_backward_is_the_hand_written_one():
    x = torch.randn(2, 3, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = cnn.Conv1dStrided.apply(x, w, 3)
    assert type(out.grad_fn).__name__ == "Conv1dStridedBackward"
    out.sum().backward()
    # L=10, K=3, S=3: position 9 is in no window, so its gradient is exactly zero
    assert torch.all(x.grad[..., 9] == 0) and torch.any(x.grad[..., :9] != 0)


# ----------------------------------------------------------------------------- wrong variants

def _case():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 11, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    return x, w, 2


def test_flipped_kernel_variants_are_a_consistent_true_convolution():
    x, w, s = _case()
    right = cnn.conv1d_strided(x, w, s)
    wrong = cnn.conv1d_flipped_kernel(x, w, s)
    assert wrong.shape == right.shape and not torch.allclose(wrong, right)
    # true convolution: sum_m x[S p + m] w[K-1-m]
    assert torch.allclose(wrong, F.conv1d(x, w.flip(-1), stride=s))
    up = torch.randn(right.shape, dtype=torch.float64)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    cnn.conv1d_flipped_kernel(xr, wr, s).backward(up)
    assert torch.allclose(cnn.conv1d_grad_weight_flipped_kernel(x, up, s, 3), wr.grad)
    assert torch.allclose(cnn.conv1d_grad_input_flipped_kernel(w, up, s, 11), xr.grad)
    assert not torch.allclose(wr.grad, cnn.conv1d_grad_weight(x, up, s, 3))
    assert not torch.allclose(xr.grad, cnn.conv1d_grad_input(w, up, s, 11))


def test_stride_ignored_variants():
    x, w, s = _case()
    right = cnn.conv1d_strided(x, w, s)
    wrong = cnn.conv1d_stride_ignored(x, w, s)
    assert right.shape[-1] == 5 and wrong.shape[-1] == 9  # a shape mismatch is the fingerprint
    assert torch.allclose(wrong[..., ::s], right)
    up = torch.randn(right.shape, dtype=torch.float64)
    # what one gets by pairing output p with inputs p .. p+K-1: the gradient of a stride-1
    # convolution cut to the first L_out outputs
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    (F.conv1d(xr, wr)[..., :5] * up).sum().backward()
    assert torch.allclose(cnn.conv1d_grad_weight_stride_ignored(x, up, s, 3), wr.grad)
    assert torch.allclose(cnn.conv1d_grad_input_stride_ignored(w, up, s, 11), xr.grad)
    assert not torch.allclose(wr.grad, cnn.conv1d_grad_weight(x, up, s, 3))
    assert not torch.allclose(xr.grad, cnn.conv1d_grad_input(w, up, s, 11))


def test_transposed_jacobians_have_denominator_layout():
    x, w, s = _case()
    jw, jx = cnn.conv1d_jacobian_weight(x[0], w, s), cnn.conv1d_jacobian_input(x[0], w, s)
    tw, tx = cnn.conv1d_jacobian_weight_transposed(x[0], w, s), cnn.conv1d_jacobian_input_transposed(x[0], w, s)
    assert jw.shape == (2, 5, 2, 3, 3) and tw.shape == (2, 3, 3, 2, 5)
    assert jx.shape == (2, 5, 3, 11) and tx.shape == (3, 11, 2, 5)
    assert torch.equal(tw.reshape(18, 10).T, jw.reshape(10, 18))
    assert torch.equal(tx.reshape(33, 10).T, jx.reshape(10, 33))


def test_output_size_variants_differ_where_expected():
    assert cnn.conv_output_size(20, 3, dilation=3) != cnn.conv_output_size_no_dilation(20, 3, dilation=3)
    assert cnn.conv_output_size(20, 3, dilation=1) == cnn.conv_output_size_no_dilation(20, 3, dilation=1)
    assert cnn.conv_output_size(21, 4, stride=4) == cnn.conv_output_size_off_by_one(21, 4, stride=4) + 1
    assert cnn.conv_output_size(20, 3, padding=2) == cnn.conv_output_size_one_padding(20, 3, padding=2) + 2


# ----------------------------------------------------------------------------- Part 2 references

def test_reference_cnn_and_training_helpers():
    torch.manual_seed(0)
    model = cnn.ReferenceCNN()
    out = model(torch.randn(4, 3, 64, 64))
    assert out.shape == (4, 2) and torch.isfinite(out).all()
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("Conv2d") >= 2 and "BatchNorm2d" in kinds and "Linear" in kinds
    clipped = torch.nn.Sequential(*list(model.children())[:3])
    assert clipped(torch.randn(1, 3, 64, 64)).shape == (1, 32, 16, 16)

    images, labels = torch.randn(6, 3, 64, 64), torch.tensor([0, 1, 1, 0, 1, 0])
    criterion = torch.nn.CrossEntropyLoss()
    loss, correct = cnn.get_loss_and_correct(model, (images, labels), criterion, "cpu")
    assert isinstance(loss, torch.Tensor) and isinstance(correct, torch.Tensor)
    with torch.no_grad():
        assert correct.item() == (model(images).argmax(1) == labels).sum().item()

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    cnn.step(loss, opt)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    # a second step's gradients are fresh, not accumulated on top of the first
    loss2, _ = cnn.get_loss_and_correct(model, (images, labels), criterion, "cpu")
    fresh = torch.autograd.grad(loss2, model.fc.weight, retain_graph=True)[0]
    cnn.step(loss2, opt)
    assert torch.allclose(model.fc.weight.grad, fresh)
