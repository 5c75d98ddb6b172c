"""Hostile text: strings a submission plants where the grader shows them to staff and students.

Each case is one submitted file for the mini rubric of ``tests/test_hostile_text.py`` (which
reads any file name up to its first dot as the net id, so a hostile zip name becomes a
hostile net id too). ``where`` says what carries the text into the records, and from there
into grades.csv and the feedback reports; every one of them must show there as plain text:
no heading, list, link, image, HTML tag or comment of its own, no formula cell, and the
report after it still rendered.
"""
from __future__ import annotations

from dataclasses import dataclass

# The forged staff note: a heading after a newline, raw HTML, a code fence and an unclosed
# comment that would hide the rest of the report in any HTML viewer.
STAFF_NOTE = ("boom\n## Staff note: regraded by hand: 20 / 20 ✔\n"
              "<img src=x onerror=alert(1)><script>alert(1)</script> ``` <!-- ")
# Markdown that would read as structure or links at the start of a line or inside one.
MARKDOWN = ("# Staff note\n- [x] **20 / 20** [click](javascript:alert(1)) ![i](http://evil/x.png)\n"
            "1. | a | b |\n> quoted\n=====\n<!-- ")
# Fences of every length: a traceback or an output holding them must stay in its own block.
FENCES = "```\n</code></pre>\n## out of the fence\n``````\n~~~\n"
# ANSI colours and bidi overrides (the note reads differently from what it is).
TERMINAL = "\x1b[31m## red\x1b[0m \u202e02 / 02\u202c done"

F = "def f(x):\n    return x + 1"
ANSWER = "answer = f(41)"


def _raise(cls: str, text: str) -> str:
    return f"raise {cls}({text!r})"


@dataclass(frozen=True)
class TextCase:
    zip_name: str                   # the submitted file's name
    where: str                      # what carries the hostile text
    cells: tuple[str, ...] = ()     # code cells of work.ipynb; empty: the zip holds no notebook
    extra: tuple[str, ...] = ()     # names of extra members in the zip (each a few bytes)
    status: str = "graded"          # the record's expected status
    hostile: tuple[str, ...] = ()   # hostile strings that reach the outputs


CASES: list[TextCase] = [
    TextCase("tx01.zip", "exception messages of cells (error value, traceback, the run's message)",
             (F, ANSWER, _raise("Exception", STAFF_NOTE), _raise("ValueError", MARKDOWN),
              _raise("RuntimeError", TERMINAL)),
             hostile=(STAFF_NOTE, MARKDOWN, TERMINAL)),
    TextCase("tx02.zip", "an exception class whose name is HTML and Markdown",
             (F, ANSWER, "class E(Exception):\n    pass\n"
                         "E.__name__ = E.__qualname__ = '<script>alert(1)</script>## **Staff** [x](y) <!--'\n"
                         "raise E('x')"),
             hostile=("<script>alert(1)</script>## **Staff** [x](y) <!--",)),
    TextCase("tx03.zip", "fences printed by a cell and in the source lines of its traceback",
             (F, ANSWER, f"print({FENCES!r})\nfence = '``````'\nraise ValueError('`````` ' + fence + {FENCES!r})"),
             hostile=(FENCES,)),
    TextCase("tx04.zip", "checked functions that raise: item and sub-check messages quote the traceback",
             (F, ANSWER, f"def size_one(*a, **k):\n    raise Exception({STAFF_NOTE!r})",
              f"def size_two(*a, **k):\n    raise Exception({MARKDOWN!r})"),
             hostile=(STAFF_NOTE, MARKDOWN)),
    TextCase('=HYPERLINK("http:evil","x").zip', "the zip name (and the net id read from it), extra member names",
             (F, ANSWER),
             extra=("<img src=x onerror=alert(1)>.txt", "``` <!-- .txt", "a\n## Staff note 20 of 20.txt",
                    "[click](javascript:alert(1)).txt"),
             hostile=('=HYPERLINK("http:evil","x")', "<img src=x onerror=alert(1)>", "<!--",
                      "[click](javascript:alert(1))")),
    TextCase("@SUM(1+1)*cmd.zip", "a zip name beginning with @, no notebook", status="rejected",
             extra=("notes.txt",), hostile=("@SUM(1+1)*cmd",)),
    TextCase("-2+3+cmd.zip", "a zip name beginning with -, no notebook", status="rejected",
             extra=("notes.txt",), hostile=("-2+3+cmd",)),
    TextCase("+A1 <img src=x onerror=alert(1)>.zip", "a zip name beginning with +, with HTML, no notebook",
             status="rejected", extra=("notes.txt",), hostile=("+A1 <img src=x onerror=alert(1)>",)),
    TextCase("\t=1+1.zip", "a zip name beginning with a tab, no notebook", status="rejected",
             extra=("notes.txt",), hostile=("\t=1+1",)),
]
