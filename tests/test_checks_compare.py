"""The comparison policy (compare.py) and the rubric-load validation of the check kinds."""
from __future__ import annotations

import pytest
import torch

from checks_helpers import HEAD, REF_DIR
from grader.checks.compare import MISSING, Opaque, Tolerance, compare
from grader.rubric import RubricError, load_rubric


def test_shape_mismatch_names_both_shapes():
    v = compare("out", torch.zeros(2, 3), torch.zeros(3, 2))
    assert not v.ok and "(2, 3)" in v.message and "(3, 2)" in v.message


def test_float_precision_is_cast_and_mentioned_not_failed():
    want = torch.randn(4, 5)
    v = compare("out", want.double(), want)
    assert v.ok and "float64" in v.text() and "cast" in v.text()
    assert compare("out", want.clone(), want).text() == ""


def test_integer_required_float_given_fails():
    v = compare("idx", torch.tensor([1.0, 2.0]), torch.tensor([1, 2]))
    assert not v.ok and "integer" in v.message
    assert not compare("n", 3.0, 3).ok
    assert compare("n", 3, 3).ok and not compare("n", 4, 3).ok


def test_a_count_as_a_whole_valued_float_tensor_is_a_count_where_the_rubric_says_so():
    counts = Tolerance(integral_floats=True)
    v = compare("correct", torch.tensor(12.0), torch.tensor(12), counts)
    assert v.ok and "whole numbers" in v.text()
    assert compare("correct", torch.tensor(12.0), 12, counts).ok              # compared as a number
    assert not compare("correct", torch.tensor(11.5), torch.tensor(12), counts).ok
    assert not compare("correct", torch.tensor(13.0), torch.tensor(12), counts).ok
    assert not compare("correct", torch.tensor(12.0), torch.tensor(12)).ok     # indices stay integers
    assert not compare("correct", 12, torch.tensor(12), counts).ok             # a tensor means a tensor


def test_nan_and_inf_are_rejected_with_their_index():
    want = torch.ones(3, 4)
    got = want.clone()
    got[1, 2] = float("nan")
    v = compare("h", got, want)
    assert not v.ok and "NaN" in v.message and "(1, 2)" in v.message
    got = want.clone()
    got[2, 0] = float("inf")
    assert "Inf" in compare("h", got, want).message


def test_value_message_has_index_and_size_but_never_reference_values():
    want = torch.full((3, 4), 0.123456, dtype=torch.float64)
    got = want.clone()
    got[2, 1] += 7.5
    got[0, 0] += 0.25
    v = compare("grad", got, want)
    assert not v.ok
    assert "(2, 1)" in v.message and "7.5" in v.message and "2 of 12" in v.message
    assert "0.123" not in v.message and "7.62" not in v.message


def test_tolerances_pass_float32_rounding_and_fail_real_errors():
    x = torch.randn(64, 32, dtype=torch.float64)
    w = torch.randn(32, 16, dtype=torch.float64)
    want = (x @ w).float()
    assert compare("y", (x.float() @ w.float()), want).ok
    assert not compare("y", (x.float() @ w.float()) * 1.01, want).ok
    assert not compare("y", want, want * 1.001, Tolerance(1e-5, 1e-8)).ok


def test_structures_missing_and_opaque_values():
    assert compare("t", (1, (2, 3)), (1, (2, 3))).ok
    assert compare("t", [1, [2, 3]], (1, (2, 3))).ok
    assert "elements" in compare("t", (1,), (1, 2)).message
    assert "missing" in compare("t", MISSING, torch.zeros(1)).message
    assert "numpy.weird" in compare("t", Opaque("numpy.weird"), torch.zeros(1)).message
    assert not compare("t", Opaque("x"), 3).ok


def _rubric(tmp_path, item: str):
    path = tmp_path / "r.toml"
    path.write_text(HEAD.format(ref=REF_DIR, points=1) + item)
    return path


@pytest.mark.parametrize("item, key", [
    ('kind = "function"\ntarget = "f"\nreference = "minref.ops:conv1d"\n[items.params]\nargs = [{ tensr = [2] }]',
     "items[0].params.args"),
    ('kind = "function"\ntarget = "f"\nreference = "minref.ops:conv1d"\n[items.params]\nargs = [{ tensor = [2] }, 3]\ngrad = [1]',
     "items[0].params.args.grad"),
    ('kind = "function"\ntarget = "f"\n', "items[0].reference"),
    ('kind = "module"\ntarget = "M"\nreference = "minref.nets:Gate"\n[items.params]\nargs = [3]',
     "items[0].params.inputs"),
    ('kind = "module"\ntarget = "M"\nreference = "minref.nets:Gate"\n[items.params]\ninputs = []\nmatch = "fuzzy"',
     "items[0].params.match"),
    ('kind = "structure"\ntarget = "M"\n[items.params]\ninput = { tensor = [1, 3] }\ncomponents = [{ name = "c" }]',
     "items[0].params.components[0]"),
    ('kind = "behaviour"\ntarget = "m"\nreference = "minref.nets:sign_task"\n[items.params]\nmin_accuracy = 75',
     "items[0].params.min_accuracy"),
    ('kind = "static"\n[items.params]\nrules = [{ unchanged = "f" }]', "items[0].params.release"),
    ('kind = "artifact"\n[items.params]\nrules = [{ images = 1, section = "(" }]', "items[0].params.rules[0].section"),
    ('kind = "function"\ntarget = "f"\nreference = "minref.ops:conv1d"\nsubchecks = [{ name = "fwd", points = 1 }]\n'
     '[items.params]\nargs = [1]', "items[0].params.compare"),
    ('kind = "function"\ntarget = "f"\nreference = "minref.ops:conv1d"\nsubchecks = [{ name = "output", points = 0.5 }]',
     "items[0].subchecks"),
    ('kind = "function"\ntarget = "f"\nreference = "minref.ops:conv1d"\nfingerprints = [{ variant = "nocolon" , message = "m" }]',
     "items[0].fingerprints[0].variant"),
    ('kind = "function"\ntarget = "f"\nreference = "minref.ops:conv1d"\n[items.params]\nrtol = "small"',
     "items[0].params.rtol"),
])
def test_bad_params_are_refused_naming_the_key(tmp_path, item, key):
    text = f'[[items]]\nid = "nb.x"\npart = "nb"\ntitle = "x"\npoints = 1\n{item}\n'
    with pytest.raises(RubricError) as e:
        load_rubric(_rubric(tmp_path, text))
    assert str(e.value).startswith(key), str(e.value)
