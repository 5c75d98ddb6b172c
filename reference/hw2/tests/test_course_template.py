"""The notebooks as the course's Colab template has them, built from the same sources as ours."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[3]
HW2 = REPO / "reference" / "hw2"
COURSE = HW2 / "course"
NOTEBOOKS = ("hw2_cnn", "hw2_rnn", "08-seq_classification")


def _build():
    spec = importlib.util.spec_from_file_location("_hw2_build", HW2 / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("variant", ["hw2", "course"])
@pytest.mark.parametrize("version", ["release", "solution"])
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_built_from_the_sources(variant, version, name):
    build = _build()
    folder = build.VARIANTS[variant] / version
    want = nbformat.writes(build.build(HW2 / "source" / f"{name}.py", version, variant)) + "\n"
    assert (folder / f"{name}.ipynb").read_text() == want, "run: python reference/hw2/build.py"


def _code(version: str, name: str) -> str:
    nb = nbformat.read(COURSE / version / f"{name}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_the_course_cnn_is_the_templates_colab_notebook():
    code = _code("release", "hw2_cnn")
    for given in ("! wget --no-check-certificate https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
                  "! unzip -qo cats_and_dogs_filtered.zip", "datasets.ImageFolder('./cats_and_dogs_filtered/train'",
                  "[500, 500], generator=torch.Generator().manual_seed(42)", "from tqdm.notebook import tqdm",
                  "transforms.RandomRotation(20, resample=Image.BILINEAR)", "num_workers=4",
                  "criterion = None # TODO", "criterion = criterion.cuda()", "if i*N + j < N_FILTERS:"):
        assert given in code, given
    for ours in ("conv_output_size", "conv1d_strided", "HW2_DATA_DIR", "ImageFolderDataset", "model.eval()"):
        assert ours not in code, ours


def test_the_course_rnn_has_the_templates_tests_and_names():
    code = _code("release", "hw2_rnn")
    for given in ("def test_model(model, sequence_length=15):", "def test_variable_delay_model(model, seq_length=20):",
                  "model = None", "assert duration < 600", "torch.sparse.torch.eye(k)", "DATASET_SIZE = 200000"):
        assert given in code, given
    for ours in ("GatedRNN", "AttentionRNN", "fixed_delay_model =", "variable_delay_model ="):
        assert ours not in code, ours
    # The template's VariableDelayGRUMemory does not keep max_delay; its test reads it.
    model_cell = code[code.index("class VariableDelayGRUMemory"):code.index("def test_run(self, s, delay)")]
    assert "self.max_delay" not in model_cell


def test_the_course_08_keeps_the_lectures_epochs():
    code = _code("release", "08-seq_classification")
    assert code.count("max_epochs = 100") == 3 and "max_epochs = 30" not in code
    assert "from res.sequential_tasks import TemporalOrderExp6aSequence as QRSU" in code
