"""Build the release and solution notebooks of an assignment from its sources.

Each notebook has one source, ``source/<name>.py``, in the "percent" format:
``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines
are written as ``# text``. Inside any cell:

* lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` appear only in the
  solution notebook;
* lines between ``# BEGIN RELEASE`` and ``# END RELEASE`` appear only in the
  release notebook (what students get: TODO stubs, placeholders);
* lines between ``# BEGIN HW2`` and ``# END HW2`` appear only in this assignment's own
  notebooks (``release/``, ``solution/``: graded by rubrics/hw2.toml), lines between
  ``# BEGIN COURSE`` and ``# END COURSE`` only in the notebooks as the course's Colab
  template has them (``course/release/``, ``course/solution/``: rubrics/hw2_course.toml).

A cell left empty by the selection is not written. One source keeps all four in step: a
change to the given code reaches students and the solution at once.

Usage: python reference/hw2/build.py [--check]
``--check`` exits non-zero when the committed notebooks differ from the sources.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELL_RE = re.compile(r"^# %%(?P<md> \[markdown\])?\s*$")
MARKERS = {
    "# BEGIN SOLUTION": ("solution", True),
    "# END SOLUTION": ("solution", False),
    "# BEGIN RELEASE": ("release", True),
    "# END RELEASE": ("release", False),
}
VARIANT_MARKERS = {
    "# BEGIN HW2": ("hw2", True),
    "# END HW2": ("hw2", False),
    "# BEGIN COURSE": ("course", True),
    "# END COURSE": ("course", False),
}
VARIANTS = {"hw2": HERE, "course": HERE / "course"}   # variant -> folder holding release/ and solution/


def split_cells(text: str) -> list[tuple[str, list[str]]]:
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = CELL_RE.match(line)
        if m:
            cells.append(("markdown" if m.group("md") else "code", []))
        elif cells:
            cells[-1][1].append(line)
    return cells


def select(lines: list[str], version: str, where: str, markers: dict = MARKERS) -> list[str]:
    out: list[str] = []
    inside: str | None = None
    for line in lines:
        marker = markers.get(line.strip())
        if marker:
            block, opening = marker
            if opening == (inside is not None):
                raise ValueError(f"{where}: unbalanced '{line.strip()}'")
            inside = block if opening else None
            continue
        if inside is None or inside == version:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{where}: '# BEGIN {inside.upper()}' is never closed")
    return out


def strip_blank_edges(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def build(source: Path, version: str, variant: str = "hw2") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, lines) in enumerate(split_cells(source.read_text())):
        where = f"{source.name} cell {i}"
        lines = select(select(lines, variant, where, VARIANT_MARKERS), version, where)
        lines = strip_blank_edges(lines)
        if not lines:
            continue
        i = len(nb.cells)      # ids count the cells this variant has, so one variant's cells leave the other's ids alone
        if kind == "markdown":
            lines = [l[2:] if l.startswith("# ") else l.lstrip("#") for l in lines]
            cell = nbformat.v4.new_markdown_cell("\n".join(lines))
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
        # Stable ids keep rebuilt notebooks byte-identical.
        cell.id = hashlib.sha1(f"{source.stem}:{i}".encode()).hexdigest()[:12]
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if committed notebooks are stale")
    args = ap.parse_args(argv)
    stale = []
    for source in sorted((HERE / "source").glob("*.py")):
        for (variant, folder), version in [(v, r) for v in VARIANTS.items() for r in ("release", "solution")]:
            target = folder / version / f"{source.stem}.ipynb"
            text = nbformat.writes(build(source, version, variant)) + "\n"
            if args.check:
                if not target.exists() or target.read_text() != text:
                    stale.append(str(target.relative_to(HERE)))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
    if stale:
        print("stale notebooks (run python reference/hw2/build.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
