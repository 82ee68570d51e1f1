"""Data the course uses: seeded Gaussian batches and scikit-learn's bundled digits.

Nothing here downloads anything: the digits (1797 images of 8x8 pixels, classes 0-9) ship
inside scikit-learn. Everything is float64 and reproducible from a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def gaussian_batch(
    n: int, d: int, *, seed: int = 0, mean: float = 0.0, std: float = 1.0
) -> np.ndarray:
    """A batch of n samples with d independent N(mean, std**2) features: float64 (n, d).

    The same seed always gives the same batch. Raises ValueError for n or d below 1 or a
    negative std.
    """
    if n < 1 or d < 1:
        raise ValueError(f"gaussian_batch needs n >= 1 and d >= 1, got n={n}, d={d}")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    return mean + std * np.random.default_rng(seed).standard_normal((n, d))


@dataclass(frozen=True)
class DigitsSplit:
    """Standardized digits: x_* float64 (n, 64), y_* int64 (n,) labels 0-9.

    ``feature_mean`` and ``feature_std`` (64,) are the training statistics used for both
    splits (a pixel that is constant in the training set keeps std 1, so it maps to 0).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_mean: np.ndarray
    feature_std: np.ndarray


def load_digits_split(test_size: float = 0.25, seed: int = 0) -> DigitsSplit:
    """scikit-learn's digits as a stratified train/test split, standardized per pixel with
    the training set's mean and std (the test set never leaks into the statistics).

    test_size: fraction of the 1797 images in the test split (0 < test_size < 1).
    The same seed always gives the same split.
    """
    digits = load_digits()
    x = digits.data.astype(np.float64)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return DigitsSplit(
        x_train=(x_train - mean) / std,
        y_train=y_train,
        x_test=(x_test - mean) / std,
        y_test=y_test,
        feature_mean=mean,
        feature_std=std,
    )
