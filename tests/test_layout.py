"""The package's shape: no import cycle, every module importable on its own, the plain stages
free of torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "grader"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the grader modules it imports, wherever the import statement is (a function-level
    import is an edge too: it runs as soon as the function is called)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("grader"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("grader"))
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_grader_imports_itself_back():
    assert cycles(import_graph()) == []


def test_every_module_imports_on_its_own():
    """Each module in a state where no other grader module was imported first."""
    names = [n for n in _modules() if not n.startswith("grader.kernel_env") and not n.startswith("grader.probe")]
    code = ("import importlib, sys, traceback\nbad = []\n"
            f"for name in {names!r}:\n"
            "    for m in [m for m in sys.modules if m == 'grader' or m.startswith('grader.')]:\n"
            "        del sys.modules[m]\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception:\n        bad.append(name + ': ' + traceback.format_exc(limit=3))\n"
            "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rubric_scoring_and_overrides_load_without_torch():
    """The plain stages (a rubric, its items, scores, staff overrides) never pull in torch."""
    code = ("import sys\nimport grader.items, grader.rubric, grader.score, grader.overrides\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stdout + done.stderr


def test_no_module_is_longer_than_a_newcomer_reads_at_once():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}


def test_the_grader_knows_no_assignment():
    """What HW2 asks lives in rubrics/ and reference/; only the CLI's default rubric names it."""
    import re
    words = re.compile(r"hw2|section ?8|\bnyu\b|08[-_]seq|seq_classification|theory\.pdf|cats_and_dogs", re.I)
    found = []
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if words.search(line) and not line.startswith("DEFAULT_RUBRIC = "):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []
