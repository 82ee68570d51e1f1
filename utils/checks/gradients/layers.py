"""Lesson 00, exercises 3 and 4: scale_shift_forward/backward and
center_forward/backward."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from utils.cases import Case
from utils.checks.gradients.common import (
    BATCH_MEAN,
    GRADIENT_NAMES,
    WRONG_AXIS,
    _agrees_with_own_forward,
    _check_param_gradient_shape,
    _guarded_call,
    _own_forward_gradient,
    _torch_gradients,
    _unpack,
    _visible_batches,
)
from utils.checks.twins import On, paired
from utils.diagnose import assert_close, report, report_gradients
from utils.reference import as_tensor, to_numpy

# --- exercise 3: scale_shift_forward / scale_shift_backward --------------------------------


def _run_scale_shift_forward(forward: Callable, case: Case) -> tuple:
    result = _guarded_call(
        "scale_shift_forward", forward, (case.x, case.gamma, case.beta), ("x", "gamma", "beta")
    )
    return _unpack(result, 2, "scale_shift_forward", "(out, cache)")


def _scale_shift_forward_error(forward: Callable, case: Case) -> float:
    out, _ = _run_scale_shift_forward(forward, case)
    expected = to_numpy(as_tensor(case.x) * as_tensor(case.gamma) + as_tensor(case.beta))
    mistakes = {
        "gamma and beta swapped (x * beta + gamma)": case.x * case.beta + case.gamma,
        "beta is missing (x * gamma)": case.x * case.gamma,
        "gamma is missing (x + beta)": case.x + case.beta,
    }
    return assert_close(f"scale_shift_forward [{case.label}]", out, expected, mistakes)


def _first_batch() -> On:
    """The visible side of the forward checks: the first visible batch."""
    return On(_visible_batches()[:1])


def _all_batches() -> On:
    """The visible side of the backward checks: every visible batch."""
    return On(_visible_batches())


@paired(_first_batch)
def check_scale_shift_forward(on: On, forward: Callable) -> None:
    """Visible check of ``scale_shift_forward(x, gamma, beta) -> (out, cache)``."""
    errors = [_scale_shift_forward_error(forward, case) for case in on.cases]
    report(f"scale_shift_forward{on.label}", max(errors))


def _scale_shift_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma, dbeta for out = x * gamma + beta."""
    dout, x = case.dout, case.x
    return {
        "dx": {
            "dx is missing the factor gamma (dx = dout)": dout,
            "dx was multiplied by x instead of gamma": dout * x,
        },
        "dgamma": {
            "dgamma and dbeta swapped (dgamma = sum of dout)": dout.sum(axis=0),
            BATCH_MEAN: (dout * x).mean(axis=0),
            WRONG_AXIS: (dout * x).sum(axis=1),
            "dgamma summed dout * out instead of dout * x": (
                dout * (x * case.gamma + case.beta)
            ).sum(axis=0),
        },
        "dbeta": {
            "dgamma and dbeta swapped (dbeta = sum of dout * x)": (dout * x).sum(axis=0),
            BATCH_MEAN: dout.mean(axis=0),
            WRONG_AXIS: dout.sum(axis=1),
        },
    }


def _scale_shift_backward_errors(backward: Callable, forward: Callable, case: Case):
    """(error vs autograd, error vs finite differences of the learner's forward) on one case."""
    n, d = case.x.shape
    _, cache = _run_scale_shift_forward(forward, case)
    result = _guarded_call("scale_shift_backward", backward, (case.dout, cache), ("dout", "cache"))
    got = dict(
        zip(
            GRADIENT_NAMES,
            _unpack(result, 3, "scale_shift_backward", "(dx, dgamma, dbeta)"),
            strict=True,
        )
    )
    _check_param_gradient_shape(f"dgamma [{case.label}]", got["dgamma"], n, d)
    _check_param_gradient_shape(f"dbeta [{case.label}]", got["dbeta"], n, d)
    expected = _torch_gradients(
        lambda x, g, b: x * g + b, [case.x, case.gamma, case.beta], case.dout
    )
    mistakes = _scale_shift_mistakes(case)
    against_torch = max(
        assert_close(f"scale_shift_backward: {part} [{case.label}]", got[part], ref, mistakes[part])
        for part, ref in zip(GRADIENT_NAMES, expected, strict=True)
    )
    # Each lambda perturbs its own argument z, which is handed a copy.
    name, x, gamma, beta = "scale_shift_forward", case.x, case.gamma, case.beta
    numerical = [
        _own_forward_gradient(name, lambda z: forward(z, gamma, beta), x, case.dout),
        _own_forward_gradient(name, lambda z: forward(x, z, beta), gamma, case.dout),
        _own_forward_gradient(name, lambda z: forward(x, gamma, z), beta, case.dout),
    ]
    against_fd = max(
        _agrees_with_own_forward(
            f"scale_shift_backward: {part} vs finite differences [{case.label}]", got[part], num
        )
        for part, num in zip(GRADIENT_NAMES, numerical, strict=True)
    )
    return against_torch, against_fd


def _report_backward(name: str, errors: list[tuple[float, float]]) -> None:
    report_gradients(name, errors, "finite differences of your forward")


@paired(_all_batches)
def check_scale_shift_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of ``scale_shift_backward(dout, cache) -> (dx, dgamma, dbeta)``."""
    errors = [_scale_shift_backward_errors(backward, forward, c) for c in on.cases]
    _report_backward(f"scale_shift_backward{on.label}", errors)


# --- exercise 4: center_forward / center_backward ------------------------------------------


def _centered(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=0, keepdim=True)


def _center_forward_mistakes(x: np.ndarray) -> dict[str, np.ndarray]:
    mistakes = {
        "each row's mean (axis=1) was subtracted instead of each feature's mean over the batch "
        "(axis=0)": x - x.mean(axis=1, keepdims=True),
        "the mean of the whole array (np.mean without axis) was subtracted": x - x.mean(),
    }
    if x.shape[0] == x.shape[1]:
        rows_broadcast = (
            "the row means (axis=1, no keepdims) were subtracted, and broadcasting lined them up "
            "with the columns"
        )
        mistakes[rows_broadcast] = x - x.mean(axis=1)
    return mistakes


def _center_backward_mistakes(dout: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "the '- mean of dout' term is missing (dx = dout): every output row depends on every "
        "input row through the batch mean": dout,
        "the mean of dout was taken over axis 1 instead of over the batch (axis 0)": (
            dout - dout.mean(axis=1, keepdims=True)
        ),
        "the mean of the whole dout was subtracted (np.mean without axis)": dout - dout.mean(),
        "the mean term was added instead of subtracted": dout + dout.mean(axis=0),
    }


def _run_center_forward(forward: Callable, case: Case) -> tuple:
    result = _guarded_call("center_forward", forward, (case.x,), ("x",))
    return _unpack(result, 2, "center_forward", "(out, cache)")


def _center_forward_error(forward: Callable, case: Case) -> float:
    out, _ = _run_center_forward(forward, case)
    expected = to_numpy(_centered(as_tensor(case.x)))
    mistakes = _center_forward_mistakes(case.x)
    return assert_close(f"center_forward [{case.label}]", out, expected, mistakes)


@paired(_first_batch)
def check_center_forward(on: On, forward: Callable) -> None:
    """Visible check of ``center_forward(x) -> (out, cache)``."""
    errors = [_center_forward_error(forward, case) for case in on.cases]
    report(f"center_forward{on.label}", max(errors))


def _center_backward_errors(backward: Callable, forward: Callable, case: Case):
    """(error vs autograd, error vs finite differences of the learner's forward) on one case."""
    _, cache = _run_center_forward(forward, case)
    dx = _guarded_call("center_backward", backward, (case.dout, cache), ("dout", "cache"))
    (expected,) = _torch_gradients(_centered, [case.x], case.dout)
    against_torch = assert_close(
        f"center_backward [{case.label}]", dx, expected, _center_backward_mistakes(case.dout)
    )
    numerical = _own_forward_gradient("center_forward", forward, case.x, case.dout)
    against_fd = _agrees_with_own_forward(
        f"center_backward vs finite differences [{case.label}]", dx, numerical
    )
    return against_torch, against_fd


@paired(_all_batches)
def check_center_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of ``center_backward(dout, cache) -> dx``."""
    errors = [_center_backward_errors(backward, forward, c) for c in on.cases]
    _report_backward(f"center_backward{on.label}", errors)
