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
NaN (``utils.autograd_call.guarded``): a kernel that reads past the end of its tensor (a block
mask that lets the last block run over) gets NaN, and the check says so. Results are compared
in float64 with the one oracle (``utils.reference``); a wrong result is matched against
known-wrong variants computed on the same input (``utils.mistakes`` names them). Every gradient
is compared with PyTorch autograd and with centered finite differences: of PyTorch's forward
for the backward kernels, of the learner's own forward for the Function (along random
directions, through ``torch.autograd.grad`` too, as gradcheck's fast mode does).

The checks reach the learner's code through ``utils.autograd_call`` (``kernels_launch``,
``kernels_apply``, ``kernels_outputs``): calls that take ndarrays, build the tensors where the
learner's code lives (the notebook's process in JupyterLab; the graded kernel in grading, where
these checks run in the trusted checker) and answer with plain data. While the learner's code
runs there, a ``TorchFunctionMode`` refuses PyTorch's reductions and normalization: the sums
belong in the kernels. The hidden cases and checks are in ``utils.checks.hidden.triton_kernels``.

The package holds one module per concern: ``common`` (tolerances, the cases, the calls into the
learner's code and what their answers become), ``kernels`` (known-wrong variants and the checks
of the three kernels) and ``function`` (the ``autograd.Function`` checks); this module
re-exports what notebooks and tests use.
"""

from __future__ import annotations

from utils.autograd_call import interpreted, kernel_device
from utils.checks.triton_kernels.common import (
    _as_array,
    _channels,
    float32_case,
    visible_cases,
)
from utils.checks.triton_kernels.function import (
    check_function_backward,
    check_function_forward,
)
from utils.checks.triton_kernels.kernels import (
    _difference,
    _gradients,
    _statistics_reference,
    check_backward_elementwise,
    check_backward_reductions,
    check_channel_statistics,
    check_normalize_affine,
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
    "check_backward_reductions",
    "check_channel_statistics",
    "check_function_backward",
    "check_function_forward",
    "check_normalize_affine",
    "elementwise_mistakes",
    "float32_case",
    "interpreted",
    "kernel_device",
    "normalize_mistakes",
    "reduction_mistakes",
    "statistics_mistakes",
    "visible_cases",
]
