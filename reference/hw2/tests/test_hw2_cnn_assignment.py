"""hw2_cnn: the synthetic data set is deterministic and out of a linear model's reach; the
notebooks are built from their source; the solution runs clean in the sandbox and learns; the
release fails only where answers are missing."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
HW2 = REPO / "reference" / "hw2"
NB = "hw2_cnn.ipynb"
sys.path.insert(0, str(HW2))

from hw2ref import data  # noqa: E402
from grader.execute import ExecSettings, ProbeRequest, execute_notebook  # noqa: E402

# Both cores: these runs check the assignment, not a student, and nothing else runs beside them.
SETTINGS = ExecSettings(cell_timeout_s=600, notebook_timeout_s=900, threads=2)
DATA_MOUNT = "cats_and_dogs_filtered"        # beside the notebook, as the rubric places it
# Release cells that call code the student has to write.
RELEASE_FAILING = ("print(conv_output_size((21, 12), (4, 5), stride=4))",
                   "print('f_W(x) has shape'",
                   "pbar = tqdm(range(N_EPOCHS))")
STUBS = ("conv_output_size", "conv1d_strided", "conv1d_grad_weight", "conv1d_grad_input",
         "CNN_Solution.forward", "get_loss_and_correct", "step")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return data.prepare_for_grader(tmp_path_factory.mktemp("cats_and_dogs"))


def _build_module():
    spec = importlib.util.spec_from_file_location("_hw2_build", HW2 / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("version", ["release", "solution"])
def test_committed_notebook_matches_source(version):
    build = _build_module()
    want = nbformat.writes(build.build(HW2 / "source" / "hw2_cnn.py", version)) + "\n"
    assert (HW2 / version / NB).read_text() == want


def _cells(version: str, kind: str) -> list[str]:
    nb = nbformat.read(HW2 / version / NB, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == kind]


def test_release_keeps_the_interface_and_hides_the_answers():
    release, solution = _cells("release", "code"), _cells("solution", "code")
    assert len(release) == len(solution)
    text = "\n".join(release)
    for name in STUBS:
        assert f'raise NotImplementedError("{name}")' in text, name
    assert "criterion = None # TODO" in text and "optimizer = None # TODO" in text
    for answer in ("nn.BatchNorm2d(", "CrossEntropyLoss", "loss.backward()", "test_accuracy", "einsum"):
        assert answer not in text, answer
    assert "NotImplementedError(" not in "\n".join(solution)
    md_release, md_solution = "\n".join(_cells("release", "markdown")), "\n".join(_cells("solution", "markdown"))
    for placeholder in ("put your answer here", "Your answer here"):
        assert placeholder in md_release and placeholder not in md_solution
    for given in ("class ImageFolderDataset(", "def validation_transforms(img)", "def plot_intermediate_output(",
                  "generator=torch.Generator().manual_seed(42)", "os.environ.get('HW2_DATA_DIR', 'cats_and_dogs_filtered')",
                  "train_losses = []", "num_workers=0", "class Conv1dStrided(torch.autograd.Function)"):
        assert given in text and given in "\n".join(solution), given


def test_generator_is_deterministic_and_has_the_course_layout(tmp_path, dataset):
    again = data.prepare_for_grader(tmp_path / "again")
    assert data.tree_digest(again) == data.tree_digest(dataset)
    other = data.make_cats_and_dogs(tmp_path / "other", seed=1)
    assert data.tree_digest(other) != data.tree_digest(dataset)
    for split, n in (("train", 300), ("validation", 150)):
        assert sorted(p.name for p in (dataset / split).iterdir()) == ["cats", "dogs"]
        for cls in ("cats", "dogs"):
            assert len(list((dataset / split / cls).glob("*.png"))) == n
    held = data.heldout_images(3)
    assert [lbl for _, lbl in held] == [0, 1] * 3
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (a, _), (b, _) in zip(held, data.heldout_images(3)))


def test_cli_writes_the_data_set(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hw2ref.data", str(tmp_path), "--train", "2", "--val", "1"],
                         cwd=HW2, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out) == tmp_path / "cats_and_dogs_filtered"
    assert len(list(Path(out).rglob("*.png"))) == 2 * (2 + 1)


def test_mean_colour_and_a_linear_model_stay_near_chance(dataset):
    torch.manual_seed(0)
    xtr, ytr = data.load_arrays(dataset, "train")
    xva, yva = data.load_arrays(dataset, "validation")
    xtr, xva = torch.tensor(xtr).flatten(1), torch.tensor(xva).flatten(1)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    ytr, yva = torch.tensor(ytr), torch.tensor(yva)
    accuracies = {}
    # ridge classifiers in closed form (dual: 600 x 600), from barely to heavily regularized
    gram = xtr @ xtr.T
    target = 2.0 * ytr.double() - 1
    for lam in (1.0, 1e2, 1e4):
        alpha = torch.linalg.solve(gram.double() + lam * torch.eye(len(ytr), dtype=torch.float64), target)
        pred = (xva.double() @ (xtr.double().T @ alpha)) > 0
        accuracies[f"ridge {lam:g}"] = (pred.long() == yva).float().mean().item()
    # and logistic regression trained by gradient descent
    lin = torch.nn.Linear(xtr.shape[1], 2)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xtr), ytr).backward()
        opt.step()
    with torch.no_grad():
        accuracies["logistic"] = (lin(xva).argmax(1) == yva).float().mean().item()
        accuracies["logistic train"] = (lin(xtr).argmax(1) == ytr).float().mean().item()
    assert accuracies.pop("logistic train") > 0.9  # it fits the training set; it does not generalize
    assert max(accuracies.values()) < 0.62, accuracies
    # mean colour per image carries no class signal either
    means = torch.tensor(data.load_arrays(dataset, "validation")[0].mean(axis=(1, 2)))
    gap = (means[yva == 0].mean(0) - means[yva == 1].mean(0)).abs().max().item()
    assert gap < 0.05, gap


PROBE = (
    "import json\n"
    "json.dump({'train_accuracies': train_accuracies, 'validation_accuracies': validation_accuracies,\n"
    "           'train_losses': train_losses, 'validation_losses': validation_losses,\n"
    "           'n_epochs': N_EPOCHS, 'test_accuracy': test_accuracy},\n"
    "          open('/grader/out/history.json', 'w'))\n"
)


@pytest.mark.slow
def test_solution_notebook_runs_clean_and_learns(tmp_path, dataset):
    work, probe_in, probe_out = tmp_path / "work", tmp_path / "in", tmp_path / "out"
    for d in (work, probe_in, probe_out):
        d.mkdir()
    (work / NB).write_bytes((HW2 / "solution" / NB).read_bytes())
    t0 = time.time()
    run = execute_notebook(work / NB, work, SETTINGS,
                           ro_mounts=[(dataset, DATA_MOUNT)], probe=ProbeRequest(PROBE, probe_in, probe_out))
    wall = time.time() - t0
    print(f"hw2_cnn solution: {wall:.1f} s wall, loadavg {Path('/proc/loadavg').read_text().strip()}")
    assert run.status == "completed", run.message
    assert run.probe is not None and run.probe.status == "ok", run.probe
    history = json.loads((probe_out / "history.json").read_text())
    n = history["n_epochs"]
    assert all(len(history[k]) == n for k in ("train_accuracies", "validation_accuracies",
                                               "train_losses", "validation_losses"))
    # A sanity check of the assignment only: the grader measures accuracy on its own images.
    assert history["validation_accuracies"][-1] >= 0.75, history["validation_accuracies"]
    assert history["test_accuracy"] >= 0.7
    nb = nbformat.read(run.executed_path, as_version=4)
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "image/png" in o.get("data", {}))
    assert images >= 7  # samples, curves, test examples (2), input image, feature maps (3)


@pytest.mark.slow
def test_release_notebook_fails_only_where_answers_are_missing(tmp_path, dataset):
    work = tmp_path / "work"
    work.mkdir()
    (work / NB).write_bytes((HW2 / "release" / NB).read_bytes())
    run = execute_notebook(work / NB, work, SETTINGS,
                           ro_mounts=[(dataset, DATA_MOUNT)])
    assert run.status == "errors", run.message
    nb = nbformat.read(run.executed_path, as_version=4)
    code_indices = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    failing = {i for i in code_indices if any(m in nb.cells[i].source for m in RELEASE_FAILING)}
    assert len(failing) == len(RELEASE_FAILING)
    by_index = {r.index: r for r in run.cells}
    for i in code_indices:
        res = by_index[i]
        if i in failing:
            assert res.status == "error" and res.error_name == "NotImplementedError", (i, res)
        else:
            assert res.status == "ok", (i, res)
    assert run.seconds < 120
