"""Reference modules, variants and behaviour generators for the check tests."""
from __future__ import annotations

import random

import torch
from torch import nn


class Gate(nn.Module):
    """h = c * x + (1 - c) * (x @ U.T), c = sigmoid(x @ W.T + b); x (B, n)."""

    def __init__(self, n: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n, n) / n ** 0.5)
        self.b = nn.Parameter(torch.zeros(n))
        self.U = nn.Linear(n, n, bias=False)

    def combine(self, c, x, u):
        return c * x + (1 - c) * u

    def forward(self, x):
        c = torch.sigmoid(x @ self.W.T + self.b)
        return self.combine(c, x, self.U(x))


class GateSwapped(Gate):
    """WRONG: c and 1 - c exchanged."""

    def combine(self, c, x, u):
        return (1 - c) * x + c * u


def sign_task(seed: int, n: int = 200, features: int = 4):
    """Classification data the student never sees the labels of: class = x[0] > 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return {"inputs": x, "labels": (x[:, 0] > 0).long()}


def own_test_set(seed: int, n: int = 200, features: int = 4):
    """A notebook's own test set (the same whatever the seed): x = randn(n, 4) from seed 0."""
    return sign_task(0, n, features)


def reverse_cases(seed: int, n: int = 30, max_shift: int = 3):
    """Cases (string, shift) -> the string rotated right by shift; grouped by shift."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        shift = i % (max_shift + 1)
        s = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(5, 9)))
        cases.append({"args": [s, shift], "target": s[-shift:] + s[:-shift] if shift else s,
                      "group": f"shift {shift}"})
    return cases


def char_score(pred, target):
    """(correct, counted) characters."""
    if not isinstance(pred, str) or len(pred) != len(target):
        return 0, len(target)
    return sum(a == b for a, b in zip(pred, target)), len(target)
