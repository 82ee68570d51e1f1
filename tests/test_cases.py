"""utils.cases: seeded inputs that cover the situations the hidden tests promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.cases import (
    LARGE_OFFSET,
    copy_with_layout,
    make_case,
    strided_view,
    visible_case,
)
from utils.checks.hidden.cases import hidden_cases


def _by_label(word):
    return [c for c in hidden_cases() if word in c.label]


def _same(a, b):
    return all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("x", "gamma", "beta", "dout")
    ) and (a.eps, a.label) == (b.eps, b.label)


def test_cases_are_reproducible():
    assert _same(visible_case(), visible_case())
    assert all(_same(a, b) for a, b in zip(hidden_cases(), hidden_cases(), strict=True))


def test_hidden_cases_include_a_batch_of_two_and_a_single_feature():
    shapes = {c.x.shape for c in hidden_cases()}
    assert any(n == 2 for n, _ in shapes)
    assert any(d == 1 for _, d in shapes)


def test_every_case_has_consistent_shapes_and_float64_data():
    for case in [visible_case(), *hidden_cases()]:
        n, d = case.x.shape
        assert n >= 2
        assert case.dout.shape == case.x.shape
        assert case.gamma.shape == case.beta.shape == (d,)
        for a in (case.x, case.gamma, case.beta, case.dout):
            assert a.dtype == np.float64 and np.all(np.isfinite(a))


def test_gamma_and_beta_stay_away_from_one_and_zero():
    for case in [visible_case(), *hidden_cases()]:
        assert np.all(np.abs(np.abs(case.gamma) - 1) > 0) and np.all(case.gamma != 1)
        assert np.all(np.abs(case.beta) >= 0.2)
    (far,) = _by_label("far")
    assert np.all(np.abs(far.gamma) >= 3) and np.all(np.abs(far.beta) >= 5)


def test_large_offset_case_has_a_large_mean_and_ordinary_spread():
    (case,) = _by_label("offset")
    assert np.all(np.abs(case.x.mean(axis=0)) > LARGE_OFFSET / 2)
    assert np.all(case.x.std(axis=0) < 10)


def test_near_constant_case_has_one_feature_with_variance_near_1e_7():
    (case,) = _by_label("near-constant")
    var = case.x.var(axis=0)
    assert 1e-8 < var[0] < 1e-6
    assert np.all(var[1:] > 1e-2)
    # where eps sits matters there: sqrt(var + eps) and sqrt(var) + eps differ by far more than 1e-8
    assert abs(np.sqrt(var[0] + case.eps) - (np.sqrt(var[0]) + case.eps)) / np.sqrt(var[0]) > 1


def test_non_contiguous_cases_are_views_with_odd_strides():
    (transposed,) = _by_label("transposed")
    (strided,) = _by_label("every other column")
    assert not transposed.x.flags.c_contiguous and transposed.x.flags.f_contiguous
    assert not strided.x.flags.c_contiguous and not strided.x.flags.f_contiguous
    assert strided.x.base is not None


def test_one_hidden_case_passes_a_non_default_eps():
    assert any(c.eps != 1e-5 for c in hidden_cases())


def test_fresh_copies_keep_the_layout_and_share_no_memory():
    for case in hidden_cases():
        fresh = case.fresh()
        assert _same(case, fresh)
        assert fresh.x.flags.c_contiguous == case.x.flags.c_contiguous
        assert fresh.x.flags.f_contiguous == case.x.flags.f_contiguous
        for f in ("x", "gamma", "beta", "dout"):
            assert not np.shares_memory(getattr(fresh, f), getattr(case, f))


@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
    order=st.sampled_from(["C", "F", "strided"]),
)
def test_copy_with_layout_keeps_values_and_memory_order(shape, order):
    a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    a = strided_view(a) if order == "strided" else np.asarray(a, order=order)
    b = copy_with_layout(a)
    np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(a, b)
    assert (b.flags.c_contiguous, b.flags.f_contiguous) == (
        a.flags.c_contiguous,
        a.flags.f_contiguous,
    )


def test_cases_generalize_to_four_dimensional_inputs_with_per_channel_parameters():
    (case,) = [c for c in hidden_cases(shapes=((2, 3, 4, 5),)) if "near-constant" in c.label]
    assert case.gamma.shape == (3,) and case.x.shape == (2, 3, 4, 5)
    var = case.x.var(axis=(0, 2, 3))
    assert var[0] < 1e-6 and np.all(var[1:] > 1e-2)
    assert make_case((4, 6), 1, "last", param_axis=-1).gamma.shape == (6,)


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout"):
        make_case((3, 2), 0, "t", layout="diagonal")
