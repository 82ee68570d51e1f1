"""Lesson 11's autograd.Function checks: forward and backward of the fused kernels against
the float64 reference, and against centered differences of the learner's own forward along
random directions (what torch.autograd.gradcheck's fast mode checks), all driven from here."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from utils import reference
from utils.checks.torch_module.common import in_kernel, kind_of
from utils.checks.torch_module.function import (
    _name_of,
    backward_items,
    engine_answers,
    forward_losses,
    require_own_backward,
)
from utils.checks.triton_kernels.common import (
    FLOAT32,
    FLOAT32_GRADIENTS,
    KernelCase,
    _as_array,
    _per_channel,
    _tolerance,
    float32_case,
    kernel_case,
    visible_cases,
)
from utils.checks.triton_kernels.kernels import (
    _gradients,
    _statistics_reference,
    elementwise_mistakes,
    normalize_mistakes,
    reduction_mistakes,
    statistics_mistakes,
)
from utils.diagnose import FINITE_DIFFERENCE, TIGHT, CheckFailure, assert_close, on_cases, report

# --- the autograd.Function, where it lives (utils.autograd_call.kernels_apply) -----------------


def _applied(fn_cls, case: KernelCase, layout: str, dy=None, engine=False) -> dict:
    """``fn_cls.apply`` on ``case`` in its dtype (x laid out as ``layout``): the kernel's answer
    after its form is checked; with ``dy``, the backward's too (``kernels_apply``)."""
    name = _name_of(fn_cls)
    args = (case.x, layout, case.gamma, case.beta, case.eps, str(case.dtype), dy, engine)
    answer = in_kernel("kernels_apply", fn_cls, *args)
    if type(answer) is not dict:
        raise CheckFailure(f"{name}.apply could not be run.")
    if kind_of(answer.get("y")) != "tensor":
        raise CheckFailure(f"{name}.forward returned {kind_of(answer.get('y'))}, not a tensor.")
    if answer.get("own_node") is not True:
        raise CheckFailure(
            f"the output of {name}.apply was not made by {name}: do not override apply."
        )
    return answer


def _numpy_dtype(case: KernelCase) -> type:
    return np.float64 if case.dtype == torch.float64 else np.float32


def _expected_output(case: KernelCase) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """y and (dx, dgamma, dbeta) of PyTorch: float64, or F.batch_norm in float32 for a float32
    case (what a float32 model gets from PyTorch)."""
    arrays = [a.astype(_numpy_dtype(case)) for a in (case.x, case.gamma, case.beta)]
    dy = case.dy.astype(arrays[0].dtype)
    y = reference.batchnorm_forward_reference(*arrays, case.eps)
    grads = reference.batchnorm_gradients_reference(*arrays, dy, case.eps)
    return np.asarray(y, np.float64), tuple(np.asarray(g, np.float64) for g in grads)


FUNCTION_BLOCK = 1024
"""The block the Function's launchers use: their default (the contract's ``block=1024``)."""


def function_forward_mistakes(case: KernelCase) -> dict[str, np.ndarray]:
    """Wrong y of the Function: the normalize kernel's mistakes, and those of the statistics
    kernel (run with the launchers' default block) carried through a correct normalize."""
    mean, inv_std = _statistics_reference(case)
    stats = statistics_mistakes(replace(case, block=FUNCTION_BLOCK))
    nd = case.x.ndim

    def normalized(m, s):
        scale = _per_channel(s * case.gamma, nd)
        return (case.x - _per_channel(m, nd)) * scale + _per_channel(case.beta, nd)

    return {
        **normalize_mistakes(case, mean, inv_std),
        **{d: normalized(m, inv_std) for d, m in stats["mean"].items()},
        **{d: normalized(mean, s) for d, s in stats["inv_std"].items()},
    }


def _function_forward_one(fn_cls, case: KernelCase, layout: str = "contiguous") -> float:
    answer = _applied(fn_cls, case, layout)
    got = _as_array("y", answer["y"], case.x.shape, (case.dtype,))
    expected = _expected_output(case)[0]
    return assert_close("y", got, expected, function_forward_mistakes(case), _tolerance(case))


FD_STEP = 1e-5
"""The step of the directional centered differences (float64 inputs of size ~1)."""
DIRECTIONS = 2
"""Random directions per input (x, gamma, beta): a wrong gradient is seen along any of them
with probability one; two make a near-orthogonal draw harmless."""


def _directional_differences(
    fn_cls, case: KernelCase, grads, seed: int = 7, h: float = FD_STEP
) -> float:
    """For x, gamma and beta in turn, along ``DIRECTIONS`` random directions u: the centered
    difference of sum(dy * fn_cls.apply(...)) against <gradient, u>, every perturbed forward
    in one call of the learner's code; returns the largest relative error."""
    rng = np.random.default_rng(seed)
    base = (case.x, case.gamma, case.beta)
    steps, points = [], []
    for k, a in enumerate(base):
        for _ in range(DIRECTIONS):
            u = rng.normal(size=a.shape)
            steps.append((k, u))
            for sign in (1.0, -1.0):
                points.append(tuple(b + sign * h * u if i == k else b for i, b in enumerate(base)))
    name = _name_of(fn_cls)
    args = (points, "contiguous", case.eps, str(case.dtype))
    outputs = in_kernel("kernels_outputs", fn_cls, *args)
    losses = forward_losses(outputs, len(points), case.dy, f"{name}.apply")
    worst = 0.0
    for j, (k, u) in enumerate(steps):
        numeric = (losses[2 * j] - losses[2 * j + 1]) / (2 * h)
        analytic = float(np.sum(grads[k] * u))
        err = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-12)
        if not err <= FINITE_DIFFERENCE:
            key = ("dx", "dgamma", "dbeta")[k]
            raise CheckFailure(
                f"{key}: relative error {err:.1e} against a centered difference of your own "
                f"forward along a random direction (must be below {FINITE_DIFFERENCE:.0e}): "
                "forward and backward disagree."
            )
        worst = max(worst, err)
    return worst


def _backward_values(fn_cls, answer: dict, case: KernelCase, tol: float) -> tuple[list, float]:
    """dx, dgamma, dbeta of the learner's backward (called as autograd calls it, watched)
    against PyTorch's autograd: the arrays and the largest error."""
    grads = backward_items(_name_of(fn_cls), answer.get("grads"))
    expected = _expected_output(case)[1]
    mean, inv_std = _statistics_reference(case)
    grad_sums = _gradients(case)
    sums = reduction_mistakes(case, mean, inv_std)
    wrong = {
        "dx": elementwise_mistakes(
            case, mean, inv_std, grad_sums["sum_dy"], grad_sums["sum_dy_xhat"]
        ),
        "dgamma": sums["sum_dy_xhat"],
        "dbeta": sums["sum_dy"],
    }
    shapes = (case.x.shape, case.gamma.shape, case.beta.shape)
    arrays, worst = [], 0.0
    for key, got, shape, exp in zip(
        ("dx", "dgamma", "dbeta"), grads[:3], shapes, expected, strict=True
    ):
        arrays.append(_as_array(key, got, shape, (case.dtype,)))
        worst = max(worst, assert_close(key, arrays[-1], exp, wrong[key], tol))
    return arrays, worst


def _function_backward_one(fn_cls, case: KernelCase, layout="contiguous", differences=False):
    """dx, dgamma, dbeta of the learner's backward against PyTorch's autograd; with
    ``differences``, against its own forward too."""
    answer = _applied(fn_cls, case, layout, case.dy)
    tol = TIGHT if case.dtype == torch.float64 else FLOAT32_GRADIENTS
    arrays, worst = _backward_values(fn_cls, answer, case, tol)
    fd = _directional_differences(fn_cls, case, arrays) if differences else 0.0
    return worst, fd


def _gradcheck(fn_cls) -> None:
    """What torch.autograd.gradcheck's fast mode checks, driven from here: the gradients of
    fn_cls.apply through torch.autograd.grad (float64, a random upstream gradient) against
    centered differences of its forward along random directions."""
    case = kernel_case((3, 2, 2, 2), 99, "gradcheck", 4)
    answer = _applied(fn_cls, case, "contiguous", case.dy, engine=True)
    engine = engine_answers(answer, 3)
    shapes = (case.x.shape, case.gamma.shape, case.beta.shape)
    grads = [
        _as_array(f"{key} through torch.autograd.grad", g, shape, (torch.float64,))
        for key, g, shape in zip(("dx", "dgamma", "dbeta"), engine, shapes, strict=True)
    ]
    try:
        _directional_differences(fn_cls, case, grads, seed=99)
    except CheckFailure as failure:
        raise CheckFailure(f"gradcheck (through torch.autograd.grad): {failure}") from None


def check_function_forward(fn_cls) -> None:
    """Visible check: TritonBatchNorm.apply in float64 against the reference, and in float32
    against F.batch_norm."""
    err = on_cases(visible_cases(), lambda case: _function_forward_one(fn_cls, case))
    report(f"{_name_of(fn_cls)}.apply, float64, vs F.batch_norm", err)
    err = on_cases([float32_case()], lambda case: _function_forward_one(fn_cls, case))
    report(f"{_name_of(fn_cls)}.apply, float32, vs F.batch_norm in float32", err, FLOAT32)


def check_function_backward(fn_cls) -> None:
    """Visible check: the backward against PyTorch's autograd (float64 and float32), centered
    differences of your forward, and torch.autograd.gradcheck."""
    require_own_backward(fn_cls)
    results = []
    on_cases(
        visible_cases(),
        lambda c: results.append(_function_backward_one(fn_cls, c, differences=True)) or 0.0,
    )
    report(f"{_name_of(fn_cls)}.backward vs PyTorch autograd", results[0][0])
    report(
        f"{_name_of(fn_cls)}.backward vs centered differences of your forward",
        results[0][1],
        FINITE_DIFFERENCE,
    )
    err = on_cases([float32_case()], lambda c: _function_backward_one(fn_cls, c)[0])
    report(
        f"{_name_of(fn_cls)}.backward, float32, vs F.batch_norm in float32", err, FLOAT32_GRADIENTS
    )
    _gradcheck(fn_cls)
    print(
        f"gradcheck of {_name_of(fn_cls)}.apply through torch.autograd.grad, float64, centered "
        "differences along random directions (as gradcheck's fast mode): passed"
    )
