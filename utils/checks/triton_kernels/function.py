"""Lesson 11's autograd.Function checks: forward and backward of the fused kernels against
the float64 reference, finite differences and torch.autograd.gradcheck."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from utils import reference
from utils.checks.torch_module import call_learner, require_own_backward
from utils.checks.triton_kernels.common import (
    FLOAT32,
    FLOAT32_GRADIENTS,
    KernelCase,
    _as_array,
    _per_channel,
    _tolerance,
    float32_case,
    hidden_cases,
    kernel_case,
    kernel_device,
    run_learner,
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

# --- the autograd.Function ---------------------------------------------------------------------


def _inputs(case: KernelCase, requires_grad: bool, layout: str = "contiguous"):
    device = kernel_device()
    x = torch.tensor(case.x, dtype=case.dtype, device=device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    params = [torch.tensor(a, dtype=case.dtype, device=device) for a in (case.gamma, case.beta)]
    return [t.requires_grad_(requires_grad) for t in (x, *params)]


def _apply(fn_cls, inputs, eps) -> torch.Tensor:
    name = fn_cls.__name__
    y = run_learner(f"{name}.apply(x, gamma, beta, eps)", fn_cls.apply, *inputs, eps)
    if not isinstance(y, torch.Tensor):
        raise CheckFailure(f"{name}.forward returned {type(y).__name__}, not a tensor.")
    if (
        any(t.requires_grad for t in inputs)
        and getattr(y.grad_fn, "_forward_cls", None) is not fn_cls
    ):
        raise CheckFailure(
            f"the output of {name}.apply was not made by {name}: do not override apply."
        )
    return y


def _expected_output(case: KernelCase, inputs) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """y and (dx, dgamma, dbeta) of PyTorch: float64, or F.batch_norm in float32 for a float32
    case (what a float32 model gets from PyTorch)."""
    arrays = [t.detach().cpu().numpy() for t in inputs]
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
    inputs = _inputs(case, False, layout)
    y = _apply(fn_cls, inputs, case.eps)
    got = _as_array("y", y, case.x.shape, (case.dtype,))
    expected = _expected_output(case, inputs)[0]
    return assert_close("y", got, expected, function_forward_mistakes(case), _tolerance(case))


def _directional_differences(fn_cls, case: KernelCase, grads, h: float = 1e-5) -> float:
    """For x, gamma and beta in turn: the centered difference of sum(dy * fn_cls.apply(...))
    along a random direction u against <gradient, u>; returns the largest relative error."""
    rng = np.random.default_rng(7)
    dy = torch.tensor(case.dy, dtype=case.dtype)
    base = [t.detach() for t in _inputs(case, False)]
    worst = 0.0
    for k, name in enumerate(("dx", "dgamma", "dbeta")):
        u = torch.tensor(rng.normal(size=base[k].shape), dtype=case.dtype, device=base[k].device)

        def loss(step: float, k=k, u=u) -> float:
            moved = [t + step * u if i == k else t for i, t in enumerate(base)]
            y = run_learner(f"{fn_cls.__name__}.apply", fn_cls.apply, *moved, case.eps)
            return float((y.detach().cpu() * dy).sum())

        numeric = (loss(h) - loss(-h)) / (2 * h)
        analytic = float((torch.as_tensor(grads[k]) * u.cpu()).sum())
        err = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-12)
        if not err <= FINITE_DIFFERENCE:
            raise CheckFailure(
                f"{name}: relative error {err:.1e} against a centered difference of your own "
                f"forward along a random direction (must be below {FINITE_DIFFERENCE:.0e}): "
                "forward and backward disagree."
            )
        worst = max(worst, err)
    return worst


def _function_backward_one(fn_cls, case: KernelCase, layout="contiguous", differences=False):
    """dx, dgamma, dbeta of the learner's backward (called as autograd calls it) against
    PyTorch's autograd; with ``differences``, against its own forward too."""
    name = fn_cls.__name__
    inputs = _inputs(case, True, layout)
    y = _apply(fn_cls, inputs, case.eps)
    dy = torch.tensor(case.dy, dtype=case.dtype, device=inputs[0].device)
    grads = run_learner(f"{name}.backward(ctx, dy)", y.grad_fn.apply, dy)
    if not isinstance(grads, tuple) or len(grads) != 4:
        raise CheckFailure(
            f"{name}.backward must return 4 values, one per input of forward "
            "(dx, dgamma, dbeta, None for eps)."
        )
    if grads[3] is not None:
        raise CheckFailure(f"{name}.backward must return None for eps, a float, not a gradient.")
    expected = _expected_output(case, inputs)[1]
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
    tol = TIGHT if case.dtype == torch.float64 else FLOAT32_GRADIENTS
    arrays, worst = [], 0.0
    for key, got, like, exp in zip(
        ("dx", "dgamma", "dbeta"), grads, inputs, expected, strict=False
    ):
        arrays.append(_as_array(key, got, like.shape, (case.dtype,)))
        worst = max(worst, assert_close(key, arrays[-1], exp, wrong[key], tol))
    fd = _directional_differences(fn_cls, case, arrays) if differences else 0.0
    return worst, fd


def _gradcheck(fn_cls) -> None:
    """torch.autograd.gradcheck (fast mode: random projections) of fn_cls.apply in float64."""
    case = kernel_case((3, 2, 2, 2), 99, "gradcheck", 4)
    inputs = (*_inputs(case, True), case.eps)
    ok = call_learner(
        "gradcheck",
        torch.autograd.gradcheck,
        fn_cls.apply,
        inputs,
        fast_mode=True,
        raise_exception=False,
        watch=False,
    )
    if not ok:
        raise CheckFailure(
            "torch.autograd.gradcheck: your backward disagrees with finite differences of your "
            "forward (float64)."
        )


def check_function_forward(fn_cls) -> None:
    """Visible check: TritonBatchNorm.apply in float64 against the reference, and in float32
    against F.batch_norm."""
    err = on_cases(visible_cases(), lambda case: _function_forward_one(fn_cls, case))
    report(f"{fn_cls.__name__}.apply, float64, vs F.batch_norm", err)
    err = on_cases([float32_case()], lambda case: _function_forward_one(fn_cls, case))
    report(f"{fn_cls.__name__}.apply, float32, vs F.batch_norm in float32", err, FLOAT32)


def check_function_forward_hidden(fn_cls) -> None:
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _function_forward_one(fn_cls, case))
    last = replace(cases[3], label="channels-last x (not contiguous)")
    err = max(
        err, on_cases([last], lambda case: _function_forward_one(fn_cls, case, "channels_last"))
    )
    report(f"{fn_cls.__name__}.apply, {len(cases) + 1} hidden cases", err)


def check_function_backward(fn_cls) -> None:
    """Visible check: the backward against PyTorch's autograd (float64 and float32), centered
    differences of your forward, and torch.autograd.gradcheck."""
    require_own_backward(fn_cls)
    results = []
    on_cases(
        visible_cases(),
        lambda c: results.append(_function_backward_one(fn_cls, c, differences=True)) or 0.0,
    )
    report(f"{fn_cls.__name__}.backward vs PyTorch autograd", results[0][0])
    report(
        f"{fn_cls.__name__}.backward vs centered differences of your forward",
        results[0][1],
        FINITE_DIFFERENCE,
    )
    err = on_cases([float32_case()], lambda c: _function_backward_one(fn_cls, c)[0])
    report(
        f"{fn_cls.__name__}.backward, float32, vs F.batch_norm in float32", err, FLOAT32_GRADIENTS
    )
    _gradcheck(fn_cls)
    print(f"torch.autograd.gradcheck({fn_cls.__name__}.apply, float64, fast mode): passed")


def check_function_backward_hidden(fn_cls) -> None:
    require_own_backward(fn_cls)
    cases = hidden_cases()
    chosen = [cases[0], cases[2], cases[4]]
    err = on_cases(
        chosen, lambda c: _function_backward_one(fn_cls, c, differences=c is cases[2])[0]
    )
    last = replace(cases[3], label="channels-last x (not contiguous)")
    err = max(
        err, on_cases([last], lambda c: _function_backward_one(fn_cls, c, "channels_last")[0])
    )
    report(f"{fn_cls.__name__}.backward, {len(chosen) + 1} hidden cases", err)
