"""The one reader of notebook files. Intake, the executor and the checks all read a notebook
through ``read``, so one set of rules says what is readable:

- UTF-8 text (a byte-order mark is allowed), JSON, a dict with an integer ``nbformat`` of at
  most 4; older formats are converted to nbformat 4;
- a cell without metadata (common in notebooks saved by other tools) gets an empty one, and
  with ``outputs=False`` (to run it) outputs and counts are dropped first, so neither that nor
  a stale or malformed output makes a runnable notebook unreadable;
- schema problems left after that are reported as ``invalid``: intake warns about them, the
  executor refuses to run such a notebook.
Never raises for what a file holds (``read_cells`` callers get ``NotebookError``).
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from grader.text_safety import first_line


class NotebookError(ValueError):
    """A notebook the grader cannot read; the message says why, in words for the student."""


@dataclass
class NotebookFile:
    nb: Any | None                  # nbformat.NotebookNode (version 4), or None
    problem: str | None = None      # why it cannot be read at all
    major: int | None = None        # the nbformat version as written
    invalid: str | None = None      # a schema violation of the notebook as read


@contextmanager
def quiet(*logger_names: str) -> Iterator[None]:
    """nbformat (and pypdf) log at WARNING/ERROR for every malformed input; results carry it.
    (Each level change clears every logger's cache: one context per read, not one per call.)"""
    loggers = [logging.getLogger(name) for name in logger_names]
    old = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, old):
            logger.setLevel(level)


def read(path: Path, *, outputs: bool = True) -> NotebookFile:
    import nbformat  # deferred: heavy import
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        return NotebookFile(None, "the file is not UTF-8 text")
    except OSError as e:
        return NotebookFile(None, f"the file cannot be opened ({first_line(e)})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return NotebookFile(None, f"invalid JSON at line {e.lineno}, column {e.colno}")
    except RecursionError:  # json raises this, not JSONDecodeError, for deeply nested arrays
        return NotebookFile(None, "the JSON is nested too deeply")
    if not isinstance(data, dict) or type(data.get("nbformat")) is not int:
        return NotebookFile(None, "no 'nbformat' version field")
    major = data["nbformat"]
    if major > 4:
        return NotebookFile(None, f"unsupported nbformat version {major}", major)
    repaired = False
    if major == 4 and isinstance(data.get("cells"), list):
        for cell in data["cells"]:
            if isinstance(cell, dict):
                if "metadata" not in cell:
                    cell["metadata"], repaired = {}, True
                if not outputs and cell.get("cell_type") == "code":
                    cell["outputs"], cell["execution_count"], repaired = [], None, True
    with quiet("traitlets", "nbformat"):
        try:
            nb = nbformat.reads(json.dumps(data) if repaired else text, as_version=4)
        # nbformat raises ValidationError, NBFormatError, KeyError, AttributeError, TypeError,
        # RecursionError... depending on which part of a damaged notebook it trips over.
        except Exception as e:  # noqa: BLE001
            return NotebookFile(None, first_line(e), major)
        if not isinstance(nb.get("cells"), list):
            return NotebookFile(None, "it has no list of cells", major)
        invalid = None
        try:
            nbformat.validate(nb)
        except Exception as e:  # noqa: BLE001 - schema problems: the caller decides
            invalid = first_line(e)
    return NotebookFile(nb, None, major, invalid)


def read_strict(path: Path, *, outputs: bool = True):
    """The notebook, or NotebookError when it cannot be read (schema problems tolerated)."""
    got = read(path, outputs=outputs)
    if got.nb is None:
        raise NotebookError(f"{Path(path).name} is not a readable notebook: {got.problem}")
    return got.nb
