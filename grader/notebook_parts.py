"""A notebook part of one submission, in three steps: prepared (support files, the probe's
plan from the secret seed, the run's key) in the caller's thread, executed (a kept run, an
identical earlier run, or a kernel on one of this machine's slots: grader/part_runs.py) in any
thread, then the context its items are judged in."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from grader import artifacts, devices
from grader.cache import cached_execute, run_key
from grader.checks import KINDS, JudgeContext
from grader.execute import ExecSettings, NotebookRun, ProbeRequest, execute_notebook
from grader.kernel_code import PROBE_CODE, capture_prelude, reseed_cells
from grader.part_runs import Lane
from grader.planning import plan_part
from grader.rubric import Part, Rubric


@dataclass
class PreparedRun:
    """One notebook part made ready to run (in the caller's thread: planning is not thread-safe)."""
    part: Part
    path: Path                       # the submitted notebook
    nb_path: Path                    # its copy in the run folder
    run_dir: Path
    mounts: list
    plan: object | None
    plan_s: float
    probe: ProbeRequest | None
    probe_out: Path
    prelude: str | None
    env: dict[str, str]
    before: dict[int, str]
    key: str
    stored: object | None            # this submission's kept run under the same key (a regrade)


def prepare_run(part: Part, path: Path, rubric: Rubric, seed: int, artifacts_dir: Path | None,
                run_settings: ExecSettings, work: Path, datasets: dict[str, Path], zip_sha256: str | None,
                kept: dict | None) -> PreparedRun:
    """Copy the notebook and its support files into the part's run folder, plan its probe from
    the secret ``seed``, and compute the run's key; ``kept``: this zip's earlier run of the part."""
    run_dir = work / "run" / part.id
    run_dir.mkdir(parents=True)
    for s in part.support:
        src = rubric.reference_dir / s
        dst = run_dir / Path(s).name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    nb_path = run_dir / part.file
    shutil.copy2(path, nb_path)
    mounts = [(datasets[m.source] if m.source in datasets else rubric.reference_dir / m.source, m.target)
              for m in part.mounts]

    part_items = rubric.items_of(part.id)
    # Inputs are generated on the trusted side from the secret seed, once per process
    # (grader/planning.py); what judging needs (reference results, labels) stays in memory
    # and never enters the sandbox.
    t0 = time.monotonic()
    plan = plan_part(part.id, list(part_items), seed, rubric.reference_dir,
                     lambda item, ctx: KINDS[item.kind].probe_actions(item, ctx))
    plan_s = time.monotonic() - t0      # nearly 0 once the process has planned this part
    probe = None
    probe_out = work / "probe_out" / part.id
    if plan is not None:
        probe_out.mkdir(parents=True)
        probe = ProbeRequest(code=PROBE_CODE, in_dir=plan.in_dir, out_dir=probe_out)
    # Code a check kind needs in the kernel before the first student cell (instrumentation),
    # and the part's captures of trained objects.
    preludes = ([capture_prelude(part.captures)] if part.captures else []) + \
        [code for i in part_items if (code := KINDS[i.kind].prelude(i))]
    prelude = "\n".join(dict.fromkeys(preludes)) or None
    threads = str(rubric.execution.threads)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           **devices.kernel_env(run_settings.device), **dict(part.env)}
    before = reseed_cells(part, nb_path)
    key = run_key(nb_path, run_dir, run_settings, env, mounts, probe, prelude, list(part.python_path), before,
                  probe_digest=plan.digest if plan is not None else None)
    stored = None
    if kept is not None and kept.get("run_key") == key and artifacts_dir is not None:
        stored = artifacts.load(artifacts_dir, artifacts.name(zip_sha256, key))
    return PreparedRun(part, path, nb_path, run_dir, mounts, plan, plan_s, probe, probe_out, prelude, env,
                       before, key, stored)


def execute_prepared(prep: PreparedRun, cache_dir: Path | None, artifacts_dir: Path | None,
                     run_settings: ExecSettings, zip_sha256: str | None, lane: Lane) -> tuple[NotebookRun, Path | None]:
    """The part's run: its kept one (a regrade), an identical earlier one, or a kernel on a slot of
    this machine (``lane``); ``cache_dir``: where identical runs are shared (None: run it). Safe
    to call from several threads for different parts."""
    if prep.stored is not None:
        run = prep.stored.run
        run.limits = {**run.limits, "regraded": "judged again from this submission's kept run; no kernel started"}
        return run, prep.stored.probe_dir
    run, reused = cached_execute(cache_dir, prep.nb_path, prep.run_dir, run_settings, prep.env, prep.mounts, prep.probe,
                                 lambda *a, **k: lane.kernel(execute_notebook, *a, **k),
                                 prelude=prep.prelude, python_path=list(prep.part.python_path),
                                 before_cells=prep.before, key=prep.key)
    if reused:  # staff-only: the feedback must not tell a student that an identical notebook exists
        run.limits = {**run.limits, "reused_run": "identical notebook and inputs already run (grader/cache.py)"}
    probe_dir = prep.probe_out if prep.probe else None
    if artifacts_dir is not None:
        artifacts.save(artifacts_dir, artifacts.name(zip_sha256, prep.key), run, probe_dir)
    return run, probe_dir


def judge_context(prep: PreparedRun, run: NotebookRun, probe_dir: Path | None, rubric: Rubric,
                  cache_dir: Path | None, staff: dict[str, float], net_id: str) -> JudgeContext:
    """What the part's items are judged in."""
    probe_ok = run.probe is not None and run.probe.status == "ok"
    if run.probe is None or run.probe.status == "not_run":
        why = f"the notebook did not get far enough to be checked: {run.message}"
    elif not probe_ok:
        why = f"the grader's check could not run after the notebook ({run.probe.status}: {run.probe.error or ''})"
    else:
        why = None
    return JudgeContext(net_id, probe_dir if prep.probe else None, probe_ok, why, staff, prep.path,
                        executed_path=run.executed_path, reference_dir=rubric.reference_dir,
                        private=prep.plan.private() if prep.plan is not None else {},
                        plan_s=prep.plan_s, cache_dir=cache_dir)
