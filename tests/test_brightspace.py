"""Brightspace downloads in, grades out: both download layouts built the way Brightspace writes
them (tests/support/brightspace.py), students found by their zip name or the class list,
attempts chosen against the late cut-off, and the grade-import CSV and Gradescope results
checked field by field against lms-formats.md."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from grader.lms import brightspace as bs
from grader.lms.classlist import ClassListError, Roster, normalise, read_class_list
from grader.lms.names import parse_label, split_flat
from support.brightspace import Download, class_list, label, stamp, write
from support.builders import ANSWER_ITEM, mini_rubric, notebook, zip_bytes

REPO = Path(__file__).resolve().parents[1]
DUE = datetime(2025, 10, 5, 23, 59)
NETID = r"[a-z]{2,4}[0-9]{1,6}"
RUBRIC = mini_rubric(
    "lms", title="LMS", due="2025-10-05T23:59:00", timezone="America/New_York",
    deadline={"late_window_hours": 24, "late_penalty_pct": 20},
    execution={"cell_timeout_s": 60, "notebook_timeout_s": 120, "memory_mb": 1536, "threads": 1},
    items=[{**ANSWER_ITEM, "points": 10}])


def student_zip(*cells: str, name: str = "work.ipynb") -> bytes:
    return zip_bytes({name: notebook(*cells)})


GOOD = student_zip("answer = 42")
EMPTY = student_zip("x = 1")


# ------------------------------------------------------------------ names

@pytest.mark.parametrize("text, when", [
    ("35244-46138 - Student One - Aug 28, 2019 919 PM", datetime(2019, 8, 28, 21, 19)),
    ("35247-46138 - Student One - Sep 3, 2019 9:47 PM", datetime(2019, 9, 3, 21, 47)),
    ("840137-90210 - Mary-Ann Smith - Jan 9, 2012 11_55 AM", datetime(2012, 1, 9, 11, 55)),
    ("1-2 - Anne - Marie Smith - Oct 10, 2025 1022 AM", datetime(2025, 10, 10, 10, 22)),
    ("1-2 - Night Owl - Oct 5, 2025 1200 AM", datetime(2025, 10, 5, 0, 0)),
    ("1-2 - Lunch - Oct 5, 2025 1205 PM", datetime(2025, 10, 5, 12, 5)),
])
def test_labels_of_every_clock_style(text, when):
    got = parse_label(text)
    assert got is not None and got.submitted == when
    assert got.who == text.split(" - ", 1)[1].rsplit(" - ", 1)[0]


def test_flat_names_keep_the_students_own_file_name():
    label_, orig = split_flat("271836-442356 - Blake Payne - Dec 5, 2024 1149 AM - my - hw2 - final.zip")
    assert label_.who == "Blake Payne" and orig == "my - hw2 - final.zip"
    assert split_flat("ab1234.zip") is None
    assert parse_label("1-2 - Name - Oct 5, 2025 1361 PM") is None          # no such minute


def test_names_are_compared_as_a_roster_would():
    assert normalise("José  Mary-Ann O'Neil") == normalise("jose mary ann oneil".replace("oneil", "o neil"))


# ------------------------------------------------------------------ reading and choosing

def course(tmp_path: Path, layout: str) -> tuple[Path, Path]:
    d = Download()
    d.add("Ana Li", DUE - timedelta(days=1), {"al1234.zip": EMPTY})                 # first try
    d.add("Ana Li", DUE - timedelta(minutes=5), {"al1234.zip": GOOD}, clock="colon")  # the one graded
    d.add("Bo Chen", DUE - timedelta(hours=2), {"bc2345.zip": GOOD})
    d.add("Bo Chen", DUE + timedelta(hours=30), {"bc2345.zip": EMPTY})               # after the cut-off
    d.add("Cy Diaz", DUE + timedelta(hours=3), {"hw2.zip": GOOD}, clock="windows")   # late, misnamed
    d.add("Dee Evans", DUE - timedelta(hours=1), {"work.ipynb": nbformat.writes(nbformat.v4.new_notebook())})
    d.add("Sam Park", DUE - timedelta(hours=1), {"submission.zip": GOOD})            # two Sam Parks enrolled
    roster = class_list(tmp_path / "classlist.csv", [
        ("N001", "al1234", "Ana", "Li"), ("N002", "bc2345", "Bo", "Chen"), ("N003", "cd3456", "Cy", "Díaz"),
        ("N004", "de4567", "Dee", "Evans"), ("N005", "sp1111", "Sam", "Park"), ("N006", "sp2222", "Sam", "Park")])
    return write(d, tmp_path / f"HW2 Download Oct 7, 2025 {layout}.zip", layout), roster


@pytest.mark.parametrize("layout", ["folders", "flat"])
def test_both_layouts_read_the_same(tmp_path, layout):
    source, roster_csv = course(tmp_path, layout)
    dl = bs.read_download(source)
    assert dl.layout == layout
    assert len(dl.attempts) == 7
    assert "index.html" in dl.ignored and "__MACOSX/._index.html" in dl.ignored
    people = {s.key: s for s in bs.students(dl, Roster(read_class_list(roster_csv)),
                                            NETID,
                                            bs.cutoff_for(DUE, 24, {}))}
    sam = next(k for k in people if k.startswith("unresolved-sam-park-"))
    assert sorted(people) == ["al1234", "bc2345", "cd3456", "de4567", sam]
    assert people["al1234"].resolved_by == "zip name" and len(people["al1234"].attempts) == 2
    assert people["al1234"].chosen.submitted == DUE - timedelta(minutes=5)
    assert people["bc2345"].chosen.submitted == DUE - timedelta(hours=2)
    assert any("after the late cut-off" in n for n in people["bc2345"].notes)
    assert people["cd3456"].resolved_by == "class list"                      # "Cy Diaz" ~ "Cy Díaz"
    assert people[sam].net_id is None and people[sam].doubt
    assert any("2 students on the class list (sp1111, sp2222)" in n for n in people[sam].notes)


def test_an_extracted_download_with_a_wrapper_folder_reads_too(tmp_path):
    source, _ = course(tmp_path, "folders")
    folder = tmp_path / "extracted" / "HW2"
    with zipfile.ZipFile(source) as zf:
        zf.extractall(folder)
    dl = bs.read_download(tmp_path / "extracted")
    assert len(dl.attempts) == 7 and dl.layout == "folders"
    assert bs.looks_like_download(tmp_path / "extracted")
    one = tmp_path / "ab1234.zip"
    one.write_bytes(GOOD)
    assert not bs.looks_like_download(one)


def test_a_bad_class_list_says_what_it_needs(tmp_path):
    bad = tmp_path / "roster.csv"
    bad.write_text("Name,Email\nAna Li,al1234@nyu.edu\n")
    with pytest.raises(ClassListError, match="Username, First Name and Last Name"):
        read_class_list(bad)


def test_staging_never_uses_a_name_from_the_download(tmp_path):
    d = Download()
    d.add('=HYPERLINK("x") <img src=x onerror=alert(1)>', DUE, {"../../../tmp/ev1234.zip": GOOD})
    source = write(d, tmp_path / "dl.zip", "folders")
    dl = bs.read_download(source)
    people = bs.students(dl, None, NETID, bs.cutoff_for(DUE, 24, {}))
    staged = bs.stage(dl, people, tmp_path / "stage", "America/New_York", 2**20)
    assert [p.parent for p in (s.zip_path for s in staged)] == [tmp_path / "stage"]
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["ev1234.zip", "manifest.json"]
    assert staged[0].given_name == "ev1234.zip" and zipfile.ZipFile(staged[0].zip_path).testzip() is None


# ------------------------------------------------------------------ end to end

def _grader(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    source, roster = course(root, "flat")
    (root / "lms.toml").write_text(RUBRIC)
    (root / "course").mkdir()
    (root / "course" / "staff_scores.csv").write_text("net_id\n")
    done = _grader("grade", str(source), "--rubric", str(root / "lms.toml"), "--out", str(root / "out"),
                   "--classlist", str(roster), "--jobs", "2")
    assert done.returncode == 0, done.stderr[-4000:]
    records = {json.loads(p.read_text())["net_id"]: json.loads(p.read_text())
               for p in (root / "out" / "records").glob("*.json")}
    return root, done, records


def test_a_download_is_graded_per_student(graded):
    root, done, records = graded
    assert ("7 attempt(s) of 5 student(s); net id from the zip name 2, from the class list 2, unresolved 1"
            in done.stderr), done.stderr[-3000:]
    assert "'Sam Park' is 2 students on the class list (sp1111, sp2222)" in done.stderr
    assert f"submission times {root / 'HW2 Download Oct 7, 2025 flat.zip'}" in done.stdout
    with open(root / "out" / "grades.csv", newline="") as f:
        review = {r["net_id"]: r["review"] for r in csv.DictReader(f)}
    sam = next(k for k in records if k.startswith("unresolved-sam-park-"))
    assert review[sam] == "lms" and review["al1234"] == ""
    assert sorted(records) == ["al1234", "bc2345", "cd3456", "de4567", sam]
    al = records["al1234"]
    assert al["score"]["final"] == 10 and al["penalties"] == []
    assert [a["submitted"] for a in al["lms"]["attempts"]] == ["2025-10-04T23:59", "2025-10-05T23:54"]
    assert al["lms"]["graded_attempt"].endswith(stamp(DUE - timedelta(minutes=5), "colon"))
    bc = records["bc2345"]                                      # the in-time attempt, not the 30 h one
    assert bc["score"]["final"] == 10 and bc["status"] == "graded"
    cd = records["cd3456"]                                      # 3 h late (Brightspace's minute), misnamed
    assert {p["kind"]: p["pct"] for p in cd["penalties"]} == {"late": 20, "naming": 10}
    assert cd["score"]["final"] == pytest.approx(7.0)
    assert "the zip is named 'hw2.zip', expected 'cd3456.zip'" in json.dumps(cd["intake"])
    de = records["de4567"]                                      # a notebook uploaded bare, no zip
    assert "files uploaded one by one" in json.dumps(de["intake"])
    manifest = json.loads((root / "out" / "brightspace" / "manifest.json").read_text())
    names = {f["path"] for s in manifest["students"] for a in s["attempts"] for f in a["files"]}
    assert len(names) == 7 and all(" - " in n for n in names)  # the download's own names, for upload back


def test_grade_import_csv_field_by_field(graded):
    root, _, records = graded
    done = _grader("export", "brightspace", "--out", str(root / "out"), "--rubric", str(root / "lms.toml"),
                   "--item", "Homework 2")
    assert done.returncode == 0, done.stderr
    raw = (root / "out" / "brightspace_import.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and raw.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    assert rows[0] == ["Username", "Homework 2 Points Grade", "End-of-Line Indicator"]
    assert rows[1:] == [["#al1234", "10", "#"], ["#bc2345", "10", "#"], ["#cd3456", "7", "#"], ["#de4567", "0", "#"]]
    assert "left out unresolved-sam-park-" in done.stdout and "the student could not be resolved" in done.stdout
    created = _grader("export", "brightspace", "--out", str(root / "out"), "--rubric", str(root / "lms.toml"),
                      "--max-points", "10", "--file", str(root / "new.csv"))
    assert (root / "new.csv").read_text().splitlines()[0] == \
        "Username,LMS Points Grade <Numeric MaxPoints:10>,End-of-Line Indicator"


def test_gradescope_results_field_by_field(graded):
    root, _, records = graded
    done = _grader("export", "gradescope", "--out", str(root / "out"), "--rubric", str(root / "lms.toml"))
    assert done.returncode == 0, done.stderr
    res = json.loads((root / "out" / "gradescope" / "cd3456" / "results.json").read_text())
    assert res["score"] == pytest.approx(7.0)
    assert set(res) >= {"score", "execution_time", "output", "tests", "visibility"}
    assert isinstance(res["execution_time"], int)
    assert "penalty 20%" in res["output"] and "penalty 10%" in res["output"]
    [test] = res["tests"]
    assert test["name"] == "answer is defined" and test["score"] == 10 and test["max_score"] == 10
    assert test["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    assert test["status"] == "passed" and test["output_format"] == "text"
    assert sorted(p.name for p in (root / "out" / "gradescope").iterdir()) == ["al1234", "bc2345", "cd3456", "de4567"]


def test_a_rerun_stages_the_same_bytes(tmp_path):
    """Loose files are zipped with a fixed date, so grading the download again keeps the records."""
    source, roster = course(tmp_path, "folders")
    dl = bs.read_download(source)
    people = bs.students(dl, Roster(read_class_list(roster)), NETID, bs.cutoff_for(DUE, 24, {}))
    first = {s.zip_path.name: s.zip_path.read_bytes() for s in bs.stage(dl, people, tmp_path / "a", "UTC", 2**20)}
    again = {s.zip_path.name: s.zip_path.read_bytes() for s in bs.stage(dl, people, tmp_path / "b", "UTC", 2**20)}
    assert first == again and "de4567.zip" in first


def test_doubts_about_who_it_is_are_kept_apart_and_not_exported(tmp_path):
    """Two namesakes (non-Latin names included), a zip id the class list disagrees with, a
    corrupt member: each is graded or reported on its own, never merged, never exported."""
    d = Download()
    d.add("李明", DUE - timedelta(hours=2), {"notes.zip": GOOD})
    d.add("王芳", DUE - timedelta(hours=2), {"notes.zip": EMPTY})
    d.add("Ana Li", DUE - timedelta(hours=1), {"bw12.zip": GOOD})           # the class list has Ana as al123
    d.add("Robert Smith", DUE - timedelta(hours=3), {"rs123.zip": EMPTY})
    d.add("Bob Smith", DUE - timedelta(hours=1), {"rs123.zip": GOOD})       # a display name that changed
    source = write(d, tmp_path / "dl.zip", "folders")
    roster = Roster(read_class_list(class_list(tmp_path / "cl.csv", [
        ("1", "al123", "Ana", "Li"), ("2", "bw12", "Bea", "Wu"), ("3", "rs123", "Robert", "Smith")])))
    dl = bs.read_download(source)
    people = bs.students(dl, roster, NETID, bs.cutoff_for(DUE, 24, {}))
    staged = bs.stage(dl, people, tmp_path / "stage", "UTC", 2**20)
    names = sorted(s.zip_path.name for s in staged)
    assert len(names) == len(set(names)) == 5                             # nobody overwrites anybody
    assert len([n for n in names if n.startswith("unresolved-student-")]) == 2
    doubt = {s.entry["display_name"]: s.entry["identity_doubt"] for s in staged}
    assert doubt["Ana Li"] and doubt["李明"] and doubt["王芳"]
    assert doubt["Robert Smith"] or doubt["Bob Smith"]
    assert sum(1 for s in staged if s.net_id == "rs123") == 2 and \
        any(s.zip_path.name == "rs123+2.zip" and s.entry["identity_doubt"] for s in staged)


def test_a_corrupt_member_costs_only_its_student(tmp_path):
    d = Download()
    d.add("Ana Li", DUE, {"al1234.zip": GOOD})
    d.add("Bo Chen", DUE, {"bc2345.zip": GOOD * 3})
    source = write(d, tmp_path / "dl.zip", "folders", junk=False)
    raw = bytearray(source.read_bytes())
    at = raw.find(b"Bo Chen") + 200            # inside Bo's compressed data
    raw[at:at + 40] = bytes(40)
    source.write_bytes(bytes(raw))
    dl = bs.read_download(source)
    staged = bs.stage(dl, bs.students(dl, None, NETID, bs.cutoff_for(DUE, 24, {})), tmp_path / "s", "UTC", 2**20)
    by = {s.net_id: s for s in staged}
    assert zipfile.ZipFile(by["al1234"].zip_path).testzip() is None
    assert any("could not be taken from the download" in n for n in by["bc2345"].entry["notes"])
