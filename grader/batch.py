"""Grade a folder of submissions: one record per file, then the CSV and the reports.

Records are written atomically as each submission finishes, so a batch that is
killed loses at most the submission in progress; ``resume`` reuses a record
only when the zip (by content hash), the rubric and the student's times,
extension and staff scores are all unchanged.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from grader import record as records_io
from grader.record import Record
from grader.report import write_csv, write_reports
from grader.rubric import Rubric
from grader.runner import GradeSettings, grade_submission, inputs_digest, safe_key, sha256

NOT_SUBMISSIONS = {".csv", ".json", ".md", ".toml", ".py", ".txt", ".html"}


def find_submissions(folder: Path) -> list[Path]:
    """Every regular file that could be a student's zip (a wrong format is the intake's to report)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in NOT_SUBMISSIONS)


def record_path(out: Path, zip_path: Path) -> Path:
    return out / "records" / f"{safe_key(zip_path.name)}.json"


def grade_batch(zips: list[Path], rubric: Rubric, settings: GradeSettings, out: Path, resume: bool = True,
                log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[Record]:
    out.mkdir(parents=True, exist_ok=True)
    done: list[Record] = []
    for n, zip_path in enumerate(zips, start=1):
        path = record_path(out, zip_path)
        if resume and path.exists():
            try:
                old = records_io.load(path)
                if (old.complete and old.zip_sha256 == sha256(zip_path)
                        and old.inputs_digest == inputs_digest(rubric, settings, old.net_id)):
                    log(f"[{n}/{len(zips)}] {zip_path.name}: reusing the record from an earlier run")
                    done.append(old)
                    continue
            except (ValueError, OSError, TypeError):
                pass  # unreadable or old record: grade again
        log(f"[{n}/{len(zips)}] {zip_path.name}: grading")
        rec = grade_submission(zip_path, rubric, settings)
        records_io.save(rec, path)
        log(f"[{n}/{len(zips)}] {zip_path.name}: {rec.status}, {rec.score.get('final', 0):g} points"
            f" ({rec.timing.get('total_s', 0):.1f} s)")
        done.append(rec)
    write_outputs(rubric, done, out)
    return done


def write_outputs(rubric: Rubric, recs: list[Record], out: Path) -> None:
    write_csv(rubric, recs, out)
    write_reports(rubric, recs, out)
