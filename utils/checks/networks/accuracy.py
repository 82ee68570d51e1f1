"""Lesson 05's accuracy checks (evaluation mode, running statistics)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from utils.checks.networks.oracle import (
    layer_builders,
    layers_from_torch,
    read_network_like,
    state_of,
    torch_description,
    torch_mlp,
)
from utils.checks.twins import On, paired
from utils.diagnose import TIGHT, CheckFailure, as_float_array, name_mistake, on_cases, report
from utils.gradcheck import relative_error
from utils.guard import call_without_torch
from utils.reference import as_tensor, one_torch_thread, to_numpy

# --- accuracy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyCase:
    dims: tuple[int, ...]
    n: int
    batch_size: int
    seed: int
    sorted_labels: bool = False
    use_bn: bool = True

    @property
    def label(self) -> str:
        extra = ", samples sorted by label" if self.sorted_labels else ""
        return f"dims={list(self.dims)}, {self.n} samples, batch_size={self.batch_size}{extra}"

    def data(self, model: nn.Sequential) -> tuple[np.ndarray, np.ndarray]:
        """Inputs, and labels that the eval-mode model gets mostly (not all) right."""
        rng = np.random.default_rng(2000 + self.seed)
        x = 0.5 + 2.0 * rng.standard_normal((self.n, self.dims[0]))
        with torch.no_grad():
            y = to_numpy(model.eval()(as_tensor(x))).argmax(axis=1)
        flip = rng.random(self.n) < 0.3
        y = np.where(flip, rng.integers(0, self.dims[-1], self.n), y)
        if self.sorted_labels:
            order = np.argsort(y, kind="stable")
            x, y = x[order], y[order]
        return x, y


def _predictions(model: nn.Sequential, x: np.ndarray, batch_size: int, train: bool) -> list:
    """Argmax predictions of ``model`` batch by batch (a copy in train mode when asked)."""
    model = copy.deepcopy(model).train(train)
    with torch.no_grad():
        return [
            to_numpy(model(as_tensor(x[i : i + batch_size]))).argmax(axis=1)
            for i in range(0, len(x), batch_size)
        ]


def _accuracy_mistakes(model, x, y, batch_size: int) -> dict[str, np.ndarray]:
    mistakes = {}
    try:
        train_pred = np.concatenate(_predictions(model, x, batch_size, train=True))
        mistakes[
            "the network was still in training mode: BatchNorm used each test batch's own "
            "statistics. Call layer.eval() on every layer first"
        ] = np.mean(train_pred == y)
    except ValueError:  # a batch of one cannot run in training mode at all
        pass
    pieces = _predictions(model, x, batch_size, train=False)
    labels = [y[i : i + batch_size] for i in range(0, len(x), batch_size)]
    per_batch = [np.mean(p == t) for p, t in zip(pieces, labels, strict=True)]
    mistakes["the mean of the per-batch accuracies, which overweights a smaller last batch"] = (
        np.mean(per_batch)
    )
    full = [(p, t) for p, t in zip(pieces, labels, strict=True) if len(p) == batch_size]
    if full:
        mistakes["the last, incomplete batch was left out"] = np.mean(
            np.concatenate([p == t for p, t in full])
        )
    mistakes["only the first batch was scored"] = per_batch[0]
    return mistakes


def _merge_equal(mistakes: dict[str, float]) -> dict[str, float]:
    """One entry per distinct value: on a small test set two mistakes can give the same
    accuracy, and then the hint names both."""
    merged: dict[str, float] = {}
    for hint, value in mistakes.items():
        same = next((k for k, v in merged.items() if v == value), None)
        if same is None:
            merged[hint] = value
        else:
            merged[f"{same}; or {hint}"] = merged.pop(same)
    return merged


@one_torch_thread()
def _check_accuracy_case(accuracy: Callable, case: AccuracyCase) -> float:
    model = torch_mlp(case.dims, case.use_bn, seed=case.seed)
    x, y = case.data(model)
    reference = torch_description(model.train())
    layers = layers_from_torch(model, layer_builders(accuracy))
    before = state_of(reference)
    result = call_without_torch(
        accuracy, layers, x.copy(), y.copy(), case.batch_size, name="accuracy"
    )
    value = as_float_array(result, "the accuracy", ())
    after = state_of(read_network_like(layers, reference, "accuracy"))
    if not np.array_equal(before.running, after.running):
        raise CheckFailure(
            "accuracy changed the BatchNorm running statistics: the network was still in "
            "training mode, so BatchNorm normalized each batch with its own statistics and "
            "updated its running ones. Call layer.eval() on every layer before predicting."
        )
    if not np.array_equal(before.parameters, after.parameters):
        raise CheckFailure("accuracy changed the network's parameters; it must only predict.")
    with torch.no_grad():
        expected = np.mean(to_numpy(model.eval()(as_tensor(x))).argmax(axis=1) == y)
    wrong = _accuracy_mistakes(model, x, y, case.batch_size)
    wrong["a percentage instead of a fraction"] = 100 * expected
    wrong["the number of correct predictions instead of the fraction"] = expected * len(y)
    wrong = _merge_equal({k: v for k, v in wrong.items() if v != expected})
    err = relative_error(value, expected)
    if not err <= TIGHT:
        mistake = name_mistake(value, wrong)
        hint = (
            f"it looks like {mistake}."
            if mistake
            else "no known mistake matches; predict one class per row (argmax over axis 1) "
            "and count every sample exactly once."
        )
        raise CheckFailure(
            f"the accuracy came out as {float(value):.4g}, which is wrong. Likely mistake: {hint}"
        )
    return err


VISIBLE_ACCURACY_CASES = (AccuracyCase((6, 8, 4), n=30, batch_size=8, seed=1),)
"""Chosen so that every known mistake gives its own, wrong, accuracy (a test verifies it)."""


@paired(lambda: On(VISIBLE_ACCURACY_CASES, "accuracy (eval mode, batch by batch)"))
def check_accuracy(on: On, accuracy: Callable) -> None:
    """Visible check of ``accuracy`` against the torch model in eval mode."""
    err = on_cases(on.cases, lambda c: _check_accuracy_case(accuracy, c))
    report(on.label, err)
