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
    "from google.colab import drive",
    "from google.colab import files",
    "drive.mount('/content/drive')",
    "files.upload()",
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
    assert lines[1].startswith("    pass  # ") and lines[2].startswith("    pass  # ")
    assert lines[7].startswith("    pass  # ")
    assert len(changes) == 3
    _parses(out)
    ns: dict = {}
    exec(TransformerManager().transform_cell(out), ns)
    assert ns["IN_COLAB"] is True


def test_assignment_from_upload_keeps_the_name_defined():
    out, changes = neutralize_source("uploaded = files.upload()\nprint(len(uploaded))")
    ns: dict = {}
    exec(out, ns)
    assert ns["uploaded"] == {}
    assert changes[0][0] == "uploaded = files.upload()"


def test_multiline_call_and_shell_continuation_are_consumed_whole():
    src = ("drive.mount(\n    '/content/drive',\n    force_remount=True)\n"
           "!pip install a \\\n    b\nprint('done')")
    out, changes = neutralize_source(src)
    assert len(changes) == 2
    assert changes[0][0] == "drive.mount(\n    '/content/drive',\n    force_remount=True)"
    assert changes[1][0] == "!pip install a \\\n    b"
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
