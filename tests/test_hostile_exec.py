"""The hostile notebook corpus (tests/hostile/exec_cases.py) graded as one batch through the
real runner and sandbox, with honest students before and after the hostile ones.

For every case: the batch goes on, the case gets the points its work earns and no more,
the honest students' records do not change, nothing reaches the host (files, processes,
sockets, secrets) and the grader's outputs hold only what the grader wrote."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.batch import grade_batch
from grader.record import load as load_record
from grader.rubric import load_rubric
from grader.runner import GradeSettings
from grader.sandbox import REPO_ROOT
from hostile.exec_cases import ANSWER, CASES, F, FULL, ExecCase
from support.builders import ANSWER_ITEM, F_ITEM, mini_rubric, notebook, procs_with

RUBRIC = mini_rubric(
    "hostile", title="Hostile corpus", reference_dir="ref",
    execution={"cell_timeout_s": 3, "notebook_timeout_s": 45, "probe_timeout_s": 5, "memory_mb": 1024,
               "pids_max": 64, "tmp_mb": 64, "disk_mb": 96},
    items=[F_ITEM, ANSWER_ITEM])

DISK_MB = 96                                 # execution.disk_mb of the rubric above
SEED = 4_611_686_018_427_387_903 - 12_345    # fixed here so the test can look for it
# Intake-level attacks inside the same batch (traversal onto the required name, a bomb).
INTAKE_IN_BATCH = {
    "in01": {"../work.ipynb": b"{}", "/work.ipynb": b"{}", "work.ipynb": None},
    "in02": {"work.ipynb": bytes(32 << 20)},
}
HONEST = ("hon1", "hon2")


def _notebook(cells: tuple[str, ...], fill: dict[str, str]) -> bytes:
    for k, v in fill.items():
        cells = tuple(c.replace(k, v) for c in cells)
    return notebook(*cells)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "ref").mkdir()
    rubric_path = root / "hostile.toml"
    rubric_path.write_text(RUBRIC)
    rubric = load_rubric(rubric_path)
    subs, out = root / "subs", root / "out"
    subs.mkdir()
    token = f"hostile-{os.getpid()}-{time.time_ns()}"
    secret = f"s3cr3t-{time.time_ns()}"

    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind("\0" + token)
    unix.listen(4)
    unix.setblocking(False)
    host_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", f"host-{token}"])

    fill = {"@OUT@": str(out), "@SUBS@": str(subs), "@REPO@": str(REPO_ROOT), "@RUBRIC@": str(rubric_path),
            "@TOKEN@": token, "@HOSTTOKEN@": f"host-{token}", "@SECRET@": secret,
            "@PORT@": str(tcp.getsockname()[1]), "@UDP@": str(udp.getsockname()[1]), "@ABSTRACT@": token}
    honest = _notebook((F, ANSWER), {})
    order = [HONEST[0]] + [c.net_id for c in CASES] + list(INTAKE_IN_BATCH) + [HONEST[1]]
    zips = []
    for net_id in order:
        path = subs / f"{net_id}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            if net_id in INTAKE_IN_BATCH:
                for name, data in INTAKE_IN_BATCH[net_id].items():
                    zf.writestr(name, honest if data is None else data)
            else:
                case = next((c for c in CASES if c.net_id == net_id), None)
                zf.writestr("work.ipynb", honest if case is None else _notebook(case.cells, fill))
        zips.append(path)

    old_env = os.environ.get("GRADER_HOSTILE_SECRET")
    os.environ["GRADER_HOSTILE_SECRET"] = secret
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache", seed=SEED, keep_work=True)
    t0 = time.monotonic()
    try:
        records = grade_batch(zips, rubric, settings, out, log=lambda m: None)
    finally:
        if old_env is None:
            os.environ.pop("GRADER_HOSTILE_SECRET", None)
        else:
            os.environ["GRADER_HOSTILE_SECRET"] = old_env
    seconds = time.monotonic() - t0
    reached = []
    for sock in (tcp, unix):
        try:
            reached.append(sock.accept())
        except (BlockingIOError, OSError):
            pass
    try:
        reached.append(udp.recvfrom(100))
    except (BlockingIOError, OSError):
        pass
    host_alive = host_proc.poll() is None
    host_proc.kill()
    host_proc.wait()
    for sock in (tcp, udp, unix):
        sock.close()
    yield {"out": out, "records": {r.net_id: r for r in records}, "order": order, "token": token,
           "reached": reached, "host_alive": host_alive, "seconds": seconds, "root": root}


def _record(batch, net_id):
    rec = batch["records"][net_id]
    assert rec.status in ("graded", "rejected"), (rec.status, rec.reason, rec.warnings[-2:])
    return rec


def _points(rec) -> tuple[float, float]:
    items = {i["id"]: i["points"] for i in rec.items}
    return items["nb.f"], items["nb.answer"]


def _limited_by_cgroup(run: dict, key: str) -> bool:
    return run["limits"].get(key, "").startswith("cgroup")


def _param(c: ExecCase):
    marks = [pytest.mark.xfail(strict=True, reason=c.open_hole)] if c.open_hole else []
    return pytest.param(c, id=f"{c.net_id}-{c.what[:40]}", marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case_earns_what_its_work_earns(batch, case: ExecCase):
    rec = _record(batch, case.net_id)
    run = rec.notebooks["nb"]
    status, points = case.status, case.points
    # Without the cgroup controllers the rlimit fallback stops the hog / bomb with an error instead.
    if case.net_id == "ex03" and not _limited_by_cgroup(run, "memory"):
        status, points = "errors", FULL
    if case.net_id == "ex04" and not _limited_by_cgroup(run, "pids"):
        pytest.skip("no writable cgroup v1 pids controller: a fork bomb is limited by time only")
    detail = (run["status"], run["message"], [(c["index"], c["status"], c["error_name"], (c["traceback"] or "")[-600:])
                                              for c in run["cells"] if c["status"] != "ok"][:3])
    assert run["status"] == status, detail
    assert _points(rec) == points, (detail, rec.items)
    for word in case.message:
        assert word in run["message"], run["message"]
    assert run["limits"]["sandbox_check"].startswith("passed")
    assert {"memory", "pids", "network", "cpu", "file_size", "tmp", "disk", "output"} <= set(run["limits"])
    assert "leftover_processes" not in run["limits"]


def test_honest_students_are_unaffected(batch):
    a, b = (_record(batch, n) for n in HONEST)
    for rec in (a, b):
        assert rec.status == "graded" and rec.notebooks["nb"]["status"] == "completed"
        assert rec.score["final"] == 6 and _points(rec) == FULL
        assert rec.net_id in rec.zip_name
    strip = lambda rec: [{k: v for k, v in i.items()} for i in rec.items]  # noqa: E731
    assert strip(a) == strip(b)
    assert a.score == b.score and a.penalties == b.penalties == []


def test_every_submission_has_exactly_one_record(batch):
    out = batch["out"]
    names = sorted(p.name for p in (out / "records").iterdir())
    assert names == sorted(f"{n}.zip.json" for n in batch["order"])
    for p in (out / "records").iterdir():
        rec = load_record(p)
        assert rec.zip_name == p.name[: -len(".json")], "a record was replaced by a student's file"
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 1 + len(batch["order"])
    assert {r.split(",")[0] for r in rows[1:]} == set(batch["order"])


def test_records_and_executed_notebooks_stay_small_under_floods(batch):
    out = batch["out"]
    for p in (out / "records").iterdir():
        assert p.stat().st_size < 300_000, (p.name, p.stat().st_size)
    for net_id in ("ex07", "ex08", "ex09"):
        executed = out / "work" / f"{net_id}.zip" / "run" / "executed" / "work.ipynb"
        assert executed.stat().st_size < 25_000_000, (net_id, executed.stat().st_size)
    flood = nbformat.read(str(out / "work" / "ex07.zip" / "run" / "executed" / "work.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for o in flood.cells[1].outputs)
    assert len(text) < 25_000 and "output truncated" in text and text.rstrip().endswith("x" * 100)
    images = nbformat.read(str(out / "work" / "ex08.zip" / "run" / "executed" / "work.ipynb"), as_version=4)
    kept = [sum(1 for o in c.outputs if "image/png" in o.get("data", {})) for c in images.cells[1:4]]
    assert kept[0] == 50 and sum(kept) <= 50 + 6, kept
    rec = _record(batch, "ex09")
    assert sum(1 for c in rec.notebooks["nb"]["cells"] if c["traceback"]) == 20


def test_no_process_survives(batch):
    assert procs_with(batch["token"]) == []


def test_nothing_reached_the_host(batch):
    token = batch["token"]
    assert batch["reached"] == []
    assert batch["host_alive"], "a student process killed a host process"
    out = batch["out"]
    candidates = [Path("/tmp") / f"hostile-{token}", Path("/etc") / f"hostile-{token}",
                  REPO_ROOT / f"hostile-{token}", out / f"hostile-{token}", Path(os.__file__).parent / f"hostile-{token}",
                  Path("/home/student") / f"hostile-{token}"]
    assert [str(p) for p in candidates if p.exists()] == []
    assert not (out / "records" / "hon2.zip.json").read_text().count('"score": {"final": 0}')


def test_disk_filler_is_stopped_near_the_limit(batch):
    rec = _record(batch, "ex05")
    work = batch["out"] / "work" / "ex05.zip" / "run" / "nb"
    written = sum(p.stat().st_size for p in work.glob("fill*.bin"))
    assert written < (DISK_MB + 400) << 20, written
    assert "disk" in rec.notebooks["nb"]["message"]


def test_seed_never_reaches_the_student_or_the_outputs(batch):
    out = batch["out"]
    secret_forms = {str(SEED), str(SEED % 2**31)}
    rec = _record(batch, "es08")
    assert rec.notebooks["nb"]["status"] == "completed"          # /grader/in was empty during the cells
    executed = (out / "work" / "es08.zip" / "run" / "executed" / "work.ipynb").read_text()
    outputs = [executed, (out / "grades.csv").read_text()]
    outputs += [p.read_text() for p in (out / "records").iterdir()]
    outputs += [p.read_text() for p in (out / "feedback").iterdir()]
    for text in outputs:
        assert not any(s in text for s in secret_forms)


def test_notebook_rewritten_on_disk_is_judged_as_run(batch):
    rec = _record(batch, "ta04")
    executed = nbformat.read(str(batch["out"] / "work" / "ta04.zip" / "run" / "executed" / "work.ipynb"),
                             as_version=4)
    assert len(executed.cells) == 1 and "nbformat.write" in executed.cells[0].source
    assert _points(rec) == (0.0, 0.0)


def test_slow_probe_is_cut_off_and_reported(batch):
    rec = _record(batch, "ta05")
    run = rec.notebooks["nb"]
    assert run["probe"]["status"] == "timeout"
    assert "5 s" in run["probe"]["error"]
    assert all(i["status"] == "not_run" for i in rec.items)


def test_intake_attacks_in_the_batch(batch):
    traversal = _record(batch, "in01")
    assert traversal.status == "graded" and _points(traversal) == FULL
    assert any("'..'" in w for w in traversal.intake["warnings"])
    assert not (batch["out"] / "work" / "work.ipynb").exists()
    bomb = _record(batch, "in02")
    assert bomb.status == "rejected" and "zip bomb" in bomb.reason


def test_batch_runtime(batch):
    # 30-odd submissions, several of which run into a 3 s limit.
    assert batch["seconds"] < 240, batch["seconds"]
