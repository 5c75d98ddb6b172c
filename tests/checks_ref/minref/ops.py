"""Reference functions and deliberately wrong variants for the check tests."""
from __future__ import annotations

import torch


def out_size(size, kernel, stride=1):
    """Output length of a strided window; ints or tuples (ints broadcast)."""
    if isinstance(size, tuple) or isinstance(kernel, tuple):
        n = len(size) if isinstance(size, tuple) else len(kernel)
        size = size if isinstance(size, tuple) else (size,) * n
        kernel = kernel if isinstance(kernel, tuple) else (kernel,) * n
        return tuple((s - k) // stride + 1 for s, k in zip(size, kernel))
    return (size - kernel) // stride + 1


def out_size_off_by_one(size, kernel, stride=1):
    """WRONG: forgets the + 1."""
    if isinstance(size, tuple) or isinstance(kernel, tuple):
        return tuple(o - 1 for o in out_size(size, kernel, stride))
    return out_size(size, kernel, stride) - 1


def conv1d(x, w, stride):
    """out[f, p] = sum_{c, m} x[c, stride*p + m] w[f, c, m]; x (C, L), w (F, C, K)."""
    windows = x.unfold(-1, w.shape[-1], stride)
    return torch.einsum("cpk,fck->fp", windows, w)


def conv1d_flipped(x, w, stride):
    """WRONG: a true convolution (flipped kernel)."""
    return conv1d(x, w.flip(-1), stride)


def conv1d_stride_ignored(x, w, stride):
    """WRONG: stride 1 whatever stride says."""
    return conv1d(x, w, 1)


def grad_weight(x, grad_out, stride, kernel_size):
    """dl/dw for conv1d given dl/dout."""
    windows = x.unfold(-1, kernel_size, stride)
    return torch.einsum("fp,cpk->fck", grad_out, windows)


def grad_weight_transposed(x, grad_out, stride, kernel_size):
    """WRONG: axes in the wrong order (denominator layout)."""
    return grad_weight(x, grad_out, stride, kernel_size).permute(2, 1, 0)
