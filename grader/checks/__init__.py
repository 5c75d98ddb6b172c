"""Check kinds: generic code, parameterized by rubric items."""
from __future__ import annotations

from grader.checks.artifact import Artifact
from grader.checks.base import CheckKind, ItemResult, JudgeContext, PlanContext, SubResult
from grader.checks.behaviour import Behaviour
from grader.checks.exists import Exists
from grader.checks.function import Function
from grader.checks.module import Module
from grader.checks.staff import Staff
from grader.checks.static import Static
from grader.checks.structure import Structure
from grader.checks.training import Training

KINDS: dict[str, CheckKind] = {k.name: k for k in (Exists(), Staff(), Function(), Module(), Structure(),
                                                   Behaviour(), Static(), Artifact(), Training())}

__all__ = ["KINDS", "CheckKind", "ItemResult", "JudgeContext", "PlanContext", "SubResult"]
