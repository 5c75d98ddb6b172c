from __future__ import annotations

import json
import os
import stat
import struct
import tempfile
import zipfile
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from grader.intake import IntakePolicy, IntakeResult, intake, netid_from_filename
from intake_zips import (
    REQUIRED,
    central_entries,
    good_entries,
    nbformat3_bytes,
    notebook_bytes,
    patch_member,
    pdf_bytes,
    write_zip,
    zip_bytes,
)

POLICY = IntakePolicy(required=REQUIRED, netid_hint="your NYU net id, e.g. 'abc123.zip'")


def run(tmp_path: Path, entries, zip_name: str = "abc123.zip", policy: IntakePolicy = POLICY, **kw) -> IntakeResult:
    z = write_zip(tmp_path / zip_name, entries, **kw)
    return intake(z, tmp_path / "out", policy)


def run_raw(tmp_path: Path, raw: bytes, zip_name: str = "abc123.zip", policy: IntakePolicy = POLICY) -> IntakeResult:
    z = tmp_path / zip_name
    z.write_bytes(raw)
    return intake(z, tmp_path / "out", policy)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_rejected(res: IntakeResult, *words: str) -> None:
    assert res.status == "rejected"
    assert res.reason and res.reason.endswith(".")
    assert res.gradable == {}
    for w in words:
        assert w.lower() in res.reason.lower(), res.reason


# ------------------------------------------------------------------ happy path and naming


def test_perfect_zip(tmp_path):
    res = run(tmp_path, good_entries())
    assert res.status == "ok" and res.reason == ""
    assert res.net_id == "abc123"
    assert set(res.files) == set(REQUIRED) == set(res.gradable)
    assert res.missing == [] and res.problems == {} and res.warnings == []
    assert not res.naming_penalty
    for name, data in good_entries():
        assert res.files[name] == tmp_path / "out" / name
        assert res.files[name].read_bytes() == data
    assert tree(tmp_path / "out") == set(REQUIRED)


def test_misnamed_files_are_graded_with_penalty(tmp_path):
    names = {
        "hw2_cnn.ipynb": "HW2_CNN.ipynb",
        "hw2_rnn.ipynb": "hw2-rnn.IPYNB",
        "08-seq_classification.ipynb": "08_seq_classification.ipynb",
        "hw2_theory.pdf": "HW2 Theory.pdf",
    }
    res = run(tmp_path, good_entries(names))
    assert res.status == "ok"
    assert set(res.files) == set(REQUIRED) and res.problems == {}
    assert res.naming_penalty and res.extra_files == []
    assert "'HW2_CNN.ipynb' should be named 'hw2_cnn.ipynb'" in res.naming_issues
    assert "'08_seq_classification.ipynb' should be named '08-seq_classification.ipynb'" in res.naming_issues
    assert len(res.naming_issues) == 4
    assert res.files["hw2_cnn.ipynb"].read_bytes() == notebook_bytes("cnn = 1")


@pytest.mark.parametrize(
    "stored",
    [
        "hw2_cnn (1).ipynb",
        "hw2_cnn(2).ipynb",
        "hw2_cnn-1.ipynb",
        "Copy of hw2_cnn.ipynb",
        "hw2_cnn.ipynb.ipynb",
        "hw2_cnn - Copy.ipynb",
        "abc123_hw2_cnn.ipynb",
        "hw2_cnn_abc123.ipynb",
    ],
)
def test_browser_and_export_variants_match(tmp_path, stored):
    res = run(tmp_path, good_entries({"hw2_cnn.ipynb": stored}))
    assert res.status == "ok"
    assert res.files["hw2_cnn.ipynb"].read_bytes() == notebook_bytes("cnn = 1")
    assert res.naming_issues == [f"'{stored}' should be named 'hw2_cnn.ipynb'"]
    assert res.naming_penalty and res.missing == []


def test_dashed_seq_name_matches(tmp_path):
    res = run(tmp_path, good_entries({"08-seq_classification.ipynb": "08-seq-classification.ipynb"}))
    assert "08-seq_classification.ipynb" in res.files and res.naming_penalty


@pytest.mark.parametrize("stored", ["hw3_cnn.ipynb", "hw2_cnn_v2.ipynb", "cnn.ipynb", "hw2_cnn.ipynb.txt"])
def test_unrelated_names_do_not_match(tmp_path, stored):
    res = run(tmp_path, good_entries({"hw2_cnn.ipynb": stored}))
    assert res.status == "ok"
    assert "hw2_cnn.ipynb" not in res.files and res.missing == ["hw2_cnn.ipynb"]
    assert res.extra_files == [stored]


def test_single_wrapping_folder(tmp_path):
    entries = [(f"abc123/{n}", d) for n, d in good_entries()]
    res = run(tmp_path, entries)
    assert set(res.files) == set(REQUIRED)
    assert res.naming_issues == ["files are inside a folder 'abc123/'; zip the files themselves, not a folder"]
    assert res.extra_files == []


def test_nested_wrapping_folders_and_macos_junk(tmp_path):
    entries = [(f"hw2/submission/{n}", d) for n, d in good_entries()]
    entries += [("__MACOSX/hw2/submission/._hw2_cnn.ipynb", b"\0\5junk"), ("hw2/.DS_Store", b"\0junk")]
    res = run(tmp_path, entries)
    assert set(res.files) == set(REQUIRED) and res.problems == {}
    assert res.naming_issues == ["files are inside a folder 'hw2/submission/'; zip the files themselves, not a folder"]
    assert sorted(res.ignored) == ["__MACOSX/hw2/submission/._hw2_cnn.ipynb", "hw2/.DS_Store"]


def test_junk_is_ignored_without_penalty(tmp_path):
    entries = good_entries() + [
        ("__MACOSX/._hw2_cnn.ipynb", b"\0\5\x16\7junk"),
        (".DS_Store", b"\0\0\0\1Bud1"),
        ("._hw2_rnn.ipynb", b"\0\5\x16\7"),
        (".ipynb_checkpoints/hw2_cnn-checkpoint.ipynb", notebook_bytes("old")),
        ("Thumbs.db", b"x"),
    ]
    res = run(tmp_path, entries)
    assert res.status == "ok" and not res.naming_penalty
    assert len(res.ignored) == 5 and res.extra_files == []
    assert res.files["hw2_cnn.ipynb"].read_bytes() == notebook_bytes("cnn = 1")


def test_ignore_patterns_come_from_the_policy(tmp_path):
    policy = IntakePolicy(required=REQUIRED, ignore=("*.log",))
    res = run(tmp_path, good_entries() + [("run.log", b"x"), (".DS_Store", b"y")], policy=policy)
    assert res.ignored == ["run.log"] and res.extra_files == [".DS_Store"]


def test_extra_test_script_is_penalised_but_graded(tmp_path):
    entries = good_entries() + [("test_my_model.py", b"import torch\n"), ("res/plot.png", b"\x89PNG")]
    res = run(tmp_path, entries)
    assert res.status == "ok" and set(res.files) == set(REQUIRED)
    assert sorted(res.extra_files) == ["res/plot.png", "test_my_model.py"]
    assert res.naming_issues == [] and res.naming_penalty
    assert tree(tmp_path / "out") == set(REQUIRED)  # extras are never extracted


def test_missing_notebook(tmp_path):
    entries = [e for e in good_entries() if e[0] != "hw2_rnn.ipynb"]
    res = run(tmp_path, entries)
    assert res.status == "ok"
    assert res.missing == ["hw2_rnn.ipynb"] and "hw2_rnn.ipynb" not in res.files
    assert not res.naming_penalty


def test_py_export_is_not_the_notebook(tmp_path):
    entries = [e for e in good_entries() if e[0] != "hw2_cnn.ipynb"] + [("hw2_cnn.py", b"cnn = 1\n")]
    res = run(tmp_path, entries)
    assert res.missing == ["hw2_cnn.ipynb"] and res.extra_files == ["hw2_cnn.py"]
    assert "found 'hw2_cnn.py'; the notebook 'hw2_cnn.ipynb' is required" in res.warnings


def test_file_in_subfolder_is_found(tmp_path):
    entries = [e for e in good_entries() if e[0] != "hw2_rnn.ipynb"] + [("rnn/hw2_rnn.ipynb", notebook_bytes("r"))]
    res = run(tmp_path, entries)
    assert res.files["hw2_rnn.ipynb"].read_bytes() == notebook_bytes("r")
    assert res.naming_issues == ["'rnn/hw2_rnn.ipynb' should be at the top level of the zip and named 'hw2_rnn.ipynb'"]


def test_ambiguous_candidates_are_not_guessed(tmp_path):
    entries = [e for e in good_entries() if e[0] != "hw2_cnn.ipynb"]
    entries += [("HW2_CNN.ipynb", notebook_bytes("a")), ("hw2_cnn (1).ipynb", notebook_bytes("b"))]
    res = run(tmp_path, entries)
    assert res.status == "ok"
    assert res.missing == ["hw2_cnn.ipynb"] and "hw2_cnn.ipynb" not in res.files
    assert sorted(res.extra_files) == ["HW2_CNN.ipynb", "hw2_cnn (1).ipynb"]
    msg = [w for w in res.warnings if w.startswith("several files could be 'hw2_cnn.ipynb'")]
    assert len(msg) == 1 and "'HW2_CNN.ipynb'" in msg[0] and "'hw2_cnn (1).ipynb'" in msg[0]


def test_exact_name_wins_over_near_matches(tmp_path):
    entries = good_entries() + [("hw2_cnn (1).ipynb", notebook_bytes("old"))]
    res = run(tmp_path, entries)
    assert res.files["hw2_cnn.ipynb"].read_bytes() == notebook_bytes("cnn = 1")
    assert res.extra_files == ["hw2_cnn (1).ipynb"] and res.naming_issues == []


@pytest.mark.parametrize("first_upper", [False, True])
def test_case_duplicates_keep_first(tmp_path, first_upper):
    rest = [e for e in good_entries() if e[0] != "hw2_cnn.ipynb"]
    pair = [("hw2_cnn.ipynb", notebook_bytes("lower")), ("HW2_CNN.ipynb", notebook_bytes("upper"))]
    if first_upper:
        pair.reverse()
    res = run(tmp_path, rest + pair)
    kept = "upper" if first_upper else "lower"
    assert res.files["hw2_cnn.ipynb"].read_bytes() == notebook_bytes(kept)
    assert any("same name apart from case" in w for w in res.warnings)
    assert res.extra_files == []
    assert res.naming_penalty is first_upper


def test_exact_duplicate_entries_keep_first(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        raw = zip_bytes(good_entries() + [("hw2_cnn.ipynb", notebook_bytes("second"))])
    res = run_raw(tmp_path, raw)
    assert res.files["hw2_cnn.ipynb"].read_bytes() == notebook_bytes("cnn = 1")
    assert len([w for w in res.warnings if "hw2_cnn.ipynb" in w]) == 1


def test_only_unrelated_files_is_rejected(tmp_path):
    res = run(tmp_path, [("homework.docx", b"PK..."), ("notes.txt", b"hi")])
    assert_rejected(res, "none of the required files", "homework.docx")
    assert res.missing == list(REQUIRED) and sorted(res.extra_files) == ["homework.docx", "notes.txt"]


def test_nested_zip_gets_a_hint(tmp_path):
    inner = zip_bytes(good_entries())
    res = run(tmp_path, [("abc123.zip", inner)])
    assert_rejected(res, "a zip inside the zip is not opened")


def test_only_file_unusable_is_rejected_but_listed(tmp_path):
    res = run(tmp_path, [("hw2_theory.pdf", b"<html>saved page</html>")])
    assert_rejected(res, "'hw2_theory.pdf': not a real PDF (looks like HTML)")
    assert set(res.files) == {"hw2_theory.pdf"} and res.files["hw2_theory.pdf"].is_file()


def test_windows_backslash_wrapper_folder(tmp_path):
    res = run(tmp_path, [(f"abc123\\{n}", d) for n, d in good_entries()])
    assert set(res.files) == set(REQUIRED) and res.extra_files == []
    assert res.naming_issues == ["files are inside a folder 'abc123/'; zip the files themselves, not a folder"]


def test_zip_with_only_directories_is_rejected(tmp_path):
    res = run(tmp_path, [(zipfile.ZipInfo("abc123/"), b"")])
    assert_rejected(res, "no files")


def test_stale_files_from_an_earlier_run_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "hw2_rnn.ipynb").write_bytes(b"stale")
    (out / "keep.txt").write_bytes(b"other")
    res = run(tmp_path, [e for e in good_entries() if e[0] != "hw2_rnn.ipynb"])
    assert res.missing == ["hw2_rnn.ipynb"]
    assert not (out / "hw2_rnn.ipynb").exists() and (out / "keep.txt").exists()


# ------------------------------------------------------------------ zip name


@pytest.mark.parametrize(
    ("name", "net_id", "correct"),
    [
        ("abc123.zip", "abc123", True),
        ("ab1.zip", "ab1", True),
        ("ABC123.zip", "abc123", False),
        ("abc123.ZIP", "abc123", False),
        ("abc123_hw2.zip", "abc123", False),
        ("hw2_abc123.zip", "abc123", False),
        ("HW2-ABC123 (1).zip", "abc123", False),
        ("abc123 (1).zip", "abc123", False),
        ("hw2.zip", "hw2", False),
        ("My Homework!!.zip", "my_homework", False),
        ("Ünïcødé.zip", "n_c_d", False),
        ("!!!.zip", "unknown", False),
        (".zip", "unknown", False),
        ("35244-46138 - Student One - Aug 28, 2019 919 PM - abc123.zip", "abc123", True),
        ("397063-2557369 - Mary-Ann Smith - Sep 24, 2024 9:26 PM - xy99.zip", "xy99", True),
        ("1-2 - Anne - Marie Smith - Jan 9, 2012 11_55 AM - abc123.zip", "abc123", True),
        ("35244-46138 - Student One - Aug 28, 2019 919 PM - HW2.zip", "hw2", False),
        ("35244-46138 - Student One - Aug 28, 2019 919 PM - Abc123.zip", "abc123", False),
    ],
)
def test_netid_from_filename(name, net_id, correct):
    assert netid_from_filename(name, POLICY.netid_pattern) == (net_id, correct)


@pytest.mark.parametrize(
    ("zip_name", "issue"),
    [
        ("hw2.zip", "the zip is named 'hw2.zip', expected '<net_id>.zip' (your NYU net id, e.g. 'abc123.zip')"),
        ("ABC123.zip", "the zip is named 'ABC123.zip', expected 'abc123.zip'"),
        ("abc123_hw2.zip", "the zip is named 'abc123_hw2.zip', expected 'abc123.zip'"),
        ("submission.zip", "the zip is named 'submission.zip', expected '<net_id>.zip' (your NYU net id, e.g. 'abc123.zip')"),
    ],
)
def test_wrong_zip_name_is_a_naming_issue(tmp_path, zip_name, issue):
    res = run(tmp_path, good_entries(), zip_name=zip_name)
    assert res.status == "ok" and set(res.files) == set(REQUIRED)
    assert res.naming_issues == [issue] and res.naming_penalty


def test_brightspace_prefix_is_not_the_students_fault(tmp_path):
    name = "35244-46138 - Student One - Aug 28, 2019 919 PM - abc123.zip"
    res = run(tmp_path, good_entries(), zip_name=name)
    assert res.net_id == "abc123" and not res.naming_penalty and res.zip_name == name


# ------------------------------------------------------------------ content checks


def test_fake_pdf_with_header_only(tmp_path):
    res = run(tmp_path, good_entries() + [], compression=zipfile.ZIP_STORED)
    assert "hw2_theory.pdf" not in res.problems
    entries = [e for e in good_entries() if e[0] != "hw2_theory.pdf"] + [("hw2_theory.pdf", b"%PDF-1.4\nnot really\n")]
    res = run(tmp_path, entries)
    assert res.status == "ok"
    assert res.problems["hw2_theory.pdf"].startswith("not a real PDF")
    assert "hw2_theory.pdf" in res.files and "hw2_theory.pdf" not in res.gradable


@pytest.mark.parametrize(
    ("data", "looks"),
    [
        (b"<!DOCTYPE html>\n<html><body>Sign in - Google Accounts</body></html>", "HTML"),
        (b"\xef\xbb\xbf  <html lang='en'><head></head></html>", "HTML"),
        (b"Answer 1: the gradient is ...\n", "text"),
        (b"PK\x03\x04\x14\x00docx", "a zip or Word/Office document"),
        (b"\x89PNG\r\n\x1a\n....", "an image"),
    ],
)
def test_non_pdf_renamed_pdf(tmp_path, data, looks):
    entries = [e for e in good_entries() if e[0] != "hw2_theory.pdf"] + [("hw2_theory.pdf", data)]
    res = run(tmp_path, entries)
    assert res.problems == {"hw2_theory.pdf": f"not a real PDF (looks like {looks})"}
    assert set(res.gradable) == set(REQUIRED) - {"hw2_theory.pdf"}


def test_pdf_with_no_pages(tmp_path):
    import io

    import pypdf

    buf = io.BytesIO()
    pypdf.PdfWriter().write(buf)
    entries = [e for e in good_entries() if e[0] != "hw2_theory.pdf"] + [("hw2_theory.pdf", buf.getvalue())]
    res = run(tmp_path, entries)
    assert res.problems["hw2_theory.pdf"] == "not a real PDF (it has no pages)"


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (b'{"cells": [', "not a valid notebook: invalid JSON at line 1"),
        (b"\xff\xfe{\x00}\x00", "not a valid notebook: the file is not UTF-8 text"),
        (b'{"foo": 1}', "not a valid notebook: no 'nbformat' version field"),
        (b"[1, 2]", "not a valid notebook: no 'nbformat' version field"),
        (b'{"nbformat": 5, "nbformat_minor": 0, "cells": []}', "not a valid notebook: unsupported nbformat version 5"),
        (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "not a valid notebook: "),
    ],
)
def test_invalid_notebooks(tmp_path, data, expect):
    entries = [e for e in good_entries() if e[0] != "hw2_rnn.ipynb"] + [("hw2_rnn.ipynb", data)]
    res = run(tmp_path, entries)
    assert res.status == "ok"
    assert res.problems["hw2_rnn.ipynb"].startswith(expect), res.problems
    assert list(res.problems) == ["hw2_rnn.ipynb"]


def test_nbformat3_notebook_is_converted(tmp_path):
    entries = [e for e in good_entries() if e[0] != "hw2_cnn.ipynb"] + [("hw2_cnn.ipynb", nbformat3_bytes())]
    res = run(tmp_path, entries)
    assert res.problems == {}
    assert any("nbformat 3" in w for w in res.warnings)
    nb = nbformat.read(res.files["hw2_cnn.ipynb"], as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4 and nb.cells[0].source == "y = 2"


def test_schema_violation_is_a_warning_not_a_problem(tmp_path):
    nb = json.loads(notebook_bytes("z = 3"))
    nb["cells"][0]["bogus_key"] = 1
    entries = [e for e in good_entries() if e[0] != "hw2_cnn.ipynb"] + [("hw2_cnn.ipynb", json.dumps(nb).encode())]
    res = run(tmp_path, entries)
    assert res.problems == {}
    assert any(w.startswith("'hw2_cnn.ipynb' does not fully follow the notebook format") for w in res.warnings)


# ------------------------------------------------------------------ unreadable input


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", ("empty",)),
        (b"hello, this is my homework\n", ("not a valid zip", "text")),
        (b"<html><body>404</body></html>", ("not a valid zip", "HTML")),
        (None, ("not a valid zip",)),  # a real PDF named .zip
        (os.urandom(4096), ("not a valid zip",)),
    ],
)
def test_not_a_zip(tmp_path, data, words):
    res = run_raw(tmp_path, pdf_bytes() if data is None else data)
    assert_rejected(res, *words)
    assert res.net_id == "abc123" and res.missing == list(REQUIRED)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_zip(tmp_path, keep):
    raw = zip_bytes(good_entries())
    res = run_raw(tmp_path, raw[: int(len(raw) * keep)])
    assert_rejected(res, "not a valid zip")


def test_truncated_tail_of_central_directory(tmp_path):
    raw = zip_bytes(good_entries())
    res = run_raw(tmp_path, raw[:-5])
    assert res.status == "rejected" and res.reason


def test_missing_path_and_directory(tmp_path):
    res = intake(tmp_path / "nope.zip", tmp_path / "out", POLICY)
    assert_rejected(res, "could not be read")
    (tmp_path / "dir.zip").mkdir()
    res = intake(tmp_path / "dir.zip", tmp_path / "out2", POLICY)
    assert_rejected(res, "not a file")


def test_corrupt_crc_only_loses_that_file(tmp_path):
    raw = bytearray(zip_bytes(good_entries(), compression=zipfile.ZIP_STORED))
    marker = b"rnn = 2"
    at = raw.index(marker)
    raw[at : at + len(marker)] = b"rnn = 9"
    res = run_raw(tmp_path, bytes(raw))
    assert res.status == "ok"
    assert "damaged" in res.problems["hw2_rnn.ipynb"] and "CRC" in res.problems["hw2_rnn.ipynb"]
    assert "hw2_rnn.ipynb" not in res.files and "hw2_rnn.ipynb" not in res.missing
    assert not (tmp_path / "out" / "hw2_rnn.ipynb").exists()
    assert set(res.files) == set(REQUIRED) - {"hw2_rnn.ipynb"}
    assert tree(tmp_path / "out") == set(REQUIRED) - {"hw2_rnn.ipynb"}  # no temp files left


def test_unsupported_compression_method(tmp_path):
    raw = bytearray(zip_bytes(good_entries()))
    for cd, lh, name in central_entries(bytes(raw)):
        if name == b"hw2_rnn.ipynb":
            struct.pack_into("<H", raw, cd + 10, 9)  # deflate64, written by Windows for big files
            struct.pack_into("<H", raw, lh + 8, 9)
    res = run_raw(tmp_path, bytes(raw))
    assert res.status == "ok"
    assert "compression method" in res.problems["hw2_rnn.ipynb"]


def test_encrypted_member(tmp_path):
    raw = patch_member(zip_bytes(good_entries()), b"hw2_cnn.ipynb", or_flags=0x1)
    res = run_raw(tmp_path, raw)
    assert res.status == "ok"
    assert "password" in res.problems["hw2_cnn.ipynb"]
    assert set(res.files) == set(REQUIRED) - {"hw2_cnn.ipynb"}


def test_all_members_encrypted_is_rejected(tmp_path):
    raw = zip_bytes(good_entries())
    for name in REQUIRED:
        raw = patch_member(raw, name.encode(), or_flags=0x1)
    res = run_raw(tmp_path, raw)
    assert_rejected(res, "password")
    assert set(res.problems) == set(REQUIRED) and res.missing == []


def test_non_utf8_member_name(tmp_path):
    raw = zip_bytes(good_entries() + [("notes_X.txt", b"hi")])
    raw = patch_member(raw, b"notes_X.txt", new_name=b"notes_\xe9.txt")
    res = run_raw(tmp_path, raw)
    assert res.status == "ok" and set(res.files) == set(REQUIRED)
    assert res.extra_files == ["notes_\u0398.txt"]  # cp437 0xE9
    assert any("not valid UTF-8" in w for w in res.warnings)


def test_unflagged_utf8_name_is_read_as_utf8(tmp_path):
    raw = zip_bytes(good_entries() + [("caf__.txt", b"hi")])
    raw = patch_member(raw, b"caf__.txt", new_name="café.txt".encode())
    res = run_raw(tmp_path, raw)
    assert res.extra_files == ["café.txt"] and res.warnings == []


def test_invalid_utf8_with_utf8_flag_is_rejected(tmp_path):
    raw = zip_bytes(good_entries() + [("notes_X.txt", b"hi")])
    raw = patch_member(raw, b"notes_X.txt", new_name=b"notes_\xff.txt", or_flags=0x800)
    res = run_raw(tmp_path, raw)
    assert_rejected(res, "damaged")


def test_very_long_names(tmp_path):
    long = "a" * 5000 + ".ipynb"
    res = run(tmp_path, good_entries() + [(long, b"x"), ("d/" * 300 + "f.txt", b"y")])
    assert res.status == "ok" and set(res.files) == set(REQUIRED)
    assert len(res.extra_files) == 2


# ------------------------------------------------------------------ hostile members


def test_path_traversal_writes_nothing_outside_dest(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside_target"
    hostile = [
        "../evil.txt",
        "../../evil2.txt",
        "sub/../../evil3.txt",
        "..\\evil4.txt",
        "sub\\..\\..\\evil5.txt",
        str(outside / "abs.txt"),
        "/etc/intake_test_should_not_exist",
        "C:\\x.txt",
        "c:evil.txt",
        "\\\\server\\share\\x.txt",
        "../hw2_cnn.ipynb",
    ]
    entries = good_entries() + [(h, b"pwned") for h in hostile]
    z = write_zip(work / "abc123.zip", entries)
    before = tree(tmp_path)
    res = intake(z, work / "out", POLICY)
    after = tree(tmp_path)
    assert after - before == {f"work/out/{n}" for n in REQUIRED} | {"work/out"}
    assert not outside.exists() and not Path("/etc/intake_test_should_not_exist").exists()
    assert res.status == "ok" and set(res.files) == set(REQUIRED)
    assert res.files["hw2_cnn.ipynb"].read_bytes() == notebook_bytes("cnn = 1")
    assert sorted(res.extra_files) == sorted(hostile)
    assert res.naming_penalty
    assert len([w for w in res.warnings if w.startswith("skipped")]) == len(hostile)


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_symlink_members_are_skipped(tmp_path):
    entries = [e for e in good_entries() if e[0] != "hw2_theory.pdf"]
    entries += [(_symlink_info("hw2_theory.pdf"), b"/etc/passwd"), (_symlink_info("data"), b"../../..")]
    fifo = zipfile.ZipInfo("pipe")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    entries.append((fifo, b""))
    res = run(tmp_path, entries)
    assert res.status == "ok"
    assert res.missing == ["hw2_theory.pdf"]
    assert sorted(res.extra_files) == ["data", "hw2_theory.pdf", "pipe"]
    assert any("symbolic link" in w for w in res.warnings) and any("device or pipe" in w for w in res.warnings)
    out = tmp_path / "out"
    assert not any(p.is_symlink() for p in out.iterdir())
    assert tree(out) == set(REQUIRED) - {"hw2_theory.pdf"}


def test_zip_bomb_by_ratio(tmp_path):
    entries = [e for e in good_entries() if e[0] != "hw2_cnn.ipynb"] + [("hw2_cnn.ipynb", bytes(8 * 2**20))]
    z = write_zip(tmp_path / "abc123.zip", entries)
    assert z.stat().st_size < 100_000
    res = intake(z, tmp_path / "out", POLICY)
    assert_rejected(res, "zip bomb")
    assert tree(tmp_path / "out") == set()


def test_zip_over_total_limit(tmp_path):
    policy = IntakePolicy(required=REQUIRED, max_total_bytes=100_000)
    entries = good_entries() + [("data.bin", os.urandom(120_000))]
    res = run(tmp_path, entries, policy=policy)
    assert_rejected(res, "limit")


def test_huge_declared_size(tmp_path):
    raw = patch_member(zip_bytes(good_entries()), b"hw2_rnn.ipynb", file_size=0xFFFFFFF0)
    res = run_raw(tmp_path, raw)
    assert_rejected(res, "MiB")


def test_header_understating_size_cannot_write_more(tmp_path):
    big = b"print(1)\n" * 50_000
    entries = [e for e in good_entries() if e[0] != "hw2_rnn.ipynb"] + [("hw2_rnn.ipynb", big)]
    raw = patch_member(zip_bytes(entries), b"hw2_rnn.ipynb", file_size=100)
    res = run_raw(tmp_path, raw)
    assert res.status == "ok"
    assert "hw2_rnn.ipynb" in res.problems and "hw2_rnn.ipynb" not in res.files
    assert not (tmp_path / "out" / "hw2_rnn.ipynb").exists()


def test_member_over_member_limit(tmp_path):
    policy = IntakePolicy(required=REQUIRED, max_member_bytes=100)
    res = run(tmp_path, good_entries(), policy=policy)
    assert res.status == "rejected"  # every required file is over 100 bytes
    assert all("limit" in p for p in res.problems.values())


def test_too_many_members(tmp_path):
    entries = good_entries() + [(f"junk/{i}.txt", b"") for i in range(497)]
    res = run(tmp_path, entries)
    assert_rejected(res, "501 entries", "500")


def test_too_many_members_even_if_the_count_field_lies(tmp_path):
    raw = bytearray(zip_bytes(good_entries() + [(f"junk/{i}.txt", b"") for i in range(497)]))
    eocd = raw.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", raw, eocd + 8, 4, 4)  # claim 4 entries; zipfile reads by directory size
    res = run_raw(tmp_path, bytes(raw))
    assert_rejected(res, "501 entries")


def test_policy_rejects_path_like_required_names():
    with pytest.raises(ValueError):
        IntakePolicy(required=("sub/a.ipynb",))
    with pytest.raises(ValueError):
        IntakePolicy(required=("A.pdf", "a.pdf"))


# ------------------------------------------------------------------ property test

_BASE = zip_bytes(
    good_entries() + [("__MACOSX/._x", b"\0"), ("extra.py", b"print(1)\n"), ("stored.txt", b"s" * 300)]
)


@st.composite
def _mutated(draw) -> bytes:
    data = bytearray(_BASE)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_mutated())
def test_mutated_zips_never_raise(raw):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        z = root / "abc123.zip"
        z.write_bytes(raw)
        res = intake(z, root / "out", POLICY)
        event(f"{res.status}: {len(res.files)} files")
        assert res.net_id == "abc123"
        assert res.status in ("ok", "rejected")
        if res.status == "rejected":
            assert res.reason.strip() and res.gradable == {}
        else:
            assert res.gradable and res.reason == ""
        assert set(res.files) | set(res.missing) | set(res.problems) == set(REQUIRED)
        assert tree(root) <= {"abc123.zip", "out"} | {f"out/{n}" for n in REQUIRED}
        for name, path in res.files.items():
            assert path == root / "out" / name and path.is_file()


def test_the_pdf_page_count_and_its_text_are_reported(tmp_path):
    from intake_zips import scanned_pdf_bytes
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    typed = run(tmp_path / "a", good_entries())
    assert typed.documents["hw2_theory.pdf"]["pages"] == 1 and typed.documents["hw2_theory.pdf"]["text_chars"] > 20
    entries = [(n, scanned_pdf_bytes(3) if n == "hw2_theory.pdf" else b) for n, b in good_entries()]
    scan = run(tmp_path / "b", entries)
    assert scan.status == "ok" and "hw2_theory.pdf" not in scan.problems        # staff still grade it
    assert scan.documents["hw2_theory.pdf"] == {"pages": 3, "text_chars": 0}
    assert any("no text a program can read" in w for w in scan.warnings)
