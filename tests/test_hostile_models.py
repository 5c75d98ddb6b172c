"""Accuracy points come from the model's own forward pass, and components are torch's own.

The solution's hw2_rnn with both echo classes replaced by ones whose ``test_run`` shifts the
string by the delay (no network at all) and whose "GRU" and "Linear" are classes of the
notebook's own; the notebook trains and tests them as its models. Graded through the real runner: the accuracy items and the
component sub-checks earn nothing; ``test_run`` keeps only its interface points.
"""
from __future__ import annotations

import nbformat
import pytest

from conftest import REPO, hw2_members, write_zip
from hostile.model_cases import INTERFACE, NO_COMPONENT, NO_POINTS, REPLACE

HW2 = REPO / "reference" / "hw2"


@pytest.mark.slow
def test_an_echo_answered_by_rule_earns_only_interface_points(grade_zip, tmp_path):
    nb = nbformat.read(str(HW2 / "solution" / "hw2_rnn.ipynb"), as_version=4)
    for start, fake in REPLACE.items():
        cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start))
        cell.source = fake
    members = hw2_members("solution", hw2_rnn_ipynb=nbformat.writes(nb).encode())
    rec = grade_zip(write_zip(tmp_path / "hm001.zip", members))
    items = {i["id"]: i for i in rec.items}
    for iid in NO_POINTS:
        assert items[iid]["points"] == 0, (iid, items[iid]["message"])
    assert "fresh inputs is 0.0" in items["hw2_rnn.echo_accuracy"]["message"]
    for iid, sub in NO_COMPONENT.items():
        got = {s["name"]: s for s in items[iid]["subchecks"]}
        assert got[sub]["points"] == 0, (iid, got[sub])
    for iid in INTERFACE:
        assert items[iid]["points"] == items[iid]["possible"], (iid, items[iid]["message"])
    # The solution's own models (before the cell) would have earned them: the loss is the fake's.
    sol = grade_zip(write_zip(tmp_path / "hm000.zip", hw2_members("solution")))
    assert all({i["id"]: i for i in sol.items}[iid]["points"] > 0 for iid in NO_POINTS)
