"""Checks for lesson 00_gradient_checking: the relative error, the numerical gradient, and two
small forward/backward pairs (scale-and-shift, centering) that prepare BatchNorm.

    check_relative_error(relative_error)
    check_numerical_gradient(numerical_gradient)
    check_scale_shift_forward(forward)
    check_scale_shift_backward(backward, forward)
    check_center_forward(forward)
    check_center_backward(backward, forward)

Each has a hidden twin of the same name ending in ``_hidden`` in ``utils.checks.hidden.gradients``.
The visible checks run small fixed cases; the hidden ones random shapes including N=2, D=1
and N == D (where a sum over the wrong axis keeps the right shape), non-contiguous input,
large offsets and scales. The reference is PyTorch in float64 (``utils.reference``); every
backward is also compared with a centered finite difference of the learner's own forward.
A passing check prints one line per part; a failing one raises CheckFailure naming the mistake.

The package holds ``common`` (shared helpers), ``measures`` (exercises 1 and 2:
``relative_error``, ``numerical_gradient``) and ``layers`` (exercises 3 and 4: scale-and-shift,
centering); this module re-exports them.
"""

from __future__ import annotations

from utils.checks.gradients.common import (
    BATCH_MEAN,
    GRADIENT_NAMES,
    RESTORED,
    WRONG_AXIS,
    _visible_batches,
)
from utils.checks.gradients.layers import (
    check_center_backward,
    check_center_forward,
    check_scale_shift_backward,
    check_scale_shift_forward,
)
from utils.checks.gradients.measures import (
    COPY_OF_TRANSPOSED,
    KEPT_VIEW,
    check_numerical_gradient,
    check_relative_error,
)

__all__ = [
    "BATCH_MEAN",
    "COPY_OF_TRANSPOSED",
    "GRADIENT_NAMES",
    "KEPT_VIEW",
    "RESTORED",
    "WRONG_AXIS",
    "_visible_batches",
    "check_center_backward",
    "check_center_forward",
    "check_numerical_gradient",
    "check_relative_error",
    "check_scale_shift_backward",
    "check_scale_shift_forward",
]
