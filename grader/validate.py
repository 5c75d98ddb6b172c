"""``grader validate``: the assignment's own notebooks against its rubric.

The solution notebooks must score full marks on every automatic item; the
release notebooks (TODOs empty) must score 0 on every item whose ``release`` is
"zero" and full marks where it is "full". Both are graded as submissions, through
the same runner as a student's zip, so a rubric or reference that disagrees with
the notebooks fails here, before a class is graded with it.
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from grader.record import Record
from grader.rubric import Rubric
from grader.engines import Task, run_here, run_pool
from grader.kernel_slots import default_jobs
from grader.runner import GradeSettings, prepare_datasets

# Net ids in the rubric's pattern, so intake adds no naming issue of its own.
VERSIONS = {"solution": "sol0001", "release": "rel0001"}


@dataclass
class Finding:
    version: str
    item: str
    expected: str
    points: float
    possible: float
    status: str
    message: str


def placeholder_pdf(text: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig = plt.figure(figsize=(4, 2))
    fig.text(0.05, 0.5, text)
    fig.savefig(buf, format="pdf", metadata={"CreationDate": None})
    plt.close(fig)
    return buf.getvalue()


def build_zip(rubric: Rubric, folder: Path, net_id: str, dest: Path) -> Path:
    path = dest / f"{net_id}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for part in rubric.parts:
            src = folder / part.file
            if part.kind == "pdf":
                zf.writestr(part.file, placeholder_pdf(f"{rubric.name} {part.id}"))
            elif src.is_file():
                zf.writestr(part.file, src.read_bytes())
            else:
                raise FileNotFoundError(f"{src} does not exist: the rubric's part {part.id!r} needs it")
    return path


def version_task(rubric: Rubric, version: str, work: Path, index: int) -> Task:
    folder = rubric.solution_dir if version == "solution" else rubric.release_dir
    return Task(index, build_zip(rubric, folder, VERSIONS[version], work), None)


def version_settings(rubric: Rubric, work: Path, seed: int | None, cache_dir: Path | None,
                     calibration_s: float | None, device: str) -> GradeSettings:
    """Both versions handed in an hour before the deadline."""
    settings = GradeSettings(work_dir=work / "work", cache_dir=cache_dir or work / "cache",
                             times={n: rubric.deadline.due - timedelta(hours=1) for n in VERSIONS.values()},
                             calibration_s=calibration_s, device=device)
    if seed is not None:
        settings.seed = seed
    return settings


def findings(rubric: Rubric, version: str, record: Record) -> list[Finding]:
    """Every automatic item whose score is not what the version must get."""
    by_id = {i["id"]: i for i in record.items}
    out = []
    for item in rubric.items:
        if item.kind == "staff":
            continue
        expected = "full" if version == "solution" else item.release
        if expected == "any":
            continue
        got = by_id.get(item.id, {"points": 0.0, "possible": item.points, "status": "missing", "message": ""})
        ok = got["points"] >= item.points - 1e-9 if expected == "full" else got["points"] <= 1e-9
        if not ok:
            out.append(Finding(version, item.id, expected, got["points"], item.points, got["status"],
                               got.get("message", "")))
    if record.status != "graded":
        out.insert(0, Finding(version, "(submission)", "graded", 0, 0, record.status, record.reason))
    return out


def validate(rubric: Rubric, work: Path | None = None, seed: int | None = None,
             cache_dir: Path | None = None, calibration_s: float | None = None,
             device: str = "auto", jobs: int | None = None) -> tuple[list[Finding], dict[str, Record]]:
    """Grade the solution and the release (side by side where the machine holds two kernels)."""
    if jobs is None:
        e = rubric.execution
        jobs = min(len(VERSIONS), default_jobs(e.threads, e.memory_mb)[0])
    with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
        root = Path(work or tmp)
        root.mkdir(parents=True, exist_ok=True)
        settings = version_settings(rubric, root, seed, cache_dir, calibration_s, device)
        if any(p.mounts for p in rubric.parts):
            prepare_datasets(rubric, settings.cache_dir)       # once, before the workers need them
        tasks = [version_task(rubric, v, root, n) for n, v in enumerate(VERSIONS)]
        finished = run_pool(tasks, rubric, settings, jobs) if jobs > 1 else run_here(tasks, rubric, settings)
        by_index = {task.index: rec for task, rec in finished}
        records = {v: by_index[n] for n, v in enumerate(VERSIONS)}
        problems = [f for v, rec in records.items() for f in findings(rubric, v, rec)]
        return problems, records


def table(problems: list[Finding]) -> str:
    rows = [("version", "item", "expected", "got", "status", "why")]
    rows += [(p.version, p.item, p.expected, f"{p.points:g}/{p.possible:g}", p.status,
              (p.message or "").replace("\n", " ")[:100]) for p in problems]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)
