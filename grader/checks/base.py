"""What every check kind shares: its result types and the context it judges in."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from grader.rubric import Item


@dataclass
class SubResult:
    name: str
    points: float
    possible: float
    message: str


@dataclass
class ItemResult:
    id: str
    part: str
    title: str
    kind: str
    points: float
    possible: float
    extra: bool
    status: str                   # "passed" | "partial" | "failed" | "pending" | "not_run"
    message: str
    subchecks: list[SubResult] = field(default_factory=list)
    review: bool = False          # staff should look at this item


@dataclass
class JudgeContext:
    """What the trusted side knows when it judges one item of one student."""
    net_id: str
    probe_dir: Path | None        # files the probe wrote (read as plain data only)
    probe_ok: bool                # the probe cell ran to its end
    probe_error: str | None       # why not, for the student
    staff_scores: dict[str, float]
    notebook_path: Path | None    # the submitted notebook, as submitted

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
    name: str
    needs_probe: bool

    def probe_actions(self, item: Item) -> list[dict[str, Any]]:
        """Plain-JSON actions for the in-kernel probe (empty when the kind needs no probe)."""

    def judge(self, item: Item, ctx: JudgeContext) -> ItemResult:
        """Decide the item from trusted data only."""


def result(item: Item, subs: list[SubResult], status: str | None = None, message: str = "",
           review: bool = False) -> ItemResult:
    points = round(sum(s.points for s in subs), 6)
    possible = item.points
    if status is None:
        status = "passed" if points >= possible - 1e-9 else ("partial" if points > 0 else "failed")
    if not message:
        message = "; ".join(s.message for s in subs if s.message)
    return ItemResult(item.id, item.part, item.title, item.kind, points, possible, item.extra,
                      status, message, subs, review)


def not_run(item: Item, why: str) -> ItemResult:
    return ItemResult(item.id, item.part, item.title, item.kind, 0.0, item.points, item.extra,
                      "not_run", why)
