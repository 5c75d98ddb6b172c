"""Check kinds `behaviour`, `static` and `artifact` on one small notebook through the real
sandbox: grader-held labels, per-group thresholds, protected code, plots and free text."""
from __future__ import annotations

import pytest

from checks_helpers import grade, notebook, subs

RELEASE_CELLS = [
    ("markdown", "# Work\n## Setup"),
    "import torch\nfrom torch import nn\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt",
    "def helper(x):\n    \"\"\"Given code.\"\"\"\n    return x * 2",
    "def protected(x):\n    return x + 1",
    ("markdown", "## Section 2: training"),
    "torch.manual_seed(1)\nhidden = 12",
    ("markdown", "## Plots"),
    "pass",
    ("markdown", "Explain what you see."),
    ("markdown", "put your answer here"),
    ("markdown", "What about the filters?"),
    ("markdown", "put your answer here"),
]

STUDENT = [
    ("markdown", "# Work\n## Setup"),
    "import torch\nfrom torch import nn\nimport matplotlib.pyplot as plt",
    # same code, other formatting and comments: still unchanged as AST
    "def helper(x):\n    \"\"\"Given code.\"\"\"\n    # my comment\n    return (x * 2)",
    "def protected(x):\n    return x + 2",
    ("markdown", "## Section 2: training"),
    "%time x = 1\ntorch.manual_seed(1)\nhidden = 12",
    # a classifier by hand: class = x[0] > 0, exactly
    "clf_good = nn.Linear(4, 2)\n"
    "with torch.no_grad():\n"
    "    clf_good.weight.zero_(); clf_good.bias.zero_()\n"
    "    clf_good.weight[0, 0] = -1.0; clf_good.weight[1, 0] = 1.0",
    "clf_bad = nn.Linear(4, 2)\nwith torch.no_grad():\n    clf_bad.weight.zero_(); clf_bad.bias.copy_(torch.tensor([1.0, 0.0]))",
    "class Rot:\n"
    "    def run(self, s, shift):\n"
    "        return s[len(s) - shift:] + s[:len(s) - shift] if shift else s\n"
    "rot_good = Rot()\n"
    "class RotBad(Rot):\n"
    "    def run(self, s, shift):\n"
    "        if shift == 3:\n"
    "            raise IndexError('shift 3 is hard')\n"
    "        return super().run(s, shift)\n"
    "rot_bad = RotBad()",
    ("markdown", "## Plots"),
    "plt.plot([1, 2, 3]); plt.show()",
    ("markdown", "Explain what you see."),
    ("markdown", "The loss goes down steadily and the model does not overfit."),
    ("markdown", "What about the filters?"),
    ("markdown", "put your answer here"),
]

ITEMS = """
[[items]]
id = "nb.clf_good"
part = "nb"
kind = "behaviour"
title = "classifier accuracy on held-out data"
points = 2
target = "clf_good"
reference = "minref.nets:sign_task"
[items.params]
mode = "classify"
generator_args = { n = 300 }
min_accuracy = 0.95

[[items]]
id = "nb.clf_bad"
part = "nb"
kind = "behaviour"
title = "classifier accuracy on held-out data"
points = 2
target = "clf_bad"
reference = "minref.nets:sign_task"
[items.params]
mode = "classify"
min_accuracy = 0.95

[[items]]
id = "nb.rot_good"
part = "nb"
kind = "behaviour"
title = "rotation on fresh strings, every shift"
points = 2
target = "rot_good"
reference = "minref.nets:reverse_cases"
subchecks = [{ name = "overall", points = 1 }, { name = "every_shift", points = 1 }]
[items.params]
mode = "cases"
method = "run"
scorer = "minref.nets:char_score"
min_accuracy = 0.99
per_group = true
compare = { overall = "accuracy", every_shift = "all_groups" }

[[items]]
id = "nb.rot_bad"
part = "nb"
kind = "behaviour"
title = "rotation on fresh strings, every shift"
points = 2
target = "rot_bad"
reference = "minref.nets:reverse_cases"
subchecks = [{ name = "overall", points = 1 }, { name = "every_shift", points = 1 }]
[items.params]
mode = "cases"
method = "run"
scorer = "minref.nets:char_score"
min_accuracy = 0.7
per_group = true
compare = { overall = "accuracy", every_shift = "all_groups" }

[[items]]
id = "nb.static"
part = "nb"
kind = "static"
title = "given code and settings unchanged"
points = 3
subchecks = [{ name = "helper", points = 1 }, { name = "protected", points = 1 }, { name = "seed", points = 1 }]
[items.params]
release = "{release}"
rules = [
  { unchanged = "helper", subcheck = "helper" },
  { unchanged = "protected", subcheck = "protected" },
  { call = "torch.manual_seed(1)", section = "^## Section 2", subcheck = "seed" },
  { assign = "hidden", value = 12, section = "^## Section 2", subcheck = "seed" },
  { call = "np.random.seed(0)", present = false, subcheck = "seed" },
]

[[items]]
id = "nb.artifacts"
part = "nb"
kind = "artifact"
title = "plots and answers"
points = 3
subchecks = [{ name = "plot", points = 1 }, { name = "answer1", points = 1 }, { name = "answer2", points = 1 }]
[items.params]
rules = [
  { images = 1, section = "^## Plots", subcheck = "plot" },
  { answer = "put your answer here", after = "^Explain what you see", min_chars = 20, subcheck = "answer1" },
  { answer = "put your answer here", after = "^What about the filters", subcheck = "answer2" },
]
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbk")
    release = root / "release.ipynb"
    release.write_bytes(notebook(*RELEASE_CELLS))
    return grade(root / "g", ITEMS.replace("{release}", str(release)), notebook(*STUDENT))


def test_behaviour_on_grader_held_labels(graded):
    _, items = graded
    assert items["nb.clf_good"]["status"] == "passed"
    assert "1.000" in items["nb.clf_good"]["message"]
    bad = items["nb.clf_bad"]
    assert bad["points"] == 0 and "needs at least 0.95" in bad["message"]


def test_behaviour_cases_every_group(graded):
    _, items = graded
    assert subs(items["nb.rot_good"]) == {"overall": 1, "every_shift": 1}
    bad = items["nb.rot_bad"]
    # 3 of 4 shifts right: the overall threshold (0.7) passes, "every shift" does not
    assert subs(bad) == {"overall": 1, "every_shift": 0}
    assert "shift 3: 0.000" in bad["message"]


def test_static_reads_the_submitted_code(graded):
    _, items = graded
    st = items["nb.static"]
    assert subs(st) == {"helper": 1, "protected": 0, "seed": 1}
    assert "`protected` was changed" in st["message"]


def test_artifacts_are_presence_checks(graded):
    _, items = graded
    art = items["nb.artifacts"]
    assert subs(art) == {"plot": 1, "answer1": 1, "answer2": 0}
    assert "placeholder is still there" in art["message"]
    assert all("presence check" in s["message"] for s in art["subchecks"])
