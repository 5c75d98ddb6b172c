"""The hw2_cnn and hw2_rnn items of rubrics/hw2.toml against the assignment's own notebooks,
through the real runner, sandbox and probe: the solution scores full marks on every automatic
item, the release scores 0 where its TODO is the whole item, and planted mistakes lose exactly
their sub-checks with the fingerprint message.

Each zip is graded once per session (module-scoped fixtures); the 08-seq notebook is left out
of the zips, so only the two parts under test run.
"""
from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

from grader.rubric import load_rubric
from conftest import SESSION_SEED
from grader.runner import GradeSettings, grade_submission

REPO = Path(__file__).resolve().parents[1]
HW2 = REPO / "reference" / "hw2"
RUBRIC = REPO / "rubrics" / "hw2.toml"
PARTS = ("hw2_cnn", "hw2_rnn")



def small_pdf() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig = plt.figure(figsize=(3, 2))
    fig.text(0.1, 0.5, "Homework 2, theory")
    fig.savefig(buf, format="pdf")
    plt.close(fig)
    return buf.getvalue()


def mutate(nb_path: Path, edits: list[tuple[str, str]]) -> bytes:
    """The notebook with each (old, new) applied to the one code cell holding ``old``."""
    nb = nbformat.read(nb_path, as_version=4)
    for old, new in edits:
        cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1 and cells[0].source.count(old) == 1, f"edit target not unique: {old!r}"
        cells[0].source = cells[0].source.replace(old, new)
    return nbformat.writes(nb).encode()


def grade_items(root: Path, cache: Path, net_id: str, notebooks: dict[str, bytes]) -> dict[str, dict]:
    """The items of PARTS in the record of a zip of ``notebooks``, graded with the session's seed
    and run cache (the solution's and release's notebooks are the ones the golden samples and
    `grader validate` run: their runs are reused)."""
    rubric = load_rubric(RUBRIC)
    zpath = root / f"{net_id}.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("hw2_theory.pdf", small_pdf())
        for name, data in notebooks.items():
            zf.writestr(name, data)
    settings = GradeSettings(work_dir=root / "work", cache_dir=cache, seed=SESSION_SEED,
                             times={net_id: datetime(2025, 10, 1, 12, 0, tzinfo=timezone.utc)})
    record = grade_submission(zpath, rubric, settings)
    assert record.status == "graded", (record.status, record.reason, record.warnings)
    return {i["id"]: i for i in record.items if i["part"] in PARTS}


def table(items: dict[str, dict]) -> str:
    lines = []
    for i in items.values():
        lines.append(f"{i['id']:38s} {i['points']:5g}/{i['possible']:<5g} {i['status']:8s} {i['message'][:300]!r}")
        for s in i["subchecks"]:
            if s["points"] < s["possible"]:
                lines.append(f"    {s['name']:30s} {s['points']:g}/{s['possible']:g} {s['message'][:400]!r}")
    return "\n".join(lines)


def subs(item: dict) -> dict[str, float]:
    return {s["name"]: s["points"] for s in item["subchecks"]}


def full(item: dict) -> bool:
    return abs(item["points"] - item["possible"]) < 1e-9


@pytest.fixture(scope="module")
def solution(tmp_path_factory, run_cache) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("hw2_solution")
    return grade_items(root, run_cache, "sol001", {f"{p}.ipynb": (HW2 / "solution" / f"{p}.ipynb").read_bytes() for p in PARTS})


@pytest.fixture(scope="module")
def release(tmp_path_factory, run_cache) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("hw2_release")
    return grade_items(root, run_cache, "rel001", {f"{p}.ipynb": (HW2 / "release" / f"{p}.ipynb").read_bytes() for p in PARTS})


CNN_MISTAKES = [
    # a true convolution: the kernel reversed in the forward pass
    ("outputs.append((window.unsqueeze(-3) * w).sum(dim=(-2, -1)))",
     "outputs.append((window.unsqueeze(-3) * w.flip(-1)).sum(dim=(-2, -1)))"),
    # the residual block without its skip connection
    ("return F.relu(x + self.bn2(self.conv2(out)))", "return F.relu(self.bn2(self.conv2(out)))"),
    # shorter training: the items below do not depend on it
    ("N_EPOCHS = 10", "N_EPOCHS = 1"),
]
RNN_MISTAKES = [
    # gate and 1 - gate exchanged in eq. (2)
    ("h = c * h + (1 - c) * (x[:, t] @ self.W_x.T)", "h = (1 - c) * h + c * (x[:, t] @ self.W_x.T)"),
    # AttentionRNN without its lag-0 source x[t]
    ("sources = [x[:, t]] + [past[-i] for i in range(1, self.k + 1)]",
     "sources = [past[-i] for i in range(1, self.k + 1)]"),
    # shorter trainings
    ("DATASET_SIZE = 200000", "DATASET_SIZE = 256 * 20"),
    ("size=1000 * 128),", "size=20 * 128),"),
]


@pytest.fixture(scope="module")
def mutated(tmp_path_factory, run_cache) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("hw2_mutated")
    return grade_items(root, run_cache, "mut001", {
        "hw2_cnn.ipynb": mutate(HW2 / "solution" / "hw2_cnn.ipynb", CNN_MISTAKES),
        "hw2_rnn.ipynb": mutate(HW2 / "solution" / "hw2_rnn.ipynb", RNN_MISTAKES),
    })


def test_items_cover_the_parts():
    rubric = load_rubric(RUBRIC)
    for part in PARTS:
        items = rubric.items_of(part)
        assert {i.kind for i in items} <= {"function", "module", "structure", "behaviour", "static", "artifact"}
        assert abs(sum(i.points for i in items) - rubric.part(part).points) < 1e-9


@pytest.mark.slow
def test_solution_scores_full_marks(solution):
    assert len(solution) == len([i for i in load_rubric(RUBRIC).items if i.part in PARTS])
    assert all(full(i) for i in solution.values()), "\n" + table(solution)


@pytest.mark.slow
def test_release_scores_as_declared(release):
    rubric = load_rubric(RUBRIC)
    wrong = []
    for item in rubric.items:
        if item.part not in PARTS:
            continue
        got = release[item.id]
        if (item.release == "zero" and got["points"] != 0) or (item.release == "full" and not full(got)):
            wrong.append(item.id)
    assert not wrong, f"{wrong}\n" + table(release)
    # the one "any" item: the empty class builds, nothing else
    assert subs(release["hw2_cnn.model_structure"])["builds"] == 0.5
    assert release["hw2_cnn.model_structure"]["points"] == 0.5


@pytest.mark.slow
def test_planted_cnn_mistakes(mutated):
    t = "\n" + table(mutated)
    conv = mutated["hw2_cnn.conv1d"]
    assert subs(conv) == {"forward": 0, "grad_weight": 2.0, "grad_input": 2.0, "hand_written": 0.5}, t
    forward = next(s for s in conv["subchecks"] if s["name"] == "forward")
    assert forward["message"].startswith("Your forward pass computes a true convolution"), t
    structure = mutated["hw2_cnn.model_structure"]
    assert subs(structure) == {"builds": 0.5, "output_shape": 0.5, "convolutions": 0.5, "batch_norm": 0.5,
                               "nonlinearity": 0.5, "pooling": 0.5, "residual": 0, "linear": 0.5}, t
    assert "found 0 residual additions" in structure["message"], t
    for unchanged in ("hw2_cnn.conv_output_size", "hw2_cnn.get_loss_and_correct", "hw2_cnn.step"):
        assert full(mutated[unchanged]), t


@pytest.mark.slow
def test_planted_rnn_mistakes(mutated):
    t = "\n" + table(mutated)
    gated = mutated["hw2_rnn.gated_rnn"]
    assert gated["points"] == 0, t
    by_name = {s["name"]: s for s in gated["subchecks"]}
    for name in ("forward", "initial_state"):
        assert by_name[name]["message"].startswith("Your states match eq. (2) with c[t] and 1 - c[t] exchanged"), t
    attention = mutated["hw2_rnn.attention_rnn"]
    assert attention["points"] == 0, t
    assert all("never to x[t]" in s["message"] for s in attention["subchecks"]), t
    for unchanged in ("hw2_rnn.gated_rnn_grad_Wx", "hw2_rnn.gru_memory_structure", "hw2_rnn.gru_memory_test_run",
                      "hw2_rnn.variable_delay_structure", "hw2_rnn.variable_delay_test_run"):
        assert full(mutated[unchanged]), t


def _item(extra: str) -> str:
    return f"""
[[items]]
id = "nb.x"
part = "nb"
kind = "function"
title = "x"
points = 1
target = "f"
reference = "minref.ops:conv1d"
[items.params]
{extra}
"""


def test_object_specs_are_restricted_to_the_allow_list(tmp_path):
    import importlib.util

    from checks_helpers import write_rubric
    from grader.checks.common import ALLOWED_OBJECTS
    from grader.rubric import RubricError

    with pytest.raises(RubricError, match="not an allowed constructor"):
        load_rubric(write_rubric(tmp_path, _item('args = [{ object = "builtins.eval", args = ["1"] }]')))
    load_rubric(write_rubric(tmp_path, _item('args = [{ object = "torch.nn.Linear", args = [2, 3] }]')))
    # the probe reads the one list (grader/probe/wire.py) and refuses anything else a tampered plan names
    spec = importlib.util.spec_from_file_location("_probe_copy", REPO / "grader" / "probe" / "kernel_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe._wire.ALLOWED_OBJECTS == ALLOWED_OBJECTS and not hasattr(probe, "_ALLOWED_OBJECTS")
    with pytest.raises(ValueError, match="not an allowed constructor"):
        probe._v.unpack({"__build__": {"ctor": "os.system", "args": ["true"]}}, {}, {})


def test_graded_thresholds_need_a_full_credit_step(tmp_path):
    from checks_helpers import write_rubric
    from grader.rubric import RubricError

    item = """
[[items]]
id = "nb.acc"
part = "nb"
kind = "behaviour"
title = "accuracy"
points = 1
target = "clf"
reference = "minref.nets:sign_task"
[items.params]
thresholds = [{ min = 0.9, fraction = 0.5 }]
"""
    with pytest.raises(RubricError, match="full credit"):
        load_rubric(write_rubric(tmp_path, item))
