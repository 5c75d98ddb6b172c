"""Reuse a notebook run when nothing it depends on changed.

Two submissions that hand in the same notebook (byte for byte), with the same
support files, mounts, environment, limits and probe inputs, get the same run:
executing it again is wasted work. The key covers all of those plus the
grader's own execution and probe code; probe inputs are drawn from the run's
secret seed, so by default a run only reuses its own results. What is kept:
the NotebookRun, the probe's answers and the executed notebook.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from grader.execute import time_limit_entries
from grader.run_types import CellResult, ExecSettings, NotebookRun, ProbeRequest, ProbeResult
from grader.record import to_jsonable, write_atomic

GRADER = Path(__file__).resolve().parent
# Changing how notebooks run or how the probe answers must invalidate cached runs.
CODE_FILES = ("execute.py", "selfcheck.py", "sandbox.py", "colab.py", "cache.py", "environment.py", "devices.py")
CACHEABLE = ("completed", "errors")   # a timeout or a dead kernel may depend on the machine's load
# The time limits are not part of the key: a run that completed within them is reused under
# other limits as long as every cell and the whole notebook took less (see _fits).
_TIME_FIELDS = {"cell_timeout_s": 0.0, "notebook_timeout_s": 0.0, "limits_why": "", "cpu_s": 0}


def _hash_tree(h: "hashlib._Hash", root: Path) -> None:
    # Compiled caches never: importing a probe file on the trusted side (a test, a tool) writes
    # one, and a key that changed with it would stop identical runs from being reused.
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                       and "__pycache__" not in p.relative_to(root).parts and p.suffix != ".pyc"):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def run_key(nb_path: Path, workdir: Path, settings: ExecSettings, env: dict[str, str],
            mounts: list[tuple[Path, str]], probe: ProbeRequest | None, prelude: str | None = None,
            python_path: list[str] | None = None, before_cells: dict[int, str] | None = None,
            probe_digest: str | None = None) -> str:
    """``probe_digest``: the digest of the probe's input folder when the caller already has it
    (grader/planning.py), instead of hashing the folder again."""
    h = hashlib.sha256()
    for name in CODE_FILES:
        h.update((GRADER / name).read_bytes())
    _hash_tree(h, GRADER / "probe")
    _hash_tree(h, GRADER / "kernel_env")
    h.update(json.dumps([asdict(replace(settings, **_TIME_FIELDS)), sorted(env.items()),
                         [(str(s), t) for s, t in mounts], nb_path.name, probe.code if probe else None,
                         prelude, list(python_path or []),
                         sorted((int(k), v) for k, v in (before_cells or {}).items())], sort_keys=True).encode())
    _hash_tree(h, workdir)              # the notebook and its support files
    if probe is not None:
        if probe_digest is not None:
            h.update(probe_digest.encode())
        else:
            _hash_tree(h, Path(probe.in_dir))
    return h.hexdigest()


def load_run(data: dict) -> NotebookRun:
    data = dict(data)
    data["cells"] = [CellResult(**c) for c in data["cells"]]
    data["probe"] = ProbeResult(**data["probe"]) if data.get("probe") else None
    data["executed_path"] = Path(data["executed_path"]) if data.get("executed_path") else None
    return NotebookRun(**data)


def reusable(run: NotebookRun, probe: ProbeRequest | None) -> bool:
    """A run stands for another only if the notebook ran to its end and, when a probe was asked
    for, the probe finished too: a probe that timed out, died or was not run may owe that to the
    machine's load, and reusing it would hand the next identical notebook the same failure."""
    if run.status not in CACHEABLE:
        return False
    if probe is None:
        return run.probe is None or run.probe.status == "ok"
    return run.probe is not None and run.probe.status == "ok"


def _fits(run: NotebookRun, settings: ExecSettings) -> bool:
    """A stored run stands for a run under ``settings`` only if no limit of theirs would have cut it."""
    return (all(c.seconds < settings.cell_timeout_s for c in run.cells)
            and sum(c.seconds for c in run.cells) < settings.notebook_timeout_s)


def cached_execute(cache_dir: Path | None, nb_path: Path, workdir: Path, settings: ExecSettings,
                   env: dict[str, str], mounts: list[tuple[Path, str]], probe: ProbeRequest | None,
                   execute: Callable[..., NotebookRun], prelude: str | None = None,
                   python_path: list[str] | None = None,
                   before_cells: dict[int, str] | None = None,
                   key: str | None = None) -> tuple[NotebookRun, bool]:
    """Run ``execute`` or reuse an identical earlier run; returns (run, reused). ``key``: the
    run's ``run_key`` when the caller computed it already."""
    extra: dict = {"prelude": prelude} if prelude else {}
    if python_path:
        extra["python_path"] = list(python_path)
    if before_cells:
        extra["before_cells"] = dict(before_cells)
    if cache_dir is None:
        return execute(nb_path, workdir, settings, env=env, ro_mounts=mounts, probe=probe, **extra), False
    key = key or run_key(nb_path, workdir, settings, env, mounts, probe, prelude, python_path, before_cells)
    entry = cache_dir / "runs" / key
    meta = entry / "run.json"
    run = None
    if meta.is_file():
        try:
            run = load_run(json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            shutil.rmtree(entry, ignore_errors=True)
    if run is not None and not reusable(run, probe):
        shutil.rmtree(entry, ignore_errors=True)     # never stored so now: the entry is not trusted
        run = None
    if run is not None and _fits(run, settings):
        try:
            run.limits = {**run.limits, **time_limit_entries(settings)}
            if probe is not None and (entry / "probe_out").is_dir():
                shutil.copytree(entry / "probe_out", probe.out_dir, dirs_exist_ok=True)
            if (entry / "executed.ipynb").is_file():
                target = workdir.resolve().parent / "executed" / nb_path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(entry / "executed.ipynb", target)
                run.executed_path = target
            return run, True
        except OSError:
            pass
    run = execute(nb_path, workdir, settings, env=env, ro_mounts=mounts, probe=probe, **extra)
    if reusable(run, probe):
        # A name of its own: parallel workers may store the same key at once.
        tmp = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}.tmp")
        tmp.mkdir(parents=True)
        if probe is not None and Path(probe.out_dir).is_dir():
            shutil.copytree(probe.out_dir, tmp / "probe_out")
        if run.executed_path and Path(run.executed_path).is_file():
            shutil.copy2(run.executed_path, tmp / "executed.ipynb")
        write_atomic(tmp / "run.json", json.dumps(to_jsonable(run)))
        shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:          # another worker stored the same run first: theirs stands
            shutil.rmtree(tmp, ignore_errors=True)
    return run, False
