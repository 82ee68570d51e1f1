"""What lesson 00's checks share: tolerances, the named mistakes of a backward pass and the
helpers that compare a learner's gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from utils.cases import Case, make_case
from utils.diagnose import FINITE_DIFFERENCE, CheckFailure, assert_close, noted
from utils.gradcheck import numerical_gradient
from utils.guard import call_without_torch
from utils.reference import as_tensor, to_numpy

RESTORED = 1e-12
"""How far numerical_gradient may leave x from where it started (the roundoff of x + h - h)."""

WRONG_AXIS = "a sum over axis 1 (the features) instead of axis 0 (the batch)"
BATCH_MEAN = "the mean over the batch instead of the sum"
GRADIENT_NAMES = ("dx", "dgamma", "dbeta")


# --- shared helpers ------------------------------------------------------------------------


def _torch_gradients(fn: Callable, inputs: Sequence[np.ndarray], dout=None) -> list[np.ndarray]:
    """PyTorch autograd's gradients of ``sum(fn(*inputs) * dout)`` for each input (float64)."""
    leaves = [as_tensor(a, requires_grad=True) for a in inputs]
    weight = None if dout is None else as_tensor(dout)
    return [to_numpy(g) for g in torch.autograd.grad(fn(*leaves), leaves, grad_outputs=weight)]


def _guarded_call(name: str, fn: Callable, args: tuple, arg_names: Sequence[str], **kwargs):
    """``fn(*args, **kwargs)`` with PyTorch forbidden; CheckFailure if it changed an argument."""
    named = list(zip(arg_names, args, strict=True))
    before = {n: a.copy() for n, a in named if isinstance(a, np.ndarray)}
    result = call_without_torch(fn, *args, name=name, **kwargs)
    for arg_name, arg in named:
        if arg_name in before and not np.array_equal(arg, before[arg_name], equal_nan=True):
            raise CheckFailure(
                f"{name} changed its argument {arg_name} in place (for example with "
                f"{arg_name} -= ... or {arg_name} *= ..., which write into the caller's array). "
                "Compute a new array instead: the caller still needs the original."
            )
    return result


def _unpack(result, count: int, name: str, spelled: str) -> tuple:
    """The learner's tuple result, or a CheckFailure saying what came back instead."""
    if not isinstance(result, (tuple, list)) or len(result) != count:
        got = f"a {type(result).__name__}"
        if isinstance(result, (tuple, list)):
            got += f" of length {len(result)}"
        raise CheckFailure(f"{name} must return a tuple {spelled}; it returned {got}.")
    return tuple(result)


def _own_forward_gradient(name: str, forward: Callable, at: np.ndarray, dout) -> np.ndarray:
    """Centered difference of ``sum(forward(z)[0] * dout)`` at a copy of ``at``, torch forbidden.

    The copy matters: a lambda that ignored z and closed over the original array would see no
    change and give a zero gradient, instead of passing by accident.
    """
    return call_without_torch(
        numerical_gradient, lambda z: forward(z)[0], at.copy(), dout, name=name
    )


def _agrees_with_own_forward(name: str, got, numerical: np.ndarray) -> float:
    """Compare an analytic gradient with a finite difference of the learner's own forward."""
    note = (
        "Your backward matches PyTorch but not your own forward: the forward is the one to fix "
        "(run its check above)."
    )
    return noted(note, assert_close, name, got, numerical, tol=FINITE_DIFFERENCE)


def _visible_batches() -> list[Case]:
    return [make_case((4, 3), 0, "x of shape (4, 3)")]


def _check_param_gradient_shape(name: str, value, n: int, d: int) -> None:
    """A parameter of shape (D,) gets a gradient of shape (D,); name the usual wrong shapes."""
    shape = np.shape(value)
    if shape == (d,):
        return
    if shape == (n, d):
        hint = (
            "one gradient per row. The parameter is shared by all N rows of the batch, so its "
            "gradient is the sum of the rows' contributions: sum over axis 0."
        )
    elif shape == (1, d):
        hint = "a sum with keepdims=True; drop keepdims to get shape (D,)."
    elif shape == (n,):
        hint = f"{WRONG_AXIS}."
    else:
        hint = "the parameter has shape (D,), and so must its gradient."
    raise CheckFailure(f"{name} has shape {shape}, expected ({d},): {hint}")
