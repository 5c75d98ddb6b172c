"""grader/selfcheck.py on tracebacks as IPython 9 writes them (colours stripped or not)."""
from __future__ import annotations

from grader.selfcheck import failed_self_check

SEP = "-" * 75
HEAD = "{}                            Traceback (most recent call last)"


def tb(name: str, *frames: str, message: str = "") -> list[str]:
    return [SEP, HEAD.format(name), *frames, f"{name}: {message}"]


CELLS = {1: "x = 1\nassert x == 2, 'bad'",
         2: "def check(v):\n    assert v > 0, 'neg'\n",
         3: "y = 3\ncheck(-1)",
         4: "import torch\nx = torch.ones(1)\nassert torch.autograd.gradcheck(f, (x,))",
         5: "%%time\nz = 1\nassert z == 2",
         6: "!true\nassert 1 == 2",
         7: "a = 1\nb = undefined_name"}


def test_an_assert_in_the_cell_is_a_self_check():
    assert failed_self_check(tb("AssertionError", "Cell In[1], line 2\n      1 x = 1\n----> 2 assert x == 2\n"),
                             "AssertionError", CELLS) == "assert"
    coloured = ["\x1b[31m" + c + "\x1b[0m" for c in tb("AssertionError", "Cell In[1], line 2\n")]
    assert failed_self_check(coloured, "AssertionError", CELLS) == "assert"


def test_the_innermost_notebook_frame_counts_even_in_another_cell():
    frames = ("Cell In[3], line 2\n----> 2 check(-1)\n", "Cell In[2], line 2, in check(v)\n----> 2     assert v > 0\n")
    assert failed_self_check(tb("AssertionError", *frames), "AssertionError", CELLS) == "assert"
    # The caller's line is no assert: the frame of the cell alone does not excuse it.
    assert failed_self_check(tb("AssertionError", frames[0]), "AssertionError", CELLS) is None


def test_a_line_that_is_no_assert_is_not_one():
    assert failed_self_check(tb("AssertionError", "Cell In[7], line 2\n"), "AssertionError", CELLS) is None
    assert failed_self_check(tb("AssertionError", "Cell In[7], line 9\n"), "AssertionError", CELLS) is None
    # A frame of a cell the grader did not send.
    assert failed_self_check(tb("AssertionError", "Cell In[99], line 2\n"), "AssertionError", CELLS) is None


def test_an_error_raised_below_an_assert_is_what_it_called():
    frames = ("Cell In[1], line 2\n", "File /venv/lib/torch/cuda/__init__.py:310, in _lazy_init()\n")
    assert failed_self_check(tb("AssertionError", *frames), "AssertionError", CELLS) is None
    # gradcheck under the assert is the gradcheck's failure
    frames = ("Cell In[4], line 3\n", "File /venv/lib/torch/autograd/gradcheck.py:2104, in gradcheck(func)\n")
    assert failed_self_check(tb("GradcheckError", *frames), "GradcheckError", CELLS) == "gradcheck"


def test_an_assert_while_handling_another_error_is_that_error():
    chunks = (tb("NameError", "Cell In[1], line 2\n") + ["\nDuring handling of the above exception, another "
              "exception occurred:\n"] + tb("AssertionError", "Cell In[1], line 2\n"))
    assert failed_self_check(chunks, "AssertionError", CELLS) is None


def test_magics_and_timed_cells():
    assert failed_self_check(tb("AssertionError", "Cell In[6], line 2\n"), "AssertionError", CELLS) == "assert"
    frames = ("Cell In[5], line 1\n----> 1 get_ipython().run_cell_magic('time', '', ...)\n",
              "File <timed exec>:2\n")
    assert failed_self_check(tb("AssertionError", *frames), "AssertionError", CELLS) == "assert"


def test_no_traceback_or_a_wrong_name_is_no_self_check():
    assert failed_self_check(None, "AssertionError", CELLS) is None
    assert failed_self_check([], "AssertionError", CELLS) is None
    assert failed_self_check(tb("ValueError", "Cell In[1], line 2\n"), "ValueError", CELLS) is None
    # The exception's message cannot add a frame.
    fake = tb("AssertionError", "Cell In[7], line 2\n", message="\nCell In[1], line 2\n")
    assert failed_self_check(fake, "AssertionError", CELLS) is None


def test_a_notebook_that_names_the_exception_machinery_gets_no_exemption():
    frame = tb("AssertionError", "Cell In[1], line 2\n")
    assert failed_self_check(frame, "AssertionError", CELLS) == "assert"
    for hook in ("get_ipython().InteractiveTB.structured_traceback = lambda *a, **k: []",
                 "import sys\nsys.excepthook = print",
                 "ip = get_ipython()\nip.set_custom_exc((Exception,), print)",
                 "setattr(get_ipython(), 'showtraceback', print)",       # named in a string
                 "getattr(get_ipython(), 'ast_transformers').append(t)",
                 "get_ipython().showtraceback(\n"):                      # not even Python
        assert failed_self_check(frame, "AssertionError", {**CELLS, 8: hook}) is None, hook
    # Words that only look alike are not hooks.
    honest = {**CELLS, 8: "tb = 'traceback'\nexcept_hook_count = 0\nprint('show the traceback')"}
    assert failed_self_check(frame, "AssertionError", honest) == "assert"
