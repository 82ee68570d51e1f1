"""utils.diagnose: tolerances, input validation, and naming the mistake that matches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from utils.diagnose import (
    FINITE_DIFFERENCE,
    MATCH,
    TIGHT,
    CheckFailure,
    as_float_array,
    assert_close,
    generic_hint,
    name_mistake,
    report,
)

arrays = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=2, max_side=5),
    elements=st.floats(-1e3, 1e3, allow_nan=False).filter(lambda v: abs(v) > 1e-3),
)


def test_tolerances_are_ordered():
    assert 0 < TIGHT < FINITE_DIFFERENCE <= MATCH < 1e-3


@given(arrays)
def test_an_array_is_close_to_itself_and_roundoff_passes(a):
    assert assert_close("a", a, a) == 0.0
    assert assert_close("a", a * (1 + 1e-14), a) <= TIGHT


@given(arrays)
def test_a_relative_change_of_1e_6_fails_the_tight_tolerance(a):
    with pytest.raises(CheckFailure, match="relative error"):
        assert_close("a", a * (1 + 1e-6), a)


def test_the_matching_mistake_is_named():
    expected = np.array([1.0, 2.0, 3.0])
    mistakes = {"eps is outside": expected + 0.5, "the sign is wrong somewhere": -expected + 1}
    with pytest.raises(CheckFailure, match="it looks like eps is outside"):
        assert_close("out", expected + 0.5, expected, mistakes=mistakes)


def test_the_closest_of_several_matching_mistakes_is_named():
    got = np.array([1.0, 2.0, 3.0])
    mistakes = {"far": got * (1 + 5e-7), "near": got * (1 + 1e-9), "shape": np.ones(2)}
    assert name_mistake(got, mistakes) == "near"
    assert name_mistake(got, {"far": got * 1.01}) is None


def test_generic_hints_for_sign_factor_zeros_and_the_rest():
    expected = np.array([1.0, -2.0, 3.0])
    assert "sign" in generic_hint(-expected, expected)
    assert "constant factor 0.25" in generic_hint(expected / 4, expected)
    assert "all zeros" in generic_hint(np.zeros(3), expected)
    assert "no known mistake" in generic_hint(expected + [0.0, 1.0, 0.0], expected)


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "forget to return"),
        ("abc", "not a numeric array"),
        ([[1.0, 2.0], [3.0]], "not a numeric array"),
        (np.array([1.0, np.nan]), "NaN or inf"),
        (np.array([1 + 1j, 2.0]), "complex"),
    ],
)
def test_bad_values_fail_with_a_clear_message(value, message):
    with pytest.raises(CheckFailure, match=message):
        as_float_array(value, "out")


def test_shape_mismatch_says_transposed_when_it_is():
    with pytest.raises(CheckFailure, match=r"shape \(3, 2\), expected \(2, 3\) \(transposed\?\)"):
        as_float_array(np.ones((3, 2)), "dx", (2, 3))
    with pytest.raises(CheckFailure) as info:
        as_float_array(np.ones(6), "dx", (2, 3))
    assert "transposed" not in str(info.value)


def test_complex_input_writes_no_warning(recwarn):
    with pytest.raises(CheckFailure):
        as_float_array(np.array([1j]), "out")
    assert len(recwarn) == 0


def test_lists_and_integers_are_accepted_as_float64():
    arr = as_float_array([1, 2, 3], "mean", (3,))
    assert arr.dtype == np.float64


def test_report_prints_one_line_with_error_and_tolerance(capsys):
    report("batchnorm_forward", 3.2e-16)
    out = capsys.readouterr().out
    assert out == "batchnorm_forward: max relative error 3.2e-16 (below 1e-08) — correct\n"
