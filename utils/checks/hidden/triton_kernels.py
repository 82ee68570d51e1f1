"""Lesson 11's hidden cases and checks (the visible ones: ``utils.checks.triton_kernels``)."""

from __future__ import annotations

from dataclasses import replace

from utils.cases import LARGE_OFFSET
from utils.checks.hidden import hidden_twin
from utils.checks.torch_module.function import _name_of, require_own_backward
from utils.checks.triton_kernels.common import FLOAT32, KernelCase, float32_case, kernel_case
from utils.checks.triton_kernels.function import _function_backward_one, _function_forward_one
from utils.checks.triton_kernels.kernels import (
    _statistics_one,
    check_backward_elementwise,
    check_backward_reductions,
    check_normalize_affine,
)
from utils.checks.twins import On, counted
from utils.diagnose import on_cases, report


def hidden_cases(seed: int = 11_011) -> list[KernelCase]:
    """Odd sizes, a batch of 2, one channel, 2-D x, far gamma/beta, a large mean offset, a
    near-constant channel, a non-default eps, and blocks that loop, that do not divide N*H*W,
    and that exceed it."""
    return [
        kernel_case((3, 4, 5, 7), seed, "x of shape (3, 4, 5, 7)", 16),
        kernel_case((2, 1, 1, 1), seed + 1, "a batch of 2, one channel, 1x1", 4),
        kernel_case((7, 3), seed + 2, "2-D x (7, 3)", 4),
        kernel_case(
            (4, 2, 3, 3), seed + 3, "gamma and beta far from 1 and 0", 1024, far_affine=True
        ),
        kernel_case(
            (4, 2, 3, 3), seed + 4, f"large mean offset ({LARGE_OFFSET:g})", 16, offset=LARGE_OFFSET
        ),
        kernel_case((4, 2, 3, 3), seed + 5, "a near-constant channel", 16, near_constant=True),
        kernel_case((4, 2, 3, 3), seed + 6, "eps=1e-3 passed as an argument", 32, eps=1e-3),
    ]


def check_channel_statistics_hidden(fn) -> None:
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _statistics_one(fn, case))
    report(f"channel_statistics, {len(cases)} hidden float64 cases", err)
    err = on_cases([float32_case()], lambda case: _statistics_one(fn, case))
    report("channel_statistics, float32 with a large mean", err, FLOAT32)


check_normalize_affine_hidden = hidden_twin(
    check_normalize_affine, lambda: counted(hidden_cases(), ", {n} hidden cases, vs F.batch_norm")
)
check_backward_reductions_hidden = hidden_twin(
    check_backward_reductions, lambda: On(hidden_cases(), ", hidden cases")
)
check_backward_elementwise_hidden = hidden_twin(
    check_backward_elementwise, lambda: On(hidden_cases(), ", hidden cases")
)


def check_function_forward_hidden(fn_cls) -> None:
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _function_forward_one(fn_cls, case))
    last = replace(cases[3], label="channels-last x (not contiguous)")
    err = max(
        err, on_cases([last], lambda case: _function_forward_one(fn_cls, case, "channels_last"))
    )
    report(f"{_name_of(fn_cls)}.apply, {len(cases) + 1} hidden cases", err)


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
    report(f"{_name_of(fn_cls)}.backward, {len(chosen) + 1} hidden cases", err)
