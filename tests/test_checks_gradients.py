"""Unit tests of utils.checks.gradients without the notebook (fast; the planted-bug suite that
runs the notebook's grade cells is tests/test_lesson_00_gradient_checking.py and, for the two
small layers, tests/test_lesson_00_gradient_checking_layers.py).

Correct implementations written here, in a different shape from the lesson's solution, must
pass every visible and hidden check silently on stderr; wrong ones must fail with the hint.
"""

import contextlib
import io
import warnings

import numpy as np
import pytest

from utils.checks import gradients as checks
from utils.checks.hidden import gradients as hidden_gradients
from utils.diagnose import CheckFailure
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import TorchUsedError


def scale_shift_forward(x, gamma, beta):
    return np.add(np.multiply(x, gamma), beta), {"x": x, "gamma": gamma}


def scale_shift_backward(dout, cache):
    return dout * cache["gamma"], np.einsum("nd,nd->d", dout, cache["x"]), dout.sum(axis=0)


def center_forward(x):
    return x - np.mean(x, axis=0, keepdims=True), x.shape[0]


def center_backward(dout, n):
    return dout - dout.sum(axis=0, keepdims=True) / n


CORRECT = [
    (checks.check_relative_error, (relative_error,)),
    (hidden_gradients.check_relative_error_hidden, (relative_error,)),
    (checks.check_numerical_gradient, (numerical_gradient,)),
    (hidden_gradients.check_numerical_gradient_hidden, (numerical_gradient,)),
    (checks.check_scale_shift_forward, (scale_shift_forward,)),
    (hidden_gradients.check_scale_shift_forward_hidden, (scale_shift_forward,)),
    (checks.check_scale_shift_backward, (scale_shift_backward, scale_shift_forward)),
    (
        hidden_gradients.check_scale_shift_backward_hidden,
        (scale_shift_backward, scale_shift_forward),
    ),
    (checks.check_center_forward, (center_forward,)),
    (hidden_gradients.check_center_forward_hidden, (center_forward,)),
    (checks.check_center_backward, (center_backward, center_forward)),
    (hidden_gradients.check_center_backward_hidden, (center_backward, center_forward)),
]


@pytest.mark.parametrize("check, args", CORRECT, ids=[c.__name__ for c, _ in CORRECT])
def test_correct_code_passes_with_a_line_per_part_and_nothing_on_stderr(check, args, capsys):
    stderr = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(stderr):
        warnings.simplefilter("error")
        check(*args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(line.endswith("— correct") for line in lines)
    assert stderr.getvalue() == ""


def test_test_data_never_uses_gamma_one_or_beta_zero():
    for case in checks._visible_batches() + hidden_gradients._hidden_batches():
        assert np.all(np.abs(np.abs(case.gamma) - 1.0) > 1e-3), case.label
        assert np.all(np.abs(case.beta) > 1e-3), case.label


def test_hidden_batches_include_the_cases_that_expose_bugs():
    shapes = [case.x.shape for case in hidden_gradients._hidden_batches()]
    assert any(n == 2 for n, _ in shapes) and any(d == 1 for _, d in shapes)
    assert any(n == d for n, d in shapes)
    assert any(not case.x.flags.c_contiguous for case in hidden_gradients._hidden_batches())


def test_a_backward_without_the_mean_term_is_named():
    with pytest.raises(CheckFailure, match="'- mean of dout' term is missing"):
        checks.check_center_backward(lambda dout, cache: dout, center_forward)


def test_a_parameter_gradient_not_summed_over_the_batch_is_named_by_its_shape():
    def unsummed(dout, cache):
        return dout * cache["gamma"], dout * cache["x"], dout

    with pytest.raises(CheckFailure, match=r"shape \(4, 3\), expected \(3,\).*sum over axis 0"):
        checks.check_scale_shift_backward(unsummed, scale_shift_forward)


def test_a_one_sided_numerical_gradient_is_named():
    def one_sided(f, x, dout=None, h=1e-5):
        w = 1.0 if dout is None else dout
        base, grad = np.sum(f(x) * w), np.zeros(x.shape)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + h
            grad[i] = (np.sum(f(x) * w) - base) / h
            x[i] = old
        return grad

    with pytest.raises(CheckFailure, match="one-sided difference"):
        checks.check_numerical_gradient(one_sided)


def test_torch_inside_an_exercise_is_refused():
    def with_torch(x):
        import torch

        t = torch.as_tensor(x)
        return (t - t.mean(dim=0)).numpy(), None

    with pytest.raises(TorchUsedError):
        checks.check_center_forward(with_torch)


def test_a_relative_error_that_broadcasts_is_refused():
    def broadcasting(a, b, floor=1e-12):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return float(np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max(), floor))

    checks.check_relative_error(broadcasting)  # the visible cases cannot tell
    with pytest.raises(CheckFailure, match="Raise ValueError"):
        hidden_gradients.check_relative_error_hidden(broadcasting)
