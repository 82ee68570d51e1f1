"""Lesson 08's hidden cases and checks (the visible ones: ``utils.checks.why``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from utils.checks.why.along_gradient import LandscapeCase, _landscape_error
from utils.checks.why.common import on_cases
from utils.checks.why.covariate_shift import (
    IcsCase,
    ShiftCase,
    _gradient_ics_error,
    _input_shift_error,
)
from utils.checks.why.scale_invariance import (
    ScaleCase,
    _gradient_norms_error,
    _output_changes_error,
)
from utils.diagnose import report

# --- part 1: scale invariance ---

HIDDEN_SCALE_CASES = (
    ScaleCase("Linear -> BatchNorm (eps=1e-5)", 32, 8, 6, (1e-3, 0.01, 1.0, 100.0), 2),
    ScaleCase("Linear -> BatchNorm (eps=0) -> ReLU", 9, 3, 7, (2.0, 0.25, 7.0), 3),
    ScaleCase("Linear -> BatchNorm (eps=0.1)", 2, 4, 1, (0.05, 1.5, 40.0), 4),
    ScaleCase("Linear without BatchNorm", 3, 1, 2, (0.3, 12.0), 5),
    ScaleCase("Linear -> BatchNorm (eps=0)", 50, 10, 3, (4.0,), 6),
    ScaleCase("tanh -> Linear without BatchNorm", 6, 3, 2, (0.5, 3.0), 7),
)


def check_output_changes_hidden(output_changes: Callable) -> None:
    """Hidden check: eps > 0, a ReLU after BatchNorm, N=2, D_out=1, one alpha."""
    cases = HIDDEN_SCALE_CASES
    err = on_cases(cases, partial(_output_changes_error, output_changes))
    report(f"output_changes on {len(cases)} hidden layers", err)


def check_weight_gradient_norms_hidden(weight_gradient_norms: Callable) -> None:
    """Hidden check of weight_gradient_norms on the hidden layers."""
    cases = HIDDEN_SCALE_CASES
    err = on_cases(cases, partial(_gradient_norms_error, weight_gradient_norms))
    report(f"weight_gradient_norms on {len(cases)} hidden layers", err)


# --- part 2: the landscape along the gradient ---

HIDDEN_LANDSCAPE_CASES = (
    LandscapeCase("saddle", 6, (0.3, 0.01, 0.1), 2),
    LandscapeCase("least squares", 3, (0.02, 0.2, 0.6), 3),
    LandscapeCase("mlp", 4, (0.2, 2.0), 4),
    LandscapeCase("mlp with BatchNorm", 6, (0.05,), 5),
)


def check_losses_along_gradient_hidden(losses_along_gradient: Callable) -> None:
    """Hidden check: a saddle, least squares, an MLP without BatchNorm, one step size."""
    check = partial(_landscape_error, losses_along_gradient, "losses")
    cases = HIDDEN_LANDSCAPE_CASES
    report(f"losses_along_gradient on {len(cases)} hidden cases", on_cases(cases, check))


def check_gradient_changes_hidden(gradient_changes: Callable) -> None:
    """Hidden check of gradient_changes on the hidden cases."""
    check = partial(_landscape_error, gradient_changes, "changes")
    cases = HIDDEN_LANDSCAPE_CASES
    report(f"gradient_changes on {len(cases)} hidden cases", on_cases(cases, check))


# --- part 3: covariate shift ---

HIDDEN_SHIFT_CASES = (
    ShiftCase("additive", 0, 2),
    ShiftCase("additive", 2, 3, n=3),
    ShiftCase("none", 2, 4),
    ShiftCase("noisy", 3, 5, n=2),
    ShiftCase("bn", 1, 6, n=20),
    ShiftCase("bn", 3, 7, n=10, eval_mode=True),
)


def check_input_shift_hidden(input_shift: Callable) -> None:
    """Hidden check: the raw input, after a ReLU, no BatchNorm, noisy BatchNorm, N=2, and a
    BatchNorm network handed over in eval mode."""
    cases = HIDDEN_SHIFT_CASES
    err = on_cases(cases, partial(_input_shift_error, input_shift))
    report(f"input_shift on {len(cases)} hidden cases", err)


HIDDEN_ICS_CASES = (
    IcsCase("deep linear", 0, 0.3, 2),
    IcsCase("deep linear", 1, 1.0, 3),
    IcsCase("mlp", 4, 0.2, 4),
    IcsCase("mlp with BatchNorm", 3, 1.0, 5),
    IcsCase("mlp with BatchNorm", 9, 0.1, 6),
)


def check_gradient_ics_hidden(gradient_ics: Callable) -> None:
    """Hidden check: the first layer (nothing before it), other layers and learning rates."""
    cases = HIDDEN_ICS_CASES
    err = on_cases(cases, partial(_gradient_ics_error, gradient_ics))
    report(f"gradient_ics on {len(cases)} hidden cases", err)
