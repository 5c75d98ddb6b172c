# %% [markdown]
# BEGIN HW2
# # Homework 2 - Recurrent Neural Networks
#
# In this notebook you will
#
# 1. turn your answers to theory question 1.2 into code: the gated RNN of eq. (1)-(2) with the
#    gradient of the loss with respect to $W_x$ you derived in 1.2(c), and AttentionRNN(k) of 1.2(c)
#    (Part 2 of the theory);
# 2. train GRU networks that echo a string of letters with a fixed delay, then with a delay given
#    per string.
#
# Fill in every cell marked `TODO`. The notebook must run from top to bottom on a CPU (the graders
# run it without a GPU and without internet). The cells marked "self-check" help you test your
# code; the graders run their own checks on fresh inputs.
# END HW2

# %%
# BEGIN HW2
import math
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
random.seed(0)
# END HW2

# %% [markdown]
# BEGIN HW2
# ## Part 1: recurrent networks from the theory part
#
# ### 1.1 The gated RNN of eq. (1)-(2)
#
# $$c[t] = \sigma(W_c x[t] + W_h h[t-1]), \qquad h[t] = c[t] \odot h[t-1] + (1 - c[t]) \odot W_x x[t],
# \qquad h[0] = 0.$$
#
# Complete `GatedRNN.forward`. Conventions used throughout this notebook:
#
# * inputs are batch first: `x` has shape `(B, T, n)`; time step $t = 1, \dots, T$ of the homework
#   is `x[:, t - 1]`;
# * `forward` returns `H` of shape `(B, T, m)` holding $h[1], \dots, h[T]$ ($h[0]$ is not returned);
#   with `return_gates=True` it returns `(H, C)`, where `C` (same shape) holds $c[1], \dots, c[T]$;
# * `h0` (shape `(B, m)`) replaces $h[0] = 0$ when it is given;
# * keep the parameter names and shapes of `__init__` (`W_c`, `W_h`, `W_x`, acting on column vectors
#   as in the equations), and create new tensors with the dtype and device of `x`
#   (e.g. `x.new_zeros(...)`), so that the module also runs in float64.
# END HW2

# %%
# BEGIN HW2
class GatedRNN(nn.Module):
    def __init__(self, n, m):
        super().__init__()
        self.n, self.m = n, m
        self.W_c = nn.Parameter(torch.randn(m, n) / math.sqrt(n))
        self.W_h = nn.Parameter(torch.randn(m, m) / math.sqrt(m))
        self.W_x = nn.Parameter(torch.randn(m, n) / math.sqrt(n))

    def forward(self, x, h0=None, return_gates=False):
        # BEGIN RELEASE
        # TODO: run eq. (1)-(2) over the time axis of x (B, T, n)
        raise NotImplementedError("GatedRNN.forward")
        # END RELEASE
        # BEGIN SOLUTION
        B, T, _ = x.shape
        h = x.new_zeros(B, self.m) if h0 is None else h0
        hs, cs = [], []
        for t in range(T):
            c = torch.sigmoid(x[:, t] @ self.W_c.T + h @ self.W_h.T)
            h = c * h + (1 - c) * (x[:, t] @ self.W_x.T)
            hs.append(h)
            cs.append(c)
        H, C = torch.stack(hs, 1), torch.stack(cs, 1)
        return (H, C) if return_gates else H
        # END SOLUTION
# END HW2

# %% [markdown]
# BEGIN HW2
# ### 1.2 The gradient with respect to $W_x$ (theory 1.2(c))
#
# Write `gated_rnn_grad_Wx(x, c, grad_h)`, your expression for $\frac{\partial \ell}{\partial W_x}$
# (numerator layout: return a tensor of the same shape as `W_x`, `(m, n)`). Arguments, batch first
# like above, the loss being a sum over the batch:
#
# * `x`: `(B, T, n)`, the inputs;
# * `c`: `(B, T, m)`, the gates $c[1], \dots, c[T]$ of the run;
# * `grad_h`: `(B, T, m)`, `grad_h[:, t-1]` $= \frac{d\ell}{dh[t]}$, the **total** derivative of
#   the loss with respect to $h[t]$: it already contains every path from $h[t]$ to the loss,
#   including those through $h[t+1], h[t+2], \dots$ (what backpropagation through time brings back
#   to step $t$).
#
# Use only tensor operations (no autograd).
# END HW2

# %%
# BEGIN HW2
def gated_rnn_grad_Wx(x, c, grad_h):
    # BEGIN RELEASE
    # TODO
    raise NotImplementedError("gated_rnn_grad_Wx")
    # END RELEASE
    # BEGIN SOLUTION
    return torch.einsum('btm,btn->mn', grad_h * (1 - c), x)
    # END SOLUTION
# END HW2

# %% [markdown]
# BEGIN HW2
# Self-check. For the loss $\ell = \sum_t r[t]^\top h[t]$, `total_grads_by_autograd` finds the total
# derivatives $d\ell/dh[t]$ by restarting the network from $h[t]$ (that is what `h0` is for) and
# differentiating the rest of the run; your gradient is then compared with autograd's.
# END HW2

# %%
# BEGIN HW2
def total_grads_by_autograd(model, x, r):
    H = model(x).detach()
    T = x.shape[1]
    grads = []
    for t in range(T):
        h = H[:, t].clone().requires_grad_(True)
        loss = (r[:, t] * h).sum()
        if t + 1 < T:
            loss = loss + (r[:, t + 1:] * model(x[:, t + 1:], h0=h)).sum()
        grads.append(torch.autograd.grad(loss, h)[0])
    return torch.stack(grads, 1)


check_model = GatedRNN(3, 4).double()
check_x = torch.randn(2, 6, 3, dtype=torch.float64)
check_r = torch.randn(2, 6, 4, dtype=torch.float64)
check_H, check_C = check_model(check_x, return_gates=True)
assert check_H.shape == check_C.shape == (2, 6, 4)
expected = torch.autograd.grad((check_H * check_r).sum(), check_model.W_x)[0]
got = gated_rnn_grad_Wx(check_x, check_C.detach(), total_grads_by_autograd(check_model, check_x, check_r))
assert got.shape == (4, 3), got.shape
assert torch.allclose(got, expected), (got, expected)
print('GatedRNN self-check passed')
# END HW2

# %% [markdown]
# BEGIN HW2
# ### 1.3 AttentionRNN(k) (theory 1.2(c), Part 2)
#
# Complete `AttentionRNN.forward` for your system of equations of AttentionRNN(k). There are $k+1$
# sources at step $t$: source $0$ is $x[t]$ and source $i \ge 1$ is $h[t-i]$. Each source $i$ has
# its own $Q_i, K_i, V_i \in \mathbb{R}^{n \times n}$ (`self.Q[i]`, `self.K[i]`, `self.V[i]`):
# $q_i = Q_i s_i$, $k_i = K_i s_i$, $v_i = V_i s_i$, $w_i = q_i^\top k_i$,
# $a = \mathrm{softargmax}(w_0, \dots, w_k)$, $h[t] = \sum_i a_i v_i$.
#
# * `x`: `(B, T, n)`; return `H` `(B, T, n)` holding $h[1], \dots, h[T]$.
# * $h[t] = 0$ for $t < 1$, and these zero states **stay** among the sources: at $t = 1$ the
#   sources $h[0], h[-1], \dots$ are zero vectors with score $w_i = 0$.
# * Each sequence of the batch is independent of the others.
# END HW2

# %%
# BEGIN HW2
class AttentionRNN(nn.Module):
    def __init__(self, n, k):
        super().__init__()
        self.n, self.k = n, k
        self.Q = nn.ParameterList([nn.Parameter(torch.randn(n, n) / math.sqrt(n)) for _ in range(k + 1)])
        self.K = nn.ParameterList([nn.Parameter(torch.randn(n, n) / math.sqrt(n)) for _ in range(k + 1)])
        self.V = nn.ParameterList([nn.Parameter(torch.randn(n, n) / math.sqrt(n)) for _ in range(k + 1)])

    def forward(self, x):
        # BEGIN RELEASE
        # TODO
        raise NotImplementedError("AttentionRNN.forward")
        # END RELEASE
        # BEGIN SOLUTION
        B, T, n = x.shape
        past = [x.new_zeros(B, n)] * self.k  # past[-i] is h[t-i]
        hs = []
        for t in range(T):
            sources = [x[:, t]] + [past[-i] for i in range(1, self.k + 1)]
            w = torch.stack([((s @ self.Q[i].T) * (s @ self.K[i].T)).sum(-1)
                             for i, s in enumerate(sources)], -1)
            a = torch.softmax(w, dim=-1)
            h = sum(a[:, i:i + 1] * (s @ self.V[i].T) for i, s in enumerate(sources))
            past = past[1:] + [h]
            hs.append(h)
        return torch.stack(hs, 1)
        # END SOLUTION
# END HW2

# %% [markdown]
# BEGIN HW2
# Self-check: shapes, the first step (every state source is zero, so
# $h[1] = a_0 V_0 x[1]$ with $a_0 = e^{w_0} / (e^{w_0} + k)$), and independence across the batch.
# END HW2

# %%
# BEGIN HW2
for k in (1, 2, 3):
    att = AttentionRNN(5, k).double()
    xs = torch.randn(3, 7, 5, dtype=torch.float64)
    H = att(xs)
    assert H.shape == (3, 7, 5), H.shape
    x1 = xs[0, 0]
    w0 = (att.Q[0] @ x1) @ (att.K[0] @ x1)
    a0 = torch.exp(w0) / (torch.exp(w0) + k)
    assert torch.allclose(H[0, 0], a0 * (att.V[0] @ x1)), 'first step'
    assert torch.allclose(att(xs[1:2]), H[1:2]), 'sequences of a batch must not interact'
print('AttentionRNN self-check passed')
# END HW2

# %% [markdown]
# BEGIN HW2
# ## Part 2: echo with a GRU
#
# The network reads a string of letters one letter per step and has to output the same string,
# delayed by `DELAY` steps. Before it has anything to echo it outputs the blank (class 0, shown
# as a space). For example, with delay 3, `abacaba` becomes `   abac`. The delay is the same for
# every string in this part.
#
# Classes: 0 is the blank, 1 to 26 are `a` to `z`. The data are generated on the fly, nothing is
# loaded from disk.
# END HW2

# %%
# BEGIN HW2
N = 26  # letters; with the blank there are N + 1 classes


def idx_to_onehot(x, k=N + 1):
    """Integer tensor of any shape -> float one-hot with a last axis of size k, on x's device."""
    return torch.eye(k, device=x.device)[x.long()]


class EchoDataset(torch.utils.data.IterableDataset):
    """Pairs (seq, result) of int64 tensors of shape (seq_length,): seq has letters 1..N, result
    has `delay` blanks and then seq shifted by `delay`."""

    def __init__(self, delay=4, seq_length=15, size=1000):
        self.delay = delay
        self.seq_length = seq_length
        self.size = size

    def __len__(self):
        return self.size

    def __iter__(self):
        for _ in range(self.size):
            seq = torch.randint(1, N + 1, (self.seq_length,))
            result = torch.zeros_like(seq)
            result[self.delay:] = seq[:self.seq_length - self.delay]
            yield seq, result


DELAY = 4
DATASET_SIZE = 200000
ds = EchoDataset(delay=DELAY, size=DATASET_SIZE)
# END HW2

# %% [markdown]
# BEGIN HW2
# ### 2.1 The model
#
# `GRUMemory(hidden_size)` is a GRU followed by a linear decoder.
#
# * `forward(x)`: `x` is the one-hot input `(batch, seq_length, N + 1)`; return the logits
#   `(batch, seq_length, N + 1)` for every step.
# * `test_run(s)`: `s` is a string of lowercase letters; return the network's output as a string of
#   the same length (class 0 as a space, 1 to 26 as `a` to `z`).
# END HW2

# %%
# BEGIN HW2
class GRUMemory(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        # BEGIN RELEASE
        # TODO: initialize your submodules
        # END RELEASE
        # BEGIN SOLUTION
        self.gru = nn.GRU(N + 1, hidden_size, batch_first=True)
        self.decoder = nn.Linear(hidden_size, N + 1)
        # END SOLUTION

    def forward(self, x):
        # BEGIN RELEASE
        # TODO
        raise NotImplementedError("GRUMemory.forward")
        # END RELEASE
        # BEGIN SOLUTION
        return self.decoder(self.gru(x)[0])
        # END SOLUTION

    @torch.no_grad()
    def test_run(self, s):
        # BEGIN RELEASE
        # TODO: one-hot encode s, run the network, turn the most likely classes into a string
        raise NotImplementedError("GRUMemory.test_run")
        # END RELEASE
        # BEGIN SOLUTION
        idx = torch.tensor([ord(ch) - ord('a') + 1 for ch in s])
        out = self(idx_to_onehot(idx).unsqueeze(0))[0].argmax(-1)
        return ''.join(' ' if i == 0 else chr(ord('a') + i - 1) for i in out.tolist())
        # END SOLUTION
# END HW2

# %% [markdown]
# BEGIN HW2
# The test: 500 random strings of length 15 to 25 (longer than the training strings), scored on the
# letters the network has to echo.
# END HW2

# %%
# BEGIN HW2
def test_model(model, n_strings=500):
    if model is None:
        raise NotImplementedError('train a model first')
    model.eval()
    correct = total = 0
    for _ in range(n_strings):
        length = random.randint(15, 25)
        s = ''.join(random.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(length))
        result = model.test_run(s)
        assert len(result) == length, 'test_run must return one character per input letter'
        correct += sum(a == b for a, b in zip(s[:length - DELAY], result[DELAY:]))
        total += length - DELAY
    return correct / total
# END HW2

# %% [markdown]
# BEGIN HW2
# ### 2.2 Training
#
# Train a `GRUMemory` on `ds` (or on data you generate the same way). Training has to finish within
# 10 minutes and the accuracy must be above 0.99.
# END HW2

# %%
# BEGIN HW2
start_time = time.time()
# BEGIN RELEASE
# TODO
model = None
# END RELEASE
# BEGIN SOLUTION
torch.set_num_threads(1)  # a small GRU runs faster on one thread than on busy cores
torch.manual_seed(1)
random.seed(1)
model = GRUMemory(hidden_size=64)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[600], gamma=0.1)
loader = torch.utils.data.DataLoader(ds, batch_size=256)
model.train()
for step, (seq, result) in enumerate(loader):
    loss = F.cross_entropy(model(idx_to_onehot(seq)).flatten(0, 1), result.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    if step % 200 == 0:
        print(f'step {step}: loss {loss.item():.4f}')
print(f'step {step}: loss {loss.item():.4f}')
# END SOLUTION
end_time = time.time()
duration = end_time - start_time
accuracy = test_model(model)
print(f'training took {duration:.1f} s, accuracy {accuracy:.4f}')
assert duration < 600, 'execution is too slow'
assert accuracy > 0.99, 'accuracy is too low'
print('tests passed')
# END HW2

# %% [markdown]
# BEGIN HW2
# ## Part 3: a delay per string
#
# Now every string comes with its own delay, between 0 and `max_delay`, given to the network
# next to the letters. The delay is constant within one string.
# END HW2

# %%
# BEGIN HW2
class VariableDelayEchoDataset(torch.utils.data.IterableDataset):
    """Triples (seq, delay, result): seq of letters 1..N, an int delay drawn uniformly from
    0..max_delay for each sample, and result = `delay` blanks then seq shifted by `delay`."""

    def __init__(self, max_delay=8, seq_length=20, size=1000):
        self.max_delay = max_delay
        self.seq_length = seq_length
        self.size = size

    def __len__(self):
        return self.size

    def __iter__(self):
        for _ in range(self.size):
            seq = torch.randint(1, N + 1, (self.seq_length,))
            delay = random.randint(0, self.max_delay)
            result = torch.zeros_like(seq)
            result[delay:] = seq[:self.seq_length - delay]
            yield seq, delay, result
# END HW2

# %% [markdown]
# BEGIN HW2
# ### 3.1 The model
#
# `VariableDelayGRUMemory(hidden_size, max_delay)`, built around a GRU, keeps `max_delay` as
# `self.max_delay` (the test reads it).
#
# * `forward(x, delays)`: `x` one-hot `(batch, seq_length, N + 1)`, `delays` an int64 tensor
#   `(batch,)` with one delay per string; return logits `(batch, seq_length, N + 1)`.
# * `test_run(s, delay)`: the output string for letters `s` and an int `delay`, as in 2.1.
# END HW2

# %%
# BEGIN HW2
class VariableDelayGRUMemory(nn.Module):
    def __init__(self, hidden_size, max_delay):
        super().__init__()
        self.max_delay = max_delay
        # BEGIN RELEASE
        # TODO: initialize your submodules
        # END RELEASE
        # BEGIN SOLUTION
        # The GRU keeps the last max_delay + 1 letters; head d of the decoder reads the letter
        # d steps back, so the delay only selects a head.
        self.gru = nn.GRU(N + 1, hidden_size, batch_first=True)
        self.decoder = nn.Linear(hidden_size, (max_delay + 1) * (N + 1))
        # END SOLUTION

    # BEGIN SOLUTION
    def all_delay_logits(self, x):
        out = self.decoder(self.gru(x)[0])
        return out.view(x.shape[0], x.shape[1], self.max_delay + 1, N + 1)

    # END SOLUTION
    def forward(self, x, delays):
        # BEGIN RELEASE
        # TODO
        raise NotImplementedError("VariableDelayGRUMemory.forward")
        # END RELEASE
        # BEGIN SOLUTION
        logits = self.all_delay_logits(x)
        index = delays.long().view(-1, 1, 1, 1).expand(-1, x.shape[1], 1, N + 1)
        return logits.gather(2, index).squeeze(2)
        # END SOLUTION

    @torch.no_grad()
    def test_run(self, s, delay):
        # BEGIN RELEASE
        # TODO
        raise NotImplementedError("VariableDelayGRUMemory.test_run")
        # END RELEASE
        # BEGIN SOLUTION
        idx = torch.tensor([ord(ch) - ord('a') + 1 for ch in s])
        out = self(idx_to_onehot(idx).unsqueeze(0), torch.tensor([delay]))[0].argmax(-1)
        return ''.join(' ' if i == 0 else chr(ord('a') + i - 1) for i in out.tolist())
        # END SOLUTION
# END HW2

# %% [markdown]
# BEGIN HW2
# The test: for **every** delay from 0 to `model.max_delay`, 100 random strings of length 15 to 25,
# scored on the letters to echo. It returns the accuracy of the worst delay.
# END HW2

# %%
# BEGIN HW2
def test_variable_delay_model(model, n_per_delay=100):
    if model is None:
        raise NotImplementedError('train a model first')
    model.eval()
    accuracies = []
    for delay in range(model.max_delay + 1):
        correct = total = 0
        for _ in range(n_per_delay):
            length = random.randint(15, 25)
            s = ''.join(random.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(length))
            result = model.test_run(s, delay)
            assert len(result) == length, 'test_run must return one character per input letter'
            correct += sum(a == b for a, b in zip(s[:length - delay], result[delay:]))
            total += length - delay
        accuracies.append(correct / total)
    print('accuracy per delay:', ' '.join(f'{a:.3f}' for a in accuracies))
    return min(accuracies)
# END HW2

# %% [markdown]
# BEGIN HW2
# ### 3.2 Training
#
# The accuracy has to be above 0.99 for every delay between 0 and 8, and training has to finish
# within 10 minutes.
# END HW2

# %%
# BEGIN HW2
start_time = time.time()
MAX_DELAY = 8
SEQ_LENGTH = 20
# BEGIN RELEASE
# TODO: implement model training here.
model = None
# END RELEASE
# BEGIN SOLUTION
torch.manual_seed(2)
random.seed(2)
model = VariableDelayGRUMemory(hidden_size=128, max_delay=MAX_DELAY)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[750], gamma=0.1)
loader = torch.utils.data.DataLoader(
    VariableDelayEchoDataset(max_delay=MAX_DELAY, seq_length=SEQ_LENGTH, size=1000 * 128),
    batch_size=128)
model.train()
for step, (seq, _, _) in enumerate(loader):
    # every head learns from every string: the target of head d is seq delayed by d
    targets = torch.zeros(seq.shape[0], SEQ_LENGTH, MAX_DELAY + 1, dtype=torch.long)
    for d in range(MAX_DELAY + 1):
        targets[:, d:, d] = seq[:, :SEQ_LENGTH - d]
    logits = model.all_delay_logits(idx_to_onehot(seq))
    loss = F.cross_entropy(logits.reshape(-1, N + 1), targets.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    if step % 200 == 0:
        print(f'step {step}: loss {loss.item():.4f}')
print(f'step {step}: loss {loss.item():.4f}')
# END SOLUTION
end_time = time.time()
assert end_time - start_time < 600, 'execution is too slow'
accuracy = test_variable_delay_model(model)
print(f'training took {end_time - start_time:.1f} s, worst-delay accuracy {accuracy:.4f}')
assert accuracy > 0.99, 'accuracy is too low'
print('tests passed')
# END HW2

# %% [markdown]
# BEGIN COURSE
# # Homework 2 - Recurrent Neural Networks
#
# In this part of the homework we are going to work with Recurrent Neural Networks, in
# particular GRU. One of the greatest things that Recurrent Neural Networks can do when working
# with sequences is retaining data from several timesteps in the past. We are going to explore
# that property by constructing an 'echo' Recurrent Neural Network.
#
# The goal here is to make a model that given a sequence of letters or digits will output that
# same sequence, but with a certain delay. Let's say the input is a string 'abacaba', we want the
# model to not output anything for 3 steps (delay length), and then output the original string
# step by step, except the last 3 characters. So, target output is then 'XXXabac', where 'X' is
# empty output.
#
# This is similar to [this notebook](https://github.com/Atcold/pytorch-Deep-Learning/blob/master/09-echo_data.ipynb)
# (which you should refer to when doing this assignment), except we're working not with a binary
# string, but with a sequence of integers between 0 and some N. In our case N is 26, which is the
# number of letters in the alphabet.
# END COURSE

# %% [markdown]
# BEGIN COURSE
# ## Dataset
#
# Let's implement the dataset. In our case, the data is basically infinite, as we can always
# generate more examples on the fly, so there's no need to load it from disk.
# END COURSE

# %%
# BEGIN COURSE
import random
import string

import torch

# Max value of the generated integer. 26 is chosen becuase it's
# the number of letters in English alphabet.
N = 26


def idx_to_onehot(x, k=N+1):
  """ Converts the generated integers to one-hot vectors """
  ones = torch.sparse.torch.eye(k)
  shape = x.shape
  res = ones.index_select(0, x.view(-1).type(torch.int64))
  return res.view(*shape, res.shape[-1])


class EchoDataset(torch.utils.data.IterableDataset):

  def __init__(self, delay=4, seq_length=15, size=1000):
    self.delay = delay
    self.seq_length = seq_length
    self.size = size

  def __len__(self):
    return self.size

  def __iter__(self):
    """ Iterable dataset doesn't have to implement __getitem__.
        Instead, we only need to implement __iter__ to return
        an iterator (or generator).
    """
    for _ in range(self.size):
      seq = torch.tensor([random.choice(range(1, N + 1)) for i in range(self.seq_length)], dtype=torch.int64)
      result = torch.cat((torch.zeros(self.delay), seq[:self.seq_length - self.delay])).type(torch.int64)
      yield seq, result

DELAY = 4
DATASET_SIZE = 200000
ds = EchoDataset(delay=DELAY, size=DATASET_SIZE)
# END COURSE

# %% [markdown]
# BEGIN COURSE
# ## Model
#
# Now, we want to implement the model. For our purposes, we want to use GRU. The architecture consists
# of GRU and a decoder. Decoder is responsible for decoding the GRU hidden state to yield a
# predicting for the next output. The parts you are responsible for filling with your code are
# marked with `TODO`.
# END COURSE

# %%
# BEGIN COURSE
class GRUMemory(torch.nn.Module):

  def __init__(self, hidden_size):
    super().__init__()
    #TODO: initialize your submodules
    # BEGIN SOLUTION
    self.gru = torch.nn.GRU(N + 1, hidden_size, batch_first=True)
    self.decoder = torch.nn.Linear(hidden_size, N + 1)
    # END SOLUTION

  def forward(self, x):
    # inputs:
    # x - tensor of shape (batch size, seq length, N + 1)
    # returns:
    # logits (scores for softmax) of shape (batch size, seq_length, N + 1)
    # TODO implement forward pass
    # BEGIN RELEASE
    pass
    # END RELEASE
    # BEGIN SOLUTION
    return self.decoder(self.gru(x)[0])
    # END SOLUTION

  @torch.no_grad()
  def test_run(self, s):
    # This function accepts one string s containing lowercase characters a-z.
    # You need to map those characters to one-hot encodings,
    # then get the result from your network, and then convert the output
    # back to a string of the same length, with 0 mapped to ' ',
    # and 1-26 mapped to a-z.

    # TODO
    # BEGIN RELEASE
    pass
    # END RELEASE
    # BEGIN SOLUTION
    idx = torch.tensor([ord(c) - ord('a') + 1 for c in s])
    out = self(idx_to_onehot(idx).unsqueeze(0))[0].argmax(-1)
    return ''.join(' ' if i == 0 else chr(ord('a') + i - 1) for i in out.tolist())
    # END SOLUTION
# END COURSE

# %% [markdown]
# BEGIN COURSE
# ## Training
# Below you need to implement the training of the model. We give you more freedom as for the
# implementation. The two limitations are that it has to execute within 10 minutes, and that error
# rate should be below 1%.
# END COURSE

# %%
# BEGIN COURSE
def test_model(model, sequence_length=15):
  """
  This is the test function that runs 100 different strings through your model,
  and checks the error rate.
  """
  total = 0
  correct = 0
  for i in range(500):
    s = ''.join([random.choice(string.ascii_lowercase) for i in range(random.randint(15, 25))])
    result = model.test_run(s)
    for c1, c2 in zip(s[:-DELAY], result[DELAY:]):
      correct += int(c1 == c2)
    total += len(s) - DELAY

  return correct / total
# END COURSE

# %%
# BEGIN COURSE
import time
start_time = time.time()

# TODO: initialize and train your model here.
# BEGIN RELEASE
model = None
# END RELEASE
# BEGIN SOLUTION
torch.set_num_threads(1)
model = GRUMemory(hidden_size=64)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[600], gamma=0.1)
loader = torch.utils.data.DataLoader(ds, batch_size=256)
model.train()
for step, (seq, result) in enumerate(loader):
  loss = torch.nn.functional.cross_entropy(model(idx_to_onehot(seq)).flatten(0, 1), result.flatten())
  optimizer.zero_grad()
  loss.backward()
  optimizer.step()
  scheduler.step()
  if step % 200 == 0:
    print(f'step {step}: loss {loss.item():.4f}')
# END SOLUTION

end_time = time.time()
duration = end_time - start_time
accuracy = test_model(model)
assert duration < 600, 'execution took f{duration:.2f} seconds, which longer than 10 mins'
assert accuracy > 0.99, f'accuracy is too low, got {accuracy}, need 0.99'
print('tests passed')
# END COURSE

# %% [markdown]
# BEGIN COURSE
# ## Variable delay model
#
# Now, to make this more complicated, we want to have varialbe delay. So, now, the goal is to
# transform a sequence of pairs (character, delay) into a character sequence with given delay.
# Delay is constant within one sequence.
# END COURSE

# %% [markdown]
# BEGIN COURSE
# ### Dataset
# As before, we first implement the dataset:
# END COURSE

# %%
# BEGIN COURSE
class VariableDelayEchoDataset(torch.utils.data.IterableDataset):

  def __init__(self, max_delay=8, seq_length=20, size=1000):
    self.max_delay = max_delay
    self.seq_length = seq_length
    self.size = size

  def __len__(self):
    return self.size

  def __iter__(self):
    for _ in range(self.size):
      seq = torch.tensor([random.choice(range(1, N + 1)) for i in range(self.seq_length)], dtype=torch.int64)
      delay = random.randint(0, self.max_delay)
      result = torch.cat((torch.zeros(delay), seq[:self.seq_length - delay])).type(torch.int64)
      yield seq, delay, result
# END COURSE

# %% [markdown]
# BEGIN COURSE
# ### Model
#
# And the model.
# END COURSE

# %%
# BEGIN COURSE
class VariableDelayGRUMemory(torch.nn.Module):

  def __init__(self, hidden_size, max_delay):
    super().__init__()
    #TODO
    # BEGIN SOLUTION
    self.max_delay = max_delay
    self.gru = torch.nn.GRU(N + 1, hidden_size, batch_first=True)
    self.decoder = torch.nn.Linear(hidden_size, (max_delay + 1) * (N + 1))
    # END SOLUTION

  # BEGIN SOLUTION
  def all_delay_logits(self, x):
    out = self.decoder(self.gru(x)[0])
    return out.view(x.shape[0], x.shape[1], self.max_delay + 1, N + 1)

  # END SOLUTION
  def forward(self, x, delays):
    # inputs:
    # x - tensor of shape (batch size, seq length, N + 1)
    # delays - tensor of shape (batch size)
    # returns:
    # logits (scores for softmax) of shape (batch size, seq_length, N + 1)

    # TODO
    # BEGIN RELEASE
    pass
    # END RELEASE
    # BEGIN SOLUTION
    logits = self.all_delay_logits(x)
    index = delays.long().view(-1, 1, 1, 1).expand(-1, x.shape[1], 1, N + 1)
    return logits.gather(2, index).squeeze(2)
    # END SOLUTION

  @torch.no_grad()
  def test_run(self, s, delay):
    # This function accepts one string s containing lowercase characters a-z,
    # and a delay - the desired output delay.
    # You need to map those characters to one-hot encodings,
    # then get the result from your network, and then convert the output
    # back to a string of the same length, with 0 mapped to ' ',
    # and 1-26 mapped to a-z.

    # TODO
    # BEGIN RELEASE
    pass
    # END RELEASE
    # BEGIN SOLUTION
    idx = torch.tensor([ord(c) - ord('a') + 1 for c in s])
    out = self(idx_to_onehot(idx).unsqueeze(0), torch.tensor([delay]))[0].argmax(-1)
    return ''.join(' ' if i == 0 else chr(ord('a') + i - 1) for i in out.tolist())
    # END SOLUTION
# END COURSE

# %% [markdown]
# BEGIN COURSE
# ### Train
#
# As before, you're free to do what you want, as long as training finishes within 10 minutes and
# accuracy is above 0.99 for delays between 0 and 8.
# END COURSE

# %%
# BEGIN COURSE
def test_variable_delay_model(model, seq_length=20):
  """
  This is the test function that runs 100 different strings through your model,
  and checks the error rate.
  """
  total = 0
  correct = 0
  for i in range(500):
    s = ''.join([random.choice(string.ascii_lowercase) for i in range(seq_length)])
    d = random.randint(0, model.max_delay)
    result = model.test_run(s, d)
    if d > 0:
      z = zip(s[:-d], result[d:])
    else:
      z = zip(s, result)
    for c1, c2 in z:
      correct += int(c1 == c2)
    total += len(s) - d

  return correct / total
# END COURSE

# %%
# BEGIN COURSE
import time
start_time = time.time()

MAX_DELAY = 8
SEQ_LENGTH = 20

# TODO: implement model training here.
# BEGIN RELEASE
model = None
# END RELEASE
# BEGIN SOLUTION
model = VariableDelayGRUMemory(hidden_size=128, max_delay=MAX_DELAY)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[750], gamma=0.1)
loader = torch.utils.data.DataLoader(
    VariableDelayEchoDataset(max_delay=MAX_DELAY, seq_length=SEQ_LENGTH, size=1000 * 128), batch_size=128)
model.train()
for step, (seq, _, _) in enumerate(loader):
  # every head learns from every string: the target of head d is seq delayed by d
  targets = torch.zeros(seq.shape[0], SEQ_LENGTH, MAX_DELAY + 1, dtype=torch.long)
  for d in range(MAX_DELAY + 1):
    targets[:, d:, d] = seq[:, :SEQ_LENGTH - d]
  logits = model.all_delay_logits(idx_to_onehot(seq))
  loss = torch.nn.functional.cross_entropy(logits.reshape(-1, N + 1), targets.flatten())
  optimizer.zero_grad()
  loss.backward()
  optimizer.step()
  scheduler.step()
  if step % 200 == 0:
    print(f'step {step}: loss {loss.item():.4f}')
# END SOLUTION

end_time = time.time()
assert end_time - start_time < 600, 'executing took longer than 10 mins'
assert test_variable_delay_model(model) > 0.99, 'accuracy is too low'
print('tests passed')
# END COURSE
