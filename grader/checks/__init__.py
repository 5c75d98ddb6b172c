"""Check kinds: generic code, parameterized by rubric items."""
from __future__ import annotations

from grader.checks.base import CheckKind, ItemResult, JudgeContext, SubResult
from grader.checks.exists import Exists
from grader.checks.staff import Staff

KINDS: dict[str, CheckKind] = {k.name: k for k in (Exists(), Staff())}

__all__ = ["KINDS", "CheckKind", "ItemResult", "JudgeContext", "SubResult"]
