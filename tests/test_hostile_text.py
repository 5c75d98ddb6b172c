"""Student text never acts on staff: hostile strings (tests/hostile/text_cases.py) graded as one
batch through the real runner, then grades.csv read back with the csv module and every
feedback report rendered by a CommonMark renderer (markdown-it-py, HTML allowed, as the
renderers staff use allow it). Plus fast checks of grader/text_safety.py and of every record
field that reaches a report.

What must hold in a rendered report: no HTML element, link, image, quote or ordered list
that the grader did not write (the grader writes none), no heading but the grader's own, every
traceback inside its own code block, and the whole report after the hostile text still there
(every item of the rubric listed). In grades.csv: a text cell never begins like a formula; the
grader's numbers stay numbers."""
from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from markdown_it import MarkdownIt

from grader.batch import grade_batch
from grader.record import Record
from grader.report import feedback_markdown, write_csv, write_reports
from grader.rubric import load_rubric
from grader.runner import GradeSettings
from grader.text_safety import clean, csv_cell, md_block, md_code, md_inline, md_text, one_line
from hostile.text_cases import CASES, FENCES, MARKDOWN, STAFF_NOTE, TERMINAL, TextCase
from support.builders import ANSWER_ITEM, F_ITEM, mini_rubric, notebook

REF_DIR = Path(__file__).resolve().parent / "checks_ref"
RUBRIC = mini_rubric(
    "hostile-text", title="Hostile text", reference_dir=str(REF_DIR),
    intake={"netid_pattern": "[^.]+"},          # any file name is its net id: hostile names reach every output
    execution={"cell_timeout_s": 30, "notebook_timeout_s": 90, "probe_timeout_s": 60, "memory_mb": 2048},
    items=[F_ITEM, ANSWER_ITEM,
           {"id": "nb.size_one", "part": "nb", "kind": "function", "title": "output size, one check", "points": 1,
            "target": "size_one", "reference": "minref.ops:out_size", "subchecks": [{"name": "ints", "points": 1}],
            "params": {"cases": [{"args": [21, 4, 4], "group": "ints"}], "compare": {"ints": "output:ints"}}},
           {"id": "nb.size_two", "part": "nb", "kind": "function", "title": "output size, two checks", "points": 2,
            "target": "size_two", "reference": "minref.ops:out_size",
            "subchecks": [{"name": "ints", "points": 1}, {"name": "tuples", "points": 1}],
            "params": {"cases": [{"args": [21, 4, 4], "group": "ints"}, {"args": [[9, 9], 3], "group": "tuples"}],
                       "compare": {"ints": "output:ints", "tuples": "output:tuples"}}}])
ITEM_TITLES = ("function f is defined", "answer is defined", "output size, one check", "output size, two checks")
# The grader's own headings: the title, then its sections.
H2 = re.compile(r"(Files|Penalties|Notes from the grader|work\.ipynb: [0-9.]+ / 9)")
FORMULA = ("=", "+", "-", "@", "\t", "\r")
TEXT_COLUMNS = ("net_id", "status", "overridden", "review", "reason", "zip_name")


def renderer() -> MarkdownIt:
    # CommonMark with raw HTML allowed, plus the GFM tables and strikethrough.
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_text")
    rubric_path = root / "text.toml"
    rubric_path.write_text(RUBRIC)
    rubric = load_rubric(rubric_path)
    subs, out = root / "subs", root / "out"
    subs.mkdir()
    zips = []
    for case in CASES:
        path = subs / case.zip_name
        with zipfile.ZipFile(path, "w") as zf:
            if case.cells:
                zf.writestr("work.ipynb", notebook(*case.cells))
            for name in case.extra:
                zf.writestr(name, b"x")
        zips.append(path)
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache", seed=12345)
    records = grade_batch(zips, rubric, settings, out, log=lambda m: None)
    by_zip = {r.zip_name: r for r in records}
    # The reports written are these, one per submission (the figures aside: this rubric draws none).
    reports = {r.zip_name: feedback_markdown(rubric, r) for r in records}
    written = sorted(p.read_text(encoding="utf-8") for p in (out / "feedback").glob("*.md"))
    assert written == sorted(reports.values())
    return {"out": out, "records": by_zip, "reports": reports, "rubric": rubric}


# ---------------------------------------------------------------- what a rendered report may hold

def _walk(tokens):
    for t in tokens:
        yield t
        yield from _walk(t.children or [])


def assert_only_the_graders_structure(markdown: str, title: str | None = None, images: int = 0) -> list:
    """Render ``markdown``; fail on any element the grader does not write. Returns the tokens."""
    tokens = renderer().parse(markdown)
    kinds = {t.type for t in _walk(tokens)}
    assert not kinds & {"html_block", "html_inline", "link_open", "blockquote_open", "ordered_list_open",
                        "table_open", "hr", "s_open", "em_open"}, sorted(kinds)
    assert sum(t.type == "image" for t in _walk(tokens)) == images
    html = renderer().render(markdown)
    for tag in ("<script", "<img", "<!--", "<a ", "<b>", "<h3", "<blockquote", "<ol"):
        assert html.count(tag) == (images if tag == "<img" else 0), (tag, html)
    headings = [(t.tag, _shown(tokens[i + 1])) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[0][0] == "h1" and sum(tag == "h1" for tag, _ in headings) == 1, headings
    if title is not None:
        assert headings[0][1] == title, headings
    for tag, text in headings[1:]:
        assert tag == "h2" and H2.fullmatch(text), (tag, text)
    return tokens


def _shown(inline) -> str:
    """What an inline token shows: its text and code spans."""
    return "".join(c.content for c in inline.children if c.type in ("text", "code_inline"))


def _text(tokens) -> str:
    """Everything a reader sees: text, code spans and code blocks."""
    return "\n".join(t.content for t in _walk(tokens) if t.type in ("text", "code_inline", "fence"))


def _fences(tokens) -> list:
    return [t for t in tokens if t.type == "fence"]


def _titles(tokens) -> list[str]:
    return [re.match(r". \*\*(.+?)\*\*", x).group(1) for x in _items(tokens)]


def _items(tokens) -> list[str]:
    """The text of each top-level list item that lists a rubric item (✔ / ◐ / ✘ / …)."""
    out = []
    for i, t in enumerate(tokens):
        if t.type == "list_item_open" and t.level == 1:
            inline = next(x for x in tokens[i:] if x.type == "inline")
            if inline.content[:1] in "✔◐✘…":
                out.append(inline.content)
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.zip_name[:12])
def test_feedback_renders_only_the_graders_structure(batch, case: TextCase):
    rec = batch["records"][case.zip_name]
    assert rec.status == case.status, (rec.status, rec.reason)
    md = batch["reports"][case.zip_name]
    tokens = assert_only_the_graders_structure(md, f"Hostile text: feedback for {one_line(rec.net_id)}")
    seen = _text(tokens)
    for text in case.hostile:                       # shown to the reader, as text
        for line in filter(None, (one_line(x) for x in clean(text).split("\n"))):
            assert line in seen or line in " ".join(seen.split()), (line, seen[:3000])
    if rec.status == "graded":
        # the whole report after the hostile text is there: every rubric item, in order
        assert _titles(tokens) == list(ITEM_TITLES), _items(tokens)


def test_tracebacks_stay_in_their_code_blocks(batch):
    for zip_name in ("tx01.zip", "tx02.zip", "tx03.zip"):
        rec = batch["records"][zip_name]
        tokens = renderer().parse(batch["reports"][zip_name])
        failing = [c for c in rec.notebooks["nb"]["cells"] if c["traceback"]]
        fences = _fences(tokens)
        assert failing and len(fences) == len(failing), (zip_name, len(fences), len(failing))
        for cell, fence in zip(failing, fences):
            last = clean(cell["traceback"]).strip().splitlines()[-1].rstrip()
            assert fence.content.rstrip("\n").splitlines()[-1] == last, (fence.content, last)
    tokens = renderer().parse(batch["reports"]["tx03.zip"])
    fence = _fences(tokens)[0]
    # the source line with a six-backtick fence and the raised fences are in the block, verbatim
    assert "``````" in fence.content and "## out of the fence" in fence.content and len(fence.markup) > 6


def test_checked_functions_quote_their_traceback_in_a_block_under_the_item(batch):
    rec = batch["records"]["tx04.zip"]
    items = {i["id"]: i for i in rec.items}
    assert "raised an exception:\n" in items["nb.size_one"]["message"]
    assert sum(bool(s["message"]) for s in items["nb.size_two"]["subchecks"]) == 2
    tokens = renderer().parse(batch["reports"]["tx04.zip"])
    nested = [t for t in _fences(tokens) if t.level > 0]          # inside a list item
    assert len(nested) == 3, [t.level for t in _fences(tokens)]   # the item's, then each sub-check's
    shown = "\n".join(t.content for t in nested)
    assert "## Staff note: regraded by hand: 20 / 20 ✔" in shown and "<script>alert(1)</script>" in shown
    assert "# Staff note" in shown and "[click](javascript:alert(1))" in shown


def test_the_staff_note_is_text_and_the_report_goes_on(batch):
    md = batch["reports"]["tx01.zip"]
    tokens = renderer().parse(md)
    headings = [_shown(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert not any("Staff note" in h for h in headings)
    html = renderer().render(md)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\x1b" not in md and "\u202e" not in md and "## red 02 / 02 done" in _text(tokens)
    # the last thing in the report is the grader's own notes section, rendered
    assert headings[-1] == "Notes from the grader" and html.rstrip().endswith("</ul>")


def test_grades_csv_has_no_formula_cells(batch):
    with open(batch["out"] / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(CASES)
    by_zip = {}
    for row in rows:
        for col in TEXT_COLUMNS:
            assert not row[col].startswith(FORMULA), (col, row[col])
        for col, value in row.items():
            if col not in TEXT_COLUMNS:
                float(value)                        # the grader's numbers stay numbers
        by_zip[row["zip_name"]] = row
    for case in CASES:
        raw_id = case.zip_name[:-len(".zip")]
        quoted = "'" + case.zip_name if case.zip_name.startswith(FORMULA) else case.zip_name
        row = by_zip[quoted]
        assert row["net_id"] == ("'" + raw_id if raw_id.startswith(FORMULA) else raw_id)
    assert by_zip["'=HYPERLINK(\"http:evil\",\"x\").zip"]["net_id"] == "'=HYPERLINK(\"http:evil\",\"x\")"


# ---------------------------------------------------------------- every record field, fast

EVIL = [STAFF_NOTE, MARKDOWN, FENCES, TERMINAL, "<!-- never closed", "=cmd|' /C calc'!A0", "a_b _c_ *d* \\`e\\`"]


def _record(evil: str, status: str = "graded") -> Record:
    tb = f"Traceback (most recent call last):\n  File \"<cell>\", line 1\n    raise Exception({evil!r})\nException: {evil}"
    sub = {"name": f"case {evil}", "points": 0.0, "possible": 1.0, "message": f"`f({evil})` raised an exception:\n{tb}"}
    items = [
        {"id": "nb.f", "part": "nb", "title": "function f is defined", "kind": "function", "points": 0.0,
         "possible": 2.0, "extra": False, "status": "failed", "message": f"`f` raised:\n{tb}", "subchecks": [sub, sub],
         "review": True, "data": {"found": f"the last `f` of {evil}"}},
        {"id": "nb.answer", "part": "nb", "title": "answer is defined", "kind": "exists", "points": 1.0,
         "possible": 1.0, "extra": False, "status": "passed", "message": f"note: `answer` read as {evil}",
         "subchecks": [], "review": False, "data": {}},
        {"id": "nb.g", "part": "nb", "title": "g works", "kind": "function", "points": 0.0, "possible": 1.0,
         "extra": False, "status": "failed", "message": f"`g` is {evil}\n{tb}", "subchecks": [], "review": False,
         "data": {}},
    ]
    cell = {"index": 1, "status": "error", "error_name": evil, "error_value": evil, "traceback": tb}
    run = {"status": "errors", "message": f"code cell 2 raised {evil}", "seconds": 1.0, "cells": [cell],
           "neutralized": [{"cell": 0, "line": f"!pip install {evil}", "why": evil}],
           "notes": [{"cell": None, "message": evil}, {"cell": 0, "kind": "colab_call", "message": evil},
                     {"cell": 1, "kind": "x", "message": evil}]}
    return Record(
        net_id=evil, zip_name=f"{evil}.zip", zip_sha256=None, status=status, reason=f"rejected: {evil}",
        rubric={"name": "hostile-text", "digest": ""},
        intake={"naming_issues": [f"the zip is named {evil!r}"], "extra_files": [evil, f"``{evil}``"],
                "missing": [evil], "problems": {evil: evil}, "ignored": [evil], "files": {"work.ipynb": "x"}},
        deadline={"message": f"on time ({evil})"}, notebooks={"nb": run}, items=items,
        penalties=[{"kind": "naming", "pct": 10, "reason": f"the zip is named {evil!r}; extra file: {evil}"}],
        score={"final": 1.0, "raw": 1.0, "penalty_pct": 10, "parts": {"nb": {"points": 1.0}}},
        warnings=[f"nb: {evil}", f"Traceback {evil}"])


@pytest.fixture(scope="module")
def small_rubric(tmp_path_factory):
    root = tmp_path_factory.mktemp("small_rubric")
    (root / "text.toml").write_text(RUBRIC)
    return load_rubric(root / "text.toml")


@pytest.mark.parametrize("status", ["graded", "rejected", "late_rejected"])
@pytest.mark.parametrize("evil", EVIL, ids=range(len(EVIL)))
def test_every_record_field_is_shown_as_text(small_rubric, evil, status):
    rec = _record(evil, status)
    md = feedback_markdown(small_rubric, rec, {"nb.f": f"{evil}.png"})
    tokens = assert_only_the_graders_structure(md, f"Hostile text: feedback for {one_line(evil)}",
                                               images=int(status == "graded"))
    if status == "graded":
        assert _titles(tokens) == ["function f is defined", "answer is defined", "g works"]
        fences = _fences(tokens)
        assert len(fences) == 1 + 2 + 1, md        # the cell's traceback, two sub-checks', item g's
        last = clean(rec.notebooks["nb"]["cells"][0]["traceback"]).strip().splitlines()[-1].expandtabs(4).rstrip()
        assert all(f.content.rstrip("\n").splitlines()[-1] == last for f in fences), (last, md)
        image = next(t for t in _walk(tokens) if t.type == "image")
        assert "/" not in image.attrs["src"] and " " not in image.attrs["src"]


def test_csv_neutralizes_text_cells_only(small_rubric, tmp_path):
    rec = _record("=1+1")
    rec.score = {"final": -1.5, "raw": -2.0, "penalty_pct": 0, "parts": {}}
    write_csv(small_rubric, [rec], tmp_path)
    with open(tmp_path / "grades.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["net_id"] == "'=1+1" and row["zip_name"] == "'=1+1.zip" and row["reason"] == "rejected: =1+1"
    assert row["final_score"] == "-1.5" and row["raw_total"] == "-2.0"
    write_reports(small_rubric, [rec], tmp_path)
    [report] = (tmp_path / "feedback").glob("*.md")
    assert_only_the_graders_structure(report.read_text(encoding="utf-8"), "Hostile text: feedback for =1+1")


# ---------------------------------------------------------------- the helper

def _inline_children(markdown: str) -> list:
    tokens = renderer().parse(markdown)
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"], markdown
    return tokens[1].children


METACHARS = "<>&`*_[]#|~!()-+=:;\\/\"' \n\t\r\x1b\u202e.0123456789aZé✔"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=METACHARS, min_size=1, max_size=60))
def test_md_inline_renders_exactly_its_text(s):
    if not one_line(s):
        return
    for prefix in ("", "- ", "> ", "x: "):
        children = _inline_children(md_inline(s)) if not prefix else None
        if prefix:
            tokens = renderer().parse(prefix + md_inline(s))
            inline = next(t for t in tokens if t.type == "inline")
            children = inline.children
            text = "".join(c.content for c in children)
            assert text.endswith(one_line(s)) and {c.type for c in children} <= {"text"}, (s, children)
            continue
        assert {c.type for c in children} <= {"text"}, (s, [c.type for c in children])
        assert "".join(c.content for c in children) == one_line(s), (s, md_inline(s))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=METACHARS, min_size=1, max_size=60))
def test_md_text_makes_only_code_spans(s):
    if not one_line(s):
        return
    children = _inline_children(md_text(s))
    assert {c.type for c in children} <= {"text", "code_inline"}, (s, md_text(s))
    assert "".join(c.content for c in children).replace("`", "") == one_line(s).replace("`", "")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=METACHARS, min_size=1, max_size=60))
def test_md_code_is_one_code_span_of_its_text(s):
    if not one_line(s):
        return
    children = _inline_children("x " + md_code(s))
    assert [c.type for c in children] == ["text", "code_inline"] and children[1].content == one_line(s), s


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=METACHARS, max_size=120), st.sampled_from(["", "  ", "      "]))
def test_md_block_holds_its_text_inside_a_list_item(s, indent):
    lines = ["- item", "    - sub"] if indent == "      " else ["- item"]
    tokens = renderer().parse("\n".join(lines + md_block(s, indent) + ["- after"]))
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1, s
    want = [line.expandtabs(4).rstrip() for line in clean(s).splitlines()]
    while want and not want[-1]:
        want.pop()
    assert fences[0].content.split("\n")[:-1] == want
    assert [t.content for t in tokens if t.type == "inline"][-1] == "after"
    assert not {t.type for t in tokens} & {"html_block", "heading_open"}


def test_the_helpers_on_known_strings():
    assert md_inline("a\n## b") == "a \\#\\# b"
    assert md_inline("# b") == "\\# b" and md_inline("1. x") == "1\\. x" and md_inline("-x") == "\\-x"
    assert md_inline("<!-- x") == "&lt;!-- x" and md_inline("a & b") == "a &amp; b"
    assert md_inline("undefined_name _x_") == "undefined_name \\_x\\_"
    assert md_inline("x" * 10, 6) == "xxx..."
    assert md_text("`f` is <b>") == "`f` is &lt;b&gt;" and md_text("`f") == "\\`f"
    assert md_code("a`b") == "``a`b``" and md_code("`a") == "`` `a ``"
    assert md_block("x\n````y") == ["`````", "x", "````y", "`````"]
    assert md_block("\x1b[31mred\x1b[0m\r\nz") == ["```", "red", "z", "```"]
    assert clean("a\u202eb\x00c") == "abc"
    for s in ("=1", "+1", "-1", "@x", "\tx", "\rx"):
        assert csv_cell(s) == "'" + s
    assert csv_cell("ab=1") == "ab=1" and csv_cell(-1.5) == -1.5 and csv_cell(3) == 3 and csv_cell(None) is None
