"""HTML reports: a self-contained page per student beside its Markdown feedback, and a staff
summary of the whole batch. Both come from records only.

A student's page is the Markdown feedback rendered by markdown-it with raw HTML off, so what
a student wrote (already escaped for Markdown by grader.text_safety) stays text here too; its
figures are embedded. Every page carries a Content-Security-Policy that allows no script,
no request and no frame: nothing on it can act or call out, whatever slipped through.
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from markdown_it import MarkdownIt

from grader.overrides import overridden
from grader.record import Record, write_atomic
from grader.rubric import Rubric

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap;font-size:13px}
code{background:#f2f2f2;padding:0 .2em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
img{max-width:100%}.muted{color:#777}.num{text-align:right}
"""

_md = MarkdownIt("commonmark", {"html": False, "linkify": False})


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def feedback_html(markdown: str, title: str, folder: Path, images: dict[str, str]) -> str:
    """The Markdown feedback as one page; ``images``' files (beside it in ``folder``) embedded."""
    text = markdown
    for name in images.values():
        path = folder / name
        if path.is_file():
            text = text.replace(f"]({quote(name, safe='')})", f"]({_data_uri(path.read_bytes())})")
    return page(title, _md.render(text))


# ----------------------------------------------------------------- staff summary

def _histogram(values: list[float], top: float, title: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4.2, 2.4), dpi=80)
    ax = fig.add_subplot()
    top = max([top, *values]) or 1.0          # extra credit can lift a score past the points possible
    bins = min(20, max(5, int(top)))
    ax.hist(values, bins=bins, range=(0, top), color="#4a7ab5", edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("points")
    ax.set_ylabel("students")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return f'<img alt="{html.escape(title)}" src="{_data_uri(buf.getvalue())}">'


def _table(head: list[str], rows: list[list[str]], empty: str = "none") -> str:
    if not rows:
        return f'<p class="muted">{html.escape(empty)}</p>'
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _first_line(text: str) -> str:
    line = (text or "").strip().split("\n", 1)[0]
    return line[:160] + ("..." if len(line) > 160 else "")


def summary_html(rubric: Rubric, records: list[Record]) -> str:
    e = html.escape
    graded = [r for r in records if r.status == "graded"]
    counts = Counter(r.status for r in records)
    out = [f"<h1>{e(rubric.title)}: the batch</h1>",
           f"<p>{len(records)} submission(s): " + ", ".join(f"{n} {e(s)}" for s, n in sorted(counts.items())) + "</p>"]
    if graded:
        finals = sorted(r.score.get("final", 0.0) for r in graded)
        mid = finals[len(finals) // 2]
        out.append(f"<p>Final scores of graded submissions: median {mid:g}, lowest {finals[0]:g}, "
                   f"highest {finals[-1]:g} of {rubric.total_points:g}.</p>")
    out.append("<h2>Scores by part</h2><div>")
    out.append(_histogram([r.score.get("final", 0.0) for r in graded], rubric.total_points, "final score"))
    for p in rubric.parts:
        vals = [r.score.get("parts", {}).get(p.id, {}).get("points", 0.0) for r in graded]
        out.append(_histogram(vals, p.points, f"{p.file} ({p.points:g} points)"))
    out.append("</div>")

    lost: dict[str, list[str]] = {}
    for r in graded:
        for it in r.items:
            if it["status"] in ("failed", "partial", "not_run") and it["points"] < it["possible"] - 1e-9:
                lost.setdefault(it["id"], []).append(_first_line(it.get("message", "")))
    titles = {i.id: i.title for i in rubric.items}
    rows = []
    for item_id, msgs in sorted(lost.items(), key=lambda kv: -len(kv[1]))[:25]:
        common, n = Counter(msgs).most_common(1)[0]
        rows.append([item_id, titles.get(item_id, ""), len(msgs), f"{n}x: {common}"])
    out += ["<h2>Items most often lost</h2>",
            _table(["item", "title", "students", "most common finding"], rows)]

    review = []
    for r in records:
        why = [f"{k}: {v}" for k, v in sorted(r.flags.items())]
        why += [f"{it['id']}: {_first_line(it.get('message', ''))}" for it in r.items if it.get("review")]
        if r.status == "error":
            why.append("the grader failed: " + "; ".join(w for w in r.warnings[:1]))
        if why:
            review.append([r.net_id, r.zip_name, " | ".join(why)])
    out += ["<h2>Flagged for review</h2>", _table(["net id", "zip", "why"], review)]

    late = [[r.net_id, (r.deadline or {}).get("message", "")] for r in records
            if r.status == "late_rejected" or any(p["kind"] == "late" for p in r.penalties)]
    out += ["<h2>Late</h2>", _table(["net id", "when"], late)]
    misnamed = [[r.net_id, r.zip_name, "; ".join(p["reason"] for p in r.penalties if p["kind"] == "naming")]
                for r in records if any(p["kind"] == "naming" for p in r.penalties)]
    out += ["<h2>Misnamed files</h2>", _table(["net id", "zip", "what"], misnamed)]
    over = [[r.net_id, i] for r in records for i in overridden(r.items)]
    out += ["<h2>Staff overrides</h2>", _table(["net id", "item"], over)]
    pdfs = [[r.net_id, name, d.get("pages", ""), "yes" if d.get("text_chars") else "no (a scan?)"]
            for r in records for name, d in ((r.intake or {}).get("documents") or {}).items()]
    out += ["<h2>PDFs for staff</h2>", _table(["net id", "file", "pages", "text"], pdfs)]
    return page(f"{rubric.title}: summary", "\n".join(out))


def write_summary(rubric: Rubric, records: list[Record], out: Path) -> Path:
    path = out / "summary.html"
    write_atomic(path, summary_html(rubric, records))
    return path
