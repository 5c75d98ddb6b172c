"""Random damage through the intake and the executor's notebook reading (no kernel runs):
whatever a zip or a notebook holds, the grader produces a result and does not raise."""
from __future__ import annotations

import copy
import io
import json
import stat
import tempfile
import zipfile
from pathlib import Path

import nbformat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader import colab
from grader.execute import read_notebook
from grader.intake import IntakePolicy, intake

POLICY = IntakePolicy(required=("work.ipynb", "theory.pdf"))


def _base_notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1\nprint(x)"),
                nbformat.v4.new_code_cell("!pip install foo\nfrom google.colab import drive")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    return json.loads(nbformat.writes(nb))


BASE = _base_notebook()
ODD = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                           st.integers(), max_size=3),
                st.just("x" * 300_000), st.sampled_from([3, 4, 5, 99, -1, "4", 4.0]))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_notebook(draw) -> bytes:
    nb = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 5))):
        paths = [p for p in _paths(nb) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = nb
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["set", "delete", "set", "nbformat"]))
        if op == "nbformat":
            nb["nbformat"] = draw(st.sampled_from([1, 2, 3, 4, 5, 0, -4, "4", None, 4.5]))
            nb["nbformat_minor"] = draw(st.sampled_from([0, 4, 5, 99, "x", None]))
        elif op == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(ODD)
    text = json.dumps(nb, allow_nan=True)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "}", "\ufffd", "\x00"]))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_zip(draw) -> bytes:
    """Structural damage: hostile names, modes and flags around one real notebook."""
    names = st.sampled_from(["work.ipynb", "WORK.ipynb", "../work.ipynb", "/work.ipynb", "a/work.ipynb",
                             "C:work.ipynb", "theory.pdf", "x\x00.pdf", "work (1).ipynb", "é.ipynb", "a" * 300,
                             "inner.zip", "__MACOSX/._work.ipynb", "dir/"])
    members = draw(st.lists(st.tuples(names, st.sampled_from(["nb", "bad", "empty", "pdf"]),
                                      st.sampled_from([0, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFREG]),
                                      st.sampled_from([0, 0x1, 0x8, 0x800])), min_size=0, max_size=6))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, kind, mode, flags in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = (mode | 0o644) << 16
            data = {"nb": nbformat.writes(nbformat.v4.new_notebook()).encode(), "bad": b"\xff\xfe{",
                    "empty": b"", "pdf": b"%PDF-1.4\n%%EOF\n"}[kind]
            zf.writestr(info, data)
            zf.infolist()[-1].flag_bits |= flags
    return buf.getvalue()


def _check_zip(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        z = root / "ab123.zip"
        z.write_bytes(raw)
        res = intake(z, root / "out", POLICY)
        assert res.status in ("ok", "rejected")
        assert res.status == "ok" or res.reason.strip()
        assert {p.name for p in (root / "out").iterdir()} <= set(POLICY.required)
        for name, path in res.gradable.items():
            if name.endswith(".ipynb"):
                nb, why = read_notebook(path)
                assert (nb is None) == bool(why)
                if nb is not None:
                    colab.neutralize(nb)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated_notebook())
def test_mutated_notebooks_never_crash_intake_or_reading(data):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        z = root / "ab123.zip"
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("work.ipynb", data)
            zf.writestr("theory.pdf", b"%PDF-1.4\n%%EOF\n")
        res = intake(z, root / "out", POLICY)
        assert res.status in ("ok", "rejected")
        assert "work.ipynb" in res.files or "work.ipynb" in res.problems
        nb, why = read_notebook(root / "out" / "work.ipynb")
        assert (nb is None) == bool(why)
        if nb is not None:
            colab.neutralize(nb)
        elif "work.ipynb" in res.gradable:
            # The intake keeps schema violations as warnings; the executor refuses them with a reason.
            assert why.startswith("The notebook file could not be read") and res.warnings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_zip())
def test_mutated_zip_structures_never_crash(raw):
    _check_zip(raw)
