"""Student code that tampers with the grading gains nothing: results are judged on the
values that come back, by the trusted side, never on what the student's process claims."""
from __future__ import annotations

import pytest

from checks_helpers import grade, notebook, subs

ITEM = """
[[items]]
id = "nb.{name}"
part = "nb"
kind = "function"
title = "strided 1-D cross-correlation"
points = 2
target = "{name}"
reference = "minref.ops:conv1d"
subchecks = [{{ name = "forward", points = 1 }}, {{ name = "grad_w", points = 1 }}]
[items.params]
cases = [{{ args = [{{ tensor = [3, 11] }}, {{ tensor = [2, 3, 3] }}, 2], grad = [1] }}]
compare = {{ grad_w = "grad:1" }}
"""

ITEMS = "".join(ITEM.format(name=n) for n in ("conv_liar", "conv_zero", "conv_ok")) + """
[[items]]
id = "nb.clf"
part = "nb"
kind = "behaviour"
title = "classifier on held-out data"
points = 2
target = "clf"
reference = "minref.nets:sign_task"
[items.params]
min_accuracy = 0.9
"""

STUDENT = [
    "import torch, json, os, sys, threading, time, types",
    # comparisons in the student's process always say "equal"
    "torch.allclose = lambda *a, **k: True\n"
    "torch.equal = lambda *a, **k: True\n"
    "torch.testing.assert_close = lambda *a, **k: None\n"
    "torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)",
    # a tensor subclass whose comparisons pass and whose values lie
    "class Liar(torch.Tensor):\n"
    "    @classmethod\n"
    "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
    "        name = getattr(func, '__name__', '')\n"
    "        if name in ('allclose', 'equal', '__eq__', 'eq', 'isclose'):\n"
    "            return True\n"
    "        if name in ('sub', '__sub__', 'abs', 'max'):\n"
    "            return torch.zeros(())\n"
    "        return super().__torch_function__(func, types, args, kwargs)\n"
    "def conv_liar(x, w, stride):\n"
    "    L = (x.shape[-1] - w.shape[-1]) // stride + 1\n"
    "    return (torch.zeros(w.shape[0], L) + 0 * w.sum()).as_subclass(Liar)",
    "def conv_zero(x, w, stride):\n"
    "    L = (x.shape[-1] - w.shape[-1]) // stride + 1\n"
    "    return torch.zeros(w.shape[0], L) + 0 * w.sum()",
    "def conv_ok(x, w, stride):\n"
    "    return torch.einsum('cpk,fck->fp', x.unfold(-1, w.shape[-1], stride), w)",
    "clf = torch.nn.Linear(4, 2)",
    # fake answers in /grader/out, now and (from a thread) while the probe runs; a symlink there;
    # a fake probe module planted under the name the grader once imported
    "fake = {'cases': [{'out': {'__tensor__': 'o0'}, 'grads': [{'__tensor__': 'o1'}]}], 'passed': True, 'score': 100}\n"
    "def plant():\n"
    "    try:\n"
    "        for n in ('conv_liar', 'conv_zero'):\n"
    "            with open(f'/grader/out/nb.{n}.json', 'w') as f: json.dump(fake, f)\n"
    "            torch.save({'o0': torch.ones(2, 5), 'o1': torch.ones(2, 3, 3)}, f'/grader/out/nb.{n}.pt')\n"
    "        with open('/grader/out/nb.clf.json', 'w') as f: json.dump({'out': {'__tensor__': 'o0'}}, f)\n"
    "        torch.save({'o0': torch.ones(300, dtype=torch.long)}, '/grader/out/nb.clf.pt')\n"
    "        if not os.path.lexists('/grader/out/nb.conv_ok.pt'):\n"
    "            os.symlink('/etc/passwd', '/grader/out/nb.conv_ok.pt')\n"
    "    except OSError:\n"
    "        pass\n"
    "plant()\n"
    "def keep_planting():\n"
    "    for _ in range(3000):\n"
    "        plant(); time.sleep(0.005)\n"
    "threading.Thread(target=keep_planting, daemon=True).start()\n"
    "fake_probe = types.ModuleType('kernel_probe')\n"
    "fake_probe.run_plan = lambda *a, **k: None\n"
    "sys.modules['kernel_probe'] = fake_probe",
    "print('Score: 100/100  all tests passed')",
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return grade(tmp_path_factory.mktemp("tamper"), ITEMS, notebook(*STUDENT))


def test_tampering_gains_nothing(graded):
    record, items = graded
    assert subs(items["nb.conv_liar"]) == {"forward": 0, "grad_w": 0}
    assert subs(items["nb.conv_zero"]) == {"forward": 0, "grad_w": 0}
    assert items["nb.clf"]["points"] == 0
    assert record.score["final"] < 8


def test_honest_work_in_a_tampering_notebook_is_still_scored(graded):
    _, items = graded
    # the probe replaces the symlink planted at its answer's path instead of writing through it
    assert items["nb.conv_ok"]["points"] == 2, items["nb.conv_ok"]
