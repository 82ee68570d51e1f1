"""utils.data: seeded Gaussian batches and the standardized digits split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.data import DigitsSplit, gaussian_batch, load_digits_split


@given(
    n=st.integers(1, 50),
    d=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    mean=st.floats(-5, 5),
    std=st.floats(0, 5),
)
def test_gaussian_batch_shape_dtype_and_seed(n, d, seed, mean, std):
    x = gaussian_batch(n, d, seed=seed, mean=mean, std=std)
    assert x.shape == (n, d) and x.dtype == np.float64
    np.testing.assert_array_equal(x, gaussian_batch(n, d, seed=seed, mean=mean, std=std))
    expected = mean + std * np.random.default_rng(seed).standard_normal((n, d))
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-12)


def test_gaussian_batch_has_the_requested_moments():
    x = gaussian_batch(20_000, 3, seed=1, mean=2.0, std=0.5)
    np.testing.assert_allclose(x.mean(axis=0), 2.0, atol=6 * 0.5 / np.sqrt(20_000))
    np.testing.assert_allclose(x.std(axis=0), 0.5, rtol=6 / np.sqrt(2 * 20_000))


def test_gaussian_batch_differs_between_seeds():
    assert not np.array_equal(gaussian_batch(4, 4, seed=0), gaussian_batch(4, 4, seed=1))


@pytest.mark.parametrize(("n", "d", "std"), [(0, 3, 1.0), (3, 0, 1.0), (3, 3, -1.0)])
def test_gaussian_batch_rejects_bad_arguments(n, d, std):
    with pytest.raises(ValueError):
        gaussian_batch(n, d, std=std)


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return load_digits_split()


def test_digits_split_shapes_and_dtypes(split):
    assert split.x_train.shape[1] == split.x_test.shape[1] == 64
    assert split.x_train.shape[0] + split.x_test.shape[0] == 1797
    assert split.x_test.shape[0] == pytest.approx(0.25 * 1797, abs=1)
    assert split.x_train.dtype == split.x_test.dtype == np.float64
    assert split.y_train.dtype == split.y_test.dtype == np.int64
    assert set(np.unique(split.y_train)) == set(range(10)) == set(np.unique(split.y_test))
    assert np.all(np.isfinite(split.x_train)) and np.all(np.isfinite(split.x_test))


def test_digits_train_split_is_standardized_per_pixel(split):
    std = split.x_train.std(axis=0)
    constant = split.feature_std == 1.0
    np.testing.assert_allclose(split.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std[~constant], 1.0, rtol=1e-12)
    np.testing.assert_allclose(split.x_train[:, constant], 0.0, atol=1e-12)
    assert constant.any()  # the digits have pixels that are always blank


def test_digits_test_split_uses_the_training_statistics(split):
    from sklearn.datasets import load_digits

    raw = load_digits().data.astype(np.float64)
    restored = split.x_test * split.feature_std + split.feature_mean
    assert all(_near_any(row, raw) for row in restored)  # undoing the training scaling
    assert np.abs(split.x_test.mean(axis=0)).max() > 1e-6  # not re-standardized on itself


def _near_any(row, raw) -> bool:
    return bool(np.min(np.abs(raw - row).max(axis=1)) < 1e-9)


def test_digits_split_is_stratified_and_seeded(split):
    train_share = np.bincount(split.y_train) / split.y_train.size
    test_share = np.bincount(split.y_test) / split.y_test.size
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    again = load_digits_split()
    np.testing.assert_array_equal(again.x_train, split.x_train)
    other = load_digits_split(seed=1)
    assert not np.array_equal(other.y_train, split.y_train)
