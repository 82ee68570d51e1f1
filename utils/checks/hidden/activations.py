"""Lesson 01's hidden cases and checks (the visible ones: ``utils.checks.activations``)."""

from __future__ import annotations

import math

import numpy as np

from utils.checks.activations import (
    InitCase,
    MLPCase,
    _check_init_case,
    _check_layers_independent,
    _check_uses_rng,
    _report_init,
    check_layer_statistics,
    check_mlp_activations,
    make_mlp_case,
    mlp_activations_reference,
    with_planted_values,
)
from utils.checks.hidden import hidden_twin
from utils.checks.twins import counted


def hidden_mlp_cases() -> list[MLPCase]:
    """Hidden cases: one layer, a batch of one and of two, deep nets, a saturating scale,
    a single output unit and non-contiguous inputs."""
    return [
        make_mlp_case((3, 4), 5, "tanh", 1.2, seed=1),
        make_mlp_case((3, 4), 5, "relu", 1.2, seed=2),
        make_mlp_case((4, 7, 2), 1, "relu", 1.4, seed=3),
        make_mlp_case((4, 7, 2), 2, "tanh", 0.8, seed=4),
        make_mlp_case((6, 8, 8, 8, 8, 8, 5), 9, "tanh", 3.0, seed=5),
        make_mlp_case((6, 8, 8, 8, 8, 8, 5), 9, "relu", 2.0, seed=6),
        make_mlp_case((5, 9, 1), 4, "relu", 1.0, seed=7),
        make_mlp_case((6, 5, 7), 8, "tanh", 1.3, seed=8, layout="transposed"),
    ]


def hidden_statistics_cases() -> list[tuple[list[np.ndarray], str]]:
    """Hidden activation lists: the hidden MLP outputs as they are, planted copies, a
    saturated tanh net and a deep ReLU net with dead units."""
    cases = []
    for k, c in enumerate(hidden_mlp_cases()):
        outputs = mlp_activations_reference(c.x, c.weights, c.activation)
        cases.append((outputs, c.label))
        cases.append((with_planted_values(outputs, 100 + k), c.label + ", planted values"))
    deep = make_mlp_case((6,) + (5,) * 12, 40, "relu", 1.4, seed=9)
    cases.append((mlp_activations_reference(deep.x, deep.weights, "relu"), deep.label))
    return cases


check_mlp_activations_hidden = hidden_twin(
    check_mlp_activations, lambda: counted(hidden_mlp_cases(), "mlp_activations, {n} hidden cases")
)
check_layer_statistics_hidden = hidden_twin(
    check_layer_statistics,
    lambda: counted(hidden_statistics_cases(), "layer_statistics, {n} hidden cases"),
)


HIDDEN_INIT = (
    InitCase((400, 250, 120), 0.6, seed=11),
    InitCase((1000, 64), 4.0, seed=12),
    InitCase((200, 200, 200, 200), math.sqrt(2.0), seed=13),
)


def check_init_weights_hidden(fn) -> None:
    """Hidden check: other widths and scales, one layer, and independent layers."""
    deviation = max(_check_init_case(fn, case) for case in HIDDEN_INIT)
    for case in HIDDEN_INIT:
        _check_uses_rng(fn, case)
    _check_layers_independent(fn, HIDDEN_INIT[-1])
    _report_init(f"init_weights, {len(HIDDEN_INIT)} hidden cases", deviation)
