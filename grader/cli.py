"""Command line: ``grader grade`` (a folder or one zip), ``grader report`` (rebuild outputs from records)."""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from grader import devices, overrides
from grader import record as records_io
from grader.batch import DUPLICATE, duplicate_groups, flag_duplicates, grade_batch, survey, write_outputs
from grader.record import Record
from grader.rubric import RubricError, load_rubric
from grader.cluster import ClusterError
from grader.kernel_slots import default_jobs
from grader.progress import Progress
from grader.lms import brightspace
from grader.lms.classlist import ClassListError, Roster, read_class_list
from grader.cli_parser import DEFAULT_RUBRIC, DEFAULT_SUBMISSIONS, DEFAULT_TABLES, build_parser
from grader.rescore import rescore
from grader.runner import GradeSettings
from grader.tables import (TABLES, TableError, load_extensions, load_overrides, load_staff_scores, load_times,
                           named_tables, tables_line)

def _shown(name: str) -> str:
    return name if name.isprintable() else ascii(name)


def _tables_for(args: argparse.Namespace, submissions: Path | None, beside: Path,
                bundled: bool) -> dict[str, Path | None]:
    """The tables staff named (flags, then ``--tables DIR``); ``submissions`` is the folder
    being graded (None for one zip): a table inside it is refused. Files with the standard
    names beside the zips that were not named are ignored, with a warning."""
    folder = args.tables
    files = {"times": args.times, "extensions": args.extensions, "staff_scores": args.staff_scores,
             "overrides": args.overrides}
    if folder is None and bundled and not any(files.values()):
        folder = DEFAULT_TABLES
    paths = named_tables(files, folder)
    if submissions is not None:
        inside = submissions.resolve()
        for given in [folder, *paths.values()]:
            if given is not None and given.resolve().is_relative_to(inside):
                raise TableError(f"{given} is inside the submissions folder {submissions}, where anything a "
                                 "student uploads can land; keep the course's tables in a folder of their own "
                                 "and name it with --tables DIR (or name each file with --times, --extensions, "
                                 "--staff-scores)")
    if folder is not None and not any((folder / standard).is_file() for standard, _ in TABLES.values()):
        print(f"grader: warning: the tables folder {folder} holds none of "
              + ", ".join(standard for standard, _ in TABLES.values()), file=sys.stderr)
    used = {p.resolve() for p in paths.values() if p is not None}
    for standard, _ in TABLES.values():
        stray = beside / standard
        if stray.is_file() and stray.resolve() not in used:
            print(f"grader: warning: {stray} is beside the submissions and was ignored: tables are read only "
                  "from what staff name (--tables DIR, --times, --extensions, --staff-scores)", file=sys.stderr)
    return paths


def _report_skipped(folder: Path, skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    standard = {name for name, _ in TABLES.values()}
    shown = [(n, why) for n, why in skipped if n not in standard]   # those have their own warning
    if shown:
        listed = ", ".join(f"{_shown(n)} ({why})" for n, why in shown[:20])
        more = f" and {len(shown) - 20} more" if len(shown) > 20 else ""
        verb = "is not a submission and was" if len(shown) == 1 else "are not submissions and were"
        print(f"grader: warning: {len(shown)} entr{'y' if len(shown) == 1 else 'ies'} in {folder} {verb} "
              f"not graded: {listed}{more}", file=sys.stderr)
    return shown


def cmd_grade(args: argparse.Namespace) -> int:
    rubric = load_rubric(args.rubric)
    bundled = args.submissions is None
    target: Path = DEFAULT_SUBMISSIONS if bundled else args.submissions
    if not target.exists():
        print(f"grader: {target} does not exist; give a folder of zips or one zip", file=sys.stderr)
        return 2
    folder = target if target.is_dir() else target.parent
    lms_download = not bundled and brightspace.looks_like_download(target)
    if lms_download:
        zips, skipped = [], []
    else:
        zips, skipped = survey(target) if target.is_dir() else ([target], [])
    paths = _tables_for(args, target if target.is_dir() else None, folder, bundled)
    not_graded = _report_skipped(target, skipped)
    if not zips and not lms_download:
        print(f"grader: no submissions found in {target}", file=sys.stderr)
        return 2
    staff_ids = {i.id for i in rubric.items if i.kind == "staff"}
    times_path, ext_path, staff_path = paths["times"], paths["extensions"], paths["staff_scores"]
    extensions = load_extensions(ext_path) if ext_path else {}
    lms = None
    if lms_download:
        try:
            roster = Roster(read_class_list(args.classlist)) if args.classlist else None
            lms = brightspace.prepare(target, args.out / "brightspace", rubric, extensions, roster)
        except (brightspace.DownloadError, ClassListError) as e:
            print(f"grader: {e}", file=sys.stderr)
            return 2
        zips = lms.zips
        for line in lms.lines:
            print(f"grader: {line}", file=sys.stderr)
    settings = GradeSettings(
        work_dir=args.out / "work", cache_dir=args.out / "cache",
        times=load_times(times_path) if times_path else {},
        extensions=extensions,
        staff_scores=load_staff_scores(staff_path, staff_ids) if staff_path else {},
        overrides=load_overrides(paths["overrides"], _worth(rubric)) if paths["overrides"] else {},
        cell_timeout_s=args.cell_timeout, notebook_timeout_s=args.notebook_timeout, keep_work=args.keep_work,
        device=args.device)
    if lms is not None:
        settings.lms = lms.lms
        settings.times = {**lms.times, **settings.times}     # a times table staff name wins
        if times_path is None:
            paths = {**paths, "times": target}
    print(f"grader: tables: {tables_line(paths)}", file=sys.stderr)
    if times_path is None and lms is None:
        print("grader: warning: no submission times table (--times or --tables DIR); zip modification "
              "times will be used", file=sys.stderr)

    if not sandbox_works(rubric, "grade", settings):
        return 2
    settings.seed = batch_seed(args.out)
    settings.calibration_s = _calibration(rubric, settings)
    try:
        engine = _engine(args, rubric, settings, len(zips))
    except ClusterError as e:
        print(f"grader: {e}", file=sys.stderr)
        return 2
    jobs, client, close, where = engine
    print(f"grader: {where}", file=sys.stderr)

    started = time.monotonic()
    progress = Progress(len(zips))
    try:
        recs = grade_batch(zips, rubric, settings, args.out, resume=not args.no_resume, jobs=jobs, client=client,
                           only=args.only, force=args.force, progress=progress)
    except KeyboardInterrupt:
        done = len(list((args.out / "records").glob("*.json")))
        print(f"grader: stopped; {done} complete record(s) are kept in {args.out / 'records'}; "
              "run the same command again to grade the rest", file=sys.stderr)
        return 130
    finally:
        if close is not None:
            close()
    counts: dict[str, int] = {}
    for r in recs:
        counts[r.status] = counts.get(r.status, 0) + 1
    print(f"graded {len(recs)} submission(s) in {time.monotonic() - started:.1f} s: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if progress.slowest:
        print("slowest:  " + ", ".join(f"{_shown(n)} {s:.0f} s" for s, n in progress.slowest[:3]))
    print(f"tables:   {tables_line(paths)}")
    _print_overrides(recs)
    _print_duplicates(recs)
    if not_graded:
        print(f"not graded: {len(not_graded)} other entr{'y' if len(not_graded) == 1 else 'ies'} of {target} "
              "(listed in the warnings above)")
    print(f"grades:   {args.out / 'grades.csv'}")
    print(f"feedback: {args.out / 'feedback'}/ (Markdown and HTML per student)")
    print(f"summary:  {args.out / 'summary.html'}")
    print(f"records:  {args.out / 'records'}/ (kept runs for regrades: {args.out / 'artifacts'}/)")
    return 0


def batch_seed(out: Path) -> int:
    """The probe seed of this output folder: drawn once (secret: staff-only, like the records),
    then kept, so that grading the folder again, or regrading after a rubric change, plans the
    same probe inputs and can judge the kept runs instead of starting kernels."""
    path = out / "seed"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        pass
    out.mkdir(parents=True, exist_ok=True)
    seed = secrets.randbits(63)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{seed}\n")
    return seed


def _engine(args: argparse.Namespace, rubric, settings: GradeSettings, n_zips: int):
    """(jobs, Dask client or None, close or None, a line saying where grading runs)."""
    if args.scheduler or args.slurm:
        from grader.cluster import check_workers, connect
        client, close = connect(args.scheduler, args.slurm)
        workers = check_workers(client, timeout_s=10 if args.scheduler else 0)
        where = (f"grading on the Dask cluster at {args.scheduler} ({workers} worker(s) now)" if args.scheduler
                 else f"grading on Slurm through dask-jobqueue ({args.slurm}); jobs start as the queue allows")
        return 0, client, close, where
    e = rubric.execution
    slots = devices.gpu_slots(args.kernels_per_gpu) if args.device == "auto" else 0
    if args.jobs is not None:
        jobs, why = max(1, args.jobs), "--jobs"
    else:
        jobs, why = default_jobs(e.threads, e.memory_mb, slots)
    # Kernels at once on this machine: a batch smaller than the workers lends the idle ones to its
    # submissions' other notebooks (grader/part_runs.py).
    settings.kernel_slots = jobs
    jobs = min(jobs, max(1, n_zips))
    device = settings.device
    if slots and jobs > 1:
        settings.device = "auto"          # each worker takes its own GPU (devices.for_slot)
        device = f"{len(devices.gpu_indices())} GPU(s), {args.kernels_per_gpu} kernel(s) each"
    return jobs, None, None, (f"{jobs} worker(s) on this machine ({why}), {settings.kernel_slots} kernel(s) at once, "
                              f"{e.threads} thread(s) and {e.memory_mb} MB per kernel, on {device}")


def _print_duplicates(recs) -> None:
    for net_id, group in duplicate_groups(recs).items():
        print(f"duplicate: {len(group)} zips resolve to net_id {_shown(net_id)}: "
              + ", ".join(repr(r.zip_name) for r in group)
              + f"; each is graded and has its own row (review column: {DUPLICATE}); staff decide which counts")


def sandbox_works(rubric, verb: str, settings: GradeSettings) -> bool:
    """Before any student: the canary notebook (a sandbox that does not hold is refused), the
    course's declared packages in the kernel, the device, and the time limits for this machine."""
    from grader.devices import DeviceError, choose
    from grader.preflight import EnvironmentIncomplete, SandboxError, preflight
    from grader.runner import exec_settings, time_limits
    try:
        device = choose(settings.device)
        preflight(exec_settings(rubric, settings, device=device), rubric.execution.packages)
        limits = time_limits(rubric, settings)
    except DeviceError as e:
        print(f"grader: refusing to {verb}: {e}", file=sys.stderr)
        return False
    except EnvironmentIncomplete as e:
        print(f"grader: refusing to {verb}: {e}", file=sys.stderr)
        return False
    except (SandboxError, RuntimeError) as e:
        print(f"grader: refusing to {verb}: the sandbox is not working: {e}", file=sys.stderr)
        return False
    settings.device = device.name
    print(f"grader: kernels run on {device.name}; time limits {limits.cell_s:g} s per cell, "
          f"{limits.notebook_s:g} s per notebook: {limits.why}", file=sys.stderr)
    return True


def _worth(rubric) -> dict[str, float]:
    return {i.id: i.points for i in rubric.items}


def _records_of(out: Path, rubric) -> list[tuple[Record, Path]] | None:
    """The records of ``out`` with their paths; None (after saying why) when there are none or
    one was graded with another rubric."""
    paths = sorted((out / "records").glob("*.json"))
    if not paths:
        print(f"grader: no records in {out / 'records'}; run 'grader grade' first", file=sys.stderr)
        return None
    loaded = []
    for p in paths:
        rec = records_io.load(p)
        if rec.rubric.get("digest") != rubric.digest:
            print(f"grader: {p.name} was graded with another rubric; grade again (or name it with --rubric)",
                  file=sys.stderr)
            return None
        loaded.append((rec, p))
    return loaded


def cmd_report(args: argparse.Namespace) -> int:
    rubric = load_rubric(args.rubric)
    loaded = _records_of(args.out, rubric)
    if loaded is None:
        return 2
    named = named_tables({"staff_scores": args.staff_scores, "overrides": args.overrides}, args.tables)
    staff_path, over_path = named["staff_scores"], named["overrides"]
    staff = load_staff_scores(staff_path, {i.id for i in rubric.items if i.kind == "staff"}) \
        if staff_path else {}
    table = load_overrides(over_path, _worth(rubric)) if over_path else {}
    done = []
    for rec, p in loaded:
        if staff_path or over_path:
            rec = rescore(rubric, rec, staff.get(rec.net_id, {}) if staff_path else None,
                          table.get(rec.net_id, {}) if over_path else None)
            records_io.save(rec, p)
        done.append((rec, p))
    for rec in flag_duplicates([r for r, _ in done]):
        records_io.save(rec, next(p for r, p in done if r is rec))
    recs = [r for r, _ in done]
    write_outputs(rubric, recs, args.out)
    print(f"rebuilt {args.out / 'grades.csv'} and {len(recs)} feedback report(s); "
          f"staff scores {staff_path or 'none'}; overrides {over_path or 'none'}")
    _print_overrides(recs)
    _print_duplicates(recs)
    return 0


def _print_overrides(recs) -> None:
    over = [(r.net_id, i) for r in recs for i in overrides.overridden(r.items)]
    if over:
        print(f"overrides: {len(over)} item(s) of {len({n for n, _ in over})} student(s) set by staff "
              "(column 'overridden' of grades.csv)")


def cmd_export(args: argparse.Namespace) -> int:
    from grader.lms import export
    rubric = load_rubric(args.rubric)
    loaded = _records_of(args.out, rubric)
    if loaded is None:
        return 2
    recs = [rec for rec, _ in loaded]
    if args.to == "brightspace":
        dest = args.file or args.out / "brightspace_import.csv"
        done = export.brightspace_csv(recs, args.item or rubric.name.upper(), dest, args.max_points, args.with_pending)
    else:
        dest = args.file or args.out / "gradescope"
        done = export.gradescope_dir(recs, {i.id: i.title for i in rubric.items}, dest, args.with_pending)
    print(f"wrote {done.path}: {done.written} student(s)")
    for zip_name, why in done.left_out:
        print(f"  left out {_shown(zip_name)}: {why}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from grader.student_check import check
    rubric = load_rubric(args.rubric)
    if not args.zip.is_file():
        print(f"grader: {args.zip} is not a file: give the zip you are going to submit", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="grader-check-") as tmp:
        cache = args.cache_dir or Path(tmp) / "cache"
        settings = GradeSettings(work_dir=Path(tmp) / "work", cache_dir=cache, device=args.device)
        if not sandbox_works(rubric, "check", settings):
            return 2
        settings.calibration_s = _calibration(rubric, settings)
        print("grader: running your notebooks in the sandbox; this takes a few minutes", file=sys.stderr)
        result = check(args.zip, rubric, settings)
    print(result.text)
    return 1 if result.fixes else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from grader.validate import table, validate

    rubric = load_rubric(args.rubric)
    if args.cache_dir is not None:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
    probe_settings = GradeSettings(work_dir=Path("."), cache_dir=args.cache_dir or Path(tempfile.mkdtemp()),
                                   device=args.device)
    if not sandbox_works(rubric, "validate", probe_settings):
        return 2
    started = time.monotonic()
    problems, records = validate(rubric, seed=args.seed, cache_dir=args.cache_dir,
                                 calibration_s=_calibration(rubric, probe_settings), device=probe_settings.device,
                                 jobs=args.jobs)
    for version, rec in records.items():
        auto = [i for i in rec.items if i["kind"] != "staff"]
        got = sum(i["points"] for i in auto)
        possible = sum(i["possible"] for i in auto)
        print(f"{version}: {got:g} / {possible:g} automatic points "
              f"({rec.timing.get('total_s', 0):.0f} s)")
    if problems:
        print(f"\n{len(problems)} item(s) do not score what the {rubric.name} notebooks must score:\n")
        print(table(problems))
        return 1
    print(f"validate: the solution scores full marks and the release scores as declared "
          f"({time.monotonic() - started:.0f} s)")
    return 0


def _calibration(rubric, settings: GradeSettings) -> float | None:
    from grader.limits import measured_speed
    e = rubric.execution
    return measured_speed(settings.cache_dir, e.threads, e.memory_mb) if e.limits == "scaled" else None


def cmd_environment(args: argparse.Namespace) -> int:
    """The course's kernel environment: the pip requirements (for make), or a check in the sandbox."""
    rubrics = [load_rubric(r) for r in (args.rubric or [DEFAULT_RUBRIC])]
    if args.requirements:
        seen: dict[str, str] = {}
        for rubric in rubrics:
            for p in rubric.execution.packages:
                if seen.setdefault(p.name, p.requirement) != p.requirement:
                    print(f"grader: the rubrics disagree on {p.name}: {seen[p.name]} and {p.requirement}",
                          file=sys.stderr)
                    return 2
        print("\n".join(seen.values()))
        return 0
    from grader.preflight import SandboxError, preflight
    status = 0
    for rubric in rubrics:
        try:
            found = preflight(packages=rubric.execution.packages)["packages"]
        except SandboxError as e:
            print(f"{rubric.path.name}: {e}", file=sys.stderr)
            status = 2
            continue
        print(f"{rubric.path.name}: the kernel has " + ", ".join(f"{k} {v}" for k, v in sorted(found.items())))
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser({"grade": cmd_grade, "validate": cmd_validate, "environment": cmd_environment,
                         "report": cmd_report, "check": cmd_check, "export": cmd_export}).parse_args(argv)
    try:
        return args.func(args)
    except (RubricError, TableError) as e:
        print(f"grader: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
