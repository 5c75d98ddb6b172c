"""Brightspace's names for submissions: ``<A>-<B> - <Display Name> - <Mon D, YYYY H[:_]MM AM>``.

The timestamp has minute precision, no time zone and a 12-hour clock; the colon is usually
dropped (``926 PM``), older downloads keep it (``9:47 PM``) and Windows extraction turns it
into ``_``. The display name may itself contain `` - ``, so the label is anchored on its
last timestamp. The two numbers are not identities and are kept only for tracing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

MONTHS = {m: n for n, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
TIMESTAMP = (r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<day>\d{1,2}), (?P<year>\d{4}) "
             r"(?P<hour>\d{1,2})[:_]?(?P<minute>\d{2}) (?P<ampm>AM|PM)")
# Greedy who: the last timestamp of the label wins.
_LABEL = re.compile(rf"^(?P<prefix>\d+-\d+) - (?P<who>.+) - {TIMESTAMP}$", re.DOTALL)
# Flat: the first timestamp after the name ends the label (the file name may hold one too).
_FLAT = re.compile(rf"^(?P<label>\d+-\d+ - .+? - {TIMESTAMP}) - (?P<orig>.+)$", re.DOTALL)


@dataclass(frozen=True)
class Label:
    text: str              # as Brightspace wrote it
    prefix: str            # "<A>-<B>": tracing only, never an identity
    who: str               # the display name (or "Group - Name" for a group assignment)
    submitted: datetime    # naive: the zone is the course's (the rubric says which)


def _when(m: re.Match) -> datetime | None:
    hour, minute = int(m["hour"]), int(m["minute"])
    if not (1 <= hour <= 12 and minute < 60):
        return None
    hour = hour % 12 + (12 if m["ampm"] == "PM" else 0)
    try:
        return datetime(int(m["year"]), MONTHS[m["mon"]], int(m["day"]), hour, minute)
    except ValueError:
        return None


def parse_label(text: str) -> Label | None:
    m = _LABEL.match(text)
    if not m or (when := _when(m)) is None:
        return None
    return Label(text, m["prefix"], m["who"].strip(), when)


def split_flat(name: str) -> tuple[Label, str] | None:
    """(label, original file name) of a flat-layout entry, else None."""
    m = _FLAT.match(name)
    if not m:
        return None
    label = parse_label(m["label"])
    return (label, m["orig"]) if label is not None else None


def original_name(name: str) -> str:
    """The student's own file name inside a flat-layout name (the name itself otherwise)."""
    got = split_flat(name)
    return got[1] if got else name
