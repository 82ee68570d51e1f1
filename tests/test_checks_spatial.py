"""utils.checks.spatial: references, cases, known-wrong variants and the lesson-06 checks.

The implementations here are written independently of the module, in the shapes a learner
would write them; PyTorch (through the checks) is the oracle for the checks, and plain loops
and finite differences are the oracle for the references themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.checking import fails as _fails
from tests.checking import frozen
from utils import reference
from utils.checks import spatial
from utils.checks.hidden import spatial as hidden_spatial
from utils.checks.hidden.spatial import (
    check_channel_rows_hidden,
    check_spatial_backward_hidden,
    check_spatial_forward_hidden,
)
from utils.checks.spatial import (
    check_channel_rows,
    check_spatial_backward,
    check_spatial_forward,
)
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import TorchUsedError

shapes = st.tuples(
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)
).filter(lambda s: s[0] * s[2] * s[3] > 1)


def _inputs(shape, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(size=shape) * rng.uniform(0.5, 2, (1, c, 1, 1)) + rng.normal(size=(1, c, 1, 1))
    return x, rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=shape)


# --- the references ----------------------------------------------------------------------------


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_forward_reference_normalizes_each_channel_over_batch_and_positions(shape, seed):
    x, gamma, beta, _ = _inputs(shape, seed)
    expected = np.empty(shape)
    for c in range(shape[1]):
        values = x[:, c]
        mean = sum(values.ravel()) / values.size
        var = sum((v - mean) ** 2 for v in values.ravel()) / values.size
        expected[:, c] = gamma[c] * (values - mean) / (var + 1e-5) ** 0.5 + beta[c]
    assert relative_error(reference.batchnorm_forward_reference(x, gamma, beta), expected) < 1e-12


def test_gradient_reference_matches_finite_differences():
    x, gamma, beta, dout = _inputs((2, 3, 2, 2), 0)
    dx, dgamma, dbeta = reference.batchnorm_gradients_reference(x, gamma, beta, dout)
    forward = reference.batchnorm_forward_reference
    numeric = (
        numerical_gradient(lambda x_: forward(x_, gamma, beta), x.copy(), dout),
        numerical_gradient(lambda g_: forward(x, g_, beta), gamma.copy(), dout),
        numerical_gradient(lambda b_: forward(x, gamma, b_), beta.copy(), dout),
    )
    for analytic, approx in zip((dx, dgamma, dbeta), numeric, strict=True):
        assert relative_error(analytic, approx) < 1e-7


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_rows_hold_one_position_each_in_c_order_and_convert_back(shape, seed):
    x = _inputs(shape, seed)[0]
    rows = reference.channels_to_rows_reference(x)
    positions = list(np.ndindex(shape[0], shape[2], shape[3]))
    assert rows.shape == (len(positions), shape[1])
    for r, (n, h, w) in enumerate(positions):
        assert np.array_equal(rows[r], x[n, :, h, w])
    assert np.array_equal(reference.rows_to_channels_reference(rows, shape), x)


# --- the cases ---------------------------------------------------------------------------------


def test_hidden_cases_cover_the_shapes_and_layouts_the_lesson_promises():
    cases = hidden_spatial.hidden_cases()
    shapes_seen = [c.x.shape for c in cases]
    assert any(n == 1 and h * w > 1 for n, _, h, w in shapes_seen)
    assert any(c == 1 for _, c, _, _ in shapes_seen)
    assert any(h == w == 1 for _, _, h, w in shapes_seen)
    assert any(w == c for _, c, _, w in shapes_seen)
    assert not all(c.x.flags.c_contiguous for c in cases)
    (nhwc,) = [c for c in cases if "channels-last" in c.label]
    fresh = nhwc.fresh().x
    assert fresh.transpose(0, 2, 3, 1).flags.c_contiguous and not fresh.flags.c_contiguous
    assert np.array_equal(fresh, nhwc.x) and fresh.base is not nhwc.x.base
    for case in [spatial.visible_case(), *cases]:
        assert not np.any(np.abs(case.gamma) == 1) and np.all(case.beta != 0)


def test_every_known_mistake_differs_from_pytorch_on_some_hidden_case():
    """A variant that equals the reference everywhere could never be told apart (or named)."""
    cases = hidden_spatial.hidden_cases()
    for description in spatial.FORWARD_MISTAKES:
        errors = []
        for case in cases:
            wrong = spatial.forward_mistakes(case).get(description)
            expected = reference.batchnorm_forward_reference(
                case.x, case.gamma, case.beta, case.eps
            )
            if wrong is not None:
                errors.append(relative_error(wrong, expected))
        assert max(errors) > 1e-6, description
    for description in spatial.DX_MISTAKES:
        errors = []
        for case in cases:
            wrong = spatial.backward_mistakes(case)["dx"][description]
            dx = reference.batchnorm_gradients_reference(
                case.x, case.gamma, case.beta, case.dout, case.eps
            )[0]
            errors.append(relative_error(wrong, dx))
        assert max(errors) > 1e-6, description


# --- learner-style implementations -------------------------------------------------------------


def make_forward(axes=(0, 2, 3), ddof=0, along_width=False, in_place=False):
    def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
        mean = np.mean(x, axis=axes, keepdims=True)
        var = np.var(x, axis=axes, ddof=ddof, keepdims=True)
        if in_place:
            x -= mean
            centered = x
        else:
            centered = x - mean
        inv_std = 1 / np.sqrt(var + eps)
        x_hat = centered * inv_std
        g, b = (gamma, beta) if along_width else (gamma[:, None, None], beta[:, None, None])
        return g * x_hat + b, {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma}

    return spatial_batchnorm_forward


correct_forward = make_forward()


def make_backward(count="all", dgamma_axes=(0, 2, 3), keep=False):
    def spatial_batchnorm_backward(dout, cache):
        xh, s, g = cache["x_hat"], cache["inv_std"], cache["gamma"][:, None, None]
        m = dout.shape[0] if count == "batch" else dout.size / dout.shape[1]
        d = dout * g
        axes = (0, 2, 3)
        dx = s / m * (m * d - d.sum(axes, keepdims=True) - xh * (d * xh).sum(axes, keepdims=True))
        return dx, (dout * xh).sum(dgamma_axes, keepdims=keep), dout.sum(axes)

    return spatial_batchnorm_backward


correct_backward = make_backward()


def test_correct_code_passes_every_check(capsys):
    def to_rows(x):
        return np.moveaxis(x, 1, 3).reshape(-1, x.shape[1])

    def to_channels(rows, shape):
        return np.moveaxis(rows.reshape(shape[0], shape[2], shape[3], shape[1]), 3, 1)

    check_channel_rows(to_rows, to_channels)
    check_channel_rows_hidden(to_rows, to_channels)
    check_spatial_forward(correct_forward)
    check_spatial_forward_hidden(correct_forward)
    check_spatial_backward(correct_backward, correct_forward)
    check_spatial_backward_hidden(correct_backward, correct_forward)
    out = capsys.readouterr().out
    assert out.count("— correct") == 8 and "centered differences" in out


@pytest.mark.parametrize(
    "forward, hint",
    [
        (make_forward(axes=0), "per position"),
        (make_forward(axes=(0, 1)), "axis=(0, 1)"),
        (make_forward(axes=(2, 3)), "instance norm"),
        (make_forward(axes=(1, 2, 3)), "layer norm"),
        (make_forward(ddof=1), "unbiased"),
        (make_forward(in_place=True), "in place"),
    ],
)
def test_forward_mistakes_fail_visible_and_hidden_checks_with_their_hint(forward, hint):
    _fails(check_spatial_forward, forward, match=hint)
    _fails(check_spatial_forward_hidden, forward, match=hint)


def test_affine_broadcast_along_width_is_named_where_numpy_lets_it_run():
    forward = make_forward(along_width=True)
    with pytest.raises(ValueError, match="broadcast"):
        check_spatial_forward(forward)  # W = 2, C = 3: numpy refuses
    message = _fails(check_spatial_forward_hidden, forward, match="along the last axis (W)")
    assert message.startswith("[random x of shape (2, 3, 2, 3)]")


@pytest.mark.parametrize(
    "backward, hint",
    [
        (make_backward(count="batch"), "divided by N instead of by N * H * W"),
        (make_backward(dgamma_axes=0), "sum over the positions too"),
        (make_backward(dgamma_axes=(2, 3)), "sum over the batch too"),
        (make_backward(keep=True), "keepdims"),
    ],
)
def test_backward_mistakes_fail_with_their_hint(backward, hint):
    _fails(check_spatial_backward, backward, correct_forward, match=hint)
    _fails(check_spatial_backward_hidden, backward, correct_forward, match=hint)


def test_a_wrong_forward_is_blamed_before_its_backward():
    message = _fails(check_spatial_backward, correct_backward, make_forward(ddof=1), match="first")
    assert "fix spatial_batchnorm_forward first" in message and "unbiased" in message


def test_finite_differences_use_the_perturbed_argument_of_the_learners_forward():
    """A forward that ignores a perturbation of x has a zero numerical gradient: caught."""
    _fails(
        check_spatial_backward,
        correct_backward,
        frozen(correct_forward),
        match="centered differences",
    )


def test_using_torch_gets_no_points():
    def torch_forward(x, gamma, beta, eps=1e-5):
        out = torch.nn.functional.batch_norm(
            torch.tensor(np.array(x)), None, None, torch.tensor(gamma), torch.tensor(beta), True
        )
        return out.numpy(), {}

    with pytest.raises(TorchUsedError):
        check_spatial_forward(torch_forward)
    with pytest.raises(TorchUsedError):
        check_channel_rows(lambda x: torch.tensor(x).numpy(), lambda rows, shape: rows)


# --- route 2 without route 1 -------------------------------------------------------------------

ROUTE_NAMESPACE = """
import numpy as np

def channels_to_rows(x):
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])

def rows_to_channels(rows, shape):
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)

def direct(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    out = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    return out, {"gamma": gamma, "x_hat": x_hat, "inv_std": inv_std}

def through_rows(x, gamma, beta, eps=1e-5):
    rows = channels_to_rows(x)
    mean, inv_std = rows.mean(0), 1 / np.sqrt(rows.var(0) + eps)
    x_hat = rows_to_channels((rows - mean) * inv_std, x.shape)
    out = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    return out, {"gamma": gamma, "x_hat": x_hat, "inv_std": inv_std.reshape(1, -1, 1, 1)}
"""


def _learner_namespace() -> dict:
    namespace: dict = {}
    exec(ROUTE_NAMESPACE, namespace)
    return namespace


def test_route_2_passes_when_it_reduces_itself():
    namespace = _learner_namespace()
    spatial.check_spatial_forward_direct(namespace["direct"])


def test_route_2_through_channels_to_rows_fails_and_the_names_come_back():
    namespace = _learner_namespace()
    originals = {name: namespace[name] for name in ("channels_to_rows", "rows_to_channels")}
    check_spatial_forward(namespace["through_rows"])  # numerically right: route 1 accepts it
    with pytest.raises(AssertionError, match="called channels_to_rows; route 2 is written"):
        spatial.check_spatial_forward_direct(namespace["through_rows"])
    assert all(namespace[name] is function for name, function in originals.items())
