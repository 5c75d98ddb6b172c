"""How the grader reads the kernel, attacked (tests/hostile/protocol_cases.py), through the real
runner and sandbox: a failed self-check is excused only when the grader finds the assert or
gradcheck at the failing line of the notebook's own source; what a notebook installs in IPython
(transformers, traceback hooks) does not reach the grader's hidden cells; and the kernel's
messages cannot grow the grader's own memory beyond a stated bound.

The memory tests grade one notebook in a grader process of its own and read its peak resident
memory (VmHWM) before and after."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from grader.batch import grade_batch
from grader.run_types import GRADER_MEMORY_MB, MAX_MESSAGE_MB
from grader.rubric import load_rubric
from grader.runner import GradeSettings
from hostile.exec_cases import ANSWER, F
from hostile.protocol_cases import BIG_MESSAGE, CASES, KEPT, MANY_FRAMES, ProtocolCase
from test_hostile_exec import RUBRIC as EXEC_RUBRIC
from support.builders import notebook

REPO = Path(__file__).resolve().parents[1]
# The hostile mini rubric with room for a cell that imports torch on a loaded machine.
RUBRIC = re.sub(r"^cell_timeout_s = .*$", "cell_timeout_s = 20", EXEC_RUBRIC, flags=re.M)
RUBRIC = re.sub(r"^notebook_timeout_s = .*$", "notebook_timeout_s = 90", RUBRIC, flags=re.M)
HONEST = ("hon1", "hon2")


def _zip(path: Path, cells: tuple[str, ...]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("work.ipynb", notebook(*cells))
    return path


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    (root / "ref").mkdir()
    (root / "r.toml").write_text(RUBRIC)
    rubric = load_rubric(root / "r.toml")
    subs, out = root / "subs", root / "out"
    subs.mkdir()
    order = [HONEST[0]] + [c.net_id for c in CASES] + [HONEST[1]]
    by_id = {c.net_id: c for c in CASES}
    zips = [_zip(subs / f"{n}.zip", by_id[n].cells if n in by_id else (F, ANSWER)) for n in order]
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache", keep_work=True)
    records = grade_batch(zips, rubric, settings, out, log=lambda m: None)
    return {"records": {r.net_id: r for r in records}, "out": out}


def _param(c: ProtocolCase):
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=c.open_hole)] if c.open_hole else []
    return pytest.param(c, id=f"{c.net_id}-{c.what[:40]}", marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case_earns_what_its_work_earns(batch, case: ProtocolCase):
    rec = batch["records"][case.net_id]
    assert rec.status == "graded", (rec.status, rec.reason, rec.warnings[-2:])
    run = rec.notebooks["nb"]
    failing = [c for c in run["cells"] if c["status"] == "error"]
    detail = (run["status"], run["message"], [(c["index"], c["error_name"], c["self_check"],
                                               (c["traceback"] or "")[-400:]) for c in failing])
    assert run["status"] == case.status, detail
    assert {i["id"]: i["points"] for i in rec.items} == {"nb.f": case.points[0], "nb.answer": case.points[1]}, \
        (detail, rec.items)
    penalty = sum(p["pct"] for p in rec.penalties if p["kind"] == "not_executable")
    assert penalty == case.penalty, (detail, rec.penalties)
    assert rec.score["final"] == pytest.approx(sum(case.points) * (1 - case.penalty / 100))
    if case.self_checks:
        assert tuple(c["self_check"] for c in failing) == case.self_checks, detail
    for word in case.message:
        assert word in run["message"], run["message"]
    assert run["limits"]["sandbox_check"].startswith("passed")
    assert "leftover_processes" not in run["limits"]


def test_honest_students_are_unaffected(batch):
    for net_id in HONEST:
        rec = batch["records"][net_id]
        assert rec.notebooks["nb"]["status"] == "completed" and rec.score["final"] == 6
        assert rec.penalties == []


def test_a_violation_is_said_in_the_feedback_and_the_record(batch):
    rec = batch["records"]["pr10"]
    assert rec.notebooks["nb"]["limits"]["messages"].startswith(f"{MAX_MESSAGE_MB} MB per message")
    feedback = (batch["out"] / "feedback" / "pr10.md").read_text()
    assert f"larger than {MAX_MESSAGE_MB} MB" in feedback
    assert any(f"larger than {MAX_MESSAGE_MB} MB" in p["reason"] for p in rec.penalties)


def test_records_stay_small_when_the_kernel_floods_its_messages(batch):
    for net_id in ("pr12", "pr13", "pr14", "pr15", "pr16"):
        path = batch["out"] / "records" / f"{net_id}.zip.json"
        assert path.stat().st_size < 300_000, (net_id, path.stat().st_size)
        executed = batch["out"] / "work" / f"{net_id}.zip" / "run" / "executed" / "work.ipynb"
        assert executed.stat().st_size < 5_000_000, (net_id, executed.stat().st_size)


# ---------------------------------------------------------------- the grader's own memory

MEASURE = textwrap.dedent("""
    import json, sys, zipfile
    from pathlib import Path
    import nbformat
    from grader.rubric import load_rubric
    from grader.runner import GradeSettings, grade_submission
    import grader.execute, grader.sandbox, grader.checks

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) << 10

    root, cells = Path(sys.argv[1]), json.loads(sys.argv[2])
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    with zipfile.ZipFile(root / "pr99.zip", "w") as zf:
        zf.writestr("work.ipynb", nbformat.writes(nb))
    rubric = load_rubric(root / "r.toml")
    before = hwm()
    rec = grade_submission(root / "pr99.zip", rubric, GradeSettings(work_dir=root / "w", cache_dir=root / "c",
                                                                     reuse_runs=False))
    run = rec.notebooks["nb"]
    print(json.dumps({"before": before, "after": hwm(), "status": run["status"], "message": run["message"],
                      "final": rec.score["final"]}))
""")


def _peak(tmp_path: Path, cells: tuple[str, ...], memory_mb: int = 1024) -> dict:
    """Grade ``cells`` in a grader process of its own: its peak memory before and after (bytes)."""
    (tmp_path / "ref").mkdir(exist_ok=True)
    rubric = re.sub(r"^memory_mb = .*$", f"memory_mb = {memory_mb}", RUBRIC, flags=re.M)
    (tmp_path / "r.toml").write_text(rubric)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path), json.dumps(list(cells))],
                          capture_output=True, text=True, timeout=400, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


MB = 1 << 20


@pytest.mark.slow
def test_one_huge_message_never_reaches_the_graders_memory(tmp_path):
    # One display message of 4 x 150 MB: it grew the grader from 0.24 to 1.96 GB before the
    # limit; ZMQ now drops it on its size, before reading it.
    got = _peak(tmp_path, BIG_MESSAGE, memory_mb=4096)
    assert got["status"] == "protocol_violation" and f"larger than {MAX_MESSAGE_MB} MB" in got["message"], got
    assert got["after"] - got["before"] < 64 * MB, (got["before"] // MB, got["after"] // MB)


@pytest.mark.slow
def test_many_frames_below_the_limit_are_stopped_near_the_memory_budget(tmp_path):
    # 4 messages of 64 frames of 16 MB, all one 16 MB buffer in the kernel: 4 GB in the
    # grader before; now the kernel is stopped once its messages take GRADER_MEMORY_MB.
    got = _peak(tmp_path, MANY_FRAMES)
    assert got["status"] == "protocol_violation" and "grader's memory" in got["message"], got
    assert got["after"] - got["before"] < (GRADER_MEMORY_MB + 128) * MB, (got["before"] // MB, got["after"] // MB)


@pytest.mark.slow
def test_what_the_grader_keeps_of_a_flood_stays_small(tmp_path):
    # Widget state, display updates, huge metadata, error floods, the unread stdin channel:
    # 0.7 to 9 GB kept or queued before; in transit now, at most a few messages of 20 MB.
    got = _peak(tmp_path, KEPT)
    assert got["status"] == "completed" and got["final"] == 6, got
    assert got["after"] - got["before"] < 320 * MB, (got["before"] // MB, got["after"] // MB)


@pytest.mark.slow
def test_a_batch_with_a_violation_resumes_without_grading_it_again(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "r.toml").write_text(RUBRIC)
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    big = next(c for c in CASES if c.net_id == "pr10").cells
    for name, cells in (("aa001", (F, ANSWER)), ("bb002", big), ("cc003", (F, ANSWER))):
        _zip(subs / f"{name}.zip", cells)
    cmd = [sys.executable, "-m", "grader.cli", "grade", str(subs), "--rubric", str(tmp_path / "r.toml"),
           "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert first.returncode == 0, first.stderr[-2000:]
    rec = json.loads((out / "records" / "bb002.zip.json").read_text())
    assert rec["status"] == "graded" and rec["notebooks"]["nb"]["status"] == "protocol_violation"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("aa001", "bb002", "cc003"):
        assert f"{name}.zip: reusing the record" in again.stderr, again.stderr[-2000:]
    assert ": grading" not in again.stderr
