"""Outputs derived from records only: grades.csv, points_possible.csv, a feedback report per student."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pandas as pd

from grader.html_report import feedback_html, write_summary
from grader.overrides import overridden
from grader.record import Record, safe_key, write_atomic, zip_key
from grader.rubric import Rubric
from grader.text_safety import csv_cell, md_block, md_code, md_inline, md_text, trim_traceback

STATUS_WORDS = {"passed": "passed", "partial": "partly right", "failed": "failed",
                "pending": "pending staff grading", "not_run": "not checked"}
MAX_TRACEBACK_LINES = 12
MAX_TRACEBACK_CHARS = 1500


def columns(rubric: Rubric) -> list[str]:
    cols = ["net_id", "status"]
    for p in rubric.parts:
        cols.append(f"part:{p.id}")
        if p.extra_credit:
            cols.append(f"part:{p.id}:extra")
    cols += [f"item:{i.id}" for i in rubric.items]
    cols += ["raw_total", "penalty:naming_pct", "penalty:late_pct", "penalty:not_executable_pct",
             "penalty_total_pct", "final_score", "staff_pending", "overridden", "review", "reason", "zip_name"]
    return cols


def csv_row(rubric: Rubric, r: Record) -> dict:
    row: dict = {"net_id": r.net_id, "status": r.status, "zip_name": r.zip_name, "reason": r.reason}
    parts = r.score.get("parts", {})
    for p in rubric.parts:
        got = parts.get(p.id, {})
        row[f"part:{p.id}"] = got.get("points", 0.0)
        if p.extra_credit:
            row[f"part:{p.id}:extra"] = got.get("extra", 0.0)
    by_id = {i["id"]: i for i in r.items}
    for item in rubric.items:
        row[f"item:{item.id}"] = by_id.get(item.id, {}).get("points", 0.0)
    pct = {p["kind"]: p["pct"] for p in r.penalties}
    for kind in ("naming", "late", "not_executable"):
        row[f"penalty:{kind}_pct"] = pct.get(kind, 0.0)
    row["raw_total"] = r.score.get("raw", 0.0)
    row["penalty_total_pct"] = r.score.get("penalty_pct", 0.0)
    row["final_score"] = r.score.get("final", 0.0)
    row["staff_pending"] = r.score.get("pending_items", 0)
    row["overridden"] = " ".join(overridden(r.items))     # items whose points staff set
    # what staff should look at: record flags (e.g. duplicate_net_id), then flagged items
    row["review"] = " ".join([*sorted(r.flags), *(i["id"] for i in r.items if i.get("review"))])
    return row


def write_csv(rubric: Rubric, records: list[Record], out: Path) -> Path:
    cols = columns(rubric)
    rows = [csv_row(rubric, r) for r in sorted(records, key=lambda r: (r.net_id, r.zip_name))]
    # Text cells hold student-derived text (net id, zip name, reasons): never a formula.
    frame = pd.DataFrame([{k: csv_cell(v) for k, v in row.items()} for row in rows], columns=cols)
    write_atomic(out / "grades.csv", frame.to_csv(index=False))
    possible: dict = {"net_id": "(points possible)"}
    for p in rubric.parts:
        possible[f"part:{p.id}"] = p.points
        if p.extra_credit:
            possible[f"part:{p.id}:extra"] = p.extra_credit
    for i in rubric.items:
        possible[f"item:{i.id}"] = i.points
    possible["raw_total"] = rubric.total_points + rubric.total_extra
    possible["final_score"] = rubric.total_points
    write_atomic(out / "points_possible.csv",
                 pd.DataFrame([possible], columns=[c for c in cols if c in possible]).to_csv(index=False))
    return out / "grades.csv"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _message(text: str | None, indent: str) -> tuple[str, list[str]]:
    """A check's message for a list item: its first line inline, the lines after it (what
    the student's code raised, a traceback) as a code block under the item."""
    first, _, rest = (text or "").strip().partition("\n")
    return md_text(first), (md_block(rest, indent) if rest.strip() else [])


def feedback_markdown(rubric: Rubric, r: Record, images: dict[str, str] | None = None) -> str:
    """``images``: item id -> file name of a figure written beside the report.

    Everything a submission can influence (messages, tracebacks, names, the net id) goes
    through grader.text_safety: it is shown as text, never read as Markdown or HTML."""
    s = r.score
    lines = [f"# {rubric.title}: feedback for {md_inline(r.net_id)}", ""]
    if r.status == "rejected":
        lines += ["**Your submission could not be graded.**", "", md_text(r.reason), "",
                  f"Score: **0 / {_fmt(rubric.total_points)}**.", ""]
    elif r.status == "late_rejected":
        lines += ["**Your submission was not accepted.**", "", md_text(r.reason), "",
                  f"Score: **0 / {_fmt(rubric.total_points)}**.", ""]
    elif r.status == "error":
        lines += ["**The grader could not finish grading your submission.** Course staff have been told "
                  "and will grade it by hand; you do not need to do anything.", ""]
    else:
        extra = ", extra credit included" if rubric.total_extra else ""
        lines += [f"Score: **{_fmt(s.get('final', 0))} / {_fmt(rubric.total_points)}**"
                  f" (before penalties: {_fmt(s.get('raw', 0))}{extra})."]
        if s.get("pending_items"):
            lines.append(f"{s['pending_items']} item(s) are graded by course staff and not yet included.")
        lines.append("")

    if r.deadline:
        lines += [f"Submission time: {md_text(r.deadline['message'])}.", ""]

    intake = r.intake or {}
    notes = [md_text(n) for n in intake.get("naming_issues", [])]
    notes += [f"extra file in the zip: {md_code(f)}" for f in intake.get("extra_files", [])]
    notes += [f"{md_code(m)} is missing from the zip" for m in intake.get("missing", [])]
    notes += [f"{md_code(k)}: {md_text(v)}" for k, v in intake.get("problems", {}).items()]
    notes += [f"{md_code(k)}: {d['pages']} page(s)" + ("" if d.get("text_chars") else
              ", no text a program can read (a scan or photos?)")
              for k, d in intake.get("documents", {}).items()]
    if intake.get("ignored"):
        shown = ", ".join(md_code(n) for n in intake["ignored"][:5]) + (" ..." if len(intake["ignored"]) > 5 else "")
        notes.append(f"system files ignored, not counted as extra files: {shown}")
    if notes and (r.status != "rejected" or intake.get("files")):
        lines += ["## Files", ""] + [f"- {n}" for n in notes] + [""]

    if r.penalties:
        lines += ["## Penalties", ""]
        for p in r.penalties:
            lines.append(f"- **{p['kind'].replace('_', ' ')}: {_fmt(p['pct'])}%**: {md_text(p['reason'], 600)}")
        lines += [f"- Penalties are percentages of your score, added up and capped at 100%: "
                  f"{_fmt(s.get('penalty_pct', 0))}% in all.", ""]

    if r.status != "graded":
        return "\n".join(lines)
    parts = s.get("parts", {})
    by_part: dict[str, list[dict]] = {}
    for it in r.items:
        by_part.setdefault(it["part"], []).append(it)
    for p in rubric.parts:
        got = parts.get(p.id, {})
        extra = f" + {_fmt(got.get('extra', 0))} / {_fmt(p.extra_credit)} extra credit" if p.extra_credit else ""
        lines += [f"## {p.file}: {_fmt(got.get('points', 0))} / {_fmt(p.points)}{extra}", ""]
        run = r.notebooks.get(p.id)
        if run:
            lines += _run_section(run, rubric.execution.test_failures)
        mine = by_part.get(p.id, [])
        if mine and all(it["status"] == "pending" for it in mine):
            lines += [f"All {len(mine)} items of this part are graded by course staff; not graded yet.", ""]
            continue
        for it in mine:
            mark = {"passed": "✔", "partial": "◐", "pending": "…"}.get(it["status"], "✘")
            lost = [sub for sub in it.get("subchecks", [])
                    if sub["points"] < sub["possible"] - 1e-9 and sub["message"]]
            # With several sub-checks the details go under each one, not repeated on the item.
            staff_set = bool((it.get("data") or {}).get("override"))     # always say so, even at full marks
            show = it["message"] and (it["status"] not in ("passed", "pending") or staff_set) and len(lost) < 2
            # A passed item says nothing more, except a note on how its work was read.
            notes = [md_text(m) for m in (it["message"] or "").split("; ") if m.startswith("note: ")] \
                if it["status"] == "passed" else []
            message, detail = _message(it["message"], "  ") if show else ("", [])
            lines.append(f"- {mark} **{it['title']}** ({_fmt(it['points'])} / {_fmt(it['possible'])}"
                         f"{', extra credit' if it['extra'] else ''}): {STATUS_WORDS.get(it['status'], it['status'])}"
                         + (f": {message}" if show else f" ({'; '.join(notes)})" if notes else ""))
            lines += detail
            for sub in lost if len(lost) >= 2 else []:
                message, detail = _message(sub["message"], "      ")
                lines.append(f"    - {md_text(sub['name'])} ({_fmt(sub['points'])} / {_fmt(sub['possible'])}): "
                             f"{message}")
                lines += detail
            if (it.get("data") or {}).get("found"):
                lines.append(f"    - graded object: {md_text(it['data']['found'])}")
            if it.get("review"):
                lines.append("    - flagged for a staff review")
            if images and it["id"] in images:
                lines.append(f"    - ![{md_inline(it['id'])}]({quote(images[it['id']], safe='')})")
        lines.append("")
    if r.warnings and r.status != "error":
        lines += ["## Notes from the grader", ""] + [f"- {md_text(w)}" for w in r.warnings if not w.startswith("Traceback")] + [""]
    return "\n".join(lines)


def _run_section(run: dict, test_failures: tuple[str, ...] = ()) -> list[str]:
    out = []
    status = run["status"]
    if status == "completed":
        out.append(f"Your notebook ran from top to bottom in the grader ({_fmt(round(run['seconds'], 1))} s).")
    else:
        if status == "errors":
            out.append("**Some cells raised errors**; the cells after them still ran:")
        else:
            out.append(f"**Your notebook did not run cleanly from top to bottom**: {md_text(run['message'], 300)}")
    notes = run.get("notes", [])
    for n in notes:
        if n.get("cell") is None:
            out.append(f"- {md_text(n['message'])}")
    for n in run.get("neutralized", []):
        out.append(f"- Colab-only line neutralized in cell {n['cell'] + 1}: {md_code(n['line'])} ({md_text(n['why'])})")
    for n in notes:
        if n.get("kind") == "colab_call":
            out.append(f"- Colab call in cell {n['cell'] + 1}: {md_text(n['message'])}")
    by_cell: dict[int, list[dict]] = {}
    for n in notes:
        if n.get("cell") is not None and n.get("kind") not in ("colab_call",):
            by_cell.setdefault(n["cell"], []).append(n)
    for c in run.get("cells", []):
        if c["status"] in ("error", "timeout", "kernel_died"):
            head = f"- cell {c['index'] + 1} of the notebook: {c['status']}"
            if c.get("error_name"):
                head += f": {md_inline(c['error_name'], 200)}: {md_inline(c.get('error_value'), 200)}".rstrip()
            mine = by_cell.get(c["index"], [])
            if c.get("self_check") and c.get("error_name") in test_failures and not any(n.get("excused") for n in mine):
                head += (" (a check inside your notebook failed: this costs no execution penalty; "
                         "the items below score the answer)")
            out.append(head)
            for n in mine:
                out.append(f"    - {md_text(n['message'])}")
            tb = trim_traceback(c.get("traceback"), MAX_TRACEBACK_LINES, MAX_TRACEBACK_CHARS) or ""
            if tb:
                out += ["", *md_block(tb), ""]
    out.append("")
    return out


def report_name(r: Record, shared: bool) -> str:
    """``<net_id>.md``; when several zips resolve to the net_id (``shared``), each report is
    ``<net_id>+<zip key>.md`` instead (record.zip_key: one-to-one with zip names), so none
    replaces another and none is taken for the student's only report. Plain names hold no
    ``+``, so the two forms never meet."""
    net_id = safe_key(r.net_id)
    if shared or net_id != r.net_id:
        return f"{net_id}+{zip_key(r.zip_name)}.md"
    return f"{net_id}.md"


def write_reports(rubric: Rubric, records: list[Record], out: Path) -> None:
    count: dict[str, int] = {}
    for r in records:
        count[r.net_id] = count.get(r.net_id, 0) + 1
    for r in sorted(records, key=lambda r: (r.net_id, r.zip_name)):
        name = report_name(r, count[r.net_id] > 1)
        images = write_figures(r, out / "feedback", Path(name).stem) if r.status == "graded" else {}
        markdown = feedback_markdown(rubric, r, images)
        write_atomic(out / "feedback" / name, markdown)
        write_atomic(out / "feedback" / f"{Path(name).stem}.html",
                     feedback_html(markdown, f"{rubric.title}: {r.net_id}", out / "feedback", images))
    write_summary(rubric, records, out)


def write_figures(r: Record, folder: Path, stem: str) -> dict[str, str]:
    """Figures from plain data in the record (e.g. the measured training curve); a figure that
    cannot be drawn is left out, never stops the report."""
    from grader.figures import training_curve_png
    out = {}
    for it in r.items:
        data = it.get("data") or {}
        if data.get("plot") != "training_curve":
            continue
        name = f"{stem}.{it['part']}.png" if not out else f"{stem}.{it['id']}.png"
        try:
            png = training_curve_png(data)
        except Exception:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)
        out[it["id"]] = name
    return out
