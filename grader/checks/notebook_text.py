"""Reading notebooks as documents (no execution): cells, sections under a heading, code as AST."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from grader.notebook_file import read_strict

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*)$")
_MAGIC = re.compile(r"^(\s*)([!%].*)$")


@dataclass
class Cell:
    index: int
    kind: str          # "code" | "markdown" | "raw"
    source: str
    outputs: list


def read_cells(path: Path) -> list[Cell]:
    """The cells of a notebook file with their saved outputs (NotebookError when unreadable)."""
    nb = read_strict(path)
    out = []
    for i, c in enumerate(nb.cells):
        src = c.source if isinstance(c.source, str) else "".join(c.source)
        out.append(Cell(i, c.cell_type, src, list(c.get("outputs", [])) if c.cell_type == "code" else []))
    return out


def heading_level(cell: Cell) -> int | None:
    if cell.kind != "markdown":
        return None
    levels = [len(m.group(1)) for line in cell.source.splitlines() if (m := _HEADING.match(line))]
    return min(levels) if levels else None


def section(cells: list[Cell], pattern: str | None) -> list[Cell] | None:
    """Cells after the first markdown heading matching ``pattern`` up to the next heading of
    the same or a higher level; all cells when pattern is None; None when no heading matches."""
    if not pattern:
        return cells
    rx = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for pos, cell in enumerate(cells):
        if cell.kind != "markdown":
            continue
        for line in cell.source.splitlines():
            m = _HEADING.match(line)
            if m and rx.search(line):
                level = len(m.group(1))
                body = []
                for nxt in cells[pos + 1:]:
                    lv = heading_level(nxt)
                    if lv is not None and lv <= level:
                        break
                    body.append(nxt)
                return body
    return None


def python_source(cell: Cell) -> str:
    """Code cell source with IPython-only lines (magics, shell escapes) turned into ``pass``."""
    lines = []
    for line in cell.source.splitlines():
        m = _MAGIC.match(line)
        lines.append(f"{m.group(1)}pass" if m and line.strip() else line)
    return "\n".join(lines)


def parse_cells(cells: list[Cell]) -> tuple[list[ast.Module], int]:
    """Parsed code cells, and how many could not be parsed."""
    trees, bad = [], 0
    for c in cells:
        if c.kind != "code":
            continue
        try:
            trees.append(ast.parse(python_source(c)))
        except SyntaxError:
            bad += 1
    return trees, bad


def top_level_nodes(tree: ast.AST):
    """Nodes of a module outside function and class bodies."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def bound_names(trees: list[ast.Module]) -> set[str]:
    """Names the submitted code binds at module level: definitions, assignment and loop
    targets, imports, ``global`` declarations. A name the code never binds cannot exist
    after an honest run, whatever the kernel reports."""
    names: set[str] = set()
    for tree in trees:
        for node in top_level_nodes(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
        names.update(n for g in ast.walk(tree) if isinstance(g, ast.Global) for n in g.names)
    return names


def output_text(o: dict) -> str:
    """The text an output shows: a stream's, or a result's text/plain."""
    if o.get("output_type") == "stream":
        t = o.get("text", "")
    else:
        t = (o.get("data") or {}).get("text/plain", "")
    return t if isinstance(t, str) else "".join(t)


_REGEX_META = re.compile(r"[\[\]()*+{}|]|\\[A-Za-z]")


def plain(pattern: str | None, fallback: str = "the expected text") -> str:
    """A rubric's regex as a student may read it (``^## 8\\.`` -> "## 8."); a pattern that is
    more than literal text gives ``fallback``: students never see raw regular expressions."""
    if not pattern:
        return fallback
    text = re.sub(r"^\(\?[a-z]+\)", "", pattern).lstrip("^").rstrip("$")
    if _REGEX_META.search(text.replace("\\.", "").replace("\\?", "").replace("\\(", "").replace("\\)", "")):
        return fallback
    text = re.sub(r"\\(.)", r"\1", text)
    return f"“{text.strip()}”"


def calls_in_function(trees: list[ast.Module], name: str) -> list[tuple[str, int, str]]:
    """(dotted name, line, via) of every call inside the definition of ``name`` ("fn" or
    "Class.method"; the last definition wins, as it would when the notebook runs), and inside
    the notebook's own top-level functions it calls, however deep (``via``: the helper whose
    body holds the call, "" for ``name`` itself)."""
    functions: dict[str, ast.AST] = {}
    methods: dict[str, ast.AST] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[node.name] = node
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        methods[f"{node.name}.{sub.name}"] = sub
    target = methods.get(name) if "." in name else functions.get(name)
    if target is None:
        return []
    out, seen, todo = [], {name}, [(target, "")]
    while todo:
        node, via = todo.pop(0)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                called = _dotted(sub.func)
                out.append((called, sub.lineno, via))
                if called in functions and called not in seen:
                    seen.add(called)
                    todo.append((functions[called], called))
    return out


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.append(_dotted(node.func) + "()")
    return ".".join(reversed(parts)) or "<call>"
