"""Grade one small notebook against a mini rubric through the real runner and sandbox."""
from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path


from grader.record import Record
from grader.rubric import load_rubric
from grader.runner import GradeSettings, grade_submission
from support.builders import notebook  # noqa: F401 (the checks tests import it from here)

REF_DIR = Path(__file__).resolve().parent / "checks_ref"

HEAD = """
[assignment]
name = "checks"
reference_dir = "{ref}"

[deadline]
due = "2099-01-01T00:00:00"
timezone = "UTC"

[penalties]
naming_pct = 10

[execution]
limits = "fixed"
interrupt_grace_s = 3
cell_timeout_s = 60
notebook_timeout_s = 240
probe_timeout_s = 120
memory_mb = 2048

[[parts]]
id = "nb"
file = "work.ipynb"
points = {points}
"""


def write_rubric(root: Path, items: str) -> Path:
    points = sum(i["points"] for i in tomllib.loads(items)["items"])
    path = root / "checks.toml"
    path.write_text(HEAD.format(ref=REF_DIR, points=points) + items)
    return path


def grade(root: Path, items: str, nb: bytes, seed: int = 12345) -> tuple[Record, dict[str, dict]]:
    root.mkdir(parents=True, exist_ok=True)
    rubric = load_rubric(write_rubric(root, items))
    zpath = root / "ab123.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("work.ipynb", nb)
    settings = GradeSettings(work_dir=root / "work", cache_dir=root / "cache", seed=seed)
    record = grade_submission(zpath, rubric, settings)
    assert record.status == "graded", (record.status, record.reason, record.warnings)
    return record, {i["id"]: i for i in record.items}


def subs(item: dict) -> dict[str, float]:
    return {s["name"]: s["points"] for s in item["subchecks"]}
