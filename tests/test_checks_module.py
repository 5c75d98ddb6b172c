"""Check kinds `module` (weight transplant) and `structure` through the real sandbox:
other parameter names with a mapping, a transposed weight, functional layers and
registration order all pass; planted mistakes lose exactly their sub-checks."""
from __future__ import annotations

import pytest

from checks_helpers import grade, notebook, subs


def gate_item(name: str, extra: str = "") -> str:
    return f"""
[[items]]
id = "nb.{name}"
part = "nb"
kind = "module"
title = "gate ({name})"
points = 4
target = "{name}"
reference = "minref.nets:Gate"
subchecks = [{{ name = "parameters", points = 1 }}, {{ name = "forward", points = 1 }},
             {{ name = "grad_input", points = 1 }}, {{ name = "grad_weights", points = 1 }}]
fingerprints = [{{ variant = "minref.nets:GateSwapped", message = "SWAPPED: c and 1 - c are exchanged" }}]
[items.params]
args = [5]
inputs = [{{ tensor = [4, 5] }}]
{extra}
"""


def struct_item(name: str) -> str:
    return f"""
[[items]]
id = "nb.{name}"
part = "nb"
kind = "structure"
title = "CNN structure ({name})"
points = 6
target = "{name}"
subchecks = [{{ name = "constructs", points = 1 }}, {{ name = "output_shape", points = 1 }},
             {{ name = "finite", points = 1 }}, {{ name = "parameters", points = 1 }},
             {{ name = "layers", points = 1 }}, {{ name = "residual", points = 1 }}]
[items.params]
input = {{ tensor = [2, 3, 16, 16] }}
output_shape = [2, 2]
params_min = 100
params_max = 100000
components = [
  {{ name = "conv", min = 2, modules = ["Conv2d"], functions = ["conv2d"], what = "convolutions" }},
  {{ name = "bn", min = 1, modules = ["BatchNorm2d"], functions = ["batch_norm"], what = "batch norms" }},
  {{ name = "pool", min = 1, modules = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"], functions = ["max_pool2d", "_max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"], what = "pooling layers" }},
  {{ name = "linear", min = 1, modules = ["Linear"], functions = ["linear"], what = "linear layers" }},
  {{ name = "residual", min = 1, residual = true, what = "residual additions" }},
]
compare = {{ layers = ["component:conv", "component:bn", "component:pool", "component:linear"], residual = "component:residual" }}
"""


def seq_item(name: str) -> str:
    return f"""
[[items]]
id = "nb.{name}"
part = "nb"
kind = "structure"
title = "sequence model ({name})"
points = 2
target = "{name}"
subchecks = [{{ name = "builds", points = 1, what = "builds with a GRU" }}, {{ name = "forward_shape", points = 1 }}]
[items.params]
args = [16]
input = {{ tensor = [5, 20], dist = "onehot", classes = 27 }}
alternative_inputs = [{{ tensor = [5, 20], dist = "randint", high = 27 }}]
output_shape = [5, 20, 27]
components = [{{ name = "gru", min = 1, modules = ["GRU"], what = "GRU layers" }}]
compare = {{ builds = ["constructs", "component:gru"], forward_shape = ["output_shape", "finite"] }}
"""


ITEMS = (gate_item("GateSame")
         + gate_item("GateRenamed", 'mapping = { Wg = "W", bias = "b", "proj.weight" = "U.weight" }')
         + gate_item("GateTransposed", 'mapping = { Wt = "W", "U.weight" = "U.weight", b = "b" }\ntranspose = ["Wt"]')
         + gate_item("GateFunctional", 'mapping = { U_weight = "U.weight" }')
         + gate_item("GateOrder", 'match = "order"')
         + gate_item("GateSwappedStudent")
         + gate_item("GateDetachB")
         + gate_item("GateBadCtor")
         + gate_item("GateNoMapping")
         + "".join(struct_item(n) for n in ("NetModules", "NetFunctional", "NetPlain", "NetWide", "NetNaN",
                                            "NetLazy", "NetOwnConv"))
         + "".join(seq_item(n) for n in ("SeqOneHot", "SeqIndex", "SeqBroken")))

STUDENT = [
    "import torch\nfrom torch import nn\nimport torch.nn.functional as F",
    # the reference's own names
    "class GateSame(nn.Module):\n"
    "    def __init__(self, n):\n"
    "        super().__init__()\n"
    "        self.W = nn.Parameter(torch.randn(n, n)); self.b = nn.Parameter(torch.zeros(n))\n"
    "        self.U = nn.Linear(n, n, bias=False)\n"
    "    def forward(self, x):\n"
    "        c = torch.sigmoid(x @ self.W.T + self.b)\n"
    "        return c * x + (1 - c) * self.U(x)",
    # other names, declared by a mapping; computed in float64
    "class GateRenamed(nn.Module):\n"
    "    def __init__(self, n):\n"
    "        super().__init__()\n"
    "        self.Wg = nn.Parameter(torch.randn(n, n)); self.bias = nn.Parameter(torch.zeros(n))\n"
    "        self.proj = nn.Linear(n, n, bias=False)\n"
    "    def forward(self, x):\n"
    "        c = torch.sigmoid(torch.addmm(self.bias.double(), x.double(), self.Wg.double().T))\n"
    "        u = self.proj(x).double()\n"
    "        return x.double() + (1 - c) * (u - x.double())",
    # the gate weight kept transposed (x @ Wt)
    "class GateTransposed(nn.Module):\n"
    "    def __init__(self, n):\n"
    "        super().__init__()\n"
    "        self.Wt = nn.Parameter(torch.randn(n, n)); self.b = nn.Parameter(torch.zeros(n))\n"
    "        self.U = nn.Linear(n, n, bias=False)\n"
    "    def forward(self, x):\n"
    "        c = torch.sigmoid(x @ self.Wt + self.b)\n"
    "        return c * x + (1 - c) * self.U(x)",
    # functional instead of a Linear module
    "class GateFunctional(nn.Module):\n"
    "    def __init__(self, n):\n"
    "        super().__init__()\n"
    "        self.W = nn.Parameter(torch.randn(n, n)); self.b = nn.Parameter(torch.zeros(n))\n"
    "        self.U_weight = nn.Parameter(torch.randn(n, n))\n"
    "    def forward(self, x):\n"
    "        c = torch.sigmoid(F.linear(x, self.W, self.b))\n"
    "        return torch.lerp(F.linear(x, self.U_weight), x, c)",
    # any names, same registration order
    "class GateOrder(nn.Module):\n"
    "    def __init__(self, n):\n"
    "        super().__init__()\n"
    "        self.first = nn.Parameter(torch.randn(n, n)); self.second = nn.Parameter(torch.zeros(n))\n"
    "        self.lin = nn.Linear(n, n, bias=False)\n"
    "    def forward(self, x):\n"
    "        c = torch.sigmoid(x @ self.first.T + self.second)\n"
    "        return c * x + (1 - c) * self.lin(x)",
    "class GateSwappedStudent(GateSame):\n"
    "    def forward(self, x):\n"
    "        c = torch.sigmoid(x @ self.W.T + self.b)\n"
    "        return (1 - c) * x + c * self.U(x)",
    # the bias is cut out of the graph: outputs right, its gradient missing
    "class GateDetachB(GateSame):\n"
    "    def forward(self, x):\n"
    "        c = torch.sigmoid(x @ self.W.T + self.b.detach())\n"
    "        return c * x + (1 - c) * self.U(x)",
    "class GateBadCtor(GateSame):\n"
    "    def __init__(self, n):\n"
    "        raise RuntimeError('constructor not written yet')",
    # other names without a mapping: the weights cannot be placed
    "GateNoMapping = GateRenamed",
    # ---- structure
    "class Block(nn.Module):\n"
    "    def __init__(self, c):\n"
    "        super().__init__()\n"
    "        self.c1 = nn.Conv2d(c, c, 3, padding=1); self.b1 = nn.BatchNorm2d(c)\n"
    "        self.c2 = nn.Conv2d(c, c, 3, padding=1)\n"
    "    def forward(self, x):\n"
    "        return F.relu(x + self.c2(F.relu(self.b1(self.c1(x)))))\n"
    "class MyConv(nn.Conv2d):\n"
    "    pass\n"
    "class NetModules(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.stem = nn.Sequential(MyConv(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))\n"
    "        self.block = Block(8)\n"
    "        self.pool = nn.AdaptiveAvgPool2d(1); self.fc = nn.Linear(8, 2)\n"
    "    def forward(self, x):\n"
    "        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))",
    "class NetFunctional(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.1)\n"
    "        self.w2 = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.1)\n"
    "        self.w3 = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.1)\n"
    "        self.g = nn.Parameter(torch.ones(8)); self.beta = nn.Parameter(torch.zeros(8))\n"
    "        self.fw = nn.Parameter(torch.randn(2, 8) * 0.1)\n"
    "    def forward(self, x):\n"
    "        h = F.max_pool2d(F.relu(F.batch_norm(F.conv2d(x, self.w1, padding=1), None, None, self.g, self.beta, training=True)), 2)\n"
    "        y = F.conv2d(F.relu(F.conv2d(h, self.w2, padding=1)), self.w3, padding=1)\n"
    "        h = h + y\n"
    "        return F.linear(h.mean((2, 3)), self.fw)",
    # no batch norm, no residual connection
    "class NetPlain(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.f = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),\n"
    "                               nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))\n"
    "    def forward(self, x):\n"
    "        return self.f(x)",
    # three classes instead of two, and far too many parameters
    "class NetWide(NetModules):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.fc = nn.Linear(8, 3); self.unused = nn.Linear(1000, 200)",
    "class NetNaN(NetModules):\n"
    "    def forward(self, x):\n"
    "        return super().forward(x) * float('nan')",
    # a lazy layer: its input size is known after a first forward pass
    "class NetLazy(NetModules):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.fc = nn.LazyLinear(2)",
    # a class of the notebook's own that only borrows torch's names counts as no convolution
    "class Conv2d(nn.Module):\n"
    "    __module__ = 'torch.nn'\n"
    "    def __init__(self, *a, **k):\n"
    "        super().__init__(); self.s = nn.Parameter(torch.ones(1))\n"
    "    def forward(self, x):\n"
    "        return x * self.s\n"
    "class NetOwnConv(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.a = Conv2d(3, 3); self.b = Conv2d(3, 3); self.bn = nn.BatchNorm2d(3)\n"
    "        self.pool = nn.AdaptiveMaxPool2d(1); self.fc = nn.Linear(3, 2)\n"
    "    def forward(self, x):\n"
    "        h = self.bn(self.a(x))\n"
    "        return self.fc(self.pool(h + self.b(self.a(h))).flatten(1))",
    # the sequence models: one-hot input as described, letter indices (an embedding), and broken
    "class SeqOneHot(nn.Module):\n"
    "    def __init__(self, hidden):\n"
    "        super().__init__(); self.gru = nn.GRU(27, hidden, batch_first=True); self.out = nn.Linear(hidden, 27)\n"
    "    def forward(self, x):\n"
    "        return self.out(self.gru(x)[0])",
    "class SeqIndex(nn.Module):\n"
    "    def __init__(self, hidden):\n"
    "        super().__init__(); self.emb = nn.Embedding(27, 8)\n"
    "        self.gru = nn.GRU(8, hidden, batch_first=True); self.out = nn.Linear(hidden, 27)\n"
    "    def forward(self, x):\n"
    "        return self.out(self.gru(self.emb(x.long()))[0])",
    "class SeqBroken(SeqOneHot):\n"
    "    def forward(self, x):\n"
    "        return self.out(self.gru(x[None])[0])",
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return grade(tmp_path_factory.mktemp("mod"), ITEMS, notebook(*STUDENT))


FULL_GATE = {"parameters": 1, "forward": 1, "grad_input": 1, "grad_weights": 1}


def test_transplant_passes_other_names_transposes_functional_layers_and_order(graded):
    _, items = graded
    for name in ("GateSame", "GateRenamed", "GateTransposed", "GateFunctional", "GateOrder"):
        assert subs(items[f"nb.{name}"]) == FULL_GATE, items[f"nb.{name}"]
    assert "float64" in items["nb.GateRenamed"]["message"]


def test_planted_module_mistakes(graded):
    _, items = graded
    swapped = items["nb.GateSwappedStudent"]
    assert subs(swapped) == {"parameters": 1, "forward": 0, "grad_input": 0, "grad_weights": 0}
    assert all(s["message"].startswith("SWAPPED") for s in swapped["subchecks"] if s["points"] == 0)
    detach = items["nb.GateDetachB"]
    assert subs(detach) == {"parameters": 1, "forward": 1, "grad_input": 1, "grad_weights": 0}
    assert "gradient of b`" in detach["message"]
    bad = items["nb.GateBadCtor"]
    assert bad["points"] == 0 and "constructor not written yet" in bad["message"]
    nomap = items["nb.GateNoMapping"]
    assert nomap["points"] == 0 and "params.mapping" in nomap["message"]


def test_structure_accepts_modules_subclasses_and_functional_layers(graded):
    _, items = graded
    for name in ("NetModules", "NetFunctional"):
        assert items[f"nb.{name}"]["status"] == "passed", items[f"nb.{name}"]


def test_structure_mistakes_lose_their_subchecks(graded):
    _, items = graded
    plain = items["nb.NetPlain"]
    assert subs(plain) == {"constructs": 1, "output_shape": 1, "finite": 1, "parameters": 1,
                           "layers": 0, "residual": 0}
    assert "batch norms" in plain["message"] and "residual additions" in plain["message"]
    wide = items["nb.NetWide"]
    assert subs(wide) == {"constructs": 1, "output_shape": 0, "finite": 1, "parameters": 0,
                          "layers": 1, "residual": 1}
    assert "(2, 3)" in wide["message"] and "parameters" in wide["message"]
    nan = items["nb.NetNaN"]
    assert subs(nan)["finite"] == 0 and subs(nan)["output_shape"] == 1


def test_lazy_layers_are_materialized_before_they_are_counted(graded):
    _, items = graded
    assert items["nb.NetLazy"]["status"] == "passed", items["nb.NetLazy"]


def test_a_class_named_like_a_torch_layer_is_not_that_layer(graded):
    _, items = graded
    own = items["nb.NetOwnConv"]
    assert subs(own)["layers"] == 0 and "convolutions" in own["message"], own


def test_a_forward_on_letter_indices_is_checked_on_that_form_with_a_note(graded):
    _, items = graded
    assert items["nb.SeqOneHot"]["status"] == "passed" and not items["nb.SeqOneHot"]["message"]
    index = items["nb.SeqIndex"]
    assert index["status"] == "passed", index
    assert "an integer input of shape (5, 20) instead of the a one-hot" not in index["message"]
    assert "takes an integer input of shape (5, 20) instead of the one-hot input of shape (5, 20, 27)" in index["message"]
    broken = items["nb.SeqBroken"]
    assert subs(broken) == {"builds": 1, "forward_shape": 0}, broken
    msg = broken["message"]
    assert "ValueError" in msg and "one-hot input of shape (5, 20, 27)" in msg
    assert "site-packages" not in msg and "_call_impl" not in msg     # the library's wrappers are not shown


def test_the_students_feedback_carries_the_note_on_a_passed_item(graded, tmp_path):
    from checks_helpers import write_rubric
    from grader.report import feedback_markdown
    from grader.rubric import load_rubric
    record, _ = graded
    text = feedback_markdown(load_rubric(write_rubric(tmp_path, ITEMS)), record)
    line = next(x for x in text.splitlines() if "sequence model (SeqIndex)" in x)
    assert "passed" in line and "takes an integer input of shape (5, 20)" in line
    assert "(" not in next(x for x in text.splitlines() if "sequence model (SeqOneHot)" in x).split("):", 1)[1]
