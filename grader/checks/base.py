"""What every check kind shares: its result types and the context it judges in."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from grader.items import Item, ItemResult, SubResult


@dataclass
class PlanContext:
    """What a check kind may use, before the notebook runs, to plan its probe."""
    seed: int                     # the run's secret seed
    in_dir: Path                  # becomes /grader/in for the probe, after the student's cells ran
    reference_dir: Path | None    # where the reference package is imported from (trusted side only)
    private: dict[str, Any] = field(default_factory=dict)   # item id -> trusted data for judging


@dataclass
class JudgeContext:
    """What the trusted side knows when it judges one item of one student."""
    net_id: str
    probe_dir: Path | None        # files the probe wrote (read as plain data only)
    probe_ok: bool                # the probe cell ran to its end
    probe_error: str | None       # why not, for the student
    staff_scores: dict[str, float]
    notebook_path: Path | None    # the submitted notebook, as submitted
    executed_path: Path | None = None     # the notebook with the outputs of the grader's run
    reference_dir: Path | None = None
    private: dict[str, Any] = field(default_factory=dict)   # from PlanContext
    plan_s: float = 0.0           # seconds spent planning the probe (input generation, references)
    cache_dir: Path | None = None # where reference results are kept per machine (grader/reference_cache.py)

    def probe_json(self, item_id: str) -> dict[str, Any] | None:
        """The probe's answer for an item: plain JSON, size-limited, or None."""
        if self.probe_dir is None:
            return None
        path = self.probe_dir / f"{item_id}.json"
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > 1_000_000:
                return None
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None


class CheckKind(Protocol):
    """What the runner calls on a kind, in this order: ``validate`` when the rubric loads,
    ``prelude`` and ``probe_actions`` before the notebook runs, ``judge`` after."""
    name: str

    def validate(self, item: Item) -> None:
        """Raise RubricError naming ``items[i].<key>`` when the item cannot be checked."""

    def prelude(self, item: Item) -> str | None:
        """Code run hidden in the kernel before the first student cell (instrumentation), or None."""

    def probe_actions(self, item: Item, plan: PlanContext | None = None) -> list[dict[str, Any]]:
        """Plain-JSON actions for the in-kernel probe (empty when the kind needs no probe);
        inputs go to files in ``plan.in_dir`` and what judging needs to ``plan.private``."""

    def judge(self, item: Item, ctx: JudgeContext) -> ItemResult:
        """Decide the item from trusted data only."""


def result(item: Item, subs: list[SubResult], status: str | None = None, message: str = "",
           review: bool = False, data: dict[str, Any] | None = None) -> ItemResult:
    points = round(sum(s.points for s in subs), 6)
    possible = item.points
    if status is None:
        status = "passed" if points >= possible - 1e-9 else ("partial" if points > 0 else "failed")
    if not message:
        message = "; ".join(dict.fromkeys(s.message for s in subs if s.message))   # each once, in order
    return ItemResult(item.id, item.part, item.title, item.kind, points, possible, item.extra,
                      status, message, subs, review, data or {})


def not_run(item: Item, why: str) -> ItemResult:
    return ItemResult(item.id, item.part, item.title, item.kind, 0.0, item.points, item.extra,
                      "not_run", why)
