"""`grader check`: a student runs their zip before submitting and reads what to fix; hidden
items stay hidden."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_scale import EXACT, ROUGH, rubric_file, student_zip

REPO = Path(__file__).resolve().parents[1]


def _check(zip_path: Path, rubric: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader.cli", "check", str(zip_path), "--rubric", str(rubric)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})


def public_rubric(root: Path) -> Path:
    path = rubric_file(root, atol=1e-6)
    text = path.read_text().replace('target = "answer"\n', 'target = "answer"\npublic = true\n', 1)
    path.write_text(text)
    return path


def test_a_good_zip_has_nothing_to_fix(tmp_path):
    rubric = public_rubric(tmp_path)
    done = _check(student_zip(tmp_path, "aa1000", EXACT, "answer = 42"), rubric)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    out = done.stdout
    assert "✔ work.ipynb ran in" in out
    assert "✔ answer is defined (1 / 1)" in out
    assert "Nothing to fix: this zip can be graded as it is." in out
    assert "Not checked here: 1 further automatic item(s)" in out
    assert "convolution" not in out                               # the hidden item is not shown


def test_a_broken_zip_gets_a_list_of_fixes(tmp_path):
    rubric = public_rubric(tmp_path)
    folder = tmp_path / "mine"
    folder.mkdir()
    zip_path = student_zip(folder, "aa1000", ROUGH, "print(debug_batch)  # from Colab", "x = 1")
    broken = zip_path.rename(folder / "hw2 final.zip")
    done = _check(broken, rubric)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    out = done.stdout
    fixes = out.split("What to fix before you submit:", 1)[1]
    assert "rename: the zip is named 'hw2 final.zip'" in fixes
    assert "work.ipynb must run from top to bottom in a fresh kernel; cell 2: error: NameError: name " \
           "'debug_batch' is not defined" in fixes
    assert "answer is defined:" in fixes
    assert "rounding" not in out and "1e-3" not in out and "convolution" not in out   # hidden item
