"""Check kind `function` through the real runner, sandbox and kernel: correct-but-different
implementations get full marks; planted mistakes lose exactly their sub-checks, with the
fingerprint message when a deliberately wrong reference variant matches."""
from __future__ import annotations

import pytest

from checks_helpers import grade, notebook, subs

CONV_CASES = """
cases = [
  { args = [{ tensor = [3, 11] }, { tensor = [2, 3, 3] }, 2], grad = [0, 1] },
  { args = [{ tensor = [2, 9] }, { tensor = [4, 2, 2] }, 1], grad = [0, 1] },
  { args = [{ tensor = [1, 12] }, { tensor = [1, 1, 4] }, 3], grad = [0, 1] },
]
"""


def conv_item(name: str) -> str:
    return f"""
[[items]]
id = "nb.{name}"
part = "nb"
kind = "function"
title = "strided 1-D cross-correlation ({name})"
points = 3
target = "{name}"
reference = "minref.ops:conv1d"
subchecks = [{{ name = "forward", points = 1 }}, {{ name = "grad_x", points = 1 }}, {{ name = "grad_w", points = 1 }}]
fingerprints = [
  {{ variant = "minref.ops:conv1d_flipped", message = "FLIPPED: you computed a convolution, not a cross-correlation" }},
  {{ variant = "minref.ops:conv1d_stride_ignored", message = "STRIDE: the stride is ignored", subchecks = ["forward"] }},
]
[items.params]
{CONV_CASES}
compare = {{ grad_x = "grad:0", grad_w = "grad:1" }}
"""


CONV_NAMES = ["conv_vec", "conv_loop64", "conv_fn", "conv_flip", "conv_stride", "conv_raises",
              "conv_missing", "conv_numpy"]
# What a notebook forbids in its hand-written functions: torch's convolutions, directly or in a
# helper of the notebook's own; autograd inside a hand-written backward.
def forbid(name: str) -> str:
    rules = [f'{{ functions = ["{name}"], calls = ["conv1d", "conv_transpose1d"], subchecks = ["forward"], '
             'why = "plain tensor operations, please" }']
    if name == "conv_fn_checked":
        rules.append('{ functions = ["_Conv.backward"], calls = ["grad", "backward"], subchecks = ["grad_x", "grad_w"] }')
    return "forbid = [\n  " + ",\n  ".join(rules) + ",\n]"


FORBID_NAMES = ["conv_vec_checked", "conv_torch", "conv_via_helper", "conv_fn_checked"]

ITEMS = "".join(conv_item(n) for n in CONV_NAMES) + "".join(
    conv_item(n).replace("[items.params]\n", "[items.params]\n" + forbid(n) + "\n") for n in FORBID_NAMES) + """
[[items]]
id = "nb.size_ok"
part = "nb"
kind = "function"
title = "output size"
points = 2
target = "size_ok"
reference = "minref.ops:out_size"
subchecks = [{ name = "ints", points = 1 }, { name = "tuples", points = 1 }]
fingerprints = [{ variant = "minref.ops:out_size_off_by_one", message = "OFF-BY-ONE: the + 1 is missing" }]
[items.params]
cases = [
  { args = [21, 4, 4], group = "ints" }, { args = [12, 5], group = "ints" },
  { args = [[21, 12], [4, 5]], kwargs = { stride = 4 }, group = "tuples" },
  { args = [[9, 9], 3], group = "tuples" },
]
compare = { ints = "output:ints", tuples = "output:tuples" }

[[items]]
id = "nb.size_tuple_bug"
part = "nb"
kind = "function"
title = "output size"
points = 2
target = "size_tuple_bug"
reference = "minref.ops:out_size"
subchecks = [{ name = "ints", points = 1 }, { name = "tuples", points = 1 }]
fingerprints = [{ variant = "minref.ops:out_size_off_by_one", message = "OFF-BY-ONE: the + 1 is missing" }]
[items.params]
cases = [
  { args = [21, 4, 4], group = "ints" }, { args = [12, 5], group = "ints" },
  { args = [[21, 12], [4, 5]], kwargs = { stride = 4 }, group = "tuples" },
  { args = [[9, 9], 3], group = "tuples" },
]
compare = { ints = "output:ints", tuples = "output:tuples" }

[[items]]
id = "nb.multi"
part = "nb"
kind = "function"
title = "forward and weight gradient, two student functions in one item"
points = 2
target = "conv_vec"
reference = "minref.ops:conv1d"
subchecks = [{ name = "forward", points = 1 }, { name = "grad_weight", points = 1 }]
fingerprints = [{ variant = "minref.ops:grad_weight_transposed", message = "LAYOUT: the axes are transposed", subchecks = ["grad_weight"] }]
[items.params]
cases = [
  { args = [{ tensor = [3, 11] }, { tensor = [2, 3, 3] }, 2], group = "forward" },
  { target = "gw_transposed", reference = "minref.ops:grad_weight", args = [{ tensor = [3, 11] }, { tensor = [2, 5] }, 2, 3], group = "grad_weight" },
]
compare = { forward = "output:forward", grad_weight = "output:grad_weight" }

[[items]]
id = "nb.gw_transposed"
part = "nb"
kind = "function"
title = "weight gradient"
points = 1
target = "gw_transposed"
reference = "minref.ops:grad_weight"
fingerprints = [{ variant = "minref.ops:grad_weight_transposed", message = "LAYOUT: the axes are transposed" }]
[items.params]
cases = [{ args = [{ tensor = [3, 11] }, { tensor = [2, 5] }, 2, 3] }]
"""

STUDENT = [
    "import torch\nimport numpy as np",
    # vectorized, as in the reference
    "def conv_vec(x, w, stride):\n"
    "    return torch.einsum('cpk,fck->fp', x.unfold(-1, w.shape[-1], stride), w)",
    # explicit loops, computed and returned in float64
    "def conv_loop64(x, w, stride):\n"
    "    F, C, K = w.shape\n"
    "    L = (x.shape[1] - K) // stride + 1\n"
    "    x, w = x.double(), w.double()\n"
    "    out = torch.zeros(F, L, dtype=torch.float64)\n"
    "    for f in range(F):\n"
    "        for p in range(L):\n"
    "            out[f, p] = (x[:, stride * p:stride * p + K] * w[f]).sum()\n"
    "    return out",
    # a hand-written autograd.Function: forward and grad_x right, grad_w computed for a flipped kernel
    "class _Conv(torch.autograd.Function):\n"
    "    @staticmethod\n"
    "    def forward(ctx, x, w, stride):\n"
    "        ctx.save_for_backward(x, w); ctx.stride = stride\n"
    "        return conv_vec(x, w, stride)\n"
    "    @staticmethod\n"
    "    def backward(ctx, g):\n"
    "        x, w = ctx.saved_tensors\n"
    "        with torch.enable_grad():\n"
    "            xx = x.detach().requires_grad_(); ww = w.detach().requires_grad_()\n"
    "            gx, = torch.autograd.grad(conv_vec(xx, ww, ctx.stride), xx, g)\n"
    "        gw = torch.einsum('fp,cpk->fck', g, x.unfold(-1, w.shape[-1], ctx.stride)).flip(-1)\n"
    "        return gx, gw, None\n"
    "def conv_fn(x, w, stride):\n"
    "    return _Conv.apply(x, w, stride)",
    "def conv_flip(x, w, stride):\n    return conv_vec(x, w.flip(-1), stride)",
    "def conv_stride(x, w, stride):\n    return conv_vec(x, w, 1)",
    "def conv_raises(x, w, stride):\n    raise ValueError('student says: not implemented yet')",
    # numpy in the middle: right values, but the autograd graph is cut
    "def conv_numpy(x, w, stride):\n"
    "    return torch.from_numpy(conv_vec(x, w, stride).detach().numpy())",
    # numpy integers are fine; a tuple answer off by one
    "def size_ok(size, kernel, stride=1):\n"
    "    if isinstance(size, tuple) or isinstance(kernel, tuple):\n"
    "        s = np.broadcast_to(np.array(size), np.broadcast(np.array(size), np.array(kernel)).shape)\n"
    "        return tuple(np.int64(v) for v in (s - np.array(kernel)) // stride + 1)\n"
    "    return np.int64((size - kernel) // stride + 1)",
    "def size_tuple_bug(size, kernel, stride=1):\n"
    "    if isinstance(size, tuple) or isinstance(kernel, tuple):\n"
    "        return tuple(int(v) for v in np.array(size) - np.array(kernel)) if False else "
    "tuple(int(v) for v in (np.array(size) - np.array(kernel)) // stride)\n"
    "    return (size - kernel) // stride + 1",
    "conv_vec_checked = None\n"
    "def conv_vec_checked(x, w, stride):\n"
    "    return conv_vec(x, w, stride)",
    "import torch.nn.functional as F\n"
    "def conv_torch(x, w, stride):\n"
    "    return F.conv1d(x[None], w, stride=stride)[0]",
    "def _windows(x, w, stride):\n"
    "    return torch.nn.functional.conv1d(x.unsqueeze(0), w, stride=stride).squeeze(0)\n"
    "def _my_conv(x, w, stride):\n"
    "    return _windows(x, w, stride)\n"
    "def conv_via_helper(x, w, stride):\n"
    "    return _my_conv(x, w, stride)",
    "conv_fn_checked = conv_fn",
    "def gw_transposed(x, g, stride, k):\n"
    "    return torch.einsum('fp,cpk->kcf', g, x.unfold(-1, k, stride))",
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return grade(tmp_path_factory.mktemp("fn"), ITEMS, notebook(*STUDENT))


def test_correct_but_different_implementations_get_full_marks(graded):
    _, items = graded
    for name in ("conv_vec", "conv_loop64"):
        assert items[f"nb.{name}"]["status"] == "passed", items[f"nb.{name}"]
        assert items[f"nb.{name}"]["points"] == 3
    assert "float64" in items["nb.conv_loop64"]["message"]          # the cast is mentioned, not failed
    assert items["nb.size_ok"]["points"] == 2


def test_hand_written_backward_is_what_gets_checked(graded):
    _, items = graded
    it = items["nb.conv_fn"]
    assert subs(it) == {"forward": 1, "grad_x": 1, "grad_w": 0}
    bad = [s for s in it["subchecks"] if s["name"] == "grad_w"][0]
    assert bad["message"].startswith("FLIPPED")


def test_planted_mistakes_lose_exactly_their_subchecks_with_the_fingerprint(graded):
    _, items = graded
    flip = items["nb.conv_flip"]
    assert subs(flip) == {"forward": 0, "grad_x": 0, "grad_w": 0}
    assert all(s["message"].startswith("FLIPPED") for s in flip["subchecks"])
    stride = items["nb.conv_stride"]
    assert subs(stride)["forward"] == 0
    fwd = [s for s in stride["subchecks"] if s["name"] == "forward"][0]["message"]
    assert fwd.startswith("STRIDE") and "shape" in fwd
    tup = items["nb.size_tuple_bug"]
    assert subs(tup) == {"ints": 1, "tuples": 0}
    assert "OFF-BY-ONE" in tup["message"]
    tr = items["nb.gw_transposed"]
    assert tr["points"] == 0 and "LAYOUT" in tr["message"] and "shape (3, 3, 2)" in tr["message"]


def test_one_item_can_check_several_student_functions(graded):
    _, items = graded
    multi = items["nb.multi"]
    assert subs(multi) == {"forward": 1, "grad_weight": 0}
    assert "LAYOUT" in multi["message"] and "gw_transposed(" in multi["message"]


def test_exceptions_and_missing_names_fail_that_item_only(graded):
    record, items = graded
    raises = items["nb.conv_raises"]
    assert raises["points"] == 0 and "student says: not implemented yet" in raises["message"]
    assert "/grader/probe" not in raises["message"]
    missing = items["nb.conv_missing"]
    assert missing["points"] == 0 and "`conv_missing` is not defined" in missing["message"]
    numpy = items["nb.conv_numpy"]
    assert subs(numpy) == {"forward": 1, "grad_x": 0, "grad_w": 0}
    assert "detached" in numpy["message"]
    assert record.notebooks["nb"]["status"] == "completed"


def test_timing_is_recorded(graded):
    record, _ = graded
    assert record.timing["nb_probe_s"] < 20 and record.timing["nb_checks_s"] < 20


def test_forbidden_calls_in_hand_written_functions_lose_their_subchecks_naming_the_call(graded):
    _, items = graded
    assert items["nb.conv_vec_checked"]["points"] == 3, items["nb.conv_vec_checked"]
    torch_ = items["nb.conv_torch"]
    assert subs(torch_) == {"forward": 0, "grad_x": 1, "grad_w": 1}, torch_
    assert "`conv_torch` calls `F.conv1d`: plain tensor operations, please" in torch_["message"]
    helper = items["nb.conv_via_helper"]
    assert subs(helper)["forward"] == 0
    assert "`conv_via_helper` calls `torch.nn.functional.conv1d` (in `_windows`, which it calls)" in helper["message"]
    # autograd inside the hand-written backward (its grad_w was already wrong: the flipped kernel)
    fn = items["nb.conv_fn_checked"]
    assert subs(fn) == {"forward": 1, "grad_x": 0, "grad_w": 0}, fn
    assert "`_Conv.backward` calls `torch.autograd.grad`" in fn["message"]


def test_feedback_names_cases_by_shapes_never_by_the_graders_values(graded):
    _, items = graded
    for name in ("conv_flip", "conv_stride", "conv_numpy", "gw_transposed"):
        msg = items[f"nb.{name}"]["message"]
        assert "tensor([" not in msg and "tensor(-" not in msg, msg      # no hidden inputs or outputs in full
    assert "<tensor (3, 11)>" in items["nb.conv_stride"]["message"], items["nb.conv_stride"]["message"]
