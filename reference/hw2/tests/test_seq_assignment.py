"""08-seq_classification: support package, reference models, recorded Section 8 curves, notebooks."""
from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
HW2 = REPO / "reference" / "hw2"
SUPPORT = HW2 / "support"
CURVES = HW2 / "data" / "section8_curves.json"
NB = "08-seq_classification.ipynb"
sys.path.insert(0, str(HW2))

from hw2ref import seqcls  # noqa: E402

LN4 = math.log(4)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_t_res_{name}", SUPPORT / "res" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


QRSU = seqcls.sequential_tasks().TemporalOrderExp6aSequence
LEVEL = QRSU.DifficultyLevel


# ----------------------------------------------------------------------------- res/sequential_tasks
def test_easy_batch_shapes_and_length():
    gen = QRSU.get_predefined_generator(LEVEL.EASY, batch_size=32)
    assert len(gen) == 31
    x, y = gen[0]
    assert x.shape == (32, 9, 8) and x.dtype == np.int32
    assert y.shape == (32, 4) and y.dtype == np.float32
    assert set(np.unique(x)) <= {0, 1} and set(x.sum(axis=2).ravel()) <= {0, 1}
    assert np.array_equal(y.sum(axis=1), np.ones(32))
    # Padding is at the front: once a row is non-zero, every later row is too.
    rows = x.sum(axis=2)
    assert all(np.all(np.diff(r) >= 0) for r in rows)


def test_first_sequence_with_default_seed_is_the_course_one():
    gen = QRSU.get_predefined_generator(LEVEL.EASY, batch_size=32)
    x, y = gen[0]
    assert (gen.decode_x(x[0]), gen.decode_y(y[0])) == ("BbXcXcbE", "Q")
    assert gen.decode_x_batch(x)[:3] == ["BbXcXcbE", "BYdadYE", "BXddbXcE"]


def test_building_a_generator_reseeds_the_global_stream():
    a = QRSU.get_predefined_generator(LEVEL.MODERATE)
    first = a[0]
    second = a[123]  # the index is ignored: a fresh batch
    assert not np.array_equal(first[0], second[0])
    b = QRSU.get_predefined_generator(LEVEL.MODERATE)
    again = b[0]
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    # Any other use of numpy's global generator shifts the stream.
    c = QRSU.get_predefined_generator(LEVEL.MODERATE)
    np.random.rand()
    assert not np.array_equal(c[0][0], first[0])


@pytest.mark.parametrize("level, lengths, t1r, t2r, padded", [
    (LEVEL.EASY, (7, 9), (1, 3), (4, 6), 9),
    (LEVEL.NORMAL, (30, 41), (2, 6), (20, 28), 41),
    (LEVEL.MODERATE, (60, 81), (10, 21), (45, 55), 81),
    (LEVEL.HARD, (100, 111), (10, 21), (50, 61), 111),
    (LEVEL.NIGHTMARE, (300, 501), (10, 81), (250, 291), 501),
])
def test_predefined_levels_follow_the_task_definition(level, lengths, t1r, t2r, padded):
    gen = QRSU.get_predefined_generator(level, batch_size=16, seed=11)
    x, y = gen[0]
    assert x.shape == (16, padded, 8) and y.shape == (16, 4)
    pair_to_class = {"XX": "Q", "XY": "R", "YX": "S", "YY": "U"}
    for seq, cls in zip(gen.decode_x_batch(x), gen.decode_y_batch(y)):
        assert lengths[0] <= len(seq) < lengths[1]
        assert seq[0] == "B" and seq[-1] == "E"
        where = [i for i, s in enumerate(seq) if s in "XY"]
        assert len(where) == 2
        assert t1r[0] <= where[0] < t1r[1] and t2r[0] <= where[1] < t2r[1]
        assert set(seq[1:-1]) - set("XY") <= set("abcd")
        assert pair_to_class[seq[where[0]] + seq[where[1]]] == cls
    # Encoding and decoding are inverse of each other.
    assert np.array_equal(gen.encode_x_batch(gen.decode_x_batch(x)), x)
    assert np.array_equal(gen.encode_y_batch(gen.decode_y_batch(y)), y)


def test_classes_are_balanced():
    gen = QRSU.get_predefined_generator(LEVEL.EASY, batch_size=32)
    labels = np.concatenate([gen[i][1].argmax(axis=1) for i in range(100)])
    freq = np.bincount(labels, minlength=4) / labels.size
    assert np.all(np.abs(freq - 0.25) < 0.03), freq


def test_pad_sequences_and_to_categorical():
    st = seqcls.sequential_tasks()
    seqs = [np.array([[1], [2], [3]]), np.array([[4]])]
    assert st.pad_sequences(seqs).tolist() == [[[1], [2], [3]], [[0], [0], [4]]]
    assert st.pad_sequences(seqs, maxlen=2, padding="post", truncating="post").tolist() == \
        [[[1], [2]], [[4], [0]]]
    assert st.pad_sequences(seqs, maxlen=2).tolist() == [[[2], [3]], [[0], [4]]]
    cat = st.to_categorical([2, 0], num_classes=3)
    assert cat.dtype == np.float32 and cat.tolist() == [[0, 0, 1], [1, 0, 0]]


# ----------------------------------------------------------------------------- res/plot_lib
def test_plot_lib_displays_one_line_per_hidden_unit(monkeypatch):
    plot_lib = _load("plot_lib")
    shown = []
    monkeypatch.setattr(plot_lib, "display", shown.append)
    plot_lib.set_default()
    import matplotlib.pyplot as plt
    assert tuple(plt.rcParams["figure.figsize"]) == (10.0, 10.0)
    plot_lib.print_colourbar()
    assert len(shown) == 1 and "+2.5" in shown[0].data and "-2.5" in shown[0].data
    gen = QRSU.get_predefined_generator(LEVEL.MODERATE)
    x, _ = gen[0]
    state = torch.randn(81, 32, 12)
    plot_lib.plot_state(torch.from_numpy(x).float(), state, b=9, decoder=gen.decode_x)
    lines = shown[1:]
    assert len(lines) == 12
    seq = gen.decode_x(x[9])
    assert all(l.data.count("<span") == len(seq) for l in lines)


# ----------------------------------------------------------------------------- hw2ref.seqcls
def test_section8_model_size_and_names():
    model = seqcls.section8_model()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {"lstm.weight_ih_l0": (48, 8), "lstm.weight_hh_l0": (48, 12), "lstm.bias_ih_l0": (48,),
                      "lstm.bias_hh_l0": (48,), "linear.weight": (4, 12), "linear.bias": (4,)}
    assert sum(p.numel() for p in model.parameters()) == 1108 == seqcls.SECTION8.n_parameters
    rnn = seqcls.SimpleRNN(8, 4, 4)
    assert [tuple(p.shape) for p in rnn.parameters()] == [(4, 8), (4, 4), (4,), (4,), (4, 4), (4,)]


def test_states_across_time_match_the_forward_pass():
    model = seqcls.section8_model()
    x = torch.from_numpy(QRSU.get_predefined_generator(LEVEL.MODERATE)[0][0]).float()
    h, c = model.get_states_across_time(x)
    assert h.shape == c.shape == (81, 32, 12)
    with torch.no_grad():
        out, (h_n, c_n) = model.lstm(x)
    torch.testing.assert_close(h.transpose(0, 1), out)
    torch.testing.assert_close(c[-1], c_n[0])
    assert model(x).shape == (32, 81, 4)


def test_initial_state_is_the_seed_one_and_leaves_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = seqcls.initial_state_dict()
    assert torch.equal(torch.rand(1), before)
    torch.manual_seed(1)
    fresh = seqcls.SimpleLSTM(8, 12, 4).state_dict()
    assert all(torch.equal(a[k], fresh[k]) for k in fresh)
    torch.manual_seed(2)
    other = seqcls.SimpleLSTM(8, 12, 4).state_dict()
    assert not torch.equal(a["lstm.weight_hh_l0"], other["lstm.weight_hh_l0"])


def test_section8_run_records_true_signal_and_is_reproducible():
    torch.set_num_threads(1)
    a = seqcls.section8_run("original", epochs=2)
    b = seqcls.section8_run("original", epochs=2)
    assert a.step_loss == b.step_loss and a.step_grad_norm == b.step_grad_norm
    assert len(a.step_loss) == 62 and len(a.epoch_test_acc) == 2
    assert a.epoch_train_loss == [a.step_loss[30], a.step_loss[61]]
    assert a.epoch_train_mean_loss[0] == pytest.approx(np.mean(a.step_loss[:31]))
    # Untrained: chance level, ln 4 on average.
    assert abs(np.mean(a.step_loss) - LN4) < 0.02 and all(abs(l - LN4) < 0.2 for l in a.step_loss)
    # Gradient norm agrees with the per-parameter maxima.
    assert max(a.step_grad_norm[:31]) >= max(v[0] for v in a.param_grad_norm_max.values())
    # A cosmetic variant trains identically; only its reported curve differs.
    c = seqcls.section8_run(seqcls.COSMETIC_VARIANT, epochs=2)
    assert c.step_loss == a.step_loss and c.epoch_reported_loss is not None
    # Clipping leaves the first batch's loss alone but changes the steps after it.
    s = seqcls.section8_run("solution", epochs=1)
    assert s.step_loss[0] == a.step_loss[0] and s.step_loss[1:] != a.step_loss[1:31]


# ----------------------------------------------------------------------------- recorded curves
def _rise_over_running_min(curve: list[float], start: int) -> float:
    best, worst = math.inf, 0.0
    for i, v in enumerate(curve):
        if i >= start and best < math.inf:
            worst = max(worst, v - best)
        best = min(best, v)
    return worst


def spiky(v: dict, curve_key: str = "epoch_train_loss") -> bool:
    """Simple rule for these tests (the grader's detector is separate).

    After the first epoch whose mean train loss is below 1.2: a spike is a plotted
    last-batch loss (train or test) more than 0.3 above the lowest value of that
    curve so far, or any training batch with a loss above ln 4.
    """
    start = next(i for i, m in enumerate(v["epoch_train_mean_loss"]) if m < 1.2)
    steps = v["step_loss"][start * v["steps_per_epoch"]:]
    return (_rise_over_running_min(v[curve_key], start) > 0.3
            or _rise_over_running_min(v["epoch_test_loss"], start) > 0.3
            or max(steps) > LN4)


@pytest.fixture(scope="module")
def curves() -> dict:
    assert CURVES.exists(), "run reference/hw2/measure_section8.py"
    assert CURVES.stat().st_size < 2_000_000
    return json.loads(CURVES.read_text())


def test_curves_file_describes_its_setting(curves):
    assert curves["config"]["hidden_size"] == 12 and curves["config"]["torch_seed"] == 1
    assert curves["config"]["lr"] == 1e-3 and curves["epochs"] == 100
    assert curves["torch"].startswith(torch.__version__.split("+")[0])
    for name, v in curves["variants"].items():
        assert len(v["step_loss"]) == len(v["step_grad_norm"]) == 100 * 31, name
        assert len(v["epoch_test_acc"]) == 100, name


def test_release_training_is_spiky_and_solution_is_not(curves):
    orig, sol = curves["variants"]["original"], curves["variants"]["solution"]
    assert spiky(orig)
    assert not spiky(sol)
    # Recorded figures (torch 2.13.0, CPU): the original blows up after learning.
    assert max(orig["step_loss"][31 * 20:]) > 3.0 and max(orig["step_grad_norm"]) > 100
    assert orig["summary"]["epochs_last_loss_above_ln4"] > 5
    assert sol["summary"]["epochs_last_loss_above_ln4"] == 0
    assert sol["summary"]["steps_above_ln4_after_learning"] == 0
    # The fix keeps the accuracy of the original.
    assert sol["epoch_test_acc"][-1] >= max(99.0, orig["epoch_test_acc"][-1])


def test_cosmetic_smoothing_hides_spikes_only_in_the_reported_curve(curves):
    cos, orig = curves["variants"]["cosmetic_ema"], curves["variants"]["original"]
    assert cos["step_loss"] == orig["step_loss"]
    assert spiky(cos)
    reported = cos["epoch_reported_loss"]
    start = next(i for i, m in enumerate(cos["epoch_train_mean_loss"]) if m < 1.2)
    assert _rise_over_running_min(reported, start) < _rise_over_running_min(cos["epoch_train_loss"], start)


def test_single_fixes_are_not_enough_here(curves):
    v = curves["variants"]
    assert spiky(v["clip1_lr1e-3"]) and spiky(v["lr5e-4"])


def test_a_schedule_can_remove_spikes_by_never_learning(curves):
    stalled = curves["variants"]["plateau_clip1_lr5e-4"]
    assert stalled["summary"]["learning_epoch"] is None
    assert max(stalled["step_loss"][31 * 20:]) < 1.5 and stalled["epoch_test_acc"][-1] < 40


def test_rubric_seq_items_are_consistent():
    import tomllib
    rubric = HW2.parents[1] / "rubrics" / "hw2.toml"
    items = [i for i in tomllib.loads(rubric.read_text())["items"] if i["part"] == "seq"]
    assert all(i["id"].startswith("seq.") for i in items)
    for i in items:
        if i.get("subchecks"):
            assert sum(s["points"] for s in i["subchecks"]) == pytest.approx(i["points"]), i["id"]
        for f in i.get("fingerprints", []):
            ref = f["variant"].split(":", 1)[1]
            m = re.fullmatch(r"VARIANTS\[(.+)\]", ref)
            assert (m.group(1) in seqcls.VARIANTS) if m else hasattr(seqcls, ref), f["variant"]
    assert sum(i["points"] for i in items if not i.get("extra")) == 5
    assert sum(i["points"] for i in items if i.get("extra")) == 5


@pytest.mark.slow
def test_recorded_curves_reproduce_on_this_build(curves):
    """The recorded curves are this torch build's. Float rounding differs between processors (an
    AVX-512 machine and an AVX2 one), and a training of 3 100 steps amplifies the difference
    after a few dozen epochs, so the steps are compared exactly only until then. What the
    calibration rests on must hold on any of them: the solution learns, and the grader's detector
    finds it smooth, or spiky only by a rise within the review margin above the threshold (an
    AMD EPYC with AVX2 measures 0.301 against 0.3), which keeps its points with a review."""
    torch.set_num_threads(1)
    rec = seqcls.section8_run("solution")
    want = curves["variants"]["solution"]
    early = 20 * want["steps_per_epoch"]
    np.testing.assert_allclose(rec.step_loss[:early], want["step_loss"][:early], rtol=2e-3, atol=1e-4)
    assert spiky(want) is False
    from grader.checks.spikes import detect, only_borderline
    from grader.rubric import load_rubric
    rubric = HW2.parents[1] / "rubrics" / "hw2.toml"
    params = next(i for i in load_rubric(rubric).items if i.id == "seq.no_spikes").params["detector"]
    det = detect(rec.step_loss, want["steps_per_epoch"], params)
    assert not det.spiky or only_borderline(det, params), (det.spikes, det.worst_rise)
    assert rec.epoch_test_acc[-1] >= 97


# ----------------------------------------------------------------------------- notebooks
LAST_EPOCH = re.compile(r"\[Epoch (\d+)/(\d+)\] loss: ([\d.]+), acc: ([\d.]+)% - "
                        r"test_loss: ([\d.]+), test_acc: ([\d.]+)%")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The release and the solution notebooks, executed side by side in the background (one
    thread each, as the rerun below) while ``here`` reruns Section 8: {version: future notebook}."""
    root = tmp_path_factory.mktemp("seq_notebooks")
    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(2) as pool:
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("MKL_NUM_THREADS", "1")
        futures = {v: pool.submit(_execute, v, root) for v in ("release", "solution")}
        yield futures


@pytest.fixture(scope="module")
def here(executed) -> dict:
    """Section 8 of the original and of the solution rerun on this machine, one thread: what the
    notebooks must reproduce here (the recorded curves are another processor's after ~35 epochs)."""
    torch.set_num_threads(1)
    out = {}
    for name, variant in (("original", "original"), ("solution", "solution")):
        rec = seqcls.section8_run(variant)
        out[name] = {"epoch_train_loss": rec.epoch_train_loss, "epoch_train_acc": rec.epoch_train_acc,
                     "epoch_test_acc": rec.epoch_test_acc, "max_grad_norm": max(rec.step_grad_norm)}
    return out


def _execute(version: str, root: Path):
    import nbclient
    import nbformat
    work = root / version
    work.mkdir()
    shutil.copy(HW2 / version / NB, work / NB)
    shutil.copytree(SUPPORT / "res", work / "res", ignore=shutil.ignore_patterns("__pycache__"))
    nb = nbformat.read(work / NB, as_version=4)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(work)}}).execute()
    return nb


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _section8_cell(nb):
    start = next(i for i, c in enumerate(nb.cells)
                 if c.cell_type == "markdown" and c.source.startswith("## 8. Visualize LSTM"))
    return next(c for c in nb.cells[start:] if c.cell_type == "code" and "train_and_test(" in c.source)


def _images(cell) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def _check_common(nb, variant: dict):
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    cell = _section8_cell(nb)
    m = LAST_EPOCH.search(_text(cell))
    assert m and m.group(1) == m.group(2) == "100", _text(cell)[-600:]
    loss, acc, test_loss, test_acc = map(float, m.groups()[2:])
    # The notebook's Section 8 is the reference rerun, to printing precision.
    last = {k: variant[k][-1] for k in ("epoch_train_loss", "epoch_train_acc", "epoch_test_acc")}
    assert loss == pytest.approx(last["epoch_train_loss"], rel=0.02, abs=2e-4), (m.group(0), last)
    assert acc == pytest.approx(last["epoch_train_acc"], abs=0.2), (m.group(0), last)
    assert test_acc == pytest.approx(last["epoch_test_acc"], abs=0.2), (m.group(0), last)
    assert _images(cell) == 1, _images(cell)
    i = nb.cells.index(cell)
    html = [o for c in nb.cells[i + 1:i + 5] for o in c.outputs if "text/html" in o.get("data", {})]
    assert len(html) == 1 + 12 + 12, len(html)  # colour bar, then 12 units for C_t and for H_t
    first = next(c for c in nb.cells if c.cell_type == "code" and "decode_x" in c.source and "sequence_decoded" in c.source)
    assert "The sequence is: BbXcXcbE" in _text(first) and "The class label is: Q" in _text(first)


@pytest.mark.slow
def test_release_notebook_runs_and_is_the_spiky_original(here, executed):
    nb = executed["release"].result()
    _check_common(nb, here["original"])


@pytest.mark.slow
def test_solution_notebook_runs_fixed_and_plots_the_extra_credit(here, executed):
    nb = executed["solution"].result()
    _check_common(nb, here["solution"])
    start = next(i for i, c in enumerate(nb.cells)
                 if c.cell_type == "markdown" and c.source.startswith("## 9."))
    extra = [c for c in nb.cells[start:] if c.cell_type == "code"]
    # The "before" rerun inside the notebook reproduces the original training.
    m = LAST_EPOCH.search(_text(extra[0]))
    assert m, _text(extra[0])[-600:]
    assert float(m.group(6)) == pytest.approx(here["original"]["epoch_test_acc"][-1], abs=0.2), \
        (m.group(0), here["original"]["epoch_test_acc"][-1])
    images = sum(_images(c) for c in extra)
    assert images >= 3, images  # loss curves of the rerun + two comparison figures
    summary = _text(extra[-1])
    norms = [float(v) for v in re.findall(r"largest total gradient norm ([\d.]+)", summary)]
    assert len(norms) == 2, summary
    # The rerun before the fix blows up as the original does: as rerun here (the size of the
    # largest spike depends on the processor), or past 100 (284 in the recorded curves).
    original = here["original"]["max_grad_norm"]
    assert norms[0] == pytest.approx(original, rel=0.05) or norms[0] > 100, (summary, original)
