"""Why a notebook's cells did what they did in the grader, told to the student.

Decided on the trusted side from the notebook's own source (read as text and AST) and the
grader's record of the run; what the kernel printed is only used to name a file or a module
in a message. Each note may excuse a cell's error from the not-executable penalty when the
cause is the grading environment, not the student's code:

- ``gpu_on_cpu``: code written for a GPU ran on the CPU (once per notebook; never an error);
- ``colab_call``: a Colab-only call that does nothing here (``drive.mount``, ``files.upload``);
- ``upload_missing``: a file the notebook uploaded on Colab with ``files.upload()`` is not here
  (excused: the zip may only hold the required files);
- ``outside_environment``: an import of a module that is not part of the course's environment;
- ``timing_check``: the notebook's own time check (``assert duration < 600``) failed because the
  grader ran the cell longer than the check allows (excused, as any failed self-check is);
- ``interrupted``: a cell stopped at its time limit.
"""
from __future__ import annotations

import functools

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from grader.checks.notebook_text import Cell, python_source, read_cells
from grader.environment import Package, missing_module

_CUDA = re.compile(r"""\.cuda\s*\(|["']cuda(:\d+)?["']|torch\.cuda\.get_device_name|torch\.device\(\s*["']cuda""")
_COLAB_CALL = re.compile(r"^\s*(?:\w+\s*=\s*)?(?:google\.colab\.)?(drive\.mount|drive\.flush_and_unmount|"
                         r"files\.upload|files\.download)\s*\(", re.MULTILINE)
_COLAB_WHY = {"drive.mount": "Google Drive is not available to the grader: this does nothing",
              "drive.flush_and_unmount": "Google Drive is not available to the grader: this does nothing",
              "files.upload": "the grader has no browser: this uploads nothing and returns no files",
              "files.download": "the grader has no browser: this downloads nothing"}
_NO_FILE = re.compile(r"No such file or directory: '([^']{1,300})'")
_TIME_FUNCS = {"time", "perf_counter", "monotonic", "process_time"}


@dataclass
class Note:
    cell: int | None          # index in the notebook; None: about the whole notebook
    kind: str
    message: str
    excused: bool = False     # this cell's error costs no not-executable penalty


def diagnose(executed: Path | None, cells: list[dict], device: str,
             packages: tuple[Package, ...]) -> list[Note]:
    """Notes for one notebook run: ``executed`` is the notebook as the grader ran it, ``cells``
    the run's cell results (index, status, seconds, error_name, error_value)."""
    if executed is None or not Path(executed).is_file():
        return []
    try:
        nb_cells = read_cells(Path(executed))
    except Exception:
        return []
    code = {c.index: c for c in nb_cells if c.kind == "code"}
    notes: list[Note] = []

    gpu = next(((i, m.group(0)) for i, c in code.items() if (m := _CUDA.search(c.source))), None)
    if gpu is not None:
        where = f"`{gpu[1].strip()}` in cell {gpu[0] + 1}"
        if device == "cpu":
            notes.append(Note(None, "gpu_on_cpu",
                              f"This notebook is written for a GPU ({where}). The grader has no GPU here, so it "
                              "ran on the CPU: tensors, models and criteria sent to the GPU stayed on the CPU, "
                              "with the same results, and `torch.cuda.is_available()` was False."))
        else:
            notes.append(Note(None, "gpu_on_cpu", f"This notebook is written for a GPU ({where}); "
                                                  f"it ran on the grader's GPU ({device})."))

    uploads: list[int] = []
    for i, c in code.items():
        for m in _COLAB_CALL.finditer(c.source):
            call = m.group(1)
            if call == "files.upload":
                uploads.append(i)
            line = c.source[m.start():].splitlines()[0].strip()
            notes.append(Note(i, "colab_call", f"`{line[:120]}`: {_COLAB_WHY[call]}."))

    known = _environment_modules(packages)
    for r in cells:
        if r.get("status") not in ("error", "timeout"):
            continue
        i = r["index"]
        name, value = r.get("error_name") or "", r.get("error_value") or ""
        if r["status"] == "timeout":
            notes.append(Note(i, "interrupted", f"Cell {i + 1} was stopped at its time limit after "
                                                f"{r.get('seconds', 0):.0f} s; what it had computed until then was kept."))
            continue
        if name in ("FileNotFoundError", "OSError") and (f := _NO_FILE.search(value)):
            before = [u for u in uploads if u <= i]
            if before:
                notes.append(Note(i, "upload_missing",
                                  f"Cell {i + 1} could not find `{f.group(1)}`: on Colab it came from "
                                  f"`files.upload()` in cell {before[-1] + 1}, which uploads nothing in the grader, "
                                  "and the zip may hold only the required files. This cell's error costs no penalty.",
                                  excused=True))
                continue
        if name == "ModuleNotFoundError" and (module := missing_module(value)):
            notes.append(Note(i, "outside_environment", _module_message(module, known)))
            continue
        if name == "AssertionError" and i in code and r.get("self_check") == "assert":
            bound = _timing_bound(code[i])
            if bound is not None and float(r.get("seconds") or 0) >= bound:
                notes.append(Note(i, "timing_check",
                                  f"Your notebook's own time check in cell {i + 1} (at most {bound:g} s) failed "
                                  f"because the grader ran this cell for {float(r['seconds']):.0f} s: the grader's "
                                  "machine is slower than the one you used. It costs no penalty and no points.",
                                  excused=True))
    return notes


def excused_cells(notes: list[Note]) -> set[int]:
    return {n.cell for n in notes if n.excused and n.cell is not None}


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    """Read once per process: scanning every installed package's metadata costs about 0.35 s."""
    import importlib.metadata as md
    try:
        return md.packages_distributions()
    except Exception:
        return {}


def _environment_modules(packages: tuple[Package, ...]) -> dict[str, str]:
    """Top-level module -> distribution, for the declared packages (the grader's own environment
    is the kernel's, so its metadata says what the kernel can import)."""
    wanted = {p.name for p in packages}
    out: dict[str, str] = {}
    for top, dists in _distributions().items():
        for d in dists:
            name = d.lower().replace("_", "-").replace(".", "-")
            if name in wanted and not top.startswith("_"):
                out[top] = name
    return out


def _module_message(module: str, known: dict[str, str]) -> str:
    top = module.split(".")[0]
    course = ", ".join(sorted(set(known.values()))) or "the libraries the rubric declares"
    if top in known:
        return (f"`{module}` does not exist in the course's `{known[top]}`: check the name (the grader's "
                f"kernel has the course's libraries: {course}).")
    return (f"`{top}` is not part of the course's environment, so the grader cannot import it (the kernel "
            f"has the course's libraries: {course}). Use only these; nothing can be installed while grading.")


def _timing_bound(cell: Cell) -> float | None:
    """The bound of a time check in the cell: ``assert <elapsed> < N`` where the elapsed time is
    a name computed from time.time()/perf_counter()/monotonic() in the same cell."""
    try:
        tree = ast.parse(python_source(cell))
    except SyntaxError:
        return None
    timers: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _calls_timer(node.value):
            timers |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):          # derived names: duration = end_time - start_time
        if isinstance(node, ast.Assign) and _names(node.value) & timers:
            timers |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert) or not isinstance(node.test, ast.Compare):
            continue
        test = node.test
        if len(test.ops) == 1 and isinstance(test.ops[0], (ast.Lt, ast.LtE)) and \
                (_names(test.left) & timers or _calls_timer(test.left)):
            bound = test.comparators[0]
            if isinstance(bound, ast.Constant) and isinstance(bound.value, (int, float)):
                return float(bound.value)
    return None


def _calls_timer(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in _TIME_FUNCS:
                return True
    return False


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
