"""Deadline: when a submission came in, and what that costs.

``judge`` is a pure function; the CSV readers turn staff files into its inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from grader.rubric import Deadline


@dataclass(frozen=True)
class DeadlineResult:
    status: str                 # "on_time" | "late" | "rejected" | "unknown"
    penalty_pct: float
    submitted_at: str | None    # ISO 8601 with offset
    due: str                    # effective due (after extension), ISO 8601 with offset
    lateness_hours: float
    source: str                 # "times_csv" | "zip_mtime" | "none"
    message: str
    warning: str | None = None


def judge(submitted_at: datetime | None, deadline: Deadline, extension: timedelta = timedelta(0),
          source: str = "times_csv") -> DeadlineResult:
    """On time up to and including the due minute; late (penalty) up to and including
    due + late window; rejected after that."""
    due = deadline.due + extension
    tz = deadline.due.tzinfo
    if submitted_at is None:
        return DeadlineResult("unknown", 0.0, None, due.isoformat(), 0.0, "none",
                              "no submission time is known; graded as on time",
                              warning="no submission time found for this student: staff should check")
    if submitted_at.tzinfo is None:
        raise ValueError("submitted_at must carry a time zone offset")
    local = submitted_at.astimezone(tz)
    late = local - due
    hours = max(0.0, late.total_seconds() / 3600)
    ext = f" (with an extension of {extension.total_seconds() / 3600:g} h)" if extension else ""
    when = local.strftime("%Y-%m-%d %H:%M %Z")
    due_s = due.strftime("%Y-%m-%d %H:%M %Z")
    if late <= timedelta(0):
        return DeadlineResult("on_time", 0.0, local.isoformat(), due.isoformat(), 0.0, source,
                              f"submitted {when}, on time (due {due_s}{ext})")
    if late <= timedelta(hours=deadline.late_window_hours):
        return DeadlineResult("late", deadline.late_penalty_pct, local.isoformat(), due.isoformat(), hours, source,
                              f"submitted {when}, {_hm(late)} after the due time {due_s}{ext}: "
                              f"{deadline.late_penalty_pct:g}% late penalty")
    return DeadlineResult("rejected", 100.0, local.isoformat(), due.isoformat(), hours, source,
                          f"submitted {when}, {_hm(late)} after the due time {due_s}{ext}: more than "
                          f"{deadline.late_window_hours:g} h late, so it is not accepted (score 0)")


def _hm(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def zip_mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
