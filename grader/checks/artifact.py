"""Check kind ``artifact``: what the notebook produced, as presence checks.

Plots are counted in the outputs of the grader's own run (the executed notebook, not the
outputs a student saved); free-text answers are read from the notebook as submitted.
Neither judges content: the messages say so, and staff read the answers.

Params: rules = array of tables, each with one of
  images = n       at least n image outputs (``mime``, default any image/*) in the code
                   cells of ``section`` (a heading regex), or of the cells after the markdown
                   cell matching ``after`` up to the next heading
  text = "regex"   the text the code cells of ``section`` (or ``after``) printed or displayed in
                   the grader's run matches (e.g. an accuracy printed with a number)
  answer = "placeholder regex"   the markdown cells after the cell matching ``after`` (a regex of
                   the question's text) up to the next heading or the next question of the item (code
                   cells in between are skipped: an answer may follow the student's code), or the
                   markdown of ``section``: with the placeholder's text taken out, at least
                   ``min_chars`` characters of text (default 20)
and optionally subcheck = "name".
"""
from __future__ import annotations

import re

from grader.checks.base import JudgeContext, SubResult, not_run, result
from grader.checks.common import Params
from grader.checks.notebook_text import Cell, heading_level, output_text, plain, read_cells, section
from grader.checks.static import rules_by_subcheck
from grader.items import Item

RULES = ("images", "answer", "text")
EXTRA = {"mime", "after", "min_chars", "message"}


class Artifact:
    name = "artifact"

    def prelude(self, item: Item) -> None:
        return None

    def validate(self, item: Item) -> None:
        p = Params(item)
        p.only({"rules"})
        for _, rules in rules_by_subcheck(item, RULES, EXTRA):
            for r in rules:
                if "images" in r and (not isinstance(r["images"], int) or r["images"] < 1):
                    raise p.err("rules", f"images = n needs a positive integer, got {r['images']!r}")
                for key in ("text", "after"):
                    if key in r and ("images" in r or "text" in r):
                        try:
                            re.compile(r[key])
                        except (re.error, TypeError):
                            raise p.err("rules", f"{key} = {r[key]!r} is not a valid regular expression") from None
                if "answer" in r:
                    for key in ("answer", "after"):
                        if key in r:
                            try:
                                re.compile(r[key])
                            except (re.error, TypeError):
                                raise p.err("rules", f"{key} = {r[key]!r} is not a valid regular expression") from None
                    if "after" not in r and "section" not in r:
                        raise p.err("rules", "an answer rule needs `after` (the question's text) or `section`")

    def probe_actions(self, item: Item, plan=None) -> list[dict]:
        return []

    def judge(self, item: Item, ctx: JudgeContext):
        if ctx.notebook_path is None:
            return not_run(item, ctx.probe_error or "the notebook is missing")
        subs = []
        grouped = rules_by_subcheck(item, RULES, EXTRA)
        questions = [x["after"] for _, rules in grouped for x in rules if "answer" in x and "after" in x]
        for sub, rules in grouped:
            failed, notes = [], []
            for r in rules:
                ok, msg = self.rule(r, ctx, questions)
                (notes if ok else failed).append(msg)
            subs.append(SubResult(sub.name, 0.0 if failed else sub.points, sub.points,
                                  "; ".join(failed) if failed else "; ".join(notes)))
        return result(item, subs)

    def rule(self, r: dict, ctx: JudgeContext, questions: list[str] = ()) -> tuple[bool, str]:
        where = f" under the heading {plain(r['section'])}" if r.get("section") else ""
        if "after" in r and ("images" in r or "text" in r):
            where = f" after the cell {plain(r['after'], 'that asks for it')}"
        if "images" in r or "text" in r:
            if ctx.executed_path is None:
                return False, "the notebook did not run, so it produced no output"
            try:
                cells = read_cells(ctx.executed_path)
            except Exception:
                return False, "the grader's run of the notebook could not be read"
            scope = _after(cells, r["after"]) if "after" in r else section(cells, r.get("section"))
            if scope is None:
                return False, (f"the cell {plain(r['after'], 'that asks for it')} was not found in the notebook"
                               if "after" in r else
                               f"the heading {plain(r['section'], 'of this part')} was not found in the notebook")
            if "text" in r:
                rx = re.compile(r["text"], re.MULTILINE)
                shown = "\n".join(output_text(o) for c in scope if c.kind == "code" for o in c.outputs)
                if not rx.search(shown):
                    return False, (f"presence check: nothing{where} in the grader's run printed "
                                   f"{r.get('message') or plain(r['text'], 'what this asks for')}")
                return True, f"presence check: the expected output{where} is there (content not judged)"
            mime = r.get("mime")
            count = sum(1 for c in scope if c.kind == "code" for o in c.outputs
                        for key in (o.get("data") or {})
                        if (key == mime if mime else key.startswith("image/")))
            need = r["images"]
            if count < need:
                return False, (f"presence check: {count} plot(s){where} in the grader's run, "
                               f"at least {need} expected")
            return True, f"presence check: {count} plot(s){where} (content not judged)"
        try:
            cells = read_cells(ctx.notebook_path)
        except Exception:
            return False, "the notebook could not be read"
        region = _answer_region(cells, r, questions)
        if region is None:
            return False, "the question of this free-text answer was not found in the notebook"
        text = "\n".join(c.source for c in region)
        kept = re.search(r["answer"], text, re.IGNORECASE)
        text = re.sub(r["answer"], " ", text, flags=re.IGNORECASE)
        words = re.sub(r"\s+", " ", re.sub(r"^\s*#+.*$", "", text, flags=re.MULTILINE)).strip()
        need = int(r.get("min_chars", 20))
        if kept and len(words) < need:
            return False, "presence check: the answer placeholder is still there"
        if len(words) < need:
            return False, f"presence check: the answer has {len(words)} characters of text, at least {need} expected"
        return True, "presence check: an answer is there (staff read it)"


def _after(cells: list[Cell], pattern: str) -> list[Cell] | None:
    """Cells after the first markdown cell matching ``pattern``, up to the next heading."""
    rx = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for pos, cell in enumerate(cells):
        if cell.kind == "markdown" and rx.search(cell.source):
            body = []
            for nxt in cells[pos + 1:]:
                if heading_level(nxt) is not None:
                    break
                body.append(nxt)
            return body
    return None


def _answer_region(cells: list[Cell], r: dict, questions: list[str] = ()) -> list[Cell] | None:
    if "after" in r:
        rx = re.compile(r["after"], re.IGNORECASE)
        others = [re.compile(q, re.IGNORECASE) for q in questions if q != r["after"]]
        for pos, cell in enumerate(cells):
            if cell.kind == "markdown" and rx.search(cell.source):
                # The answer runs from the question to the next heading or the next question, so
                # an answer written below the student's code counts, and a later question's
                # placeholder never counts against this one.
                region = []
                for nxt in cells[pos + 1:]:
                    if nxt.kind != "markdown":
                        continue
                    if heading_level(nxt) is not None or any(o.search(nxt.source) for o in others):
                        break
                    region.append(nxt)
                return region
        return None
    scope = section(cells, r.get("section"))
    return None if scope is None else [c for c in scope if c.kind == "markdown"]
