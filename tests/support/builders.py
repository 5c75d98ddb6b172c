"""The files tests hand the grader, built one way each: notebooks, PDFs, zips, mini rubrics, and
the process scan that proves no sandboxed process outlived its run."""
from __future__ import annotations

import io
import os
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import nbformat


def notebook(*cells: str | tuple[str, str]) -> bytes:
    """A notebook file. A cell is code, or ("markdown", text)."""
    nb = nbformat.v4.new_notebook()
    for c in cells:
        if isinstance(c, tuple):
            kind, source = c
            nb.cells.append(nbformat.v4.new_markdown_cell(source) if kind == "markdown"
                            else nbformat.v4.new_code_cell(source))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(c))
    return nbformat.writes(nb).encode()


@lru_cache(maxsize=None)
def pdf(text: str = "answers") -> bytes:
    """A one-page PDF with ``text`` on it, as a typed answer sheet is (the grader's own builder)."""
    from grader.validate import placeholder_pdf
    return placeholder_pdf(text)


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    Path(path).write_bytes(zip_bytes(members, compression))
    return Path(path)


def procs_with(token: str) -> list[int]:
    """Processes whose command line holds ``token`` (a sentinel a test's notebook puts there)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


# ---------------------------------------------------------------- mini rubrics

# The items most mini rubrics grade: a callable f and a value named answer.
F_ITEM = {"id": "nb.f", "part": "nb", "kind": "exists", "title": "function f is defined", "points": 4,
          "params": {"names": ["f"], "callable": True}}
ANSWER_ITEM = {"id": "nb.answer", "part": "nb", "kind": "exists", "title": "answer is defined", "points": 2,
               "target": "answer"}
THEORY_PART = {"id": "theory", "file": "theory.pdf", "kind": "pdf", "points": 4}
THEORY_ITEM = {"id": "theory.q1", "part": "theory", "kind": "staff", "title": "Question 1", "points": 4}
PENALTIES = {"naming_pct": 10, "not_executable_pct": 20}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def _table(header: str, values: dict) -> list[str]:
    return [header] + [f"{k} = {_toml_value(v)}" for k, v in values.items()] + [""]


def mini_rubric(name: str, *, items: list[dict], parts: list[dict] | None = None,
                title: str | None = None, reference_dir: str | None = None,
                due: str = "2099-10-05T23:59:00", timezone: str = "UTC", deadline: dict | None = None,
                intake: dict | None = None, penalties: dict | None = None, execution: dict | None = None) -> str:
    """A rubric of one notebook part ``nb`` (work.ipynb, worth its items' points) unless ``parts``
    are given, with fixed limits; every table is written out, so a test reads what it grades by."""
    assignment = {"name": name, **({"title": title} if title else {}),
                  **({"reference_dir": reference_dir} if reference_dir else {})}
    if parts is None:
        parts = [{"id": "nb", "file": "work.ipynb", "points": sum(i["points"] for i in items if i["part"] == "nb")}]
    lines = _table("[assignment]", assignment)
    lines += _table("[deadline]", {"due": due, "timezone": timezone, **(deadline or {})})
    if intake:
        lines += _table("[intake]", intake)
    lines += _table("[penalties]", PENALTIES if penalties is None else penalties)
    lines += _table("[execution]", {"limits": "fixed", "interrupt_grace_s": 3, **(execution or {})})
    for part in parts:
        lines += _table("[[parts]]", part)
    for item in items:
        lines += _table("[[items]]", item)
    return "\n".join(lines)
