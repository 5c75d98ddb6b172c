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

from dataclasses import replace
from pathlib import Path
from typing import Callable

from grader import record as records_io
from grader.record import Record, safe_key, zip_key
from grader.report import write_csv, write_reports
from grader.rubric import Rubric
from grader.engines import Task, run_dask, run_here, run_pool, start_pool_server
from grader.progress import Progress
from grader.runner import GradeSettings, inputs_digest, prepare_datasets, sha256

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


def _load_old(path: Path) -> Record | None:
    if not path.exists():
        return None
    try:
        return records_io.load(path)
    except (ValueError, OSError, TypeError):
        return None  # unreadable or old record: grade again


def _current(old: Record, zip_path: Path, zip_sha: str | None, rubric: Rubric, settings: GradeSettings) -> bool:
    """Complete, of this very zip, and graded with what would grade it now (rubric, grader
    version, tables, limits: ``inputs_digest``)."""
    return (old.complete and old.zip_name == zip_path.name and old.zip_sha256 == zip_sha
            and old.inputs_digest == inputs_digest(rubric, settings, old.net_id, old.zip_name))


def _reusable(path: Path, zip_path: Path, rubric: Rubric, settings: GradeSettings) -> Record | None:
    old = _load_old(path)
    return old if old is not None and _current(old, zip_path, sha256(zip_path), rubric, settings) else None


def _selected(zip_path: Path, old: Record | None, only: set[str] | None) -> bool:
    if only is None:
        return True
    names = {zip_path.name.lower(), zip_path.stem.lower(), safe_key(zip_path.stem).lower()}
    if old is not None:
        names.add(old.net_id.lower())
    return bool(names & only)


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
                log: Callable[[str], None] | None = None, jobs: int = 1, client=None,
                only: list[str] | None = None, force: bool = False,
                progress: Progress | None = None) -> list[Record]:
    """Grade ``zips`` into ``out``: in this process (``jobs`` 1), on ``jobs`` local workers, or on
    the Dask cluster behind ``client``. A complete, current record is kept (unless ``force``);
    a record that is stale only through the rubric or the tables is regraded from its kept runs
    (grader/artifacts.py) without starting a kernel where the runs still stand. ``only``: the
    net_ids (or zip names) to grade; every other zip keeps the record it has."""
    out.mkdir(parents=True, exist_ok=True)
    # Local workers share the machine's kernel slots (grader/kernel_slots.py): ``jobs`` of them,
    # so a worker left without a submission lends its slot to the last ones' notebooks; on
    # Dask each machine counts its own.
    settings = replace(settings, artifacts_dir=settings.artifacts_dir or out / "artifacts",
                       force=settings.force or force,
                       kernel_slots=settings.kernel_slots or (0 if client is not None else max(1, jobs)))
    wanted = {o.lower() for o in only} if only else None
    kept: dict[int, tuple[Record, Path]] = {}
    tasks: list[Task] = []
    progress = progress or Progress(len(zips), log=log)
    for n, zip_path in enumerate(zips):
        path = record_path(out, zip_path)
        old = _load_old(path)
        if not _selected(zip_path, old, wanted):
            if old is not None:
                kept[n] = (old, path)
            progress.total -= 1
            continue
        if old is not None and resume and not settings.force and \
                _current(old, zip_path, sha256(zip_path), rubric, settings):
            kept[n] = (old, path)
            progress.reused(zip_path.name)
            continue
        tasks.append(Task(n, zip_path, old if resume and old is not None and old.complete else None))
    if wanted is not None:
        matched = {o for o in wanted for n, z in enumerate(zips)
                   if _selected(z, kept.get(n, (None,))[0], {o})}
        for o in sorted(wanted - matched):
            progress.note(f"grader: warning: --only {o}: no zip of the batch has that net_id or name")
    progress.queued([t.zip_path.name for t in tasks])
    if client is None and jobs > 1 and len(tasks) > 1:
        start_pool_server()       # its imports overlap the data sets' preparation below
    if tasks and any(p.mounts for p in rubric.parts):
        prepare_datasets(rubric, settings.cache_dir)     # once, before the workers need them
    if tasks and client is not None:
        finished = run_dask(tasks, rubric, settings, client)
    elif len(tasks) > 1 and jobs > 1:
        finished = run_pool(tasks, rubric, settings, min(jobs, len(tasks)))
    else:
        finished = run_here(tasks, rubric, settings)
    try:
        for task, rec in finished:
            path = record_path(out, task.zip_path)
            records_io.save(rec, path)
            _drop_earlier_name(out, task.zip_path, path)
            kept[task.index] = (rec, path)
            progress.finished(rec)
    finally:
        progress.close()
    done = [kept[n] for n in sorted(kept)]
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
