import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from grader.colab import MARK, neutralize, neutralize_source


def _nb(*sources, markdown=None):
    nb = nbformat.v4.new_notebook()
    if markdown:
        nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def _parses(source: str) -> None:
    compile(TransformerManager().transform_cell(source), "<cell>", "exec")


@pytest.mark.parametrize("line", [
    "!pip install foo",
    "%pip install -q torch==2.0",
    "!pip3 install x",
    "!wget https://example.com/data.zip",
    "!curl -O https://example.com/a",
    "!unzip -q data.zip",
    "!git clone https://github.com/x/y",
    "!nvidia-smi",
])
def test_each_colab_line_is_replaced_and_recorded(line):
    nb = _nb(f"import os\n{line}\nx = 1")
    out, record = neutralize(nb)
    src = out.cells[0].source.split("\n")
    assert src[0] == "import os" and src[2] == "x = 1"
    assert src[1].startswith(f"pass  # {MARK}: ")
    assert record == [{"cell": 0, "line": line, "why": record[0]["why"]}]
    assert record[0]["why"]
    _parses(out.cells[0].source)


def test_indentation_kept_and_cell_still_parses():
    src = ("try:\n    from google.colab import drive\n    drive.mount('/content/drive')\n"
           "    IN_COLAB = True\nexcept ImportError:\n    IN_COLAB = False\n"
           "if IN_COLAB:\n    !pip install -q foo\n")
    out, changes = neutralize_source(src)
    lines = out.split("\n")
    assert lines[1:3] == src.split("\n")[1:3]          # Python's Colab calls are left to the stand-in
    assert lines[7].startswith("    pass  # ")
    assert len(changes) == 1
    _parses(out)


@pytest.mark.parametrize("line", ["from google.colab import drive", "drive.mount('/content/drive')",
                                  "uploaded = files.upload()", "files.download('x.pt')"])
def test_python_colab_calls_are_not_rewritten(line):
    out, changes = neutralize_source(line)
    assert out == line and changes == []


def test_the_stand_in_answers_as_colab_does_without_a_browser(capsys):
    import sys
    from grader.environment import ENV_DIR
    sys.path.insert(0, str(ENV_DIR))
    try:
        from google.colab import drive, files
        drive.mount("/content/drive", force_remount=True)
        assert files.upload() == {}
        assert files.download("model.pt") is None
    finally:
        sys.path.remove(str(ENV_DIR))
        for name in [n for n in sys.modules if n == "google" or n.startswith("google.")]:
            del sys.modules[name]
    err = capsys.readouterr().err
    assert "drive.mount('/content/drive') does nothing here" in err and "uploads nothing" in err


def test_shell_continuation_is_consumed_whole():
    src = "!pip install a \\\n    b\nprint('done')"
    out, changes = neutralize_source(src)
    assert changes == [("!pip install a \\\n    b", changes[0][1])]
    assert out.count("\n") == src.count("\n")      # line numbers preserved
    assert out.split("\n")[-1] == "print('done')"
    _parses(out)


def test_other_shell_commands_and_markdown_stay():
    nb = _nb("!ls -la\n!echo hi\nprint('pip install')", markdown="!pip install foo")
    out, record = neutralize(nb)
    assert record == []
    assert out.cells[0].source == "!pip install foo"
    assert out.cells[1].source == nb.cells[1].source


def test_shell_cell_magic_lines_use_true():
    out, changes = neutralize_source("%%bash\npip install foo\necho hi")
    assert out.split("\n") == ["%%bash", f"true  # {MARK}: this command needs the network or Colab",
                               "echo hi"]
    assert len(changes) == 1


def test_original_notebook_not_modified_and_cell_indices_count_all_cells():
    nb = _nb("!pip install foo", "x = 1\n!nvidia-smi", markdown="# title")
    before = nbformat.writes(nb)
    out, record = neutralize(nb)
    assert nbformat.writes(nb) == before
    assert [r["cell"] for r in record] == [1, 2]
    assert out.cells[2].source.startswith("x = 1\npass  # ")
    nbformat.validate(out)
