"""The intake against the hostile corpus (tests/hostile/intake_cases.py): every case ends
in the stated verdict, nothing is written outside the destination, and nothing raises."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from grader.intake import IntakePolicy, intake
from hostile.intake_cases import CASES, IntakeCase
from intake_zips import REQUIRED

POLICY = IntakePolicy(required=REQUIRED)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size if p.is_file() else 0)
    return out


def _param(case: IntakeCase):
    return pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else [])


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_intake_case(tmp_path, case: IntakeCase):
    zpath = case.build(tmp_path)
    dest = tmp_path / "out"
    before = _tree(tmp_path)
    host_tmp = set(os.listdir("/tmp"))
    t0 = time.monotonic()
    res = intake(zpath, dest, POLICY)
    took = time.monotonic() - t0
    after = _tree(tmp_path)

    assert res.status == case.status, (res.status, res.reason, res.problems, res.warnings)
    text = " ".join([res.reason, *res.warnings, *res.problems.values()]).lower()
    for word in case.words:
        assert word.lower() in text, (word, text[:2000])
    assert set(res.gradable) == set(case.gradable), (res.gradable, res.problems, res.missing)
    if case.naming_penalty is not None:
        assert res.naming_penalty == case.naming_penalty
    if res.status == "rejected":
        assert res.reason.strip()
    assert took < case.max_seconds

    # Only the required files may appear, flat in dest, as regular files.
    created = set(after) - set(before)
    allowed = {"out"} | {f"out/{n}" for n in REQUIRED}
    assert created <= allowed, created - allowed
    for rel in created - {"out"}:
        assert Path(tmp_path / rel).is_file() and not Path(tmp_path / rel).is_symlink()
    for rel, (mode, size) in before.items():
        if not rel.startswith("out/"):
            assert after.get(rel) == (mode, size), rel
    assert not {n for n in set(os.listdir("/tmp")) - host_tmp if "hostile" in n or "evil" in n}
    if case.name == "hardlink-dest":
        assert (tmp_path / "host-file.txt").read_text() == "host data"
        assert (dest / "hw2_cnn.ipynb").stat().st_nlink == 1


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)
