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
    batchnorm_eval_reference,
    batchnorm_forward_reference,
    batchnorm_gradients_reference,
    batchnorm_statistics_reference,
    moments_reference,
    normalize_gradients_reference,
    normalize_reference,
    shard_parameter_gradients_reference,
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


# --- the one oracle: every form, dtypes -----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("form", ["batch", "layer", "instance", "group", "rms"])
def test_every_form_keeps_a_floating_dtype(form, dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 2, 2)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, 4).astype(dtype), rng.normal(size=4).astype(dtype)
    if form in ("layer", "rms"):
        gamma, beta = gamma[:2], beta[:2]
    out = normalize_reference(form, x, gamma, beta, 1e-5, num_groups=2)
    grads = normalize_gradients_reference(form, x, gamma, beta, np.ones_like(x), 1e-5, 2)
    assert out.dtype == dtype and out.shape == x.shape
    assert len(grads) == (2 if form == "rms" else 3)
    assert all(g.dtype == dtype for g in grads)


def test_integer_input_is_computed_in_float64():
    x = np.arange(12).reshape(4, 3)
    out = batchnorm_forward_reference(x, np.full(3, 1.5), np.full(3, 0.5))
    assert out.dtype == np.float64


def test_group_norm_with_one_channel_per_group_is_instance_norm():
    case = make_case((2, 4, 3, 2), 11, "t")
    np.testing.assert_allclose(
        normalize_reference("group", case.x, case.gamma, case.beta, case.eps, num_groups=4),
        normalize_reference("instance", case.x, case.gamma, case.beta, case.eps),
        rtol=1e-12,
        atol=1e-12,
    )


def test_layer_norm_of_2d_x_is_batch_norm_of_its_transpose():
    case = make_case((5, 4), 12, "t")
    np.testing.assert_allclose(
        normalize_reference("layer", case.x.T, np.full(5, 1.5), np.full(5, 0.5), case.eps),
        batchnorm_forward_reference(case.x, np.full(4, 1.5), np.full(4, 0.5), case.eps).T,
        rtol=1e-12,
    )


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_reference("weight", np.ones((2, 2)), np.ones(2), np.ones(2))


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 2, 3)])
def test_moments_are_per_feature_over_every_other_axis(shape):
    x = np.random.default_rng(4).normal(size=shape)
    axes = (0, *range(2, len(shape)))
    count, mean, var = moments_reference(x)
    assert count == x.size // shape[1]
    np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(var, x.var(axis=axes), rtol=1e-12)


def test_shard_parameter_gradients_add_up_to_the_whole_batch_gradients():
    case = make_case((7, 3), 13, "t")
    parts = shard_parameter_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, (3, 4), case.eps
    )
    _, dgamma, dbeta = batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )
    assert len(parts) == 2
    np.testing.assert_allclose(parts[0][0] + parts[1][0], dgamma, rtol=1e-12)
    np.testing.assert_allclose(parts[0][1] + parts[1][1], dbeta, rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 2)])
def test_eval_reference_is_the_module_in_eval_mode_with_its_running_statistics(shape):
    rng = np.random.default_rng(6)
    x, c = rng.normal(size=shape), shape[1]
    mean, var = rng.normal(size=c), rng.uniform(0.5, 2, c)
    gamma, beta = rng.uniform(0.5, 2, c), rng.normal(size=c)
    module = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        c, eps=1e-3, dtype=torch.float64
    )
    with torch.no_grad():
        for name, value in (("running_mean", mean), ("running_var", var)):
            getattr(module, name).copy_(torch.tensor(value))
        module.weight.copy_(torch.tensor(gamma))
        module.bias.copy_(torch.tensor(beta))
        expected = module.eval()(torch.tensor(x)).numpy()
    got = batchnorm_eval_reference(x, mean, var, gamma, beta, 1e-3)
    assert got.shape == shape and relative_error(got, expected) < 1e-13
