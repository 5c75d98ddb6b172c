"""One runner everywhere: grade one submission, (zip, rubric, settings) -> Record.

Stages: intake -> deadline -> execute (+ probe) -> check -> score. The batch
command, the tests and a student's self-check all call ``grade_submission``;
it keeps no state between calls except the dataset cache named in settings.
"""
from __future__ import annotations

import hashlib
import importlib
import fcntl
import json
import os
import secrets
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from grader import deadline as deadline_stage
from grader import devices, limits as limits_stage, overrides
from grader.checks import KINDS, ItemResult, JudgeContext
from grader.checks.base import not_run
from grader.checks.gating import apply_requires
from grader.diagnose import diagnose, excused_cells
from grader.execute import ExecSettings, NotebookRun
from grader.intake import IntakePolicy, IntakeResult, intake
from grader.record import Record, safe_key, to_jsonable, zip_key
from grader.planning import tree_digest
from grader.rubric import Part, Rubric
from grader.score import Penalty, score
from grader.judging import judge
from grader.kernel_slots import KernelSlots, default_jobs
from grader.notebook_parts import execute_prepared, judge_context, prepare_run
from grader.part_runs import PartSeconds, longest_first, run_jobs



@dataclass
class GradeSettings:
    work_dir: Path                                   # scratch space; one folder per submission
    cache_dir: Path                                  # prepared datasets, shared within a run
    times: dict[str, datetime] = field(default_factory=dict)
    extensions: dict[str, timedelta] = field(default_factory=dict)
    staff_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    overrides: dict[str, dict[str, dict]] = field(default_factory=dict)   # net id -> item -> points, comment
    seed: int = field(default_factory=lambda: secrets.randbits(63))   # secret per run
    cell_timeout_s: float | None = None              # overrides of the rubric's nominal limits
    notebook_timeout_s: float | None = None
    keep_work: bool = False
    reuse_runs: bool = True                          # identical notebook + inputs -> reuse the run (grader/cache.py)
    device: str = "auto"                             # auto | cpu | cuda:N (grader/devices.py)
    calibration_s: float | None = None               # the machine's calibration (grader/limits.py); None: measure once
    artifacts_dir: Path | None = None                # keep each run here (grader/artifacts.py) for regrades
    force: bool = False                              # run every notebook again, whatever was kept
    lms: dict[str, dict] = field(default_factory=dict)   # zip name -> what the LMS download says of it
                                                     # (grader/lms/brightspace.py: net id, given name, attempts)
    kernel_slots: int = 0                            # kernels this machine runs at once; 0: what its cores
                                                     # and memory hold (grader/kernel_slots.py)
    slots_dir: Path | None = None                    # the machine's slot locks (None: its temp folder)


def time_limits(rubric: Rubric, settings: GradeSettings) -> limits_stage.Limits:
    """The limits notebooks run under on this machine: the rubric's nominal ones, scaled."""
    e = rubric.execution
    measured = settings.calibration_s
    if e.limits == "scaled" and measured is None:
        measured = limits_stage.measured_speed(settings.cache_dir, e.threads, e.memory_mb)
    return limits_stage.limits_for(settings.cell_timeout_s or e.cell_timeout_s,
                                   settings.notebook_timeout_s or e.notebook_timeout_s,
                                   e.limits, e.limit_slack, e.limit_max_scale, measured)


def exec_settings(rubric: Rubric, settings: GradeSettings, limits: limits_stage.Limits | None = None,
                  device: devices.Device = devices.CPU) -> ExecSettings:
    e = rubric.execution
    if limits is None:
        limits = limits_stage.limits_for(settings.cell_timeout_s or e.cell_timeout_s,
                                         settings.notebook_timeout_s or e.notebook_timeout_s,
                                         "fixed", 1.0, 1.0, None)
    return ExecSettings(
        cell_timeout_s=limits.cell_s, notebook_timeout_s=limits.notebook_s, limits_why=limits.why,
        memory_mb=e.memory_mb, pids_max=e.pids_max, tmp_mb=e.tmp_mb, colab=e.colab,
        probe_timeout_s=e.probe_timeout_s, disk_mb=e.disk_mb, max_files=e.max_files, fsize_mb=e.file_mb,
        interrupt_grace_s=e.interrupt_grace_s, device=device.name, gpu_nodes=device.nodes,
        max_message_mb=e.max_message_mb,
        threads=e.threads)


def intake_policy(rubric: Rubric) -> IntakePolicy:
    i = rubric.intake
    return IntakePolicy(required=rubric.required_files, ignore=i.ignore, max_members=i.max_members,
                        max_total_bytes=int(i.max_total_mb * 2**20),
                        max_member_bytes=int(i.max_member_mb * 2**20), netid_pattern=i.netid_pattern,
                        netid_hint=i.netid_hint)


def prepare_datasets(rubric: Rubric, cache_dir: Path) -> dict[str, Path]:
    """Build the grader-held datasets once (deterministic generators in the reference package).

    Safe for parallel workers sharing ``cache_dir``: one builds under a lock, into a folder of
    its own that is renamed into place when whole; the others wait and use it."""
    out = {}
    for name, spec in rubric.datasets:
        module_name, func_name = spec.split(":")
        ref = str(rubric.reference_dir)
        if ref not in sys.path:
            sys.path.insert(0, ref)
        func = getattr(importlib.import_module(module_name), func_name)
        folder = cache_dir / rubric.name / name
        done = folder / ".complete"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.is_file():
                tmp = folder.with_name(f".{name}.{secrets.token_hex(8)}.tmp")
                try:
                    tmp.mkdir()
                    result = Path(func(tmp)).resolve()
                    (tmp / ".complete").write_text(str(result.relative_to(tmp.resolve())))
                    shutil.rmtree(folder, ignore_errors=True)
                    os.replace(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        out[name] = folder / done.read_text().strip()     # relative to the folder
    return out


def sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


_VERSION: list[str] = []


def grader_version() -> str:
    """The package version and a digest of the grader's own code: a record graded by other code
    is not current (it is regraded, from its kept runs where they still stand)."""
    if not _VERSION:
        try:
            from importlib.metadata import packages_distributions, version
            v = version(packages_distributions()["grader"][0])   # the distribution that installed this package
        except Exception:
            v = "0"
        _VERSION.append(f"{v}+{tree_digest(Path(__file__).resolve().parent)[:12]}")
    return _VERSION[0]


def inputs_digest(rubric: Rubric, settings: GradeSettings, net_id: str, zip_name: str = "") -> str:
    """What a record depends on besides the zip: a changed time, extension, staff score,
    limit or LMS entry makes an earlier record stale."""
    parts = [rubric.digest, grader_version(), net_id, str(settings.times.get(net_id)),
             json.dumps(settings.lms.get(zip_name), sort_keys=True, default=str),
             str(settings.extensions.get(net_id)),
             json.dumps(settings.staff_scores.get(net_id, {}), sort_keys=True),
             json.dumps(settings.overrides.get(net_id, {}), sort_keys=True),
             str(settings.cell_timeout_s), str(settings.notebook_timeout_s)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def grade_submission(zip_path: Path, rubric: Rubric, settings: GradeSettings,
                     previous: Record | None = None) -> Record:
    """Grade one submission; never raises for anything a submission can contain.

    ``previous``: this zip's earlier record (same content), whose kept runs and item findings
    are reused where nothing they depend on changed (a regrade), unless ``settings.force``."""
    zip_path = Path(zip_path)
    started = time.monotonic()
    trusted_side_threads()
    record = Record(net_id=safe_key(zip_path.stem).lower(), zip_name=zip_path.name,
                    zip_sha256=sha256(zip_path), status="error", reason="",
                    rubric={"name": rubric.name, "digest": rubric.digest},
                    graded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    work = settings.work_dir / zip_key(zip_path.name)
    if previous is not None and (settings.force or previous.zip_sha256 != record.zip_sha256):
        previous = None
    try:
        _grade(zip_path, rubric, settings, record, work, previous)
    except Exception as e:  # a grader bug must not stop the batch or lose the student
        record.status = "error"
        record.reason = "the grader failed on this submission; course staff will look at it"
        record.warnings.append(f"internal error: {type(e).__name__}: {e}")
        record.warnings.append(traceback.format_exc(limit=8)[-4000:])
        record.score = to_jsonable(score(rubric, [], [], rejected=True))
        record.complete = False       # graded again by the next run of the batch
    finally:
        if not settings.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    record.timing["total_s"] = round(time.monotonic() - started, 3)
    record.inputs_digest = inputs_digest(rubric, settings, record.net_id, record.zip_name)
    return record


def trusted_side_threads() -> None:
    """The grader's own torch work (references, replays of recorded trainings) is many
    small ops: threads only cost there, and beside running kernels OpenMP threads oversubscribe
    the cores (a small LSTM batch: 2.8 ms on one thread, 378 ms on two beside busy kernels)."""
    import torch
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def error_record(zip_path: Path, rubric: Rubric, settings: GradeSettings, why: str) -> Record:
    """The record of a submission the grading machinery itself failed on (a worker died)."""
    record = Record(net_id=safe_key(Path(zip_path).stem).lower(), zip_name=Path(zip_path).name,
                    zip_sha256=sha256(Path(zip_path)), status="error",
                    reason="the grader failed on this submission; course staff will look at it",
                    rubric={"name": rubric.name, "digest": rubric.digest},
                    graded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    record.warnings.append(f"internal error: {why}")
    record.score = to_jsonable(score(rubric, [], [], rejected=True))
    record.inputs_digest = inputs_digest(rubric, settings, record.net_id, record.zip_name)
    record.complete = False       # graded again by the next run of the batch
    return record


def _grade(zip_path: Path, rubric: Rubric, settings: GradeSettings, record: Record, work: Path,
           previous: Record | None) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    # intake
    t0 = time.monotonic()
    lms = settings.lms.get(zip_path.name)
    if lms is not None:
        record.lms = lms
        if lms.get("notes"):      # what the download left open (an unresolved student, a tie): staff look
            record.flags["lms"] = "; ".join(lms["notes"])
    got: IntakeResult = intake(zip_path, work / "submission", intake_policy(rubric),
                               (lms["key"], lms["given_name"]) if lms is not None else None)
    record.net_id = got.net_id
    record.intake = to_jsonable(got)
    record.timing["intake_s"] = round(time.monotonic() - t0, 3)
    if got.status != "ok":
        record.status, record.reason = "rejected", got.reason
        items = [not_run(i, f"not graded: {got.reason}") for i in rubric.items]
        _finish(rubric, record, items, [], rejected=True)
        return

    # deadline
    submitted = settings.times.get(got.net_id)
    source = "times_csv"
    if submitted is None:
        submitted, source = deadline_stage.zip_mtime(zip_path), "zip_mtime"
    verdict = deadline_stage.judge(submitted, rubric.deadline, settings.extensions.get(got.net_id, timedelta(0)),
                                   source=source)
    if source == "zip_mtime":
        record.warnings.append("no submission time for this net_id in the times CSV; the zip file's "
                               "modification time was used instead")
    record.deadline = to_jsonable(verdict)
    if verdict.status == "rejected":
        record.status, record.reason = "late_rejected", verdict.message
        items = [not_run(i, "not graded: the submission came in after the late window") for i in rubric.items]
        _finish(rubric, record, items, [], rejected=True)
        return

    # execute + probe, then check, part by part
    datasets = prepare_datasets(rubric, settings.cache_dir) if any(p.mounts for p in rubric.parts) else {}
    if any(p.kind == "notebook" for p in rubric.parts):
        run_settings = exec_settings(rubric, settings, time_limits(rubric, settings), devices.choose(settings.device))
    items: list[ItemResult] = []
    not_executable: list[str] = []
    staff = settings.staff_scores.get(got.net_id, {})
    runs = _run_parts(rubric, settings, run_settings if runnable(rubric, got) else None, got, work, datasets,
                      record, previous)
    for part in rubric.parts:
        path = got.files.get(part.file)
        problem = got.problems.get(part.file)
        part_items = rubric.items_of(part.id)
        if path is None or (problem and part.kind == "notebook"):
            why = (f"{part.file} could not be read: {problem}" if problem
                   else f"{part.file} is missing from the zip")
            if problem and part.kind == "notebook":
                not_executable.append(f"{part.file}: {problem}")
            ctx = JudgeContext(got.net_id, None, False, why, staff, None)
            items += [KINDS[i.kind].judge(i, ctx) if i.kind == "staff" and i.id in staff else not_run(i, why)
                      for i in part_items]
            continue
        if part.kind == "pdf":
            if problem:
                record.warnings.append(f"{part.file}: {problem}")
            ctx = JudgeContext(got.net_id, None, False, problem, staff, path)
            for i in part_items:
                if problem and i.id not in staff:
                    items.append(not_run(i, f"{part.file} is not a readable PDF ({problem}), so staff cannot grade it"))
                else:
                    items.append(KINDS[i.kind].judge(i, ctx))
            continue
        prep, run, probe_dir = runs[part.id]
        ctx = judge_context(prep, run, probe_dir, rubric, settings.cache_dir, staff, got.net_id)
        key = prep.key
        record.notebooks[part.id] = {**to_jsonable(run), "run_key": key}
        notes = diagnose(run.executed_path, record.notebooks[part.id]["cells"], run.device,
                         rubric.execution.packages)
        record.notebooks[part.id]["notes"] = to_jsonable(notes)
        record.timing[f"{part.id}_s"] = round(run.seconds, 3)
        if not executable(run, rubric.execution.test_failures, excused_cells(notes)):
            not_executable.append(f"{part.file}: {run.message}")
        t0 = time.monotonic()
        found = [judge(i, ctx, key, rubric, staff, record, previous) for i in part_items]
        items += apply_requires(part_items, found)
        if run.probe is not None:
            record.timing[f"{part.id}_probe_s"] = round(run.probe.seconds, 3)
        record.timing[f"{part.id}_checks_s"] = round(time.monotonic() - t0 + ctx.plan_s, 3)

    penalties = []
    if got.naming_penalty:
        causes = got.naming_issues + [f"extra file in the zip: {f}" for f in got.extra_files]
        penalties.append(Penalty("naming", rubric.penalties.naming_pct, "; ".join(causes)))
    if verdict.status == "late":
        penalties.append(Penalty("late", verdict.penalty_pct, verdict.message))
    if not_executable:
        penalties.append(Penalty("not_executable", rubric.penalties.not_executable_pct,
                                 "a notebook could not be executed from top to bottom: " + "; ".join(not_executable)))
    overrides.apply(items, settings.overrides.get(got.net_id, {}))
    record.status = "graded"
    record.reason = _short_reason(items, penalties)
    _finish(rubric, record, items, penalties, rejected=False)


def runnable(rubric: Rubric, got: IntakeResult) -> list[Part]:
    """The notebook parts this submission has a readable notebook for."""
    return [p for p in rubric.parts if p.kind == "notebook" and got.files.get(p.file) is not None
            and not got.problems.get(p.file)]


def kernel_slots(rubric: Rubric, settings: GradeSettings) -> KernelSlots:
    count = settings.kernel_slots or default_jobs(rubric.execution.threads, rubric.execution.memory_mb)[0]
    return KernelSlots(count, settings.slots_dir)


def _run_parts(rubric: Rubric, settings: GradeSettings, run_settings: ExecSettings | None, got: IntakeResult,
               work: Path, datasets: dict[str, Path], record: Record, previous: Record | None) -> dict:
    """part id -> (prepared run, run, probe folder) of every runnable notebook part: prepared here
    in part order, run on this machine's kernel slots (grader/part_runs.py: the notebooks of one
    submission side by side where slots are idle, the longest here last time first), so judging
    afterwards is in part order."""
    parts = runnable(rubric, got)
    if not parts:
        return {}
    prepared = [prepare_run(p, got.files[p.file], rubric, settings.seed, settings.artifacts_dir, run_settings,
                            work, datasets, record.zip_sha256,
                            previous.notebooks.get(p.id) if previous is not None else None) for p in parts]
    cache_dir = settings.cache_dir if settings.reuse_runs and not settings.force else None
    seconds = PartSeconds(settings.cache_dir / "machine" / f"part-seconds-{safe_key(rubric.name)}")
    began = time.monotonic()

    def job(prep):
        def run(lane):
            lane.started = None
            out = execute_prepared(prep, cache_dir, settings.artifacts_dir, run_settings, record.zip_sha256, lane)
            if lane.started is not None:     # a kernel ran: when it got its slot, from the first part's start
                record.timing[f"{prep.part.id}_started_s"] = round(lane.started - began, 3)
                seconds.remember(prep.part.id, time.monotonic() - lane.started)
            return out
        return run
    order = longest_first([seconds.get(p.part.id) for p in prepared])
    done = run_jobs([job(p) for p in prepared], kernel_slots(rubric, settings), order)
    return {prep.part.id: (prep, run, probe_dir) for prep, (run, probe_dir) in zip(prepared, done)}


def executable(run: NotebookRun, test_failures: tuple[str, ...], excused: set[int] = frozenset()) -> bool:
    """Ran top to bottom; a cell whose only fault is a failed test of the notebook's own
    (an assert on a wrong answer) does not make the code unexecutable: the items score it;
    nor does a cell whose fault is the grading environment's (``excused``, grader/diagnose.py).
    A failed test is one the grader found in the cell's source at the failing line (an
    ``assert`` or a ``gradcheck`` call, ``CellResult.self_check``), not an exception's name."""
    if run.status == "completed":
        return True
    return run.status == "errors" and all((c.error_name in test_failures and c.self_check is not None)
                                          or c.index in excused for c in run.cells if c.status == "error")


def _short_reason(items: list[ItemResult], penalties: list[Penalty]) -> str:
    bits = [f"{p.kind.replace('_', ' ')} penalty {p.pct:g}%" for p in penalties]
    lost = [i for i in items if i.status in ("failed", "partial", "not_run")]
    if lost:
        bits.append(f"{len(lost)} item(s) lost points")
    pending = sum(1 for i in items if i.status == "pending")
    if pending:
        bits.append(f"{pending} item(s) await staff grading")
    return "; ".join(bits) or "all automatic items passed"


def _finish(rubric: Rubric, record: Record, items: list[ItemResult], penalties: list[Penalty], rejected: bool) -> None:
    record.items = to_jsonable(items)
    record.penalties = to_jsonable(penalties)
    record.score = to_jsonable(score(rubric, items, penalties, rejected))
