"""Lesson 08's hidden cases and checks (the visible ones: ``utils.checks.why``)."""

from __future__ import annotations

from utils.checks.hidden import hidden_twin
from utils.checks.twins import counted
from utils.checks.why.along_gradient import (
    LandscapeCase,
    check_gradient_changes,
    check_losses_along_gradient,
)
from utils.checks.why.covariate_shift import (
    IcsCase,
    ShiftCase,
    check_gradient_ics,
    check_input_shift,
)
from utils.checks.why.scale_invariance import (
    ScaleCase,
    check_output_changes,
    check_weight_gradient_norms,
)

# --- part 1: scale invariance ---

HIDDEN_SCALE_CASES = (
    ScaleCase("Linear -> BatchNorm (eps=1e-5)", 32, 8, 6, (1e-3, 0.01, 1.0, 100.0), 2),
    ScaleCase("Linear -> BatchNorm (eps=0) -> ReLU", 9, 3, 7, (2.0, 0.25, 7.0), 3),
    ScaleCase("Linear -> BatchNorm (eps=0.1)", 2, 4, 1, (0.05, 1.5, 40.0), 4),
    ScaleCase("Linear without BatchNorm", 3, 1, 2, (0.3, 12.0), 5),
    ScaleCase("Linear -> BatchNorm (eps=0)", 50, 10, 3, (4.0,), 6),
    ScaleCase("tanh -> Linear without BatchNorm", 6, 3, 2, (0.5, 3.0), 7),
)


check_output_changes_hidden = hidden_twin(
    check_output_changes, lambda: counted(HIDDEN_SCALE_CASES, "output_changes on {n} hidden layers")
)
check_weight_gradient_norms_hidden = hidden_twin(
    check_weight_gradient_norms,
    lambda: counted(HIDDEN_SCALE_CASES, "weight_gradient_norms on {n} hidden layers"),
)


# --- part 2: the landscape along the gradient ---

HIDDEN_LANDSCAPE_CASES = (
    LandscapeCase("saddle", 6, (0.3, 0.01, 0.1), 2),
    LandscapeCase("least squares", 3, (0.02, 0.2, 0.6), 3),
    LandscapeCase("mlp", 4, (0.2, 2.0), 4),
    LandscapeCase("mlp with BatchNorm", 6, (0.05,), 5),
)


check_losses_along_gradient_hidden = hidden_twin(
    check_losses_along_gradient,
    lambda: counted(HIDDEN_LANDSCAPE_CASES, "losses_along_gradient on {n} hidden cases"),
)
check_gradient_changes_hidden = hidden_twin(
    check_gradient_changes,
    lambda: counted(HIDDEN_LANDSCAPE_CASES, "gradient_changes on {n} hidden cases"),
)


# --- part 3: covariate shift ---

HIDDEN_SHIFT_CASES = (
    ShiftCase("additive", 0, 2),
    ShiftCase("additive", 2, 3, n=3),
    ShiftCase("none", 2, 4),
    ShiftCase("noisy", 3, 5, n=2),
    ShiftCase("bn", 1, 6, n=20),
    ShiftCase("bn", 3, 7, n=10, eval_mode=True),
)


check_input_shift_hidden = hidden_twin(
    check_input_shift, lambda: counted(HIDDEN_SHIFT_CASES, "input_shift on {n} hidden cases")
)


HIDDEN_ICS_CASES = (
    IcsCase("deep linear", 0, 0.3, 2),
    IcsCase("deep linear", 1, 1.0, 3),
    IcsCase("mlp", 4, 0.2, 4),
    IcsCase("mlp with BatchNorm", 3, 1.0, 5),
    IcsCase("mlp with BatchNorm", 9, 0.1, 6),
)


check_gradient_ics_hidden = hidden_twin(
    check_gradient_ics, lambda: counted(HIDDEN_ICS_CASES, "gradient_ics on {n} hidden cases")
)
