"""What one submission's notebook run left, kept so that a regrade judges it again without a kernel.

An entry is named by the zip's content and the run's key (grader/cache.py: the notebook, its
support files, the limits, the probe's inputs and the grader's execution code), so it stands
for exactly one run of exactly one submission and is never overwritten by another's. Unlike
the run cache, every outcome is kept (a timeout too): a regrade re-judges what happened, it
does not give the notebook a second chance; ``grader grade --force`` runs it again.
Files are hard-linked from the run cache where they are the same, so keeping both costs no
extra disk.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from grader.cache import load_run
from grader.run_types import NotebookRun
from grader.record import to_jsonable, write_atomic


@dataclass
class Stored:
    run: NotebookRun
    probe_dir: Path | None


def name(zip_sha256: str | None, run_key: str) -> str:
    return f"{(zip_sha256 or 'nozip')[:16]}-{run_key[:40]}"


def _link_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and not path.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            _link(path, target)


def save(root: Path, entry: str, run: NotebookRun, probe_out: Path | None) -> None:
    """Keep ``run`` under ``root/entry`` (atomically: a reader sees all of it or none)."""
    final = root / entry
    tmp = root / f".{entry}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    try:
        data = to_jsonable(run)
        if probe_out is not None and Path(probe_out).is_dir():
            _link_tree(Path(probe_out), tmp / "probe_out")
        if run.executed_path and Path(run.executed_path).is_file():
            _link(Path(run.executed_path), tmp / "executed.ipynb")
            data["executed_path"] = "executed.ipynb"
        write_atomic(tmp / "run.json", json.dumps(data))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _link(src: Path, dst: Path) -> None:
    """A hard link where the file system allows one (the run cache's copy is the same file), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def load(root: Path, entry: str) -> Stored | None:
    """The kept run, its paths pointing into the store; None when it is not (all) there."""
    folder = root / entry
    try:
        data = json.loads((folder / "run.json").read_text())
        run = load_run(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if run.executed_path is not None:
        run.executed_path = folder / "executed.ipynb"
        if not run.executed_path.is_file():
            return None
    probe_dir = folder / "probe_out"
    return Stored(run, probe_dir if probe_dir.is_dir() else None)
