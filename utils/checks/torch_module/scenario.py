"""Lesson 09's scenarios (``utils.checks.scenario``'s ``Scenario`` of ``BatchNorm2d``, built from
a script of training batches, mode switches and ``load_state_dict``) and the visible table of
them (the hidden table is in ``utils.checks.hidden.torch_module``)."""

from __future__ import annotations

import numpy as np
import torch

from utils.cases import signed, stream_parameters
from utils.checks.scenario import Scenario, Step, scenarios_from
from utils.checks.torch_module.common import FLOAT32
from utils.diagnose import TIGHT

# --- scenarios -----------------------------------------------------------------------------------


def _saved_state(rng: np.random.Generator, c: int, options: dict) -> dict:
    """A state_dict as a trained nn.BatchNorm2d(c, **options) would have it (float64)."""
    state = {}
    if options.get("affine", True):
        state["weight"] = torch.tensor(signed(rng, 0.5, 3.0, c))
        state["bias"] = torch.tensor(signed(rng, 0.2, 3.0, c))
    if options.get("track_running_stats", True):
        state["running_mean"] = torch.tensor(rng.normal(0.0, 3.0, c))
        state["running_var"] = torch.tensor(rng.uniform(0.05, 20.0, c))
        state["num_batches_tracked"] = torch.tensor(int(rng.integers(3, 50)))
    return state


def make_scenario(
    label: str,
    seed: int,
    script: str,
    channels: int = 3,
    spatial: tuple[int, int] = (2, 3),
    *,
    far_affine: bool = False,
    offset: float = 0.0,
    near_constant: bool = False,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    layout: str = "C",
    **options,
) -> Scenario:
    """A seeded scenario from a ``script`` of space-separated steps: a number N is a batch of
    N images (C channels of ``spatial`` positions) that drifts from batch to batch; "train",
    "eval" switch modes; "load" loads a seeded state_dict. ``options`` go to the constructor.
    far_affine: |gamma| 3-8, |beta| 5-20 (else 0.5-2 and 0.2-2); near_constant: channel 0 has
    spread ~3e-4; offset: added to every mean. dtype, device: where the learner's module runs
    (the reference runs in float64 or float32 likewise, on the CPU); layout: "C" or
    "channels_last" (the memory format of x)."""
    rng = np.random.default_rng(seed)
    c = channels
    loc, scale, gamma, beta = stream_parameters(
        rng, c, offset, near_constant, far_affine, options.get("affine", True)
    )
    steps = []
    for token in script.split():
        if token in ("train", "eval"):
            steps.append(Step(token))
        elif token == "load":
            steps.append(Step("load", state=_saved_state(rng, c, options)))
        else:
            shape = (int(token), c, *spatial)
            drift = rng.normal(0.0, 0.3, c) * scale
            x = per_channel_np(loc + drift, 4) + per_channel_np(scale, 4) * rng.normal(size=shape)
            steps.append(Step("batch", x, rng.normal(size=shape)))
    return Scenario(
        label,
        "BatchNorm2d",
        c,
        options,
        gamma,
        beta,
        tuple(steps),
        tolerance=TIGHT if dtype == torch.float64 else FLOAT32,
        dtype=dtype,
        device=device,
        layout=layout,
    )


def per_channel_np(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape(1, -1, *([1] * (ndim - 2)))


TRAIN_3 = "4 3 2"
MODES = "4 3 eval 2 3 train 5 eval 1"
SWITCHING = "3 eval eval 2 train 4 train 2 eval 3 train 2 eval 1"

VISIBLE = {
    "training": [("default arguments, 3 training batches", 901, TRAIN_3, {})],
    "modes": [
        ("momentum=0.1, training then eval then training", 902, MODES, {}),
        ("momentum=None (cumulative average)", 903, "4 3 2 eval 2", {"momentum": None}),
        ("affine=False", 904, f"{TRAIN_3} eval 2", {"affine": False}),
        ("track_running_stats=False", 905, "4 eval 3 train 2", {"track_running_stats": False}),
    ],
    "state": [("load_state_dict of a trained nn.BatchNorm2d, then eval", 906, "2 load eval 3", {})],
}
"""topic -> (label, seed, script, options) of the visible scenarios (3 channels, 2 x 3 maps)."""


def scenarios(table: dict, topic: str) -> list[Scenario]:
    """The scenarios of ``table[topic]`` (``VISIBLE`` or the hidden table)."""
    return scenarios_from(table, topic, make_scenario)
