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
    # the test accuracy, printed three ways: computed, typed in, and not at all
    "g = torch.Generator().manual_seed(0)\ntest_x = torch.randn(200, 4, generator=g)\n"
    "test_y = (test_x[:, 0] > 0).long()\n"
    "clf_ok = nn.Linear(4, 2)\n"
    "with torch.no_grad():\n"
    "    clf_ok.weight.zero_(); clf_ok.bias.zero_()\n"
    "    clf_ok.weight[1, 0] = 1.0; clf_ok.weight[1, 1] = 0.7",
    ("markdown", "### Test A"),
    "correct = (clf_ok(test_x).argmax(1) == test_y).sum().item()\n"
    "print(f'{correct} of {len(test_y)} correct ({100 * correct / len(test_y):.1f}%)')",
    ("markdown", "### Test B"),
    "print('test accuracy: 0.99')",
    ("markdown", "### Test C"),
    "acc = (clf_ok(test_x).argmax(1) == test_y).float().mean()",
    ("markdown", "## Plots"),
    "plt.plot([1, 2, 3]); plt.show()",
    ("markdown", "Explain what you see."),
    ("markdown", "The loss goes down steadily and the model does not overfit."),
    ("markdown", "What about the filters?"),
    ("markdown", "put your answer here"),
    # the answer written below a code cell of the student's own, the placeholder left above it
    ("markdown", "Why does it work?"),
    ("markdown", "put your answer here"),
    "print(clf_ok.weight)",
    ("markdown", "Because the weights read the first feature, which decides the class."),
    ("markdown", "## The end"),
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
points = 4
subchecks = [{ name = "plot", points = 1 }, { name = "answer1", points = 1 }, { name = "answer2", points = 1 },
             { name = "answer3", points = 1 }]
[items.params]
rules = [
  { images = 1, section = "^## Plots", subcheck = "plot" },
  { answer = "put your answer here", after = "^Explain what you see", min_chars = 20, subcheck = "answer1" },
  { answer = "put your answer here", after = "^What about the filters", subcheck = "answer2" },
  { answer = "put your answer here", after = "^Why does it work", min_chars = 20, subcheck = "answer3" },
]

[[items]]
id = "nb.printed_A"
part = "nb"
kind = "behaviour"
title = "the test accuracy printed is the model's"
points = 1
target = "clf_ok"
reference = "minref.nets:own_test_set"
subchecks = [{ name = "printed", points = 1 }]
[items.params]
mode = "classify"
min_accuracy = 0.0
printed = { section = "^### Test A", tolerance = 0.01 }
compare = { printed = "printed" }

[[items]]
id = "nb.printed_B"
part = "nb"
kind = "behaviour"
title = "the test accuracy printed is the model's"
points = 1
target = "clf_ok"
reference = "minref.nets:own_test_set"
subchecks = [{ name = "printed", points = 1 }]
[items.params]
mode = "classify"
min_accuracy = 0.0
printed = { section = "^### Test B", tolerance = 0.01 }
compare = { printed = "printed" }

[[items]]
id = "nb.printed_C"
part = "nb"
kind = "behaviour"
title = "the test accuracy printed is the model's"
points = 1
target = "clf_ok"
reference = "minref.nets:own_test_set"
subchecks = [{ name = "printed", points = 1 }]
[items.params]
mode = "classify"
min_accuracy = 0.0
printed = { section = "^### Test C", tolerance = 0.01 }
compare = { printed = "printed" }
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
    assert subs(art) == {"plot": 1, "answer1": 1, "answer2": 0, "answer3": 1}   # answer3 follows a code cell
    assert "placeholder is still there" in art["message"]
    assert all("presence check" in s["message"] for s in art["subchecks"])


def test_the_printed_test_accuracy_counts_only_when_it_is_what_the_model_does(graded):
    _, items = graded
    honest = items["nb.printed_A"]                 # "183 of 200 correct (91.5%)", say
    assert honest["points"] == 1, honest
    assert "is what the model does" in honest["message"]
    typed = items["nb.printed_B"]
    assert typed["points"] == 0 and "0.990" in typed["message"] and "the grader measured" in typed["message"]
    silent = items["nb.printed_C"]
    assert silent["points"] == 0 and "prints no accuracy" in silent["message"]


def test_students_never_see_a_raw_regex():
    from grader.checks.notebook_text import plain
    assert plain(r"^## 8\.") == "“## 8.”"
    assert plain(r"^### Testing") == "“### Testing”"
    assert plain(r"(?i)^Pick a few intermediate representations") == "“Pick a few intermediate representations”"
    assert plain(r"test accuracy\s*[:=]?\s*\d", "the test accuracy") == "the test accuracy"
    assert plain(r"^(## 8|## 9)", "Section 8") == "Section 8"
    assert plain(None, "this part") == "this part"
