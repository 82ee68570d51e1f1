"""Unit tests of utils.gradcheck: relative_error, numerical_gradient and directional_differences.

numerical_gradient and directional_differences are checked against gradients worked out by
hand (no PyTorch, no second finite-difference code), relative_error against its definition on
hand-made pairs and against the properties the lesson promises (symmetric, free of units, calm
about expected zeros).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from utils.gradcheck import directional_differences, numerical_gradient, relative_error

FD_TOL = 1e-7  # centered differences with h=1e-5 on the smooth functions below land near 1e-10


def close_to(grad, expected) -> bool:
    """Within FD_TOL relative, or 1e-8 absolute where the exact gradient is near zero."""
    return np.allclose(grad, expected, rtol=FD_TOL, atol=1e-8)


shapes = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
moderate = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)


def points(shape=shapes):
    return arrays(np.float64, shape, elements=moderate)


# --- relative_error ------------------------------------------------------------------------


def test_relative_error_on_hand_made_pairs():
    assert relative_error([2.0, -1.0], [4.0, -1.0]) == 0.5
    assert relative_error([4.0, -1.0], [2.0, -1.0]) == 0.5
    assert relative_error(2.0, 2.5) == pytest.approx(0.2, rel=1e-15)
    assert relative_error([[1.0, 3.0]], [[1.0, 3.0]]) == 0.0


def test_relative_error_of_two_zero_arrays_is_zero():
    assert relative_error(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0


def test_relative_error_floor_stops_roundoff_sized_arrays_from_looking_different():
    # max|a - b| = 1e-14 against the floor 1e-12, not against max|b| = 1e-14
    assert relative_error(np.zeros(3), [1e-14, 0.0, 0.0]) == pytest.approx(1e-2, rel=1e-12)
    assert relative_error(np.zeros(3), [1e-14, 0.0, 0.0], floor=1e-14) == pytest.approx(1.0)


def test_relative_error_does_not_blow_up_on_an_entry_that_should_be_zero():
    exact = np.array([2.0, -1.0, 0.0])
    computed = np.array([2.0, -1.0, 3e-17])
    assert relative_error(exact, computed) == pytest.approx(1.5e-17, rel=1e-12)


def test_relative_error_refuses_arrays_of_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(np.ones((3, 1)), np.ones(3))


def test_relative_error_of_empty_arrays_is_zero():
    assert relative_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_relative_error_is_nan_without_warnings_for_non_finite_entries(bad):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(relative_error([1.0, bad], [1.0, 2.0]))
        assert np.isnan(relative_error([1.0, 2.0], [1.0, bad]))


@given(points(), points())
def test_relative_error_is_symmetric_and_non_negative(a, b):
    if a.shape != b.shape:
        b = np.resize(b, a.shape)
    assert relative_error(a, b) == relative_error(b, a) >= 0.0


@given(points(), st.integers(-30, 30))
def test_relative_error_is_free_of_units(a, power):
    b = a + 1e-3 * np.cos(np.arange(a.size).reshape(a.shape))
    scale = 2.0**power  # exact in floating point, so the two errors must agree exactly
    if max(np.abs(a).max(), np.abs(b).max()) * min(scale, 1.0) > 1e-10:  # floor not reached
        assert relative_error(scale * a, scale * b) == relative_error(a, b)


@given(points())
def test_relative_error_matches_its_definition(a):
    b = a * 1.5 + 0.25
    expected = np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)
    assert relative_error(a, b) == pytest.approx(expected, rel=1e-15)


# --- numerical_gradient against gradients worked out by hand --------------------------------


@given(points())
def test_gradient_of_a_scalar_function_with_dout_none(x):
    grad = numerical_gradient(lambda z: np.sum(np.sin(z)), x)
    assert close_to(grad, np.cos(x))


@given(points(), st.data())
def test_gradient_of_an_elementwise_function_weighted_by_dout(x, data):
    dout = data.draw(points(st.just(x.shape)))
    grad = numerical_gradient(lambda z: z**3 - 2.0 * z, x, dout)
    assert close_to(grad, (3.0 * x**2 - 2.0) * dout)


@given(points(array_shapes(min_dims=2, max_dims=2, max_side=4)), st.integers(1, 4), st.data())
def test_gradient_of_a_matrix_product_is_dout_times_w_transposed(x, k, data):
    w = data.draw(points(st.just((x.shape[1], k))))
    dout = data.draw(points(st.just((x.shape[0], k))))
    grad = numerical_gradient(lambda z: z @ w, x, dout)
    # a linear f: the centered difference is exact up to roundoff, whatever h
    assert np.allclose(grad, dout @ w.T, rtol=0, atol=1e-7)


def test_centered_difference_of_a_cubic_is_the_derivative_plus_h_squared():
    # ((x+h)^3 - (x-h)^3) / 2h = 3x^2 + h^2 exactly; a one-sided step would add 3xh instead
    x = np.array([-1.5, -0.3, 0.0, 0.7, 2.0])
    h = 1e-2
    grad = numerical_gradient(lambda z: z**3, x, np.ones_like(x), h=h)
    assert np.allclose(grad, 3 * x**2 + h**2, rtol=0, atol=1e-11)


def test_gradient_of_a_function_that_returns_a_view_of_its_argument():
    x = np.arange(12.0).reshape(3, 4)
    dout = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
    grad = numerical_gradient(lambda z: z.T, x, dout)
    assert np.allclose(grad, dout.T, rtol=0, atol=1e-9)


def test_gradient_with_respect_to_a_non_contiguous_x():
    base = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    x = base[:, ::2]
    grad = numerical_gradient(lambda z: np.sum(z**2), x)
    assert relative_error(grad, 2 * x) < FD_TOL
    assert np.array_equal(base, np.linspace(-1.0, 1.0, 24).reshape(4, 6))


def test_gradient_with_respect_to_a_zero_dimensional_x():
    grad = numerical_gradient(lambda z: np.exp(z), np.array(0.5))
    assert grad.shape == ()
    assert relative_error(grad, np.exp(0.5)) < FD_TOL


def test_a_function_that_ignores_its_argument_has_a_zero_gradient():
    # The lesson's warning: a lambda that closes over another array sees no perturbation.
    other = np.array([1.0, 2.0, 3.0])
    assert not np.any(numerical_gradient(lambda z: np.sum(other**2), other.copy()))


# --- numerical_gradient's contract ---------------------------------------------------------


@given(points())
def test_x_is_restored_exactly(x):
    before = x.copy()
    numerical_gradient(lambda z: np.sum(np.tanh(z)), x)
    assert np.array_equal(x, before)


def test_x_is_restored_when_f_raises():
    x = np.array([1.0, 2.0, 3.0])
    calls = []

    def fails_on_third_call(z):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return np.sum(z)

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(fails_on_third_call, x)
    assert np.array_equal(x, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "x",
    [np.ones(3, dtype=np.float32), np.ones(3, dtype=np.int64), [1.0, 2.0]],
    ids=["float32", "int64", "list"],
)
def test_x_that_is_not_a_float64_array_is_refused(x):
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda z: np.sum(z), x)


def test_dout_shaped_unlike_f_of_x_is_refused():
    with pytest.raises(ValueError, match="dout has shape"):
        numerical_gradient(lambda z: z.sum(axis=0), np.ones((3, 2)), np.ones((3, 2)))


@pytest.mark.parametrize("h", [0.0, -1e-5])
def test_a_step_that_is_not_positive_is_refused(h):
    with pytest.raises(ValueError, match="h must be positive"):
        numerical_gradient(lambda z: np.sum(z), np.ones(2), h=h)


def test_f_is_called_twice_per_entry():
    calls = []
    numerical_gradient(lambda z: calls.append(1) or np.sum(z), np.ones((2, 3)))
    assert len(calls) == 12


# --- directional_differences ---------------------------------------------------------------


def slopes(grad, directions):
    """<grad, u> for each direction u."""
    return np.array([np.sum(grad * u) for u in directions])


@given(points(), st.data())
def test_directional_differences_are_the_gradient_along_each_direction(x, data):
    dout = data.draw(points(st.just(x.shape)))
    directions = [data.draw(points(st.just(x.shape))) for _ in range(3)]
    got = directional_differences(lambda z: np.sin(z) * 2.0, x, directions, dout)
    assert got.shape == (3,)
    assert close_to(got, slopes(2.0 * np.cos(x) * dout, directions))


def test_directional_differences_of_a_linear_function_are_exact_up_to_roundoff():
    rng = np.random.default_rng(0)
    x, w, dout = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    directions = [rng.normal(size=(4, 3)) for _ in range(2)]
    got = directional_differences(lambda z: z @ w, x, directions, dout, h=1e-3)
    assert np.allclose(got, slopes(dout @ w.T, directions), rtol=0, atol=1e-9)


def test_a_centered_difference_along_a_direction_is_the_slope_plus_h_squared_term():
    # sum((x + h u)^3 - (x - h u)^3) / 2h = sum(3 x^2 u) + h^2 sum(u^3) exactly
    x, u, h = np.array([-1.5, 0.0, 0.7, 2.0]), np.array([1.0, -2.0, 0.5, 3.0]), 1e-2
    got = directional_differences(lambda z: z**3, x, [u], h=h)
    assert np.allclose(got, [np.sum(3 * x**2 * u) + h**2 * np.sum(u**3)], rtol=0, atol=1e-10)


def test_directional_differences_tell_a_wrong_gradient_from_the_right_one():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4))
    directions = [rng.normal(size=x.shape) for _ in range(2)]
    got = directional_differences(lambda z: np.sum(z**2), x, directions)
    wrong = 2 * x
    wrong[0, 0] *= 1.01
    assert relative_error(got, slopes(2 * x, directions)) < 1e-9
    assert relative_error(got, slopes(wrong, directions)) > 1e-5


def test_directional_differences_move_a_non_contiguous_x_in_place_and_restore_it():
    base = np.linspace(-1.0, 1.0, 24).reshape(4, 6)
    x = base[:, ::2]
    seen = []

    def f(z):
        seen.append(z is x and not z.flags.c_contiguous)
        return np.sum(z**2)

    directions = [np.ones(x.shape), np.arange(12.0).reshape(x.shape)]
    got = directional_differences(f, x, directions)
    assert np.allclose(got, slopes(2 * x, directions), rtol=1e-9)
    assert all(seen) and len(seen) == 4  # two calls of f per direction
    assert np.array_equal(base, np.linspace(-1.0, 1.0, 24).reshape(4, 6))


def test_directional_differences_restore_x_when_f_raises():
    x = np.array([1.0, 2.0, 3.0])
    calls = []

    def fails_on_second_call(z):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return np.sum(z)

    with pytest.raises(RuntimeError, match="boom"):
        directional_differences(fails_on_second_call, x, [np.array([0.3, -1.0, 2.0])])
    assert np.array_equal(x, [1.0, 2.0, 3.0])


def test_a_direction_shaped_unlike_x_is_refused():
    with pytest.raises(ValueError, match="direction has shape"):
        directional_differences(lambda z: np.sum(z), np.ones((2, 3)), [np.ones(6)])


def test_directional_differences_refuse_what_numerical_gradient_refuses():
    with pytest.raises(TypeError, match="float64"):
        directional_differences(lambda z: np.sum(z), np.ones(3, dtype=np.float32), [np.ones(3)])
    with pytest.raises(ValueError, match="h must be positive"):
        directional_differences(lambda z: np.sum(z), np.ones(2), [np.ones(2)], h=0.0)
    with pytest.raises(ValueError, match="dout has shape"):
        directional_differences(lambda z: z.sum(axis=0), np.ones((3, 2)), [np.ones((3, 2))],
                                np.ones((3, 2)))  # fmt: skip
