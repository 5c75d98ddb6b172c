"""Grades out of records, in the forms LMSs take in: a Brightspace grade-import CSV and
Gradescope's ``results.json`` per student. Records are the one source; nothing is graded here.

Brightspace (D2L's import format): the id column first (``Username``: the student's login, the net id), one ``<Item> Points Grade`` column, ``End-of-Line Indicator`` last with
``#`` on every row, and ``#`` before every id, as Brightspace's own exports write them.
Records without a trustworthy student (unresolved from an LMS download, two records of one
net id, the grader's own failures) are left out and listed, never guessed.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from grader.record import Record, safe_key, write_atomic
from grader.text_safety import clean


@dataclass
class Export:
    path: Path
    written: int
    left_out: list[tuple[str, str]] = field(default_factory=list)   # (zip name, why)


def _net_id(record: Record) -> str | None:
    if record.lms:
        return record.lms.get("net_id")
    return record.net_id


def _records_per_student(records: list[Record]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        if (n := _net_id(r)) is not None:
            counts[n] = counts.get(n, 0) + 1
    return counts


def _reason_left_out(record: Record, counts: dict[str, int]) -> str | None:
    net_id = _net_id(record)
    if net_id is None:
        return "the student could not be resolved from the download (see the Brightspace manifest)"
    if record.lms.get("identity_doubt"):
        return f"the download leaves who this is in doubt: {record.flags.get('lms', 'see the manifest')}"
    if record.status == "error":
        return "the grader failed on it: no grade to upload until staff look"
    if counts[net_id] > 1:
        return f"{counts[net_id]} records have the net id {net_id}: staff decide which stands"
    if record.score.get("pending_items"):
        return f"{record.score['pending_items']} staff item(s) still pending (staff_scores.csv)"
    return None


def brightspace_csv(records: list[Record], item: str, path: Path, max_points: float | None = None,
                    with_pending: bool = False) -> Export:
    """``item``: the grade item's name in Brightspace; ``max_points`` makes the import create the
    item (``<Numeric MaxPoints:N>``); ``with_pending``: upload records whose staff items are
    not graded yet (their automatic points only)."""
    counts = _records_per_student(records)
    header = f"{item} Points Grade" + (f" <Numeric MaxPoints:{max_points:g}>" if max_points else "")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["Username", header, "End-of-Line Indicator"])
    out = Export(path, 0)
    for r in sorted(records, key=lambda r: (r.net_id, r.zip_name)):
        why = _reason_left_out(r, counts)
        if why is not None and not (with_pending and why.endswith("(staff_scores.csv)")):
            out.left_out.append((r.zip_name, why))
            continue
        w.writerow([f"#{_net_id(r)}", f"{float(r.score.get('final', 0.0)):g}", "#"])
        out.written += 1
    write_atomic(path, buf.getvalue())
    return out


def gradescope_results(record: Record, title_of: dict[str, str]) -> dict:
    """Gradescope's ``results.json`` for one record (its autograder spec): one test per item,
    the final score (penalties applied) as the submission's score."""
    tests = []
    for n, item in enumerate(record.items, start=1):
        tests.append({
            "name": clean(title_of.get(item["id"], item["id"])),
            "number": str(n),
            "score": item["points"],
            "max_score": item["possible"],
            "status": "passed" if item["points"] >= item["possible"] - 1e-9 else "failed",
            "output": clean(item.get("message", "")),
            "output_format": "text",
            "visibility": "visible",
            "tags": [item["kind"], item["status"]],
        })
    lines = [clean(record.reason)] if record.reason else []
    lines += [f"penalty {p['pct']:g}%: {clean(p['reason'])}" for p in record.penalties]
    return {
        "score": record.score.get("final", 0.0),
        "execution_time": round(record.timing.get("total_s", 0.0)),
        "output": "\n".join(lines),
        "output_format": "text",
        "test_output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"net_id": record.net_id, "status": record.status, "zip": record.zip_name},
        "tests": tests,
    }


def gradescope_dir(records: list[Record], title_of: dict[str, str], folder: Path,
                   with_pending: bool = False) -> Export:
    """``folder/<net_id>/results.json`` for every record with a student."""
    out = Export(folder, 0)
    counts = _records_per_student(records)
    for r in records:
        why = _reason_left_out(r, counts)
        if why is not None and not (with_pending and why.endswith("(staff_scores.csv)")):
            out.left_out.append((r.zip_name, why))
            continue
        write_atomic(folder / safe_key(str(_net_id(r))) / "results.json", json.dumps(gradescope_results(r, title_of), indent=1))
        out.written += 1
    return out
