"""A Brightspace class list (or grade export): who is in the course, by display name.

Brightspace's download names carry only a display name, so a student whose own zip name does
not say their net id is found here: by name, normalised (case, accents, hyphens, spaces).
No match, or more than one, is reported to staff, never guessed.
"""
from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path


class ClassListError(ValueError):
    pass


@dataclass(frozen=True)
class Student:
    username: str          # the student's login (the net id)
    org_defined_id: str
    first: str
    last: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}".strip()


def normalise(name: str) -> str:
    """'José  Mary-Ann' and 'jose mary ann' are the same person to a roster."""
    s = unicodedata.normalize("NFKD", name)
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[-‐‑–—_.,']+", " ", s).split())


def _cell(row: dict[str, str], *names: str) -> str:
    for n in names:
        for k, v in row.items():
            if k is not None and k.strip().lstrip("\ufeff").casefold() == n.casefold():
                return (v or "").strip().lstrip("#").strip()
    return ""


def read_class_list(path: Path) -> list[Student]:
    """Username, OrgDefinedId, First Name, Last Name (Brightspace's export; '#' before ids and
    the End-of-Line Indicator column are allowed)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ClassListError(f"{path}: cannot be read as a UTF-8 CSV ({e})") from e
    rows = list(csv.DictReader(text.splitlines()))
    header = [h.strip().lstrip("\ufeff").casefold() for h in (rows[0].keys() if rows else [])]
    missing = [c for c in ("username", "first name", "last name") if c not in header]
    if missing:
        raise ClassListError(f"{path}: a class list needs the columns Username, First Name and Last Name "
                             f"(Brightspace: Grades > Export, or Classlist > Export); missing: {', '.join(missing)}")
    out = []
    for row in rows:
        user = _cell(row, "Username")
        if user:
            out.append(Student(user.lower(), _cell(row, "OrgDefinedId"), _cell(row, "First Name"),
                               _cell(row, "Last Name")))
    return out


@dataclass
class Roster:
    students: list[Student]

    def by_username(self, username: str) -> Student | None:
        return next((s for s in self.students if s.username == username.lower()), None)

    def by_name(self, display_name: str) -> list[Student]:
        """Everyone the display name could be. Group labels ("Group 3 - Ana Li") are tried by
        their last part too."""
        want = normalise(display_name)
        hits = [s for s in self.students if normalise(s.name) == want]
        if not hits and " - " in display_name:
            tail = normalise(display_name.rsplit(" - ", 1)[1])
            hits = [s for s in self.students if normalise(s.name) == tail]
        return hits
