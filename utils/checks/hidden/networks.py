"""Lesson 05's hidden cases and checks (the visible ones: ``utils.checks.networks``)."""

from __future__ import annotations

import math

from utils.checks.hidden import hidden_twin
from utils.checks.networks.accuracy import AccuracyCase, check_accuracy
from utils.checks.networks.build import BuildCase, check_build_mlp
from utils.checks.networks.training import StepCase, check_train_step
from utils.checks.twins import counted

HIDDEN_BUILD_CASES = (
    BuildCase((5, 3), True, math.sqrt(2), 2),
    BuildCase((7, 4, 3), True, 0.5, 3),
    BuildCase((7, 4, 3), False, 2.0, 4),
    BuildCase((10, 8, 8, 8, 4), True, 1.0, 5),
    BuildCase((3, 6, 1, 2), True, 3.0, 6),
)
HIDDEN_STEP_CASES = (
    StepCase((4, 3), True, batch=5, lr=0.5, steps=2, seed=2),
    StepCase((9, 7, 7, 7, 5), True, batch=16, lr=0.05, steps=3, seed=3),
    StepCase((9, 7, 5), True, batch=2, lr=0.2, steps=2, seed=4, start_in_eval=True),
    StepCase((8, 6, 4), True, batch=12, lr=0.3, steps=2, seed=5, bias_before_bn=True),
    StepCase((8, 6, 6, 4), False, batch=10, lr=0.7, steps=3, seed=6, start_in_eval=True),
)
HIDDEN_ACCURACY_CASES = (
    AccuracyCase((6, 8, 4), n=40, batch_size=10, seed=0, sorted_labels=True),
    AccuracyCase((5, 7, 7, 3), n=23, batch_size=4, seed=2),
    AccuracyCase((5, 7, 3), n=12, batch_size=64, seed=3),
    AccuracyCase((5, 7, 3), n=9, batch_size=1, seed=4),
    AccuracyCase((5, 7, 3), n=20, batch_size=6, seed=5, use_bn=False),
)


check_build_mlp_hidden = hidden_twin(
    check_build_mlp,
    lambda: counted(HIDDEN_BUILD_CASES, "build_mlp on {n} hidden networks: weights"),
)
check_train_step_hidden = hidden_twin(
    check_train_step, lambda: counted(HIDDEN_STEP_CASES, "train_step on {n} hidden networks")
)
check_accuracy_hidden = hidden_twin(
    check_accuracy, lambda: counted(HIDDEN_ACCURACY_CASES, "accuracy on {n} hidden cases")
)
