"""Text from a submission, made inert where the grader's outputs show it.

The feedback reports are Markdown that students and staff open in renderers which also
pass HTML through; grades.csv is opened in spreadsheets. Everything derived from a
submission (exception messages and tracebacks, names of files, objects and cells, values a
probe reported, the zip's name and the net id read from it) goes through one of these
before it reaches either output:

* ``md_inline``: plain text on one line. Whitespace runs (newlines included) become one
  space, and every character that could start Markdown or HTML is escaped, so the text can
  never open a heading, list, quote, emphasis, link, image, HTML tag, comment or entity.
* ``md_text``: a grader message, which marks names with pairs of backticks (`` `f` ``) and
  may quote student text anywhere. Each pair becomes a code span, everything else is
  escaped as in ``md_inline``; unpaired backticks are shown as backticks.
* ``md_code``: one inline code span whose fence is longer than any backtick run inside.
* ``md_block``: a fenced code block for multi-line text (tracebacks, outputs); the fence is
  longer than any backtick run inside, so the text cannot close it, and every line carries
  the indentation of the list item it belongs to.
* ``csv_cell``: a text cell that a spreadsheet cannot read as a formula.

All of them strip ANSI escapes, control characters and Unicode bidi controls (which could
make shown text read differently from what it is).
"""
from __future__ import annotations

import re
from typing import Any

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# C0 and C1 controls except tab and newline; bidi embeddings, overrides and isolates.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# `_` is escaped unless it sits between two ASCII letters or digits, where CommonMark never
# reads it as emphasis (so identifiers such as undefined_name stay readable in the file).
_SPECIAL = re.compile(r"[\\`*\[\]#|~<>&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
# What a line may begin with to open a block: a list item, a setext underline or thematic
# break, or an ordered list item ("1." / "1)").
_LINE_START = re.compile(r"[-+=]|\d{1,9}(?=[.)])")
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def clean(text: Any) -> str:
    """``text`` as a string without ANSI escapes, control characters (tab and newline
    kept) or bidi controls; carriage returns become newlines."""
    text = _ANSI.sub("", "" if text is None else str(text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text)


def cut(text: str, limit: int | None) -> str:
    """``text`` shortened to ``limit`` characters, "..." at the end: the one way the grader
    shortens what it shows."""
    return text if limit is None or len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def one_line(text: Any, limit: int | None = None) -> str:
    """Cleaned text on one line, shortened to ``limit`` characters ("..." at the end)."""
    return cut(" ".join(clean(text).split()), limit)


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's message, its first line only (its type's name when it has none)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return cut(msg, limit)


def trim_traceback(lines: list[str] | str | None, max_lines: int = 40, max_chars: int = 4000) -> str | None:
    """A traceback kept readable and small: without ANSI colours, its first quarter and its
    last lines (the error itself) when it is longer than ``max_lines``, and its end when it is
    longer than ``max_chars``."""
    if not lines:
        return None
    text = _ANSI.sub("", "\n".join(lines) if isinstance(lines, list) else lines)
    rows = text.splitlines()
    if len(rows) > max_lines:
        head = max_lines // 4
        rows = rows[:head] + [f"... ({len(rows) - max_lines} lines omitted) ..."] + rows[head - max_lines:]
    text = "\n".join(rows)
    if len(text) > max_chars:
        text = "... " + text[-max_chars:]
    return text


def _escape(text: str, at_line_start: bool) -> str:
    out = _SPECIAL.sub(lambda m: _ENTITIES.get(m.group(0), "\\" + m.group(0)), text)
    if at_line_start and (m := _LINE_START.match(out)):
        end = m.end()
        out = out[:end] + "\\" + out[end:] if out[0].isdigit() else "\\" + out
    return out


def md_inline(text: Any, limit: int | None = None) -> str:
    """Plain text, on one line, that renders as exactly its characters."""
    return _escape(one_line(text, limit), True)


def md_code(text: Any, limit: int | None = 200) -> str:
    """One inline code span showing ``text`` literally ("" for empty text)."""
    text = one_line(text, limit)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_text(text: Any, limit: int | None = None) -> str:
    """A grader message on one line: `backtick pairs` become code spans, the rest is
    escaped as plain text. Safe whatever student text the message quotes."""
    parts = one_line(text, limit).split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(_escape(part, i == 0))
        elif i + 1 < len(parts) and part.strip():
            pad = " " if part[0] == part[-1] == " " else ""     # CommonMark strips one space each side
            out.append(f"`{pad}{part}{pad}`")
        elif i + 1 < len(parts):
            out.append("\\`" + _escape(part, False) + "\\`")
        else:
            out.append("\\`" + _escape(part, False))
    return "".join(out)


def md_block(text: Any, indent: str = "") -> list[str]:
    """Lines of a fenced code block showing ``text`` literally; ``indent`` puts the block
    inside a list item (every line gets it, so no line can fall out of the item)."""
    lines = [line.expandtabs(4).rstrip() for line in clean(text).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    runs = [len(run) for line in lines for run in re.findall(r"`+", line)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return [indent + fence] + [indent + line for line in lines] + [indent + fence]


def csv_cell(value: Any) -> Any:
    """A text cell that begins like a formula (``=``, ``+``, ``-``, ``@``, tab, carriage
    return) gets a leading ``'``, as spreadsheets expect; other values are returned as they are."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_START):
        return "'" + value
    return value
