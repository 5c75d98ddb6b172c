"""The control corpus (tests/hostile/control_cases.py) through the real ``grader grade``:
real zips, the real intake, runner and sandbox, the real records, grades.csv and feedback.

For every run: tables come only from what staff name (never from the submissions folder;
what sits there is ignored with a warning) and the summary names the tables used. For
every case: its record keeps the grade its work and the staff's tables give, under a record
name of its own, and its own grades.csv row shows it; the points the attack would add are
not there. Zips that resolve to one net_id are all graded, all reported and all flagged."""
from __future__ import annotations

import contextlib
import io
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from grader.batch import grade_batch, record_path
from grader.cli import main as cli_main
from grader.record import Record, load as load_record, safe_key, save as save_record, zip_key
from grader.report import report_name
from grader.rubric import load_rubric
from grader.runner import GradeSettings
from hostile.control_cases import RUNS, ControlCase, ControlRun
from support.builders import pdf as answer_sheet, ANSWER_ITEM, F_ITEM, THEORY_ITEM, THEORY_PART, mini_rubric, notebook, zip_bytes

RUBRIC = mini_rubric(
    "control", title="Control tables", reference_dir="ref", due="2025-10-05T23:59:00",
    timezone="America/New_York",
    execution={"cell_timeout_s": 10, "notebook_timeout_s": 45, "probe_timeout_s": 10, "memory_mb": 1024},
    parts=[THEORY_PART, {"id": "nb", "file": "work.ipynb", "points": 6}],
    items=[THEORY_ITEM, F_ITEM, ANSWER_ITEM])

BY_NAME = {r.name: r for r in RUNS}


def _zip_bytes(cells: tuple[str, ...], pdf: bytes) -> bytes:
    return zip_bytes({"theory.pdf": pdf, "work.ipynb": notebook(*cells)})


def _fill(arg: str, subs: Path, tables: Path) -> str:
    return arg.replace("@SUBS@", str(subs)).replace("@TABLES@", str(tables))


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return answer_sheet("answers")


@pytest.fixture(scope="module")
def graded(tmp_path_factory, pdf):
    """graded(run) -> the run's folders, exit status, stdout, stderr and grades.csv (each run once)."""
    done: dict[str, dict] = {}

    def get(run: ControlRun) -> dict:
        if run.name in done:
            return done[run.name]
        root = tmp_path_factory.mktemp(run.name)
        (root / "ref").mkdir()
        (root / "rubric.toml").write_text(RUBRIC)
        subs, tables, out = root / "subs", root / "course", root / "out"
        subs.mkdir()
        tables.mkdir()
        for case in run.cases:
            path = subs / case.zip_name
            path.write_bytes(_zip_bytes(case.cells, pdf))
            if case.mtime:
                t = datetime.fromisoformat(case.mtime).timestamp()
                os.utime(path, (t, t))
        for name in run.stray:
            if name.endswith("/"):
                (subs / name).mkdir()
                (subs / name / f"{name.rstrip('/')}.zip").write_bytes(_zip_bytes(("x = 1",), pdf))
            else:
                (subs / name).write_bytes(_zip_bytes(("x = 1",), pdf))
        for name, text in run.beside.items():
            (subs / name).write_text(text)
        for name, text in run.named.items():
            (tables / name).write_text(text)
        argv = ["grade", str(subs), "--rubric", str(root / "rubric.toml"), "--out", str(out),
                *(_fill(a, subs, tables) for a in run.args)]
        rc, stdout, stderr = _cli(argv)
        grades = pd.read_csv(out / "grades.csv", dtype={"net_id": str, "review": str}, keep_default_na=False) \
            if (out / "grades.csv").exists() else None
        done[run.name] = {"root": root, "subs": subs, "tables": tables, "out": out, "argv": argv, "rc": rc,
                          "stdout": stdout, "stderr": stderr, "grades": grades}
        return done[run.name]
    return get


def _cases():
    return [pytest.param(r, c, id=f"{r.name}-{c.zip_name}") for r in RUNS for c in r.cases]


@pytest.mark.parametrize("run,case", _cases())
def test_case_keeps_its_record(graded, run: ControlRun, case: ControlCase):
    g = graded(run)
    assert g["rc"] == 0, g["stderr"][-3000:]
    path = record_path(g["out"], g["subs"] / case.zip_name)
    if case.record:
        assert path.name == case.record
    rec = load_record(path)
    assert rec.zip_name == case.zip_name, "another zip's record took this zip's place"
    items = {i["id"]: i for i in rec.items}
    assert rec.status == case.status, (rec.reason, rec.warnings)
    assert {p["kind"]: p["pct"] for p in rec.penalties} == case.penalties, rec.penalties
    theory = items["theory.q1"]
    if case.staff is None:
        assert theory["status"] in ("pending", "not_run") and theory["points"] == 0, theory
    else:
        assert theory["points"] == case.staff, theory
    assert sorted(rec.flags) == sorted(case.flags), rec.flags
    row = g["grades"].set_index("zip_name").loc[case.zip_name]
    for final in (rec.score["final"], row["final_score"]):
        assert final == pytest.approx(case.final), (final, rec.reason)
        assert final < case.final + case.must_not_gain - 1e-9, f"{case.zip_name} gained what the attack gives"
    assert set(row["review"].split()) >= set(case.flags)
    if case.status != "late_rejected":
        assert rec.deadline["source"] == ("times_csv" if run.tables["submission times"] != "none" else "zip_mtime")


@pytest.mark.parametrize("run", [pytest.param(r, id=r.name) for r in RUNS if r.rc == 0])
def test_summary_names_the_tables_and_warns_of_the_ignored(graded, run: ControlRun):
    g = graded(run)
    line = next(l for l in g["stdout"].splitlines() if l.startswith("tables:"))
    for word, name in run.tables.items():
        shown = "none" if name == "none" else str(g["tables"] / name)
        assert f"{word} {shown}" in line, line
    for name in run.beside:
        ignored = f"{g['subs'] / name} is beside the submissions and was ignored"
        assert ignored in g["stderr"], g["stderr"][-3000:]
    assert str(g["subs"]) not in line, line


@pytest.mark.parametrize("run", [pytest.param(r, id=r.name) for r in RUNS if r.rc == 0])
def test_every_zip_has_its_own_record_row_and_report(graded, run: ControlRun):
    g = graded(run)
    out = g["out"]
    records = sorted(p.name for p in (out / "records").glob("*.json"))
    assert records == sorted(record_path(out, g["subs"] / c.zip_name).name for c in run.cases)
    assert sorted(g["grades"]["zip_name"]) == sorted(c.zip_name for c in run.cases)
    reports = sorted(p.name for p in (out / "feedback").glob("*.md"))
    assert len(reports) == len(run.cases), reports


def test_duplicates_are_flagged_graded_and_reported_apart(graded):
    g = graded(BY_NAME["times-flag"])
    rows = g["grades"][g["grades"]["net_id"] == "ab1234"]
    assert sorted(rows["zip_name"]) == ["ab1234.zip", "ab1234.zip~"]
    assert all("duplicate_net_id" in r.split() for r in rows["review"])
    assert "duplicate: 2 zips resolve to net_id ab1234: 'ab1234.zip', 'ab1234.zip~'" in g["stdout"]
    feedback = g["out"] / "feedback"
    assert not (feedback / "ab1234.md").exists(), "one of two reports would pass for the student's only one"
    real = feedback / report_name(load_record(g["out"] / "records" / "ab1234.zip.json"), True)
    assert real.exists() and "Score: **6 / 10**" in real.read_text()
    assert (feedback / "lt1001.md").exists()            # a net_id with one zip keeps its plain name
    flag = load_record(g["out"] / "records" / "ab1234.zip.json").flags["duplicate_net_id"]
    assert "'ab1234.zip~'" in flag


def test_other_entries_of_the_folder_are_listed_not_dropped(graded):
    run = BY_NAME["times-flag"]
    g = graded(run)
    warning = next(l for l in g["stderr"].splitlines() if "not submissions and were not graded" in l)
    for name in run.stray:
        assert name in warning, warning
    assert f"not graded: {len(run.stray)} other entries" in g["stdout"]
    assert "cd3456" not in set(g["grades"]["net_id"]) and "ef7890" not in set(g["grades"]["net_id"])


@pytest.mark.parametrize("run", [pytest.param(r, id=r.name) for r in RUNS if r.rc != 0])
def test_tables_inside_the_submissions_folder_are_refused(graded, run: ControlRun):
    g = graded(run)
    assert g["rc"] == run.rc, g["stderr"]
    for words in run.refused:
        assert words in g["stderr"], g["stderr"]
    assert not g["out"].exists(), "nothing is graded with a refused table"


def test_resume_reuses_every_record_under_its_own_name(graded):
    g = graded(BY_NAME["times-flag"])
    before = {p.name: p.stat().st_mtime_ns for p in (g["out"] / "records").glob("*.json")}
    rc, stdout, stderr = _cli(g["argv"])
    assert rc == 0, stderr[-3000:]
    for case in BY_NAME["times-flag"].cases:
        assert f"{case.zip_name}: reusing the record" in stderr, stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in (g["out"] / "records").glob("*.json")} == before
    grades = pd.read_csv(g["out"] / "grades.csv", dtype={"net_id": str})
    assert grades.set_index("zip_name").loc["ab1234.zip", "final_score"] == 6 and len(grades) == 3


# ------------------------------------------------------------------ names, without the sandbox

NAMES = ["ab1234.zip", "ab1234.zip~", "ab1234.zip_", "_ab1234.zip", "ab1234.zip.", "ab 1234.zip", "ab_1234.zip",
         "AB1234.zip", "ab1234 (1).zip", "ab1234.zip\udcff", "a" * 120 + ".zip", "a" * 121 + ".zip",
         zip_key("ab1234.zip~"), "submission", "+"]      # a name forged to be another zip's key


def test_zip_keys_are_one_to_one_and_plain_names_keep_theirs():
    keys = [zip_key(n) for n in NAMES]
    assert len(set(keys)) == len(NAMES), [(n, k) for n, k in zip(NAMES, keys) if keys.count(k) > 1]
    assert zip_key("ab1234.zip") == "ab1234.zip" and zip_key("lt1001.zip") == "lt1001.zip"
    assert all(safe_key(k.split("+")[0]) == k.split("+")[0] and len(k) < 200 for k in keys)


def test_report_names_are_one_to_one():
    recs = [Record(net_id="ab1234", zip_name=n, zip_sha256=None, status="rejected", reason="", rubric={})
            for n in NAMES]
    names = [report_name(r, True) for r in recs]
    assert len(set(names)) == len(names)
    assert report_name(recs[0], False) == "ab1234.md"
    odd = Record(net_id="ab+1", zip_name="x.zip", zip_sha256=None, status="rejected", reason="", rubric={})
    assert "+" in report_name(odd, False) and report_name(odd, False) != "ab_1.md"


def test_rejected_duplicates_and_an_earlier_record_name(tmp_path):
    """Through grade_batch with files the intake rejects (no notebook runs): the two zips of one
    net_id keep two records; a record this zip got under its sanitized name alone is removed,
    one of another zip is kept."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "r.toml").write_text(RUBRIC)
    rubric = load_rubric(tmp_path / "r.toml")
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    for name in ("gh3456.zip", "gh3456 (1).zip"):
        (subs / name).write_bytes(b"not a zip")
    earlier = out / "records" / f"{safe_key('gh3456 (1).zip')}.json"
    settings = GradeSettings(work_dir=out / "work", cache_dir=out / "cache")
    stale = Record(net_id="gh3456", zip_name="gh3456 (1).zip", zip_sha256=None, status="graded", reason="",
                   rubric={}, score={"final": 99})
    save_record(stale, earlier)
    recs = grade_batch(sorted(subs.iterdir()), rubric, settings, out, log=lambda m: None)
    assert not earlier.exists()
    names = sorted(p.name for p in (out / "records").glob("*.json"))
    assert names == sorted(f"{zip_key(n)}.json" for n in ("gh3456.zip", "gh3456 (1).zip"))
    assert all(r.status == "rejected" and "duplicate_net_id" in r.flags for r in recs)
    grades = pd.read_csv(out / "grades.csv", dtype={"net_id": str})
    assert list(grades["final_score"]) == [0, 0] and "99" not in (out / "grades.csv").read_text()
    # Staff remove the copy and rebuild: the flag goes with it.
    (out / "records" / f"{zip_key('gh3456 (1).zip')}.json").unlink()
    rc, stdout, _ = _cli(["report", "--out", str(out), "--rubric", str(tmp_path / "r.toml")])
    assert rc == 0 and "duplicate:" not in stdout
    assert load_record(out / "records" / "gh3456.zip.json").flags == {}
