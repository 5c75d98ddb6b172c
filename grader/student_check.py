"""``grader check net_id.zip``: a student's own check before the deadline.

The zip goes through the same runner as at grading time (intake, the sandbox, every notebook
from top to bottom), but judged only on the rubric's public items (``public = true``); the
other items' details stay hidden until staff grade. The answer is a list of what to fix,
in the student's terms, and the exit status says whether there is anything.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from grader import deadline as deadline_stage
from grader.intake_names import netid_from_filename
from grader.record import Record
from grader.rubric import Rubric
from grader.runner import GradeSettings, grade_submission
from grader.text_safety import one_line


@dataclass
class CheckResult:
    record: Record
    fixes: list[str]
    text: str


def public_view(rubric: Rubric) -> Rubric:
    """The rubric with only its public automatic items."""
    return replace(rubric, items=tuple(i for i in rubric.items if i.public and i.kind != "staff"))


def check(zip_path: Path, rubric: Rubric, settings: GradeSettings, now: datetime | None = None) -> CheckResult:
    now = now or datetime.now(timezone.utc)
    net_id, _ = netid_from_filename(Path(zip_path).name, rubric.intake.netid_pattern)
    # Graded as if in time, so every notebook runs whatever the hour; the deadline is told apart.
    on_time = rubric.deadline.due - timedelta(minutes=1)
    settings = replace(settings, times={net_id: on_time}, staff_scores={}, overrides={})
    view = public_view(rubric)
    record = grade_submission(Path(zip_path), view, settings)
    verdict = deadline_stage.judge(now, rubric.deadline, settings.extensions.get(net_id, timedelta(0)))
    fixes, lines = _report(rubric, view, record, verdict)
    return CheckResult(record, fixes, "\n".join(lines))


def _line(text, n: int = 300) -> str:
    return one_line(text, n)


def _report(rubric: Rubric, view: Rubric, r: Record, verdict) -> tuple[list[str], list[str]]:
    fixes: list[str] = []
    out = [f"Checking {_line(r.zip_name, 120)} for {rubric.title}", ""]
    intake = r.intake or {}
    out.append("Files")
    if r.status == "rejected" and not intake.get("files"):
        fixes.append(_line(r.reason))
        out.append(f"  ✘ {_line(r.reason)}")
    for issue in intake.get("naming_issues", []):
        fixes.append(f"rename: {_line(issue)}")
        out.append(f"  ✘ {_line(issue)}")
    for f in intake.get("extra_files", []):
        fixes.append(f"remove {_line(f, 120)} from the zip: only the {len(rubric.parts)} required files belong in it")
        out.append(f"  ✘ extra file: {_line(f, 120)}")
    for m in intake.get("missing", []):
        fixes.append(f"add {_line(m, 120)} to the zip")
        out.append(f"  ✘ {_line(m, 120)} is missing")
    for name, problem in intake.get("problems", {}).items():
        fixes.append(f"{_line(name, 120)}: {_line(problem)}")
        out.append(f"  ✘ {_line(name, 120)}: {_line(problem)}")
    for name, d in intake.get("documents", {}).items():
        text = "text readable" if d.get("text_chars") else "no readable text (a scan?): fine, but typed is easier to grade"
        out.append(f"  ✔ {_line(name, 120)}: a real PDF, {d['pages']} page(s), {text}")
    for name in intake.get("files", {}):
        if name not in intake.get("problems", {}) and name not in intake.get("documents", {}):
            out.append(f"  ✔ {_line(name, 120)}")
    out += ["", f"If you submit now: {_line(verdict.message)}"]
    if verdict.status in ("late", "rejected"):
        fixes.append(f"the deadline: {_line(verdict.message)}")

    if r.notebooks:
        out += ["", "Notebooks, run from top to bottom in the grader's sandbox"]
    for part in rubric.parts:
        run = r.notebooks.get(part.id)
        if run is None:
            continue
        if run["status"] == "completed":
            out.append(f"  ✔ {part.file} ran in {run['seconds']:.0f} s")
            continue
        bad = [c for c in run.get("cells", []) if c["status"] in ("error", "timeout", "kernel_died")]
        if not bad:
            out.append(f"  ✘ {part.file}: {_line(run.get('message'))}")
            fixes.append(f"{part.file}: {_line(run.get('message'))}")
        for c in bad:
            what = f"cell {c['index'] + 1}: {c['status']}"
            if c.get("error_name"):
                what += f": {_line(c['error_name'], 80)}: {_line(c.get('error_value'), 200)}"
            out.append(f"  ✘ {part.file} {what}")
            fixes.append(f"{part.file} must run from top to bottom in a fresh kernel; {what}")

    if view.items:
        out += ["", "Public checks (the rest are graded after the deadline)"]
    for it in r.items:
        full = it["points"] >= it["possible"] - 1e-9
        mark = "✔" if full else "✘"
        out.append(f"  {mark} {_line(it['title'], 120)} ({it['points']:g} / {it['possible']:g})")
        if not full:
            msg = _line(it.get("message", ""), 400)
            out.append(f"      {msg}")
            fixes.append(f"{_line(it['title'], 120)}: {msg}")
    hidden = len([i for i in rubric.items if i.kind != "staff"]) - len(view.items)
    staff = len([i for i in rubric.items if i.kind == "staff"])
    out += ["", f"Not checked here: {hidden} further automatic item(s), and {staff} item(s) staff grade by hand."]
    if r.status == "error":
        fixes.append("the grader itself failed on this zip: tell course staff")
    out += ["", "What to fix before you submit:" if fixes else "Nothing to fix: this zip can be graded as it is."]
    out += [f"  {n}. {f}" for n, f in enumerate(fixes, start=1)]
    return fixes, out
