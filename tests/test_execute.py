"""Notebook execution in the real sandbox: statuses, timeouts, kills, limits, probe."""
import json
import os
import time

import nbformat
import pytest

from grader.execute import ExecSettings, ProbeRequest, execute_notebook
from support.builders import procs_with

FAST = ExecSettings(cell_timeout_s=30, notebook_timeout_s=120)


def _write(tmp_path, cells, name="nb.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else
                nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


def _run(tmp_path, cells, settings=FAST, sub="work", **kw):
    work = tmp_path / sub
    work.mkdir(exist_ok=True)
    return execute_notebook(_write(tmp_path, cells, f"{sub}.ipynb"), work, settings, **kw)


def test_trivial_notebook_completes(tmp_path):
    run = _run(tmp_path, ["md:# Title", "x = 6 * 7", "print(x)"])
    assert run.status == "completed" and run.executable()
    assert [(c.index, c.status) for c in run.cells] == [(1, "ok"), (2, "ok")]
    assert run.first_error_cell is None
    assert run.limits["sandbox_check"].startswith("passed")
    for key in ("memory", "pids", "network", "cpu", "file_size", "tmp", "cell_timeout"):
        assert run.limits[key]
    nb = nbformat.read(str(run.executed_path), as_version=4)
    assert run.executed_path.parent == tmp_path / "executed"
    assert nb.cells[2].outputs[0]["text"] == "42\n"
    assert [c.execution_count for c in nb.cells[1:]] == [1, 2]


def test_error_in_middle_cell_later_cells_still_run(tmp_path):
    run = _run(tmp_path, ["md:intro", "a = 1", "md:more", "print(model)",
                          "open('after.txt', 'w').write(str(a + 1))"])
    assert run.status == "errors" and not run.executable(), run.message
    assert run.first_error_cell == 3
    assert [c.status for c in run.cells] == ["ok", "error", "ok"]
    bad = run.cells[1]
    assert bad.error_name == "NameError" and "model" in bad.error_value
    assert "\x1b[" not in bad.traceback and "print(model)" in bad.traceback
    assert "code cell 2 (cell 4 of the notebook)" in run.message and "NameError" in run.message
    assert (tmp_path / "work" / "after.txt").read_text() == "2"


def test_cell_at_its_limit_is_interrupted_and_later_cells_still_run(tmp_path):
    settings = ExecSettings(cell_timeout_s=3, notebook_timeout_s=60)
    t0 = time.monotonic()
    run = _run(tmp_path, ["x = 1", "y = 2\nwhile True: pass", "print('after', x + y)"], settings)
    assert time.monotonic() - t0 < 30
    assert run.status == "timeout" and not run.executable()
    assert [c.status for c in run.cells] == ["ok", "timeout", "ok"]
    assert run.first_error_cell == 1
    assert 2.5 < run.cells[1].seconds < 10
    assert "Code cell 2" in run.message and "3 s" in run.message and "still ran" in run.message
    nb = nbformat.read(str(run.executed_path), as_version=4)
    assert nb.cells[2].outputs[0]["text"] == "after 3\n"      # the interrupted cell's y survived
    again = _run(tmp_path, ["print('fine')"], settings, sub="work2")
    assert again.status == "completed"


def test_a_cell_that_catches_the_interrupt_still_counts_as_stopped(tmp_path):
    loop = "done = 0\ntry:\n    while True: done += 1\nexcept KeyboardInterrupt:\n    print('stopped by hand')"
    run = _run(tmp_path, [loop, "print(done > 0)"], ExecSettings(cell_timeout_s=3, notebook_timeout_s=60))
    assert [c.status for c in run.cells] == ["timeout", "ok"]
    assert run.status == "timeout"


def test_notebook_limit_interrupts_skips_the_rest_and_still_runs_the_probe(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=5, interrupt_grace_s=5)
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    t0 = time.monotonic()
    run = _run(tmp_path, ["import time\nmodel = 'trained'", "time.sleep(60)", "print(1)"], settings,
               probe=ProbeRequest("open('/grader/out/model', 'w').write(model)", in_dir, out_dir))
    assert time.monotonic() - t0 < 40
    assert run.status == "timeout" and "5 s limit" in run.message and "not run" in run.message
    assert [c.status for c in run.cells] == ["ok", "timeout", "not_run"]
    assert run.probe.status == "ok" and (out_dir / "model").read_text() == "trained"


def test_sigint_ignoring_cell_with_sigterm_ignoring_child_is_killed(tmp_path):
    token = f"sentinel-{os.getpid()}-{time.time_ns()}"
    child = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "signal.signal(signal.SIGINT, signal.SIG_IGN); open('child_started', 'w').close(); "
             "time.sleep(3600)")
    cell = (f"import signal, subprocess, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            f"for _ in range(2):\n"
            f"    subprocess.Popen([sys.executable, '-c', {child!r}, {token!r}], start_new_session=True)\n"
            "while True:\n    pass")
    run = _run(tmp_path, [cell, "print('never')"],
               ExecSettings(cell_timeout_s=3, notebook_timeout_s=60, interrupt_grace_s=3))
    assert run.status == "timeout" and "did not stop when interrupted" in run.message
    assert [c.status for c in run.cells] == ["timeout", "not_run"]
    assert (tmp_path / "work" / "child_started").exists()
    assert procs_with(token) == []
    assert "leftover_processes" not in run.limits


def test_memory_hog_is_stopped_and_grader_survives(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, memory_mb=1536)
    hog = ("chunks = []\nfor i in range(64):\n"
           "    chunks.append(bytearray(b'\\x01') * (64 << 20))\nprint('allocated all')")
    run = _run(tmp_path, ["x = 1", hog, "print('after')"], settings)
    if "cgroup" in run.limits["memory"]:
        assert run.status == "kernel_died"
        assert [c.status for c in run.cells] == ["ok", "kernel_died", "not_run"]
        assert "memory" in run.message and "code cell 2" in run.message
    else:
        assert run.status == "errors"
        assert run.cells[1].error_name == "MemoryError"
    again = _run(tmp_path, ["print('fine')"], FAST, sub="work2")
    assert again.status == "completed"


def test_memory_fallback_without_cgroups_gives_memory_error_and_torch_still_imports(tmp_path, monkeypatch):
    import grader.procs as procs
    monkeypatch.setattr(procs, "own_v1_group", lambda controller: None)
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, memory_mb=1536)
    hog = ("chunks = []\ntry:\n    for i in range(64):\n"
           "        chunks.append(bytearray(b'\\x01') * (64 << 20))\nfinally:\n    n = len(chunks)\n    chunks = None")
    run = _run(tmp_path, [hog, "import torch\nprint(torch.ones(3).sum().item(), n)"], settings)
    assert run.limits["memory"].startswith("RLIMIT_AS 2048 MiB")
    assert run.limits["pids"].startswith("none")
    assert run.status == "errors"
    assert run.cells[0].error_name == "MemoryError"
    assert run.cells[1].status == "ok", run.cells[1].traceback


def test_two_notebooks_in_parallel_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda sub: _run(tmp_path, [f"print('{sub}')"], sub=sub), ["w1", "w2"]))
    assert [r.status for r in runs] == ["completed", "completed"]


def test_env_and_read_only_mounts(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_HOST_ONLY", "secret")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    cells = ["import os\nassert os.environ.get('HW_SEED') == '3'\n"
             "assert 'GRADER_HOST_ONLY' not in os.environ",
             "assert open('/data/hw/train.csv').read().startswith('a,b')\n"
             "try:\n    open('/data/hw/new.txt', 'w')\n    raise SystemExit('writable')\nexcept OSError:\n    pass"]
    run = _run(tmp_path, cells, env={"HW_SEED": "3"}, ro_mounts=[(data, "/data/hw")])
    assert run.status == "completed", [c.traceback for c in run.cells]
    assert not (data / "new.txt").exists()


def test_fork_bomb_is_contained_by_pids_limit(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, pids_max=48)
    cell = ("import subprocess\nprocs, failed = [], None\nfor i in range(150):\n"
            "    try:\n        procs.append(subprocess.Popen(['sleep', '600']))\n"
            "    except OSError as e:\n        failed = e\n        break\n"
            "print(len(procs), repr(failed))\nassert failed is not None and len(procs) < 48")
    run = _run(tmp_path, [cell], settings)
    if "cgroup" not in run.limits["pids"]:
        pytest.skip("no writable cgroup v1 pids controller on this host")
    assert run.status == "completed", (run.message, run.cells[0].traceback)
    assert "leftover_processes" not in run.limits


def test_output_flood_is_truncated_keeping_head_and_tail(tmp_path):
    settings = ExecSettings(cell_timeout_s=60, notebook_timeout_s=120, max_output_chars=2000)
    cell = "for i in range(200000):\n    print('line', i)\nprint('THE END')"
    run = _run(tmp_path, [cell], settings)
    assert run.status == "completed"
    nb = nbformat.read(str(run.executed_path), as_version=4)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert len(text) < 2000 + 300
    assert text.startswith("line 0\n") and text.rstrip().endswith("THE END")
    assert "output truncated" in text


def test_probe_runs_in_same_kernel(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    (in_dir / "names.json").write_text(json.dumps(["model", "train", "missing"]))
    code = ("import json, kernel_probe\n"
            "kernel_probe.exists(json.load(open('/grader/in/names.json')), '/grader/out/exists.json')")
    cells = ["import os\nopen('seen.txt', 'w').write(str(os.listdir('/grader/in')))",
             "class Net: pass\nmodel = Net()\ndef train(): pass"]
    run = _run(tmp_path, cells, probe=ProbeRequest(code=code, in_dir=in_dir, out_dir=out_dir))
    assert run.status == "completed"
    assert run.probe.status == "ok", run.probe.error
    assert (tmp_path / "work" / "seen.txt").read_text() == "[]"   # inputs appear only for the probe
    got = json.loads((out_dir / "exists.json").read_text())
    assert got == {"model": {"exists": True, "type": "Net", "callable": False},
                   "train": {"exists": True, "type": "function", "callable": True},
                   "missing": {"exists": False, "type": None, "callable": False}}


def test_probe_error_reported_and_not_run_after_kernel_death(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    bad = _run(tmp_path, ["x = 1"], probe=ProbeRequest("import kernel_probe\nkernel_probe.nope()", in_dir, out_dir))
    assert bad.status == "completed" and bad.probe.status == "error"
    assert "AttributeError" in bad.probe.error
    died = _run(tmp_path, ["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "print(1)"],
                sub="work2", probe=ProbeRequest("open('/grader/out/ran', 'w')", in_dir, out_dir))
    assert died.status == "kernel_died"
    assert died.probe.status == "not_run"
    assert not (out_dir / "ran").exists()


def test_colab_code_runs_in_a_real_kernel(tmp_path):
    cells = ["!pip install foo\nfrom google.colab import drive\ndrive.mount('/content/drive')",
             "import google.colab.files as colab_files\nuploaded = colab_files.upload()\nprint(len(uploaded))",
             "from google.colab import files\nfiles.download('model.pt')\nimport os\n"
             "print(os.path.realpath('/content') == os.getcwd())"]
    run = _run(tmp_path, cells)
    assert run.status == "completed", run.message
    assert [n["cell"] for n in run.neutralized] == [0]      # only the shell line is rewritten
    nb = nbformat.read(str(run.executed_path), as_version=4)
    assert [o["text"] for o in nb.cells[1].outputs if o.get("name") == "stdout"] == ["0\n"]
    assert "True" in "".join(o.get("text", "") for o in nb.cells[2].outputs)
    kept = _run(tmp_path, cells[:1], ExecSettings(cell_timeout_s=30, notebook_timeout_s=120, colab="keep"),
                sub="work2")
    assert kept.neutralized == []
    assert nbformat.read(str(kept.executed_path), as_version=4).cells[0].source.startswith("!pip install foo")


def test_gpu_code_torchvision_and_tqdm_notebook_run_on_the_cpu(tmp_path):
    cells = ["import torch\ndevice = torch.device('cuda:0')\nprint(torch.cuda.get_device_name(0))",
             "model = torch.nn.Linear(4, 2).cuda()\ncriterion = torch.nn.CrossEntropyLoss().cuda()\n"
             "x = torch.randn(8, 4).to(device)\ny = torch.zeros(8, dtype=torch.long, device='cuda')\n"
             "loss = criterion(model(x), y)\nloss.backward()\nprint(loss.device, torch.cuda.is_available())",
             "from torchvision import transforms, datasets\nfrom PIL import Image\n"
             "t = transforms.Compose([transforms.RandomRotation(20, resample=Image.BILINEAR), transforms.ToTensor()])\n"
             "print(tuple(t(Image.new('RGB', (40, 30))).shape))",
             "from tqdm.notebook import tqdm, trange\nfor _ in tqdm(range(3)): pass\nfor _ in trange(2): pass\nprint('bars')"]
    run = _run(tmp_path, cells)
    assert run.status == "completed", run.message
    assert run.device == "cpu" and run.limits["device"].startswith("cpu")
    nb = nbformat.read(str(run.executed_path), as_version=4)
    out = ["".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout") for c in nb.cells]
    assert out == ["CPU (the grader has no GPU; this ran on the CPU)\n", "cpu False\n", "(3, 30, 40)\n", "bars\n"]


def test_module_outside_the_environment_is_an_error_of_the_notebook(tmp_path):
    run = _run(tmp_path, ["import sklearn"])
    assert run.status == "errors" and run.cells[0].error_name == "ModuleNotFoundError"


def test_flat_imports_from_a_folder_beside_the_notebook(tmp_path):
    work = tmp_path / "work"
    (work / "res").mkdir(parents=True)
    (work / "res" / "helpers.py").write_text("VALUE = 42\n")
    run = _run(tmp_path, ["from helpers import VALUE\nfrom res.helpers import VALUE as V2\nassert VALUE == V2 == 42"],
               python_path=["res"])
    assert run.status == "completed", run.message
    bare = _run(tmp_path, ["from helpers import VALUE"], sub="work2")
    assert bare.status == "errors"


def test_relative_mount_appears_beside_the_notebook_read_only(tmp_path):
    data = tmp_path / "data"
    (data / "train" / "cats").mkdir(parents=True)
    (data / "train" / "cats" / "a.png").write_bytes(b"png")
    run = _run(tmp_path, ["import os\nprint(os.listdir('cats_and_dogs_filtered/train/cats'))",
                          "open('cats_and_dogs_filtered/new.txt', 'w')"],
               ro_mounts=[(data, "cats_and_dogs_filtered")])
    assert [c.status for c in run.cells] == ["ok", "error"]
    assert "Read-only" in run.cells[1].error_value or "read-only" in run.cells[1].error_value.lower()
    nb = nbformat.read(str(run.executed_path), as_version=4)
    assert nb.cells[0].outputs[0]["text"] == "['a.png']\n"
    assert not (data / "new.txt").exists()


def test_invalid_notebook(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    (tmp_path / "work").mkdir()
    run = execute_notebook(path, tmp_path / "work", FAST)
    assert run.status == "invalid" and not run.executable()
    assert run.cells == [] and run.executed_path is None


def test_malformed_outputs_do_not_make_a_notebook_invalid(tmp_path):
    # Saved by another tool: an output without its required keys, a cell without metadata.
    nb = {"nbformat": 4, "nbformat_minor": 4, "metadata": {},
          "cells": [{"cell_type": "code", "source": "x = 6 * 7", "execution_count": "one",
                     "outputs": [{"output_type": "stream", "text": "42"}]}]}
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(nb))
    (tmp_path / "work").mkdir()
    run = execute_notebook(path, tmp_path / "work", FAST)
    assert run.status == "completed", run.message


def _capture_probe(names):
    return ("import json, sys\ncap = sys.modules['_grader_capture'].INSTANCE\n"
            f"json.dump({{n: [getattr(cap.objects.get(n), 'tag', None), cap.how.get(n, {{}}).get('how')] for n in {names!r}}},"
            " open('/grader/out/c.json', 'w'))")


def test_trained_objects_are_captured_as_the_templates_tests_see_them(tmp_path):
    from grader.rubric import Capture
    from grader.kernel_code import capture_prelude
    prelude = capture_prelude((Capture("fixed", "test_model", "model"), Capture("variable", "test_variable", "model"),
                               Capture("same_cell", "check", "net")))
    cells = ["class M:\n    def __init__(self, tag): self.tag = tag",
             "def test_model(m, length=15):\n    return 1.0",
             # renamed: the argument counts, whatever its name
             "gru_model = M('fixed')\nmodel = M('not this one')\naccuracy = test_model(gru_model)",
             "def test_variable(m):\n    raise AssertionError('accuracy is too low')",
             # the next training cell rebinds model; its test fails, the argument is still kept
             "model = M('variable')\ntest_variable(m=model)",
             "model = M('later')",
             # defined and called in one cell: the wrapper is not there yet, `net` at the cell's end is
             "def check(x):\n    return True\nnet = M('first')\ncheck(net)\nnet = M('same_cell')"]
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    run = _run(tmp_path, cells, prelude=prelude,
               probe=ProbeRequest(_capture_probe(["fixed", "variable", "same_cell"]), in_dir, out_dir))
    assert run.probe.status == "ok", run.probe
    got = json.loads((out_dir / "c.json").read_text())
    assert got == {"fixed": ["fixed", "the argument of test_model(...)"],
                   "variable": ["variable", "the argument of test_variable(...)"],
                   "same_cell": ["same_cell", "`net` at the end of the cell that calls check(...)"]}


def test_hidden_code_before_a_cell_reseeds_whatever_earlier_cells_drew(tmp_path):
    """The rubric's reseed (parts[].reseed) runs hidden just before the matching cell: what that
    cell draws is the same however many numbers the cells before it took."""
    from grader.kernel_code import RESEED_CODE
    draw = "import torch, random, numpy\nresult = [torch.rand(1).item(), random.random(), numpy.random.rand()]\n" \
           "open('drawn.json', 'w').write(__import__('json').dumps(result))"
    got = []
    for sub, earlier in (("a", "import torch\ntorch.rand(5)"), ("b", "import torch, random\ntorch.rand(999); random.random()")):
        run = _run(tmp_path, ["md:# setup", earlier, draw], sub=sub, before_cells={2: RESEED_CODE.format(seed=7)})
        assert run.status == "completed", run.message
        got.append(json.loads((tmp_path / sub / "drawn.json").read_text()))
    import random as pyrandom, numpy, torch
    torch.manual_seed(7); pyrandom.seed(7); numpy.random.seed(7)
    assert got[0] == got[1] == [torch.rand(1).item(), pyrandom.random(), numpy.random.rand()]
    nb = nbformat.read(str(run.executed_path), as_version=4)
    assert "manual_seed" not in json.dumps(nb.cells[2].outputs)        # hidden: no trace in the notebook


def test_training_steps_are_labelled_with_the_count_the_notebook_shows_for_their_cell(tmp_path):
    """Steps map to cells through execution counts: the instrument's must be the executed
    notebook's, including a training in the last cell (IPython's own counter runs one ahead)."""
    from grader.checks.training import PRELUDE
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    train = ("for _ in range({n}):\n    opt.zero_grad(); model(torch.randn(4, 3)).pow(2).mean().backward(); opt.step()")
    cells = ["import torch\nmodel = torch.nn.Linear(3, 2)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)",
             train.format(n=2), "md:## later", "x = 1", train.format(n=3)]
    code = ("import json, _grader_instrument as gi\n"
            "json.dump([gi.INSTANCE.runs[0].cells, sorted(gi.INSTANCE.runs[0].snapshots)], open('/grader/out/c.json', 'w'))")
    run = _run(tmp_path, cells, prelude=PRELUDE.format(n_params=8),
               probe=ProbeRequest(code=code, in_dir=in_dir, out_dir=out_dir))
    assert run.status == "completed" and run.probe.status == "ok", (run.message, run.probe.error)
    nb = nbformat.read(str(run.executed_path), as_version=4)
    counts = {i: c.execution_count for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    steps, snapshots = json.loads((out_dir / "c.json").read_text())
    assert steps == [counts[1]] * 2 + [counts[4]] * 3
    assert snapshots == [counts[1], counts[4]]
