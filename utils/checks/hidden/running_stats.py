"""Lesson 04's hidden scenarios and checks (the visible ones: ``utils.checks.running_stats``)."""

from __future__ import annotations

from utils.checks.hidden import hidden_twin
from utils.checks.running_stats import (
    check_batchnorm1d_batch_of_one,
    check_batchnorm1d_cumulative,
    check_batchnorm1d_eval,
    check_batchnorm1d_options,
    check_batchnorm1d_training,
)
from utils.checks.running_stats.scenario import (
    FAR,
    LONG,
    NEAR,
    OFFSET,
    SWITCHING,
    TRAIN_3,
    WITH_EVAL,
    make_scenario,
)
from utils.checks.scenario import Scenario, scenarios_from
from utils.checks.twins import On

HIDDEN = {
    "training": [
        ("12 training batches, default momentum", 501, LONG, 4, {}),
        (
            "momentum=0.3, eps=1e-3, far gamma/beta",
            502,
            TRAIN_3,
            5,
            {**FAR, "momentum": 0.3, "eps": 1e-3},
        ),
        ("momentum=1.0, one feature, batches of 2", 503, "2 2 2 2", 1, {"momentum": 1.0}),
        ("momentum=0.0 (running statistics never move)", 504, TRAIN_3, 3, {"momentum": 0.0}),
        ("large mean offset (1e4)", 505, TRAIN_3, 4, OFFSET),
        ("a near-constant feature (spread 3e-4)", 508, TRAIN_3, 4, NEAR),
        ("non-contiguous x (transposed views)", 506, TRAIN_3, 4, {"layout": "transposed"}),
        (
            "non-contiguous x (strided views), momentum=0.25",
            507,
            TRAIN_3,
            4,
            {"layout": "strided", "momentum": 0.25},
        ),
    ],
    "eval": [
        ("momentum=0.1, switching modes back and forth", 511, SWITCHING, 4, {}),
        (
            "momentum=0.05, eps=1e-3, far gamma/beta",
            512,
            WITH_EVAL,
            2,
            {**FAR, "momentum": 0.05, "eps": 1e-3},
        ),
        (
            "momentum=0.5, large offset, strided x",
            513,
            WITH_EVAL,
            3,
            {**OFFSET, "layout": "strided", "momentum": 0.5},
        ),
        ("a near-constant feature", 516, WITH_EVAL, 3, NEAR),
        ("eval right after construction (initial statistics)", 514, "eval 3 train 2", 2, {}),
        ("momentum=0.0, then eval", 515, WITH_EVAL, 3, {"momentum": 0.0}),
    ],
    "cumulative": [
        ("momentum=None, mode switches", 521, SWITCHING, 4, {"momentum": None}),
        (
            "momentum=None, one feature, far gamma/beta",
            522,
            f"{TRAIN_3} eval 2",
            1,
            {**FAR, "momentum": None},
        ),
        (
            "momentum=None, affine=False, eps=1e-3",
            523,
            LONG,
            2,
            {"momentum": None, "affine": False, "eps": 1e-3},
        ),
    ],
    "options": [
        (
            "affine=False, momentum=0.3, switching modes",
            531,
            SWITCHING,
            3,
            {"affine": False, "momentum": 0.3},
        ),
        (
            "track_running_stats=False, switching modes",
            532,
            SWITCHING.replace(" 1 ", " 2 "),
            4,
            {"track_running_stats": False},
        ),
        (
            "affine=False and track_running_stats=False",
            533,
            "6 4 eval 3",
            2,
            {"affine": False, "track_running_stats": False},
        ),
        (
            "track_running_stats=False, momentum=None, far gamma/beta",
            534,
            TRAIN_3,
            3,
            {**FAR, "momentum": None, "track_running_stats": False},
        ),
    ],
    "batch_of_one": [
        ("after mode switches", 541, f"{WITH_EVAL} 1!", 3, {}),
        ("one feature, the first batch", 542, "1!", 1, {}),
        (
            "eval mode with track_running_stats=False (batch statistics)",
            543,
            "3 eval 1!",
            3,
            {"track_running_stats": False},
        ),
        ("momentum=0.3, affine=False", 544, "2 1!", 3, {"momentum": 0.3, "affine": False}),
    ],
}
"""topic -> hidden scenarios: more batches, N=2 and D=1, several momenta (0, 0.05 ... 1,
None), gamma and beta far from 1 and 0, a large offset, a near-constant feature,
non-contiguous x, and mode switches back and forth."""


def hidden_scenarios(topic: str) -> list[Scenario]:
    """The hidden scenarios on ``topic`` (a key of ``TOPICS``)."""
    return scenarios_from(HIDDEN, topic, make_scenario)


def _hidden(topic: str) -> On:
    return On(hidden_scenarios(topic), hidden=True)


check_batchnorm1d_training_hidden = hidden_twin(
    check_batchnorm1d_training, lambda: _hidden("training")
)
check_batchnorm1d_eval_hidden = hidden_twin(check_batchnorm1d_eval, lambda: _hidden("eval"))
check_batchnorm1d_cumulative_hidden = hidden_twin(
    check_batchnorm1d_cumulative, lambda: _hidden("cumulative")
)
check_batchnorm1d_options_hidden = hidden_twin(
    check_batchnorm1d_options, lambda: _hidden("options")
)
check_batchnorm1d_batch_of_one_hidden = hidden_twin(
    check_batchnorm1d_batch_of_one, lambda: _hidden("batch_of_one")
)
