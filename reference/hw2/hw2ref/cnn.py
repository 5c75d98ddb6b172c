"""Reference answers for hw2_cnn: theory 1.1 in code, and the Part 2 training helpers.

Conventions (the notebook states the same ones to students):

* ``conv_output_size(size, kernel, padding=0, stride=1, dilation=1)`` takes ints or
  per-dimension tuples; ints broadcast against tuples.  All ints give an int, otherwise a
  tuple.  It is ``floor((size + 2P - D(K-1) - 1) / S) + 1`` (homework 1.1(b)), and raises
  ``ValueError`` when the dilated kernel does not fit.
* 1-D convolution here is a cross-correlation without bias, padding or dilation:
  ``out[f, p] = sum_{c, m} x[c, S*p + m] * w[f, c, m]`` (0-based; the homework's 1-based
  ``s_p = 2p - 1`` is ``S*p`` here).  ``x`` is ``(C, L)`` or batched ``(B, C, L)``, ``w`` is
  ``(F, C, K)``, the output ``(F, L_out)`` or ``(B, F, L_out)`` with
  ``L_out = (L - K) // S + 1``.  ``grad_weight`` sums over the batch.
* Jacobians use numerator layout: output dimensions first, then the dimensions of the
  variable, i.e. ``(F, L_out, F, C, K)`` w.r.t. the weight and ``(F, L_out, C, L)`` w.r.t. an
  unbatched input, which is what ``torch.autograd.functional.jacobian`` returns.

The ``*_flipped_kernel``, ``*_stride_ignored``, ``*_no_dilation``, ``*_off_by_one`` and
``*_transposed`` functions are wrong on purpose: they reproduce common mistakes so that a
check can tell a student which one was made.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

IntOrTuple = int | Sequence[int]


# ----------------------------------------------------------------------------- 1.1(a), (b)

def _broadcast(*args: IntOrTuple) -> tuple[list[tuple[int, ...]], bool]:
    lengths = {len(a) for a in args if not isinstance(a, int)}
    if len(lengths) > 1:
        raise ValueError(f"per-dimension arguments disagree in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 1
    spread = [tuple([a] * n) if isinstance(a, int) else tuple(int(v) for v in a) for a in args]
    return spread, any(not isinstance(a, int) for a in args)


def _output_size(size: IntOrTuple, kernel: IntOrTuple, padding: IntOrTuple, stride: IntOrTuple,
                 dilation: IntOrTuple, rule, strict: bool = True) -> int | tuple[int, ...]:
    (hs, ks, ps, ss, ds), as_tuple = _broadcast(size, kernel, padding, stride, dilation)
    out = []
    for h, k, p, s, d in zip(hs, ks, ps, ss, ds):
        if s < 1 or k < 1 or d < 1 or p < 0:
            raise ValueError("kernel, stride and dilation must be >= 1 and padding >= 0")
        o = rule(h, k, p, s, d)
        if strict and o < 1:
            raise ValueError(f"kernel {k} with dilation {d} does not fit an input of {h} padded by {p}")
        out.append(o)
    return tuple(out) if as_tuple else out[0]


def conv_output_size(size: IntOrTuple, kernel: IntOrTuple, padding: IntOrTuple = 0,
                     stride: IntOrTuple = 1, dilation: IntOrTuple = 1) -> int | tuple[int, ...]:
    """Spatial output size of a convolution (homework 1.1(b))."""
    return _output_size(size, kernel, padding, stride, dilation,
                        lambda h, k, p, s, d: (h + 2 * p - d * (k - 1) - 1) // s + 1)


def conv_output_size_no_dilation(size: IntOrTuple, kernel: IntOrTuple, padding: IntOrTuple = 0,
                                 stride: IntOrTuple = 1, dilation: IntOrTuple = 1) -> int | tuple[int, ...]:
    """WRONG: treats the kernel as if it were not dilated."""
    return _output_size(size, kernel, padding, stride, dilation,
                        lambda h, k, p, s, d: (h + 2 * p - k) // s + 1, strict=False)


def conv_output_size_off_by_one(size: IntOrTuple, kernel: IntOrTuple, padding: IntOrTuple = 0,
                                stride: IntOrTuple = 1, dilation: IntOrTuple = 1) -> int | tuple[int, ...]:
    """WRONG: forgets the ``+ 1`` (counts strides instead of positions)."""
    return _output_size(size, kernel, padding, stride, dilation,
                        lambda h, k, p, s, d: (h + 2 * p - d * (k - 1) - 1) // s, strict=False)


def conv_output_size_one_padding(size: IntOrTuple, kernel: IntOrTuple, padding: IntOrTuple = 0,
                                 stride: IntOrTuple = 1, dilation: IntOrTuple = 1) -> int | tuple[int, ...]:
    """WRONG: pads only one side (``P`` instead of ``2P``)."""
    return _output_size(size, kernel, padding, stride, dilation,
                        lambda h, k, p, s, d: (h + p - d * (k - 1) - 1) // s + 1, strict=False)


# ----------------------------------------------------------------------------- 1.1(c) forward

def _check(x: torch.Tensor, w: torch.Tensor, stride: int) -> None:
    if x.dim() not in (2, 3) or w.dim() != 3:
        raise ValueError(f"expected x (C, L) or (B, C, L) and w (F, C, K); got {tuple(x.shape)}, {tuple(w.shape)}")
    if x.shape[-2] != w.shape[1]:
        raise ValueError(f"x has {x.shape[-2]} channels, w expects {w.shape[1]}")
    if stride < 1 or x.shape[-1] < w.shape[-1]:
        raise ValueError("stride must be >= 1 and the kernel must fit the input")


def conv1d_output_length(length: int, kernel_size: int, stride: int) -> int:
    return (length - kernel_size) // stride + 1


def conv1d_strided(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """``out[..., f, p] = sum_{c, m} x[..., c, stride*p + m] * w[f, c, m]`` (homework 1.1(c)(i))."""
    _check(x, w, stride)
    windows = x.unfold(-1, w.shape[-1], stride)  # (..., C, L_out, K)
    return torch.einsum("...cpk,fck->...fp", windows, w)


def conv1d_flipped_kernel(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """WRONG: a true convolution (the kernel is reversed), not the cross-correlation asked for."""
    return conv1d_strided(x, w.flip(-1), stride)


def conv1d_stride_ignored(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """WRONG: slides the kernel one step at a time whatever ``stride`` says."""
    return conv1d_strided(x, w, 1)


# ----------------------------------------------------------------------------- 1.1(c)(iv), (iii) gradients

def conv1d_grad_weight(x: torch.Tensor, grad_out: torch.Tensor, stride: int, kernel_size: int) -> torch.Tensor:
    """``dl/dW[f, c, m] = sum_p g[f, p] * x[c, stride*p + m]``, summed over the batch if any."""
    windows = x.unfold(-1, kernel_size, stride)  # (..., C, L_out, K)
    if windows.shape[-2] != grad_out.shape[-1]:
        raise ValueError(f"grad_out has {grad_out.shape[-1]} positions, the convolution has {windows.shape[-2]}")
    if x.dim() == 2:
        windows, grad_out = windows.unsqueeze(0), grad_out.unsqueeze(0)
    return torch.einsum("bfp,bcpk->fck", grad_out, windows)


def conv1d_grad_input(w: torch.Tensor, grad_out: torch.Tensor, stride: int, input_length: int) -> torch.Tensor:
    """``dl/dx[c, n] = sum_{f, p: 0 <= n - stride*p < K} g[f, p] * w[f, c, n - stride*p]``.

    Positions that no window covers (the tail when ``(L - K) % stride != 0``) get zero.
    """
    k = w.shape[-1]
    l_out = grad_out.shape[-1]
    if conv1d_output_length(input_length, k, stride) != l_out:
        raise ValueError(f"grad_out has {l_out} positions, an input of {input_length} gives "
                         f"{conv1d_output_length(input_length, k, stride)}")
    per_tap = torch.einsum("...fp,fck->...ckp", grad_out, w)  # (..., C, K, L_out)
    grad_x = per_tap.new_zeros(*per_tap.shape[:-3], w.shape[1], input_length)
    span = stride * (l_out - 1) + 1
    for m in range(k):
        grad_x[..., m:m + span:stride] += per_tap[..., m, :]
    return grad_x


def conv1d_grad_weight_flipped_kernel(x: torch.Tensor, grad_out: torch.Tensor, stride: int,
                                      kernel_size: int) -> torch.Tensor:
    """WRONG: the weight gradient of a true convolution (reversed along the kernel axis)."""
    return conv1d_grad_weight(x, grad_out, stride, kernel_size).flip(-1)


def conv1d_grad_input_flipped_kernel(w: torch.Tensor, grad_out: torch.Tensor, stride: int,
                                     input_length: int) -> torch.Tensor:
    """WRONG: the input gradient of a true convolution."""
    return conv1d_grad_input(w.flip(-1), grad_out, stride, input_length)


def conv1d_grad_weight_stride_ignored(x: torch.Tensor, grad_out: torch.Tensor, stride: int,
                                      kernel_size: int) -> torch.Tensor:
    """WRONG: pairs output position p with input position p + m instead of stride*p + m."""
    l_out = grad_out.shape[-1]
    return conv1d_grad_weight(x[..., :l_out + kernel_size - 1], grad_out, 1, kernel_size)


def conv1d_grad_input_stride_ignored(w: torch.Tensor, grad_out: torch.Tensor, stride: int,
                                     input_length: int) -> torch.Tensor:
    """WRONG: scatters output position p back to inputs p .. p + K - 1."""
    k, l_out = w.shape[-1], grad_out.shape[-1]
    short = conv1d_grad_input(w, grad_out, 1, l_out + k - 1)
    return F.pad(short, (0, input_length - short.shape[-1]))


class Conv1dStrided(torch.autograd.Function):
    """``conv1d_strided`` whose backward pass is the hand-derived formulas, not autograd's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        return conv1d_strided(x, w, stride)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = conv1d_grad_input(w, grad_out, ctx.stride, x.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = conv1d_grad_weight(x, grad_out, ctx.stride, w.shape[-1])
        return grad_x, grad_w, None


# ----------------------------------------------------------------------------- 1.1(c)(ii), (iii) Jacobians

def conv1d_jacobian_weight(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """``J[f, p, f', c, m] = [f == f'] * x[c, stride*p + m]``; shape ``(F, L_out, F, C, K)``.

    ``x`` is unbatched ``(C, L)``; ``w`` only supplies the shape.
    """
    _check(x, w, stride)
    n_f, _, k = w.shape
    windows = x.unfold(-1, k, stride).permute(1, 0, 2)  # (L_out, C, K)
    eye = torch.eye(n_f, dtype=x.dtype, device=x.device)
    return torch.einsum("fg,pck->fpgck", eye, windows)


def conv1d_jacobian_input(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """``J[f, p, c, n] = w[f, c, n - stride*p]`` when ``0 <= n - stride*p < K``, else 0.

    Shape ``(F, L_out, C, L)``; ``x`` (unbatched) only supplies the shape.
    """
    _check(x, w, stride)
    n_f, n_c, k = w.shape
    length = x.shape[-1]
    l_out = conv1d_output_length(length, k, stride)
    jac = w.new_zeros(n_f, l_out, n_c, length)
    for p in range(l_out):
        jac[:, p, :, stride * p:stride * p + k] = w
    return jac


def conv1d_jacobian_weight_transposed(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """WRONG: denominator layout, shape ``(F, C, K, F, L_out)``."""
    return conv1d_jacobian_weight(x, w, stride).permute(2, 3, 4, 0, 1)


def conv1d_jacobian_input_transposed(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """WRONG: denominator layout, shape ``(C, L, F, L_out)``."""
    return conv1d_jacobian_input(x, w, stride).permute(2, 3, 0, 1)


# ----------------------------------------------------------------------------- Part 2

class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class ReferenceCNN(nn.Module):
    """Conv-BN-ReLU-pool twice, one residual block, global max pooling, a linear layer.

    Global pooling makes the prediction independent of where the object sits; a flattened
    feature map followed by a linear layer overfits the synthetic data instead.
    The children form a valid sequential path, so ``nn.Sequential(*children[:k])`` works.
    """

    def __init__(self, width: int = 16, n_classes: int = 2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.MaxPool2d(2))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2))
        self.res = ResidualBlock(2 * width)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.res(self.down(self.stem(x))))))


def get_loss_and_correct(model: nn.Module, batch, criterion: nn.Module, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over the batch and the number of correct predictions, both as tensors."""
    images, labels = batch
    images, labels = images.to(device), labels.to(device)
    logits = model(images)
    loss = criterion(logits, labels)
    correct = (logits.argmax(dim=1) == labels).sum()
    return loss, correct


def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
