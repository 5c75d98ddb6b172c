"""Hostile model code for hw2_rnn: answers computed by rule, and classes that borrow torch's names.

tests/test_hostile_models.py puts these classes in place of the solution's own in hw2_rnn, so
the notebook trains and tests them as it would its models. ``NO_POINTS`` are the items they
must not earn a point of, ``NO_COMPONENT`` the sub-checks that need the real torch.nn classes,
``INTERFACE`` the items they may keep (those score only the helper's interface).
"""
from __future__ import annotations

_SHARED = '''
import torch

class GRU:
    """Not torch.nn.GRU: a class of the notebook's own with that name."""
    def __init__(self, *args, **kwargs):
        pass

class Linear(torch.nn.Module):
    """Not torch.nn.Linear either."""
    def forward(self, x):
        return x

def shifted(s, delay):
    return (" " * delay + s)[:len(s)]
'''

FAKE_GRU_MEMORY = _SHARED + '''
class GRUMemory(torch.nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.gru = GRU()
        self.decoder = Linear()
        self.bias = torch.nn.Parameter(torch.zeros(27))     # something for the optimizer
    def forward(self, x):
        return torch.zeros(x.shape[0], x.shape[1], 27) + self.bias
    def test_run(self, s):
        return shifted(s, 4)
'''

FAKE_VARIABLE_DELAY = _SHARED + '''
class VariableDelayGRUMemory(torch.nn.Module):
    def __init__(self, hidden_size, max_delay):
        super().__init__()
        self.max_delay = max_delay
        self.gru = GRU()
        self.bias = torch.nn.Parameter(torch.zeros(27))
    def forward(self, x, delays):
        return torch.zeros(x.shape[0], x.shape[1], 27) + self.bias
    def test_run(self, s, delay):
        return shifted(s, delay)
'''

REPLACE = {"class GRUMemory(": FAKE_GRU_MEMORY, "class VariableDelayGRUMemory(": FAKE_VARIABLE_DELAY}
NO_POINTS = ("hw2_rnn.echo_accuracy", "hw2_rnn.variable_delay_accuracy")
NO_COMPONENT = {"hw2_rnn.gru_memory_structure": "gru", "hw2_rnn.variable_delay_structure": "max_delay"}
INTERFACE = ("hw2_rnn.gru_memory_test_run", "hw2_rnn.variable_delay_test_run")
