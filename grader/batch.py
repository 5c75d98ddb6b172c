"""Grade a folder of submissions: one record per file, then the CSV and the reports.

Records are written atomically as each submission finishes, so a batch that is
killed loses at most the submission in progress; ``resume`` reuses a record
only when the zip (its exact name and content hash), the rubric and the student's
times, extension and staff scores are all unchanged.

Each zip has its own record file (``record.zip_key``: one-to-one with zip names), so two
zips never share a record; zips that resolve to one net_id are all graded, all reported
and flagged for staff (``flag_duplicates``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from grader import record as records_io
from grader.record import Record, safe_key, zip_key
from grader.report import write_csv, write_reports
from grader.rubric import Rubric
from grader.runner import GradeSettings, grade_submission, inputs_digest, sha256

NOT_SUBMISSIONS = {".csv", ".json", ".md", ".toml", ".py", ".txt", ".html"}
DUPLICATE = "duplicate_net_id"      # record flag: another zip of the batch resolves to the same net_id


def survey(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(the files graded as submissions, (name, why) for every other entry of the folder).

    Every regular file that could be a student's zip is a submission (a wrong format is the
    intake's to report); what is left out is listed so that the command can say so."""
    zips: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            skipped.append((p.name, "a hidden name"))
        elif p.is_dir():
            skipped.append((p.name + "/", "a folder"))
        elif not p.is_file():
            skipped.append((p.name, "not a regular file"))
        elif p.suffix.lower() in NOT_SUBMISSIONS:
            skipped.append((p.name, f"a {p.suffix.lower()} file"))
        else:
            zips.append(p)
    return zips, skipped


def find_submissions(folder: Path) -> list[Path]:
    """The submissions of ``folder`` (``survey`` also lists what is left out)."""
    return survey(folder)[0]


def record_path(out: Path, zip_path: Path) -> Path:
    return out / "records" / f"{zip_key(zip_path.name)}.json"


def _reusable(path: Path, zip_path: Path, rubric: Rubric, settings: GradeSettings) -> Record | None:
    if not path.exists():
        return None
    try:
        old = records_io.load(path)
    except (ValueError, OSError, TypeError):
        return None  # unreadable or old record: grade again
    if (old.complete and old.zip_name == zip_path.name and old.zip_sha256 == sha256(zip_path)
            and old.inputs_digest == inputs_digest(rubric, settings, old.net_id)):
        return old
    return None


def _drop_earlier_name(out: Path, zip_path: Path, path: Path) -> None:
    """A record this zip got under the sanitized name alone (earlier versions) would be reported
    twice by ``grader report``; it is removed only when it is this very zip's record."""
    earlier = out / "records" / f"{safe_key(zip_path.name)}.json"
    if earlier == path or not earlier.exists():
        return
    try:
        if records_io.load(earlier).zip_name == zip_path.name:
            earlier.unlink()
    except (ValueError, OSError, TypeError):
        pass


def grade_batch(zips: list[Path], rubric: Rubric, settings: GradeSettings, out: Path, resume: bool = True,
                log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[Record]:
    out.mkdir(parents=True, exist_ok=True)
    done: list[tuple[Record, Path]] = []
    for n, zip_path in enumerate(zips, start=1):
        path = record_path(out, zip_path)
        old = _reusable(path, zip_path, rubric, settings) if resume else None
        if old is not None:
            log(f"[{n}/{len(zips)}] {zip_path.name}: reusing the record from an earlier run")
            done.append((old, path))
            continue
        log(f"[{n}/{len(zips)}] {zip_path.name}: grading")
        rec = grade_submission(zip_path, rubric, settings)
        records_io.save(rec, path)
        _drop_earlier_name(out, zip_path, path)
        log(f"[{n}/{len(zips)}] {zip_path.name}: {rec.status}, {rec.score.get('final', 0):g} points"
            f" ({rec.timing.get('total_s', 0):.1f} s)")
        done.append((rec, path))
    save_flags(done)
    recs = [rec for rec, _ in done]
    write_outputs(rubric, recs, out)
    return recs


def duplicate_groups(recs: list[Record]) -> dict[str, list[Record]]:
    """net_id -> its records, for every net_id that more than one zip resolves to."""
    by_id: dict[str, list[Record]] = {}
    for r in recs:
        by_id.setdefault(r.net_id, []).append(r)
    return {k: sorted(v, key=lambda r: r.zip_name) for k, v in sorted(by_id.items()) if len(v) > 1}


def flag_duplicates(recs: list[Record]) -> list[Record]:
    """Flag every record whose net_id another record of ``recs`` shares (and unflag the others);
    nothing is merged or dropped: staff decide which zip counts. Returns the records whose
    flags changed."""
    groups = duplicate_groups(recs)
    changed = []
    for r in recs:
        before = dict(r.flags)
        r.flags.pop(DUPLICATE, None)
        others = [o.zip_name for o in groups.get(r.net_id, []) if o is not r]
        if others:
            r.flags[DUPLICATE] = (f"{len(others) + 1} zips resolve to net_id {r.net_id}; also graded: "
                                  + ", ".join(repr(z) for z in others) + "; staff decide which one counts")
        if r.flags != before:
            changed.append(r)
    return changed


def save_flags(done: list[tuple[Record, Path]]) -> None:
    """Flag duplicates across ``done`` and rewrite the records whose flags changed."""
    changed = {id(r) for r in flag_duplicates([r for r, _ in done])}
    for rec, path in done:
        if id(rec) in changed:
            records_io.save(rec, path)


def write_outputs(rubric: Rubric, recs: list[Record], out: Path) -> None:
    write_csv(rubric, recs, out)
    write_reports(rubric, recs, out)
