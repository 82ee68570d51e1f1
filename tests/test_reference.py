"""utils.reference: the PyTorch oracles agree with other PyTorch routes and with calculus."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from utils.cases import make_case
from utils.gradcheck import numerical_gradient, relative_error
from utils.reference import (
    batch_statistics_reference,
    batchnorm_forward_reference,
    batchnorm_gradients_reference,
    batchnorm_statistics_reference,
)

shapes = st.tuples(st.integers(2, 9), st.integers(1, 6))


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_forward_reference_matches_the_batchnorm1d_module_in_training_mode(shape, seed):
    case = make_case(shape, seed, "t")
    module = torch.nn.BatchNorm1d(shape[1], eps=case.eps, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(case.gamma))
        module.bias.copy_(torch.tensor(case.beta))
        expected = module(torch.tensor(case.x)).numpy()
    got = batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    assert got.dtype == np.float64 and got.shape == shape
    assert relative_error(got, expected) < 1e-13


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_forward_output_has_mean_beta_and_the_biased_scale(shape, seed):
    case = make_case(shape, seed, "t")
    out = batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    var = case.x.var(axis=0)  # the biased variance, computed by numpy, not torch
    np.testing.assert_allclose(out.mean(axis=0), case.beta, atol=1e-12)
    expected_std = np.abs(case.gamma) * np.sqrt(var / (var + case.eps))
    np.testing.assert_allclose(out.std(axis=0), expected_std, rtol=1e-10, atol=1e-12)


def test_eps_argument_is_used():
    case = make_case((5, 3), 0, "t")
    a = batchnorm_forward_reference(case.x, case.gamma, case.beta, 1e-5)
    b = batchnorm_forward_reference(case.x, case.gamma, case.beta, 1e-1)
    assert relative_error(a, b) > 1e-3


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_statistics_reference_is_the_biased_per_feature_statistics(shape, seed):
    case = make_case(shape, seed, "t")
    mean, var = batch_statistics_reference(case.x)
    np.testing.assert_allclose(mean, case.x.mean(axis=0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(var, case.x.var(axis=0), rtol=1e-12)
    stats = batchnorm_statistics_reference(case.x, case.eps)
    assert set(stats) == {"mean", "var", "inv_std", "x_hat"}
    np.testing.assert_allclose(stats["inv_std"], 1 / np.sqrt(case.x.var(axis=0) + case.eps))
    np.testing.assert_allclose(stats["x_hat"], (case.x - mean) * stats["inv_std"], atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3), (6, 4), (7, 1)])
def test_gradients_reference_matches_finite_differences(shape):
    case = make_case(shape, 7, "t")
    dx, dgamma, dbeta = batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )
    numeric = (
        numerical_gradient(
            lambda x: batchnorm_forward_reference(x, case.gamma, case.beta, case.eps),
            case.x.copy(),
            case.dout,
            h=1e-4,
        ),
        numerical_gradient(
            lambda g: batchnorm_forward_reference(case.x, g, case.beta, case.eps),
            case.gamma.copy(),
            case.dout,
        ),
        numerical_gradient(
            lambda b: batchnorm_forward_reference(case.x, case.gamma, b, case.eps),
            case.beta.copy(),
            case.dout,
        ),
    )
    for analytic, fd in zip((dx, dgamma, dbeta), numeric, strict=True):
        assert analytic.shape == fd.shape
        assert relative_error(analytic, fd) < 1e-6


def test_gradients_reference_dbeta_is_the_batch_sum_of_dout():
    case = make_case((6, 4), 3, "t")
    _, _, dbeta = batchnorm_gradients_reference(case.x, case.gamma, case.beta, case.dout)
    np.testing.assert_allclose(dbeta, case.dout.sum(axis=0), rtol=1e-14)


def test_references_accept_read_only_and_non_contiguous_inputs_without_warnings():
    case = make_case((6, 4), 5, "t", layout="strided")
    x = case.x.copy()
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = batchnorm_forward_reference(x, case.gamma, case.beta)
        batchnorm_gradients_reference(x, case.gamma, case.beta, case.dout)
    assert relative_error(out, batchnorm_forward_reference(case.x, case.gamma, case.beta)) == 0


def test_references_do_not_modify_their_inputs():
    case = make_case((4, 3), 9, "t")
    before = [a.copy() for a in (case.x, case.gamma, case.beta, case.dout)]
    batchnorm_forward_reference(case.x, case.gamma, case.beta)
    batchnorm_gradients_reference(case.x, case.gamma, case.beta, case.dout)
    for a, b in zip(before, (case.x, case.gamma, case.beta, case.dout), strict=True):
        np.testing.assert_array_equal(a, b)


def test_forward_reference_refuses_a_batch_of_one():
    with pytest.raises(ValueError):
        batchnorm_forward_reference(np.ones((1, 3)), np.ones(3) * 2, np.ones(3))
