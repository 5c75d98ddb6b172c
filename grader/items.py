"""The plain types every stage shares: a rubric's items and what judging one gives.

A leaf: it imports nothing from the grader, so the rubric loader, the check kinds, scoring
and the reports can all use these without importing each other (or torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RubricError(ValueError):
    """A rubric file that cannot be used as it is."""


@dataclass(frozen=True)
class Subcheck:
    name: str
    points: float
    what: str = ""                # student-facing description


@dataclass(frozen=True)
class Fingerprint:
    variant: str                  # "package.module:name" of a deliberately wrong reference
    message: str                  # what the student is told when their result matches it
    subchecks: tuple[str, ...] = ()   # where it applies; empty: every sub-check


@dataclass(frozen=True)
class Item:
    id: str
    part: str
    kind: str
    title: str
    points: float
    extra: bool = False
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    reference: str | None = None          # "package.module:name" in the reference package
    subchecks: tuple[Subcheck, ...] = ()  # partial credit; points sum to the item's points
    fingerprints: tuple[Fingerprint, ...] = ()
    where: str = field(default="", compare=False)   # "items[i]", for error messages
    # What the release notebook (TODOs empty) must score on this item, checked by
    # `grader validate`: "zero" (the TODO is the whole item), "full" (the item checks
    # given code), "any" (not checked).
    release: str = "zero"
    # Shown, with its details, by a student's `grader check` before the deadline; other
    # automatic items run only when staff grade.
    public: bool = False


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
    data: dict[str, Any] = field(default_factory=dict)   # plain JSON for the report (e.g. a curve to plot)
