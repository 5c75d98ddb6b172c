"""Rewrite Colab-only shell lines so a notebook written on Colab runs offline in the sandbox.

Each such line (``!pip install``, ``!wget``, ``!unzip``, ``!git clone``, ``!nvidia-smi``) becomes
`pass  # [grader] neutralized: <why>` at the same indentation (so the cell still parses); every
rewrite is recorded so the feedback can list it. Colab's Python API (``google.colab``: Drive,
uploads, downloads) needs no rewrite: the kernel has a stand-in for it (grader/kernel_env).
"""
from __future__ import annotations

import copy
import re

import nbformat

MARK = "[grader] neutralized"

_SHELL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^[!%]\s*(pip3?|python3?\s+-m\s+pip)\b"),
     "installing packages needs the network; the grading environment provides them"),
    (re.compile(r"^[!%]\s*conda\b"),
     "installing packages needs the network; the grading environment provides them"),
    (re.compile(r"^!\s*(wget|curl)\b"),
     "downloads need the network; the needed files are placed beside the notebook"),
    (re.compile(r"^!\s*unzip\b"),
     "unzipping Colab downloads; the needed files are placed beside the notebook"),
    (re.compile(r"^!\s*git\s+clone\b"),
     "cloning needs the network; the needed files are placed beside the notebook"),
    (re.compile(r"^!\s*nvidia-smi\b"), "there is no GPU in the grading environment"),
]
_SHELL_CELL = re.compile(r"^%%(bash|sh|shell|script\s+\S*sh)\b")
_SHELL_CELL_RULE = re.compile(r"^(pip3?|python3?\s+-m\s+pip|conda|wget|curl|git\s+clone|nvidia-smi|unzip)\b")


def _classify(stripped: str) -> str | None:
    """Why the stripped line is a Colab-only shell command, or None."""
    for rule, why in _SHELL_RULES:
        if rule.match(stripped):
            return why
    return None


def neutralize_source(source: str) -> tuple[str, list[tuple[str, str]]]:
    """Rewrite one cell's source; returns (new source, [(original line, why)])."""
    lines = source.split("\n")
    out: list[str] = []
    changes: list[tuple[str, str]] = []
    if lines and _SHELL_CELL.match(lines[0].strip()):
        out.append(lines[0])
        for line in lines[1:]:
            stripped = line.strip()
            if _SHELL_CELL_RULE.match(stripped):
                indent = line[: len(line) - len(line.lstrip())]
                out.append(f"{indent}true  # {MARK}: this command needs the network or Colab")
                changes.append((line, "this command needs the network or Colab"))
            else:
                out.append(line)
        return "\n".join(out), changes
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        why = _classify(stripped)
        if why is None:
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        consumed = [line]
        while consumed[-1].rstrip().endswith("\\") and i + len(consumed) < len(lines):
            consumed.append(lines[i + len(consumed)])
        out.append(f"{indent}pass  # {MARK}: {why}")
        # Keep the line count so notebook line numbers in tracebacks stay meaningful.
        out.extend(f"{indent}pass" for _ in consumed[1:])
        changes.append(("\n".join(consumed), why))
        i += len(consumed)
    return "\n".join(out), changes


def neutralize(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[dict]]:
    """Copy of `nb` with Colab-only lines of code cells rewritten, and the list of rewrites."""
    nb_copy = copy.deepcopy(nb)
    record: list[dict] = []
    for index, cell in enumerate(nb_copy.cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        new_source, changes = neutralize_source(source)
        if changes:
            cell.source = new_source
            record.extend({"cell": index, "line": line, "why": why} for line, why in changes)
    return nb_copy, record
