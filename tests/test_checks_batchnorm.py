"""utils.checks.batchnorm: checks pass correct code and fail each classic mistake with its hint.

The implementations below are written here, independently of utils.mistakes, in the shapes a
learner would write them; PyTorch (through the checks) is the only oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.checking import fails as _fails
from tests.checking import frozen
from utils.checks.batchnorm import (
    check_batch_statistics,
    check_batchnorm_backward,
    check_batchnorm_cache,
    check_batchnorm_forward,
)
from utils.checks.hidden.batchnorm import (
    check_batch_statistics_hidden,
    check_batchnorm_backward_hidden,
    check_batchnorm_cache_hidden,
    check_batchnorm_forward_hidden,
)
from utils.guard import TorchUsedError


def make_forward(
    ddof=0,
    eps_outside=False,
    axis=0,
    swap=False,
    affine=True,
    fixed_eps=None,
    divide_by_var=False,
    in_place=False,
    keepdims=False,
    cache_edit=None,
):
    """A learner-style forward with at most one planted mistake."""

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        e = eps if fixed_eps is None else fixed_eps
        mean = np.mean(x, axis=axis, keepdims=keepdims or axis == 1)
        var = np.var(x, axis=axis, ddof=ddof, keepdims=keepdims or axis == 1)
        if in_place:
            x -= mean
            centered = x
        else:
            centered = x - mean
        if eps_outside:
            denominator = np.sqrt(var) + e
        elif divide_by_var:
            denominator = var + e
        else:
            denominator = np.sqrt(var + e)
        inv_std = 1.0 / denominator
        x_hat = centered * inv_std
        if swap:
            gamma, beta = beta, gamma
        out = gamma * x_hat + beta if affine else x_hat
        cache = dict(
            x=x, gamma=gamma, beta=beta, eps=eps, mean=mean, var=var, x_hat=x_hat, inv_std=inv_std
        )
        if cache_edit:
            cache_edit(cache)
        return out, cache

    return batchnorm_forward


correct_forward = make_forward()


def loop_forward(x, gamma, beta, eps=1e-5):
    """Another correct forward: explicit loops over features, Python floats."""
    n, d = x.shape
    out, x_hat = np.empty((n, d)), np.empty((n, d))
    mean, var = np.empty(d), np.empty(d)
    for j in range(d):
        column = [float(v) for v in x[:, j]]
        mean[j] = sum(column) / n
        var[j] = sum((v - mean[j]) ** 2 for v in column) / n
        x_hat[:, j] = [(v - mean[j]) / (var[j] + eps) ** 0.5 for v in column]
        out[:, j] = gamma[j] * x_hat[:, j] + beta[j]
    inv_std = (var + eps) ** -0.5
    return out, dict(
        x=x, gamma=gamma, beta=beta, eps=eps, mean=mean, var=var, x_hat=x_hat, inv_std=inv_std
    )


def closed_backward(dout, cache):
    g, xh, s = cache["gamma"], cache["x_hat"], cache["inv_std"]
    n = len(dout)
    dxh = dout * g
    dx = s / n * (n * dxh - dxh.sum(0) - xh * (dxh * xh).sum(0))
    return dx, (dout * xh).sum(0), dout.sum(0)


def jacobian_backward(dout, cache):
    """Another correct backward: the full N x N Jacobian of each feature, applied explicitly."""
    x, gamma, eps = cache["x"], cache["gamma"], cache["eps"]
    n, d = x.shape
    dx, dgamma, dbeta = np.zeros((n, d)), np.zeros(d), np.zeros(d)
    for j in range(d):
        c = x[:, j] - x[:, j].mean()
        v = (c @ c) / n
        s = 1 / np.sqrt(v + eps)
        jac = s * (np.eye(n) - 1 / n) - np.outer(c, c) * s**3 / n  # d x_hat_i / d x_k
        dx[:, j] = gamma[j] * (jac.T @ dout[:, j])
        dgamma[j] = dout[:, j] @ (c * s)
        dbeta[j] = dout[:, j].sum()
    return dx, dgamma, dbeta


def make_staged(
    unbiased=False,
    wrong_power=False,
    no_gamma=False,
    swap=False,
    dgamma_plain=False,
    no_mean_term=False,
    no_var_term=False,
    recompute_no_eps=False,
    mutate_dout=False,
):
    def batchnorm_backward_staged(dout, cache):
        x, gamma, eps = cache["x"], cache["gamma"], cache["eps"]
        n = x.shape[0]
        mu = x.mean(0)
        c = x - mu
        v = (c * c).mean(0)
        s = 1 / np.sqrt(v + (0 if recompute_no_eps else eps))
        xh = cache["x_hat"]
        if mutate_dout:
            dout *= 1.0
            dout[0] = 0.0
        dbeta = dout.sum(0)
        dgamma = dout.sum(0) if dgamma_plain else (dout * xh).sum(0)
        dxh = dout if no_gamma else dout * gamma
        ds = (dxh * c).sum(0)
        dc = dxh * s
        dv = -0.5 * ds * (s if wrong_power else s**3)
        if not no_var_term:
            dc = dc + 2 * c * dv / (n - 1 if unbiased else n)
        dmu = -dc.sum(0)
        dx = dc + (0 if no_mean_term else dmu / n)
        if swap:
            dgamma, dbeta = dbeta, dgamma
        return dx, dgamma, dbeta

    return batchnorm_backward_staged


# --- correct code passes -------------------------------------------------------------------


@pytest.mark.parametrize("forward", [correct_forward, loop_forward, make_forward(keepdims=True)])
def test_correct_forwards_pass_every_forward_and_cache_check(forward, capsys):
    for check in (
        check_batchnorm_forward,
        check_batchnorm_forward_hidden,
        check_batchnorm_cache,
        check_batchnorm_cache_hidden,
    ):
        check(forward)
    out = capsys.readouterr().out
    assert out.count("— correct") == 4 and "below 1e-08" in out


@pytest.mark.parametrize("backward", [closed_backward, jacobian_backward, make_staged()])
@pytest.mark.parametrize("forward", [correct_forward, loop_forward])
def test_correct_backwards_pass_against_autograd_and_finite_differences(backward, forward, capsys):
    check_batchnorm_backward(backward, forward)
    check_batchnorm_backward_hidden(backward, forward)
    out = capsys.readouterr().out
    assert "vs PyTorch autograd" in out and "centered differences" in out
    assert "below 1e-06" in out and "note" not in out


def test_batch_statistics_check_accepts_correct_code_and_names_mistakes():
    check_batch_statistics(lambda x: (x.mean(0), x.var(0)))
    check_batch_statistics_hidden(lambda x: (x.mean(0, keepdims=True), x.var(0, keepdims=True)))
    _fails(check_batch_statistics, lambda x: (x.mean(0), x.var(0, ddof=1)), match="unbiased")
    _fails(check_batch_statistics, lambda x: (x.mean(0), x.std(0)), match="standard deviation")
    _fails(check_batch_statistics, lambda x: (x.mean(1), x.var(1)), match="one value per sample")
    _fails(check_batch_statistics, lambda x: x.mean(0), match="tuple (mean, var)")


# --- forward mistakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "forward, hint",
    [
        (make_forward(ddof=1), "unbiased"),
        (make_forward(eps_outside=True), "outside the square root"),
        (make_forward(axis=1), "per sample"),
        (make_forward(swap=True), "swapped"),
        (make_forward(affine=False), "not applied"),
        (make_forward(divide_by_var=True), "divided by (var + eps)"),
        (make_forward(in_place=True), "in place"),
    ],
)
def test_forward_mistakes_fail_visible_and_hidden_checks_with_their_hint(forward, hint):
    _fails(check_batchnorm_forward, forward, match=hint)
    _fails(check_batchnorm_forward_hidden, forward, match=hint)


def test_ignoring_the_eps_argument_is_caught_by_the_hidden_check():
    forward = make_forward(fixed_eps=1e-5)
    check_batchnorm_forward(forward)
    message = _fails(check_batchnorm_forward_hidden, forward, match="eps argument")
    assert message.startswith("[eps=1e-3")


def test_eps_outside_the_sqrt_fails_the_first_hidden_case():
    forward = make_forward(eps_outside=True)
    message = _fails(check_batchnorm_forward_hidden, forward, match="outside the square root")
    assert message.startswith("[random")


def test_forward_must_return_out_and_cache():
    _fails(check_batchnorm_forward, lambda x, g, b, eps=1e-5: g * x + b, match="(out, cache)")


def test_forward_using_torch_gets_no_points():
    def torch_forward(x, gamma, beta, eps=1e-5):
        import torch.nn.functional as F

        t = F.batch_norm(
            torch.tensor(x),
            None,
            None,
            torch.tensor(gamma),
            torch.tensor(beta),
            training=True,
            eps=eps,
        )
        return t.numpy(), {}

    with pytest.raises(TorchUsedError):
        check_batchnorm_forward(torch_forward)


# --- cache mistakes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, hint",
    [
        (lambda c: c.pop("inv_std"), "missing 'inv_std'"),
        (lambda c: c.update(inv_std=1 / c["inv_std"]), "inverse"),
        (lambda c: c.update(var=c["var"] * len(c["x"]) / (len(c["x"]) - 1)), "unbiased"),
        (lambda c: c.update(eps=1e-3), "cache['eps']"),
        (lambda c: c.update(x_hat=c["x_hat"].T.copy()), "cache['x_hat'] has shape"),
    ],
)
def test_cache_mistakes_fail_with_their_hint(edit, hint):
    _fails(check_batchnorm_cache, make_forward(cache_edit=edit), match=hint)
    _fails(check_batchnorm_cache_hidden, make_forward(cache_edit=edit), match=hint)


# --- backward mistakes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "backward, hint",
    [
        (make_staged(no_mean_term=True), "missing the mean term"),
        (make_staged(no_var_term=True), "missing the variance term"),
        (make_staged(no_mean_term=True, no_var_term=True), "treated as constants"),
        (make_staged(no_gamma=True), "forgets gamma"),
        (make_staged(unbiased=True), "unbiased variance"),
        (make_staged(wrong_power=True), "wrong power"),
        (make_staged(swap=True), "swapped"),
        (make_staged(dgamma_plain=True), "x_hat factor is missing"),
        (make_staged(mutate_dout=True), "changed its input dout in place"),
    ],
)
def test_backward_mistakes_fail_visible_and_hidden_checks_with_their_hint(backward, hint):
    _fails(check_batchnorm_backward, backward, correct_forward, match=hint)
    _fails(check_batchnorm_backward_hidden, backward, correct_forward, match=hint)


def test_backward_without_eps_fails_and_is_named_on_the_near_constant_case():
    message = _fails(
        check_batchnorm_backward_hidden,
        make_staged(recompute_no_eps=True),
        correct_forward,
        match="dx",
    )
    check_batchnorm_backward_hidden(make_staged(), correct_forward)
    assert "relative error" in message


def test_backward_must_return_three_gradients():
    _fails(
        check_batchnorm_backward,
        lambda dout, cache: closed_backward(dout, cache)[:2],
        correct_forward,
        match="(dx, dgamma, dbeta)",
    )


def test_backward_using_torch_gets_no_points():
    def torch_backward(dout, cache):
        return closed_backward(torch.tensor(dout).numpy(), cache)  # a round trip via torch

    with pytest.raises(TorchUsedError):
        check_batchnorm_backward(torch_backward, correct_forward)


# --- the backward is graded independently of a wrong forward where possible ----------------


def test_correct_backward_passes_on_a_reference_cache_when_the_forward_is_wrong(capsys):
    check_batchnorm_backward(closed_backward, make_forward(eps_outside=True))
    out = capsys.readouterr().out
    assert "reference cache" in out and "fix the forward too" in out


def test_a_backward_that_needs_the_wrong_forward_is_told_to_fix_the_forward_first():
    def needs_extra_key(dout, cache):
        return closed_backward(dout, {**cache, "inv_std": 1 / cache["std"]})

    def forward_with_std(x, gamma, beta, eps=1e-5):
        out, cache = make_forward(ddof=1)(x, gamma, beta, eps)
        return out, {**cache, "std": 1 / cache["inv_std"]}

    forward_with_std.__name__ = "batchnorm_forward"
    _fails(
        check_batchnorm_backward,
        needs_extra_key,
        forward_with_std,
        match="fix batchnorm_forward first",
    )


def test_finite_differences_use_the_perturbed_argument_of_the_learners_forward():
    """A forward that ignores a perturbation of x has a zero numerical gradient: caught."""
    _fails(
        check_batchnorm_backward,
        closed_backward,
        frozen(correct_forward),
        match="centered differences",
    )
