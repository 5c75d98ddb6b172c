"""hw2_rnn notebooks: built from their source, the solution passes its own asserts in the
sandbox and its trained models echo fresh strings; the release fails only where answers are missing."""
from __future__ import annotations

import importlib.util
import random
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
HW2 = REPO / "reference" / "hw2"
NB = "hw2_rnn.ipynb"
sys.path.insert(0, str(HW2))

from hw2ref import rnn  # noqa: E402
from grader.execute import ExecSettings, ProbeRequest, execute_notebook  # noqa: E402

# Both cores: these runs check the assignment, not a student, and nothing else runs beside them.
SETTINGS = ExecSettings(cell_timeout_s=600, notebook_timeout_s=900, threads=2)
# Cells of the release that call code the student has to write.
RELEASE_FAILING = ("GatedRNN self-check passed", "AttentionRNN self-check passed", "print('tests passed')")


def _build_module():
    spec = importlib.util.spec_from_file_location("_hw2_build", HW2 / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("version", ["release", "solution"])
def test_committed_notebook_matches_source(version):
    build = _build_module()
    want = nbformat.writes(build.build(HW2 / "source" / "hw2_rnn.py", version)) + "\n"
    assert (HW2 / version / NB).read_text() == want


def _code(version: str) -> list[str]:
    nb = nbformat.read(HW2 / version / NB, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_release_keeps_the_interface_and_hides_the_answers():
    release, solution = _code("release"), _code("solution")
    assert len(release) == len(solution)
    text = "\n".join(release)
    for name in ("GatedRNN.forward", "gated_rnn_grad_Wx", "AttentionRNN.forward", "GRUMemory.forward",
                 "GRUMemory.test_run", "VariableDelayGRUMemory.forward", "VariableDelayGRUMemory.test_run"):
        assert f'raise NotImplementedError("{name}")' in text
    for answer in ("einsum", "torch.softmax", "nn.GRU(", "optimizer", "all_delay_logits"):
        assert answer not in text, answer
    assert "NotImplementedError(\"" not in "\n".join(solution)
    # the given parts students build on are identical in both versions
    for given in ("self.W_c = nn.Parameter(torch.randn(m, n)", "self.Q = nn.ParameterList(",
                  "self.max_delay = max_delay", "def test_model(", "def test_variable_delay_model(",
                  "assert accuracy > 0.99", "assert duration < 600"):
        assert given in text and given in "\n".join(solution), given


def _namespace_exec(version: str) -> dict:
    """Run the notebook's code cells in-process, all but the two training cells."""
    ns: dict = {"__name__": "__hw2_rnn__"}
    for src in _code(version):
        if "start_time = time.time()" not in src:
            exec(compile(src, f"<{version}>", "exec"), ns)
    return ns


def test_solution_part1_matches_the_reference():
    ns = _namespace_exec("solution")
    torch.manual_seed(0)
    for B, T, n, m in [(2, 6, 3, 4), (1, 1, 5, 2)]:
        ref = rnn.GatedRNN(n, m).double()
        mine = ns["GatedRNN"](n, m).double()
        mine.load_state_dict(ref.state_dict())  # same parameter names and shapes
        x = torch.randn(B, T, n, dtype=torch.float64)
        H, C = ref(x, return_gates=True)
        H2, C2 = mine(x, return_gates=True)
        torch.testing.assert_close(H2, H)
        torch.testing.assert_close(C2, C)
        g = torch.randn(B, T, m, dtype=torch.float64)
        torch.testing.assert_close(ns["gated_rnn_grad_Wx"](x, C.detach(), g),
                                   rnn.gated_rnn_grad_Wx(x, C.detach(), g))
    for k in (1, 2, 3):
        ref = rnn.AttentionRNN(4, k).double()
        mine = ns["AttentionRNN"](4, k).double()
        mine.load_state_dict(ref.state_dict())
        x = torch.randn(3, 7, 4, dtype=torch.float64)
        torch.testing.assert_close(mine(x), ref(x))
    # idx_to_onehot and the dataset agree with the reference
    idx = torch.randint(0, 27, (4, 9))
    assert torch.equal(ns["idx_to_onehot"](idx), rnn.idx_to_onehot(idx))
    for seq, res in ns["EchoDataset"](delay=4, size=5):
        assert torch.equal(res, rnn.echo_target(seq, 4))


def test_variable_delay_dataset_and_test_cover_every_delay():
    ns = _namespace_exec("solution")
    random.seed(0)
    seen = set()
    for seq, d, res in ns["VariableDelayEchoDataset"](max_delay=8, seq_length=20, size=400):
        seen.add(d)
        assert torch.equal(res, rnn.echo_target(seq, d))
    assert seen == set(range(9))

    class Perfect:  # answers every delay correctly except delay 0, where it shifts by one
        max_delay = 8
        calls: list[tuple[int, int]] = []

        def eval(self):
            return self

        def test_run(self, s, delay):
            self.calls.append((len(s), delay))
            return rnn.echo_target(s, delay if delay else 1)

    model = Perfect()
    worst = ns["test_variable_delay_model"](model)
    assert {d for _, d in model.calls} == set(range(9))
    assert {n for n, _ in model.calls} <= set(range(15, 26)) and len({n for n, _ in model.calls}) > 5
    assert worst < 0.1  # the broken delay decides the result
    Perfect.calls = []
    model.test_run = lambda s, delay: rnn.echo_target(s, delay)
    assert ns["test_variable_delay_model"](model) == 1.0


def _probe_code() -> str:
    # The two trained models, as the rubric's captures find them (grader/probe/capture.py).
    return (
        "import resource, sys, torch\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "open('/grader/out/cpu.txt', 'w').write(str(u.ru_utime + u.ru_stime))\n"
        "cap = sys.modules['_grader_capture'].INSTANCE\n"
        "torch.save(cap.objects['fixed_delay_model'].state_dict(), '/grader/out/fixed.pt')\n"
        "torch.save(cap.objects['variable_delay_model'].state_dict(), '/grader/out/variable.pt')\n"
        "open('/grader/out/how.txt', 'w').write(repr(sorted(h['how'] for h in cap.how.values())))\n"
    )


def _captures() -> str:
    from grader.rubric import load_rubric
    from grader.kernel_code import capture_prelude
    return capture_prelude(load_rubric(REPO / "rubrics" / "hw2.toml").part("hw2_rnn").captures)


def _accuracy(run_fn, delay: int, rng: random.Random, n: int) -> float:
    correct = total = 0
    for _ in range(n):
        s = rnn.random_letters(rng, rng.randint(15, 25))
        c, t = rnn.echo_score(run_fn(s), s, delay)
        correct, total = correct + c, total + t
    return correct / total


@pytest.mark.slow
def test_solution_notebook_runs_clean_and_its_models_echo(tmp_path):
    work, probe_in, probe_out = tmp_path / "work", tmp_path / "in", tmp_path / "out"
    for d in (work, probe_in, probe_out):
        d.mkdir()
    (work / NB).write_bytes((HW2 / "solution" / NB).read_bytes())
    t0 = time.time()
    run = execute_notebook(work / NB, work, SETTINGS, probe=ProbeRequest(_probe_code(), probe_in, probe_out),
                           prelude=_captures())
    wall = time.time() - t0
    assert run.status == "completed", run.message
    assert run.probe is not None and run.probe.status == "ok", run.probe
    cpu = float((probe_out / "cpu.txt").read_text())
    print(f"hw2_rnn solution: {wall:.1f} s wall, cells {sum(c.seconds for c in run.cells):.1f} s, "
          f"kernel CPU {cpu:.1f} s, loadavg {Path('/proc/loadavg').read_text().strip()}")
    nb = nbformat.read(run.executed_path, as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert text.count("tests passed") == 2
    assert "GatedRNN self-check passed" in text and "AttentionRNN self-check passed" in text

    rng = random.Random(12345)
    fixed = rnn.GRUMemory(64)
    fixed.load_state_dict(torch.load(probe_out / "fixed.pt"))
    # Both were the argument of the notebook's own test (the release has no other name for them).
    assert (probe_out / "how.txt").read_text() == repr(["the argument of test_model(...)",
                                                        "the argument of test_variable_delay_model(...)"])
    assert _accuracy(fixed.test_run, 4, rng, 300) > 0.99
    var = rnn.VariableDelayGRUMemory(128, 8)
    var.load_state_dict(torch.load(probe_out / "variable.pt"))
    for d in range(9):
        assert _accuracy(lambda s: var.test_run(s, d), d, rng, 60) > 0.99, d


@pytest.mark.slow
def test_release_notebook_fails_only_where_answers_are_missing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / NB).write_bytes((HW2 / "release" / NB).read_bytes())
    run = execute_notebook(work / NB, work, SETTINGS)
    assert run.status == "errors", run.message
    nb = nbformat.read(run.executed_path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failing = {i for i, c in enumerate(code) if any(m in c.source for m in RELEASE_FAILING)}
    assert len(failing) == len(RELEASE_FAILING) + 1     # two training cells print "tests passed"
    by_index = {r.index: r for r in run.cells}
    code_indices = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for j, i in enumerate(code_indices):
        res = by_index[i]
        if j in failing:
            assert res.status == "error" and res.error_name == "NotImplementedError", (j, res)
        else:
            assert res.status == "ok", (j, res)
    assert run.seconds < 120
