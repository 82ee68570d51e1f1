"""Checks for lesson 11: batch normalization's kernels written in Triton.

The learner writes four launchers (a Python function that allocates the outputs and launches
one Triton kernel) and a ``torch.autograd.Function`` around them:

* ``channel_statistics(x, eps, block) -> (mean, inv_std)``, both (C,);
* ``normalize_affine(x, mean, inv_std, gamma, beta, block) -> y`` shaped like x;
* ``backward_reductions(dy, x, mean, inv_std, block) -> (sum_dy, sum_dy_xhat)``, both (C,);
* ``backward_elementwise(dy, x, mean, inv_std, gamma, sum_dy, sum_dy_xhat, block) -> dx``;
* ``TritonBatchNorm.apply(x, gamma, beta, eps) -> y`` with a backward made of the last two.

x is (N, C, *spatial), contiguous for the launchers. The kernels run where Triton runs them:
on the CPU under ``TRITON_INTERPRET=1`` (grading, CI, a laptop), or compiled on a CUDA GPU.

Every input tensor a check hands a launcher sits in the middle of a larger buffer filled with
NaN (``guarded``): a kernel that reads past the end of its tensor (a block mask that lets the
last block run over) gets NaN, and the check says so. Results are compared in float64 with the
one oracle (``utils.reference``); a wrong result is matched against known-wrong variants
computed on the same input (``utils.mistakes`` names them). Every gradient is compared with
PyTorch autograd and with centered finite differences: of PyTorch's forward for the backward
kernels, of the learner's own forward for the Function (``torch.autograd.gradcheck`` too).

While the learner's code runs, a ``TorchFunctionMode`` refuses PyTorch's reductions and
normalization: the sums belong in the kernels.

The package holds one module per concern: ``common`` (tolerances, where the kernels run,
the cases, guarded tensors and the watch on the learner's code), ``kernels`` (known-wrong
variants and the checks of the three kernels) and ``function`` (the ``autograd.Function``
checks); this module re-exports what notebooks and tests use.
"""

from __future__ import annotations

from utils.checks.triton_kernels.common import (
    _as_array,
    _channels,
    float32_case,
    guarded,
    hidden_cases,
    interpreted,
    kernel_device,
    run_learner,
    visible_cases,
)
from utils.checks.triton_kernels.function import (
    check_function_backward,
    check_function_backward_hidden,
    check_function_forward,
    check_function_forward_hidden,
)
from utils.checks.triton_kernels.kernels import (
    _difference,
    _gradients,
    _statistics_reference,
    check_backward_elementwise,
    check_backward_elementwise_hidden,
    check_backward_reductions,
    check_backward_reductions_hidden,
    check_channel_statistics,
    check_channel_statistics_hidden,
    check_normalize_affine,
    check_normalize_affine_hidden,
    elementwise_mistakes,
    normalize_mistakes,
    reduction_mistakes,
    statistics_mistakes,
)

__all__ = [
    "_as_array",
    "_channels",
    "_difference",
    "_gradients",
    "_statistics_reference",
    "check_backward_elementwise",
    "check_backward_elementwise_hidden",
    "check_backward_reductions",
    "check_backward_reductions_hidden",
    "check_channel_statistics",
    "check_channel_statistics_hidden",
    "check_function_backward",
    "check_function_backward_hidden",
    "check_function_forward",
    "check_function_forward_hidden",
    "check_normalize_affine",
    "check_normalize_affine_hidden",
    "elementwise_mistakes",
    "float32_case",
    "guarded",
    "hidden_cases",
    "interpreted",
    "kernel_device",
    "normalize_mistakes",
    "reduction_mistakes",
    "run_learner",
    "statistics_mistakes",
    "visible_cases",
]
