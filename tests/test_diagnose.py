"""Notes on a run told to the student, and which errors are the grading environment's."""
import nbformat

from grader.diagnose import diagnose, excused_cells
from grader.environment import parse_packages

PACKAGES = parse_packages(("torch==2.13.0", "torchvision==0.28.0", "numpy", "pillow", "six", "tqdm"))


def _nb(tmp_path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s[3:]) if s.startswith("md:") else nbformat.v4.new_code_cell(s)
                for s in sources]
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, str(path))
    return path


def _cell(index, status="ok", seconds=0.1, name=None, value=None):
    # A failed assert as the executor reads it from the traceback (grader/selfcheck.py).
    check = "assert" if name == "AssertionError" else None
    return {"index": index, "status": status, "seconds": seconds, "error_name": name, "error_value": value,
            "self_check": check}


def test_gpu_code_on_the_cpu_is_said_once(tmp_path):
    path = _nb(tmp_path, "import torch\ndevice = torch.device('cuda:0')", "model = Net().cuda()\nx.cuda()")
    notes = diagnose(path, [_cell(0), _cell(1)], "cpu", PACKAGES)
    gpu = [n for n in notes if n.kind == "gpu_on_cpu"]
    assert len(gpu) == 1 and gpu[0].cell is None
    assert "ran on the CPU" in gpu[0].message and "cell 1" in gpu[0].message
    on_gpu = diagnose(path, [_cell(0), _cell(1)], "cuda:0", PACKAGES)
    assert "ran on the grader's GPU (cuda:0)" in on_gpu[0].message
    assert diagnose(_nb(tmp_path, "x = 1"), [_cell(0)], "cpu", PACKAGES) == []


def test_an_uploaded_file_that_is_not_here_is_excused_and_named(tmp_path):
    path = _nb(tmp_path, "md:# Try your own image", "from google.colab import files\nuploaded = files.upload()",
               "from PIL import Image\nimg = Image.open('cat.png')")
    cells = [_cell(1), _cell(2, "error", name="FileNotFoundError",
                                value="[Errno 2] No such file or directory: 'cat.png'")]
    notes = diagnose(path, cells, "cpu", PACKAGES)
    kinds = {n.kind: n for n in notes}
    assert kinds["colab_call"].cell == 1 and "uploads nothing" in kinds["colab_call"].message
    missing = kinds["upload_missing"]
    assert missing.excused and missing.cell == 2
    assert "`cat.png`" in missing.message and "cell 2" in missing.message and "no penalty" in missing.message
    assert excused_cells(notes) == {2}


def test_a_missing_file_without_an_upload_is_the_notebooks_own(tmp_path):
    path = _nb(tmp_path, "open('data.csv')")
    cells = [_cell(0, "error", name="FileNotFoundError", value="[Errno 2] No such file or directory: 'data.csv'")]
    assert excused_cells(diagnose(path, cells, "cpu", PACKAGES)) == set()


def test_a_module_outside_the_course_environment_is_named(tmp_path):
    path = _nb(tmp_path, "import sklearn.metrics", "import torch.nn.functionl")
    cells = [_cell(0, "error", name="ModuleNotFoundError", value="No module named 'sklearn'"),
             _cell(1, "error", name="ModuleNotFoundError", value="No module named 'torch.nn.functionl'")]
    a, b = diagnose(path, cells, "cpu", PACKAGES)
    assert a.kind == "outside_environment" and not a.excused
    assert "`sklearn` is not part of the course's environment" in a.message and "torchvision" in a.message
    assert "`torch.nn.functionl` does not exist in the course's `torch`" in b.message


def test_the_templates_time_check_failing_on_a_slow_grader_is_excused(tmp_path):
    cell = ("start_time = time.time()\nmodel = train()\nend_time = time.time()\n"
            "duration = end_time - start_time\naccuracy = test_model(model)\n"
            "assert duration < 600, 'execution is too slow'\nassert accuracy > 0.99")
    path = _nb(tmp_path, cell)
    slow = diagnose(path, [_cell(0, "error", 700.0, "AssertionError", "execution is too slow")], "cpu", PACKAGES)
    assert [n.kind for n in slow] == ["timing_check"] and slow[0].excused
    assert "at most 600 s" in slow[0].message and "700 s" in slow[0].message
    # Within its time: the failed assert is about the answer, and stays the notebook's own.
    fast = diagnose(path, [_cell(0, "error", 40.0, "AssertionError", "")], "cpu", PACKAGES)
    assert fast == []
    # An AssertionError the grader did not find raised by an assert of the cell is no time check.
    forged = diagnose(path, [{**_cell(0, "error", 700.0, "AssertionError", "execution is too slow"),
                              "self_check": None}], "cpu", PACKAGES)
    assert forged == []


def test_perf_counter_timing_directly_in_the_assert(tmp_path):
    path = _nb(tmp_path, "t0 = time.perf_counter()\nrun()\nassert time.perf_counter() - t0 <= 10")
    notes = diagnose(path, [_cell(0, "error", 12.0, "AssertionError", "")], "cpu", PACKAGES)
    assert notes and notes[0].kind == "timing_check"
