"""Lesson 04's scenarios (``utils.checks.scenario``'s ``Scenario`` of ``BatchNorm1d``, built from
a script of steps) and the visible table of them (the hidden table is in
``utils.checks.hidden.running_stats``)."""

from __future__ import annotations

import numpy as np

from utils.cases import stream_parameters, strided_view
from utils.checks.scenario import MODE_SWITCHES, Scenario, Step, scenarios_from

# --- scenarios -------------------------------------------------------------------------------


def make_scenario(
    label: str,
    seed: int,
    script: str,
    num_features: int = 3,
    *,
    far_affine: bool = False,
    offset: float = 0.0,
    near_constant: bool = False,
    layout: str = "C",
    **options,
) -> Scenario:
    """A seeded scenario from a ``script`` of space-separated steps: a number N is a batch of N
    examples (forward, or ``__call__`` every other batch, then backward); "train", "eval" and
    "train(False)" switch modes; "1!" is a batch of one that must raise ValueError (last).

    Each feature has its own mean (plus ``offset``) and spread, and every batch drifts, so the
    running statistics keep moving. ``options`` go to the constructor; with affine=False no
    gamma/beta are assigned. far_affine: gamma of magnitude 3-8, beta 5-20 (otherwise 0.5-2
    and 0.2-2, random signs). near_constant: feature 0 has spread ~3e-4. layout: "C",
    "transposed" or "strided" x.
    """
    rng = np.random.default_rng(seed)
    d = num_features
    loc, scale, gamma, beta = stream_parameters(
        rng, d, offset, near_constant, far_affine, options.get("affine", True)
    )
    steps = []
    for token in script.split():
        if token in MODE_SWITCHES:
            steps.append(Step(token))
            continue
        n = int(token.rstrip("!"))
        drift = rng.normal(0.0, 0.3, d) * scale
        x = _with_layout(loc + drift + scale * rng.normal(size=(n, d)), layout)
        call = "__call__" if sum(s.x is not None for s in steps) % 2 else "forward"
        action = "batch_of_one" if token == "1!" else "batch"
        steps.append(Step(action, x, rng.normal(size=(n, d)), call))
    if any(s.action == "batch_of_one" for s in steps[:-1]):
        raise ValueError("a batch of one that must raise is the last step")
    return Scenario(label, "BatchNorm1d", d, options, gamma, beta, tuple(steps))


def _with_layout(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "transposed":
        return np.ascontiguousarray(x.T).T
    if layout == "strided":
        return strided_view(x)
    return x


TRAIN_3 = "4 5 2"
WITH_EVAL = "6 4 eval 3 1 train"
SWITCHING = "5 3 train(False) 4 1 train 2 eval eval 6 train train 4 eval 3"
LONG = "5 2 8 3 6 2 4 7 3 5 2 9"
FAR = {"far_affine": True}
OFFSET = {"offset": 1e4}
NEAR = {"near_constant": True}
"""Scripts and data options the scenarios below share."""

VISIBLE = {
    "training": [("default arguments, 3 training batches", 404, TRAIN_3, 3, {})],
    "eval": [("momentum=0.1, training then eval", 405, f"{WITH_EVAL} 5", 3, {})],
    "cumulative": [("momentum=None", 406, "4 5 2 3 eval 2", 3, {"momentum": None})],
    "options": [
        ("affine=False", 407, f"{TRAIN_3} eval 3", 3, {"affine": False}),
        ("track_running_stats=False", 408, "6 4 eval 3", 3, {"track_running_stats": False}),
    ],
    "batch_of_one": [("training batch of one", 409, "4 1!", 3, {})],
}
"""topic -> (label, seed, script, num_features, options) of the visible scenarios."""


def visible_scenarios(topic: str) -> list[Scenario]:
    """The small fixed scenarios of the visible check on ``topic`` (a key of ``TOPICS``)."""
    return scenarios_from(VISIBLE, topic, make_scenario)
