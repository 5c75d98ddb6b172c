"""Probe plans, made once per (items, seed) in a process and shared by every submission.

A part's probe inputs depend only on the batch's secret seed, the items and the reference
package, never on the student, so one worker plans them once and hands every submission a
copy of the trusted data (``private``) and the same read-only input folder. Each item's plan
has its own digest: a regrade compares it with the digest the record kept, to know whether
the stored probe answers still stand for this item.
"""
from __future__ import annotations

import atexit
import copy
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grader.checks.base import PlanContext
from grader.record import to_jsonable


@dataclass(frozen=True)
class Plan:
    actions: list[dict[str, Any]]
    in_dir: Path                  # plan.json and the inputs; shared, never written after planning
    digest: str                   # of every file in in_dir: the probe's whole input
    item_digests: dict[str, str]  # item id -> digest of its own actions and input files
    seconds: float                # what planning cost the first time
    _private: dict[str, Any]

    def private(self) -> dict[str, Any]:
        """A copy per submission: judging never sees what another submission's judging did."""
        return copy.deepcopy(self._private)


_MEMO: dict[str, Plan] = {}
_ROOT: list[Path] = []


def _root() -> Path:
    if not _ROOT:
        root = Path(tempfile.mkdtemp(prefix="grader-plans-"))
        atexit.register(shutil.rmtree, root, True)
        _ROOT.append(root)
    return _ROOT[0]


def tree_digest(root: Path, names: list[str] | None = None) -> str:
    """sha256 over the relative paths and contents of ``root``'s files (only ``names`` when given;
    compiled caches never)."""
    h = hashlib.sha256()
    paths = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                   and "__pycache__" not in p.parts and p.suffix != ".pyc")
    for path in paths:
        rel = str(path.relative_to(root))
        if names is not None and rel not in names:
            continue
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def item_json(item) -> str:
    """The item as the rubric states it (its position in the file aside)."""
    data = to_jsonable(item)
    data.pop("where", None)
    return json.dumps(data, sort_keys=True, default=str)


def plan_part(part_id: str, items: list, seed: int, reference_dir: Path | None,
              probe_actions: Callable[[Any, PlanContext], list[dict[str, Any]]]) -> Plan | None:
    """The probe plan of one part for ``items`` under ``seed`` (None when no item needs a probe)."""
    key = hashlib.sha256(json.dumps([part_id, seed, str(reference_dir), [item_json(i) for i in items]])
                         .encode()).hexdigest()
    if key in _MEMO:
        return _MEMO[key]
    in_dir = _root() / key
    shutil.rmtree(in_dir, ignore_errors=True)
    in_dir.mkdir(parents=True)
    ctx = PlanContext(seed=seed, in_dir=in_dir, reference_dir=reference_dir)
    t0 = time.monotonic()
    actions: list[dict[str, Any]] = []
    item_digests: dict[str, str] = {}
    for item in items:
        before = {str(p.relative_to(in_dir)) for p in in_dir.rglob("*") if p.is_file()}
        mine = probe_actions(item, ctx)
        actions += mine
        written = sorted({str(p.relative_to(in_dir)) for p in in_dir.rglob("*") if p.is_file()} - before)
        h = hashlib.sha256(json.dumps(mine, sort_keys=True, default=str).encode())
        h.update(tree_digest(in_dir, written).encode())
        item_digests[item.id] = h.hexdigest()
    seconds = time.monotonic() - t0
    if not actions:
        shutil.rmtree(in_dir, ignore_errors=True)
        _MEMO[key] = None        # type: ignore[assignment]
        return None
    (in_dir / "plan.json").write_text(json.dumps({"seed": seed % 2**31, "actions": actions}))
    plan = Plan(actions, in_dir, tree_digest(in_dir), item_digests, seconds, ctx.private)
    _MEMO[key] = plan
    return plan
