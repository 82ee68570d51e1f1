"""Lesson 05's train_step checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.checks.networks.oracle import (
    State,
    layer_builders,
    layers_from_torch,
    read_network_like,
    state_of,
    torch_description,
    torch_mlp,
    torch_state,
)
from utils.checks.twins import On, paired
from utils.diagnose import TIGHT, CheckFailure, assert_close, on_cases, report
from utils.guard import call_without_torch
from utils.reference import as_tensor, one_torch_thread

# --- train_step ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCase:
    dims: tuple[int, ...]
    use_bn: bool
    batch: int
    lr: float
    steps: int
    seed: int
    start_in_eval: bool = False
    bias_before_bn: bool = False

    @property
    def label(self) -> str:
        extra = ", starting in eval mode" if self.start_in_eval else ""
        extra += ", bias before BatchNorm" if self.bias_before_bn else ""
        return (
            f"dims={list(self.dims)}, use_bn={self.use_bn}, batch {self.batch}, lr={self.lr:g}, "
            f"{self.steps} step(s){extra}"
        )

    def model(self) -> nn.Sequential:
        model = torch_mlp(
            self.dims, self.use_bn, bias_before_bn=self.bias_before_bn, seed=self.seed
        )
        return model.train(not self.start_in_eval)

    def batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(1000 + self.seed)
        return [
            (
                0.3 + 1.5 * rng.standard_normal((self.batch, self.dims[0])),
                rng.integers(0, self.dims[-1], self.batch),
            )
            for _ in range(self.steps)
        ]


def torch_sgd_step(
    model: nn.Sequential,
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    *,
    train_mode: bool = True,
    frozen: type | None = None,
    loss_after: bool = False,
) -> float:
    """One SGD step of ``model`` (changed in place) on (x, y); returns the loss.

    The options make the known-wrong variants: ``train_mode=False`` keeps the model in eval
    mode, ``frozen`` skips the update of every module of that type, ``loss_after`` returns the
    loss recomputed after the update (in eval mode, to leave the running statistics alone)."""
    model.train(train_mode)
    xt, yt = as_tensor(x), torch.tensor(np.array(y), dtype=torch.long)
    model.zero_grad()
    loss = F.cross_entropy(model(xt), yt)
    loss.backward()
    with torch.no_grad():
        for module in model:
            if frozen is not None and isinstance(module, frozen):
                continue
            for p in module.parameters(recurse=False):
                p -= lr * p.grad
        if loss_after:
            was = model.training
            loss = F.cross_entropy(model.eval()(xt), yt)
            model.train(was)
    return loss.item()


STEP_MISTAKES: dict[str, dict] = {
    "the update has the wrong sign (p.data += lr * p.grad climbs the loss instead of "
    "descending it)": {"lr_factor": -1.0},
    "the learning rate was not applied (p.data -= p.grad)": {"lr_value": 1.0},
    "the network stayed in evaluation mode: call layer.train() on every layer at the start "
    "of train_step (accuracy() switched them to eval)": {"train_mode": False},
    "BatchNorm's gamma and beta were not updated (update the parameters() of every layer)": {
        "frozen": nn.BatchNorm1d
    },
    "the Linear layers were not updated (update the parameters() of every layer)": {
        "frozen": nn.Linear
    },
}
"""Known-wrong variants of one SGD step: the hint, then the options of torch_sgd_step."""


def _variant(model: nn.Sequential, x, y, lr: float, options: dict) -> tuple[float, State]:
    model = copy.deepcopy(model)
    options = dict(options)
    step_lr = options.pop("lr_value", lr * options.pop("lr_factor", 1.0))
    loss = torch_sgd_step(model, x, y, step_lr, **options)
    return loss, torch_state(model)


def _step_mistakes(model, x, y, lr, expected: State) -> tuple[dict, dict, dict]:
    """Hints for the loss, the parameters and the running statistics of one step."""
    losses, params, running = {}, {}, {}
    for hint, options in STEP_MISTAKES.items():
        loss, state = _variant(model, x, y, lr, options)
        losses[hint] = np.array(loss)
        if not np.allclose(state.parameters, expected.parameters, rtol=0, atol=1e-12):
            params[hint] = state.parameters
        if not np.allclose(state.running, expected.running, rtol=0, atol=1e-12):
            running[hint] = state.running
    after, _ = _variant(model, x, y, lr, {"loss_after": True})
    losses["the loss was computed after the update; return the loss of the forward pass"] = (
        np.array(after)
    )
    return losses, params, running


@one_torch_thread()
def _check_step_case(train_step: Callable, case: StepCase) -> float:
    model = case.model()
    reference = torch_description(model)
    layers = layers_from_torch(model, layer_builders(train_step))
    worst = 0.0
    for k, (x, y) in enumerate(case.batches()):
        prefix = f"step {k + 1}: " if case.steps > 1 else ""
        before = copy.deepcopy(model)
        expected_loss = torch_sgd_step(model, x, y, case.lr)
        expected = torch_state(model)
        losses, params, running = _step_mistakes(before, x, y, case.lr, expected)
        loss = call_without_torch(
            train_step, layers, x.copy(), y.copy(), case.lr, name="train_step"
        )
        got = state_of(read_network_like(layers, reference, "train_step"))
        try:
            worst = max(
                worst,
                assert_close("the returned loss", loss, expected_loss, mistakes=losses),
                assert_close(
                    "the updated parameters", got.parameters, expected.parameters, mistakes=params
                ),
                assert_close(
                    "the running statistics", got.running, expected.running, mistakes=running
                ),
            )
        except CheckFailure as failure:
            raise CheckFailure(prefix + str(failure)) from None
    return worst


VISIBLE_STEP_CASES = (
    StepCase((6, 5, 4, 3), True, batch=8, lr=0.1, steps=2, seed=0, start_in_eval=True),
    StepCase((6, 5, 4, 3), False, batch=8, lr=0.1, steps=1, seed=1),
)


@paired(lambda: On(VISIBLE_STEP_CASES, "train_step (loss, parameters, running statistics)"))
def check_train_step(on: On, train_step: Callable) -> None:
    """Visible check of ``train_step``: loss, updated parameters and running statistics after
    one or two steps, against SGD on the same network in torch."""
    err = on_cases(on.cases, lambda c: _check_step_case(train_step, c))
    report(on.label, err, TIGHT)
