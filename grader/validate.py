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
from grader.runner import GradeSettings, grade_submission

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


def grade_version(rubric: Rubric, version: str, work: Path, seed: int | None = None,
                  cache_dir: Path | None = None, calibration_s: float | None = None,
                  device: str = "auto") -> Record:
    folder = rubric.solution_dir if version == "solution" else rubric.release_dir
    net_id = VERSIONS[version]
    zip_path = build_zip(rubric, folder, net_id, work)
    settings = GradeSettings(work_dir=work / "work", cache_dir=cache_dir or work / "cache",
                             times={net_id: rubric.deadline.due - timedelta(hours=1)},
                             calibration_s=calibration_s, device=device)
    if seed is not None:
        settings.seed = seed
    return grade_submission(zip_path, rubric, settings)


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
             device: str = "auto") -> tuple[list[Finding], dict[str, Record]]:
    with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
        root = Path(work or tmp)
        records, problems = {}, []
        for version in VERSIONS:
            d = root / version
            d.mkdir(parents=True, exist_ok=True)
            records[version] = rec = grade_version(rubric, version, d, seed, cache_dir, calibration_s, device)
            problems += findings(rubric, version, rec)
        return problems, records


def table(problems: list[Finding]) -> str:
    rows = [("version", "item", "expected", "got", "status", "why")]
    rows += [(p.version, p.item, p.expected, f"{p.points:g}/{p.possible:g}", p.status,
              (p.message or "").replace("\n", " ")[:100]) for p in problems]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)
