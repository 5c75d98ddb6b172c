"""Brightspace "Download" zips as Brightspace writes them (lms-formats.md §1): a folder per
attempt or flat prefixed files, ``index.html`` at the root, labels
``<A>-<B> - <Display Name> - <Mon D, YYYY HMM AM>`` with the day and hour unpadded."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ASSIGNMENT_ID = 46138          # <B>: the same for every attempt of one download


@dataclass
class Upload:
    who: str
    when: datetime                     # course time zone
    files: dict[str, bytes]            # the student's own file names
    attempt_id: int = 0                # <A>
    clock: str = ""                    # "colon" (9:47 PM), "windows" (9_47 PM); default: 947 PM


@dataclass
class Download:
    uploads: list[Upload] = field(default_factory=list)

    def add(self, who: str, when: datetime, files: dict[str, bytes], clock: str = "") -> Upload:
        u = Upload(who, when, files, 35200 + len(self.uploads), clock)
        self.uploads.append(u)
        return u


def stamp(when: datetime, clock: str = "") -> str:
    hour = when.hour % 12 or 12
    sep = {"colon": ":", "windows": "_"}.get(clock, "")
    return f"{when:%b} {when.day}, {when.year} {hour}{sep}{when:%M} {'AM' if when.hour < 12 else 'PM'}"


def label(u: Upload) -> str:
    return f"{u.attempt_id}-{ASSIGNMENT_ID} - {u.who} - {stamp(u.when, u.clock)}"


def write(download: Download, path: Path, layout: str = "folders", junk: bool = True) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("index.html", "<html><body><table><tr><td>Submissions</td></tr></table></body></html>")
        for u in download.uploads:
            for name, data in u.files.items():
                zf.writestr(f"{label(u)}/{name}" if layout == "folders" else f"{label(u)} - {name}", data)
        if junk:
            zf.writestr("__MACOSX/._index.html", b"\0\5\26\7")
            zf.writestr(".DS_Store", b"\0\0\0\1Bud1")
    return path


def class_list(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """Brightspace's class list export: (OrgDefinedId, Username, First Name, Last Name)."""
    lines = ["OrgDefinedId,Username,Last Name,First Name,Email,End-of-Line Indicator"]
    lines += [f"#{o},#{u},{last},{first},{u}@nyu.edu,#" for o, u, first, last in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path
