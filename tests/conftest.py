"""Shared fixtures: grade HW2 zips through the real runner, once per notebook per session.

Every test that grades the assignment's notebooks uses ``grade_zip`` with one
fixed seed and one run cache, so an identical notebook (the solution's
hw2_cnn.ipynb, say) executes once for the whole session however many tests,
samples and the validate check grade it (grader/cache.py).
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pytest

from grader.record import Record
from grader.rubric import Rubric, load_rubric
from grader.runner import GradeSettings, grade_submission
from support.builders import pdf, write_zip  # noqa: F401 (write_zip: for the tests that import it from here)

REPO = Path(__file__).resolve().parents[1]
HW2_RUBRIC = REPO / "rubrics" / "hw2.toml"
HW2_NOTEBOOKS = ("hw2_cnn.ipynb", "hw2_rnn.ipynb", "08-seq_classification.ipynb")
SESSION_SEED = 20251005


def hw2_members(version: str = "solution", **replace: bytes | None) -> dict[str, bytes]:
    """The files of an HW2 submission built from reference/hw2/<version>/; ``replace``
    maps a file name (dots and dashes as underscores, e.g. hw2_cnn_ipynb) to new bytes,
    or None to leave the file out."""
    members = {"hw2_theory.pdf": pdf()}
    members.update({n: (REPO / "reference" / "hw2" / version / n).read_bytes() for n in HW2_NOTEBOOKS})
    for key, data in replace.items():
        name = next(n for n in members if n.replace(".", "_").replace("-", "_") == key)
        if data is None:
            del members[name]
        else:
            members[name] = data
    return members


@pytest.fixture(scope="session")
def hw2_rubric() -> Rubric:
    return load_rubric(HW2_RUBRIC)


@pytest.fixture(scope="session")
def run_cache(tmp_path_factory) -> Path:
    """GRADER_RUN_CACHE (set by .ci/run) keeps the runs for `grader validate` afterwards."""
    shared = os.environ.get("GRADER_RUN_CACHE")
    if shared:
        Path(shared).mkdir(parents=True, exist_ok=True)
        return Path(shared)
    return tmp_path_factory.mktemp("run-cache")


@pytest.fixture(scope="session")
def grade_zip(run_cache, tmp_path_factory) -> Callable[..., Record]:
    """grade_zip(zip_path, rubric=None, on_time=True, **settings) -> Record, with the session's
    seed and run cache; on_time=True submits it an hour before the rubric's due time."""
    def grade(zip_path: Path, rubric: Rubric | None = None, on_time: bool = True, **overrides) -> Record:
        rubric = rubric or load_rubric(HW2_RUBRIC)
        net_id = Path(zip_path).stem.lower()
        settings = GradeSettings(work_dir=tmp_path_factory.mktemp("work"), cache_dir=run_cache,
                                 seed=SESSION_SEED, **overrides)
        if on_time and "times" not in overrides:
            settings.times = {net_id: rubric.deadline.due - timedelta(hours=1)}
        return grade_submission(Path(zip_path), rubric, settings)
    return grade


@pytest.fixture(scope="session")
def grade_zips(run_cache, tmp_path_factory) -> Callable[..., dict[str, Record]]:
    """grade_zips(zip_paths, rubric, on_time=False, **settings) -> {zip name: Record}: a whole batch
    through ``grade_batch`` on two local workers (the grader's own parallel path), with the session's
    seed and run cache; on_time=True submits every zip an hour before the rubric's due time, as
    grade_zip does. Zips must have distinct names."""
    from grader.batch import grade_batch

    def grade(zips: list[Path], rubric: Rubric, jobs: int = 2, on_time: bool = False,
              **overrides) -> dict[str, Record]:
        out = tmp_path_factory.mktemp("batch")
        if on_time:
            overrides["times"] = {Path(z).stem.lower(): rubric.deadline.due - timedelta(hours=1) for z in zips}
        e = rubric.execution
        if e.limits == "scaled" and "calibration_s" not in overrides:   # measured once, not by each worker
            from grader.limits import measured_speed
            overrides["calibration_s"] = measured_speed(run_cache, e.threads, e.memory_mb)
        settings = GradeSettings(work_dir=out / "work", cache_dir=run_cache, seed=SESSION_SEED, **overrides)
        recs = grade_batch([Path(z) for z in zips], rubric, settings, out, jobs=jobs, log=lambda m: None)
        return {r.zip_name: r for r in recs}
    return grade
