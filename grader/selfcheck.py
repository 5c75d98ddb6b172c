"""Whether a cell's error is the notebook's own failed self-check, decided on the trusted side.

A cell whose only fault is a failed test the student wrote (an ``assert`` on a wrong answer,
a ``gradcheck`` of a hand-written backward) is not "code that cannot be executed"
(grader/runner.py ``executable``). The exception's name alone says nothing: a notebook can
turn every error into an ``AssertionError`` (an AST transformer, a patched ``showtraceback``).
So the grader reads the failing frame from the traceback, the innermost frame in the
notebook's own code (``Cell In[N], line L``; a ``%%time`` cell's body is ``<timed exec>``),
and checks, in its own copy of the cell as it was sent to the kernel, parsed here as AST,
that the statement at that line is an ``assert`` (and the innermost frame of all, so the
error was raised by the assert itself, not by a library under it) or a call of
``gradcheck`` / ``gradgradcheck``. An assert raised while another exception was being
handled (``try: ... except: assert False``) is the first error's failure, not a self-check.

What remains the kernel's word: the traceback itself. A notebook that forges one can point
at an assert it wrote; it cannot point at one it did not write. Forging one takes IPython's
exception or input machinery (``InteractiveTB``, ``showtraceback``, ``set_custom_exc``,
``sys.excepthook``, the transformer lists), which no homework needs: a notebook whose code
names any of them, as a name, an attribute or a string, gets no exemption at all.
"""
from __future__ import annotations

import ast
import functools
import re
from typing import Mapping

ASSERT = "assert"
GRADCHECK = "gradcheck"
GRADCHECK_NAMES = frozenset({"gradcheck", "gradgradcheck"})

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CELL_FRAME = re.compile(r"Cell In\[(\d{1,9})\], line (\d{1,9})(?:,|$)")
_FILE_FRAME = re.compile(r"File (.{1,4000}?):(\d{1,9})(?:,|$)")
_HEADER = re.compile(r"\S+\s+Traceback \(most recent call last\)$")
_DURING = "During handling of the above exception, another exception occurred:"
_CAUSE = "The above exception was the direct cause of the following exception:"
_TIMED = "<timed exec>"
# What a notebook would touch to change how its errors look; named anywhere, no error is excused.
EXCEPTION_HOOKS = frozenset({
    "InteractiveTB", "SyntaxTB", "CustomTB", "structured_traceback", "showtraceback",
    "_showtraceback", "showsyntaxerror", "set_custom_exc", "excepthook", "ast_transformers",
    "input_transformers_cleanup", "input_transformers_post", "input_transformer_manager",
})
MAX_CHUNKS = 2000                   # a longer traceback is not read (IPython collapses recursion)


def _python(source: str) -> str | None:
    """The cell as IPython compiles it (magics and shell escapes become calls; lines kept)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:
        return None


def _statements_at(source: str, line: int) -> set[str]:
    """Which of ASSERT and GRADCHECK the statement at ``line`` of ``source`` is or calls."""
    code = _python(source)
    try:
        tree = ast.parse(code) if code is not None else None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    found: set[str] = set()
    for node in ast.walk(tree) if tree is not None else ():
        if not getattr(node, "lineno", 0) <= line <= (getattr(node, "end_lineno", None) or 0):
            continue
        if isinstance(node, ast.Assert):
            found.add(ASSERT)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in GRADCHECK_NAMES:
                found.add(GRADCHECK)
    return found


@functools.lru_cache(maxsize=4096)
def _names_hooks(source: str) -> bool:
    """Whether ``source`` names one of EXCEPTION_HOOKS (unparsable code: searched as text)."""
    code = _python(source)
    try:
        tree = ast.parse(code) if code is not None else None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    if tree is None:
        return any(h in source for h in EXCEPTION_HOOKS)
    for node in ast.walk(tree):
        word = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                else node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None)
        if word is not None and (word in EXCEPTION_HOOKS or any(h in word for h in EXCEPTION_HOOKS)):
            return True
    return False


def hooks_exceptions(cells: Mapping[int, str]) -> bool:
    """Whether any cell sent so far names IPython's exception or input machinery."""
    return any(_names_hooks(source) for source in cells.values())


def _frames(chunks: list[str]) -> list[tuple[str, int | str, int]]:
    """("cell", count, line) or ("file", path, line), outermost first, of the final exception."""
    frames: list[tuple[str, int | str, int]] = []
    for chunk in chunks[:-1]:           # the last chunk is the exception's own message
        first = chunk.lstrip("\n").split("\n", 1)[0].strip()
        if (m := _CELL_FRAME.match(first)) is not None:
            frames.append(("cell", int(m.group(1)), int(m.group(2))))
        elif (m := _FILE_FRAME.match(first)) is not None:
            frames.append(("file", m.group(1), int(m.group(2))))
    return frames


def failed_self_check(traceback: list | None, error_name: str | None,
                      cells: Mapping[int, str]) -> str | None:
    """ASSERT or GRADCHECK when the error the traceback shows was raised by the notebook's own
    assert statement or inside its own gradcheck call; else None.

    ``traceback``: the error's traceback as the kernel sent it (IPython's list of chunks);
    ``cells``: execution count -> the cell's source as the grader sent it."""
    if not isinstance(traceback, list) or not traceback or len(traceback) > MAX_CHUNKS:
        return None
    if hooks_exceptions(cells):
        return None                     # the notebook can make its errors look like anything
    chunks = [_ANSI.sub("", c) for c in traceback if isinstance(c, str)]
    if any(c.strip() == _DURING for c in chunks):
        return None                     # raised while handling another error: that one failed
    last = max((i for i, c in enumerate(chunks) if c.strip() == _CAUSE), default=-1)
    chunks = chunks[last + 1:]
    if not chunks or not any(_HEADER.match(c.strip()) for c in chunks[:3]):
        return None
    frames = _frames(chunks)
    # Notebook frames: a cell, or the body of a %%time cell (its frame follows the cell's).
    located: list[tuple[int, str, int]] = []        # (frame index, source, line)
    for k, (kind, where, line) in enumerate(frames):
        if kind == "cell" and isinstance(where, int) and where in cells:
            located.append((k, cells[where], line))
        elif kind == "file" and where == _TIMED and k > 0 and frames[k - 1][0] == "cell":
            source = cells.get(frames[k - 1][1]) if isinstance(frames[k - 1][1], int) else None
            if source is not None and source.lstrip().startswith("%%time"):
                body = source.lstrip().split("\n", 1)
                located.append((k, body[1] if len(body) > 1 else "", line))
    if not located:
        return None
    k, source, line = located[-1]
    found = _statements_at(source, line)
    # An assert fails in its own frame; anything raised deeper came from what it called.
    if ASSERT in found and k == len(frames) - 1 and error_name == "AssertionError":
        return ASSERT
    if GRADCHECK in found:
        return GRADCHECK
    return None
