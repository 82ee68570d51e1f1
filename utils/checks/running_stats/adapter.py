"""Lesson 04's adapter to the scenario engine (``utils.checks.scenario``): driving a numpy
``BatchNorm1d`` (the learner's, PyTorch's in numpy terms, or a known-wrong one) through a
scenario, comparing one value with PyTorch's, and naming steps and mistakes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from utils.cases import copy_with_layout
from utils.checks.running_stats.reference import MISTAKES, KnownWrongBatchNorm1d, TorchBatchNorm1d
from utils.checks.scenario import BATCHES, MISSING, Mismatch, Scenario, Step
from utils.diagnose import (
    MATCH,
    TIGHT,
    CheckFailure,
    as_float_array,
    assert_unchanged,
    generic_hint,
)
from utils.gradcheck import relative_error
from utils.guard import GuardTamperedError, TorchUsedError, call_without_torch

KEY_ORDER = (
    "raises",
    "training",
    "gamma",
    "beta",
    "out",
    "dx",
    "dgamma",
    "dbeta",
    "running_mean",
    "running_var",
    "num_batches_tracked",
)
"""The order in which the values of one step are compared (the first difference is reported)."""

STATE = ("running_mean", "running_var", "num_batches_tracked")

# --- driving a layer through a scenario ------------------------------------------------------


class LayerRaised(CheckFailure):
    """The learner's layer raised ``error`` in ``what``."""

    def __init__(self, what: str, error: Exception):
        detail = f": {error}" if str(error) else ""
        if isinstance(error, NotImplementedError):
            detail += " (is the exercise filled in?)"
        super().__init__(f"{what} raised {type(error).__name__}{detail}")
        self.what, self.error = what, error


@dataclass
class Driver:
    """Runs one layer through a scenario (a ``utils.checks.scenario.Runner``) and reads its
    state after each step.

    make: the class (or factory) called as ``make(num_features, **options)``. guarded: every
    call into the layer goes through ``call_without_torch`` and exceptions other than the
    guard's come back as LayerRaised; unguarded drivers (PyTorch, known-wrong variants) let
    exceptions through.
    """

    make: Callable
    guarded: bool
    layer: object = None

    def call(self, what: str, fn: Callable, *args):
        if not self.guarded:
            return fn(*args)
        try:
            return call_without_torch(fn, *args, name=f"BatchNorm1d.{what}")
        except (TorchUsedError, GuardTamperedError):
            raise
        except Exception as error:  # the learner's own error: reported with its step
            raise LayerRaised(what, error) from None

    def method(self, name: str) -> Callable:
        return self.call(name, getattr, self.layer, name)

    def read(self, key: str):
        """The attribute ``key`` of the layer, or MISSING."""
        return self.call(key, getattr, self.layer, key, MISSING)

    def state(self, keys=STATE) -> dict:
        return {key: self.read(key) for key in keys}

    def start(self, scenario: Scenario) -> dict:
        """Construct the layer; its initial state; then assign the scenario's gamma/beta."""
        self.layer = self.call(
            scenario.constructor(),
            lambda: self.make(scenario.features, **scenario.options),
        )
        initial = self.state(("training", "gamma", "beta", *STATE))
        if scenario.gamma is not None:
            self.call("gamma = ...", setattr, self.layer, "gamma", scenario.gamma.copy())
            self.call("beta = ...", setattr, self.layer, "beta", scenario.beta.copy())
        return initial

    def step(self, scenario: Scenario, step: Step) -> dict:
        """Apply ``step``; the values to compare afterwards."""
        if step.action == "batch":
            return self._batch(step)
        if step.action == "batch_of_one":
            return {"raises": self._batch_of_one_outcome(step)}
        if step.action == "train(False)":
            self.call("train(False)", self.method("train"), False)
        else:
            self.call(f"{step.action}()", self.method(step.action))
        return {"training": self.read("training"), **self.state()}

    def _batch(self, step: Step) -> dict:
        x, dout = copy_with_layout(step.x), step.dout.copy()
        out = self.call(f"{step.call}(x)", self.method(step.call), x)
        assert_unchanged(step.x, x, f"{step.call}(x)", "x")
        dx = self.call("backward(dout)", self.method("backward"), dout)
        assert_unchanged(step.dout, dout, "backward(dout)", "dout")
        return {
            "out": out,
            "dx": dx,
            "dgamma": self.read("dgamma"),
            "dbeta": self.read("dbeta"),
            **self.state(),
        }

    def _batch_of_one_outcome(self, step: Step) -> str:
        """The name of the exception the forward raised on a batch of one, or "nothing"."""
        try:
            self.call(f"{step.call}(x)", self.method(step.call), step.x.copy())
        except LayerRaised as raised:
            return type(raised.error).__name__
        except ValueError:  # PyTorch's, or a known-wrong layer's
            return "ValueError"
        return "nothing"


# --- comparing one value ---------------------------------------------------------------------


def compare_value(key: str, got, expected) -> float:
    """Relative error of the learner's ``got`` against PyTorch's ``expected`` for ``key``;
    Mismatch (with the learner's value as an array where there is one) when it differs."""
    if key == "raises":
        if got != expected:
            raise Mismatch(_batch_of_one_message(got))
        return 0.0
    if got is MISSING and not (expected is None and key in ("dgamma", "dbeta")):
        raise Mismatch(f"the layer has no attribute {key!r}.")
    if expected is None:
        if got is not None and got is not MISSING:
            raise Mismatch(_should_be_none(key))
        return 0.0
    if key == "training":
        if got not in (True, False) or bool(got) != expected:
            raise Mismatch(f"training is {got!r}, expected {expected}.")
        return 0.0
    if key == "num_batches_tracked":
        return _compare_count(got, expected)
    if got is None:
        raise Mismatch(f"{key} is None; expected an array of shape {expected.shape}.")
    got = as_float_array(got, key, expected.shape)
    err = relative_error(got, expected)
    if not err <= TIGHT:
        raise Mismatch(
            f"{key}: relative error {err:.1e} against torch.nn.BatchNorm1d (must be below "
            f"{TIGHT:.0e}).",
            got,
        )
    return err


def _compare_count(got, expected: int) -> float:
    if got is None:
        raise Mismatch("num_batches_tracked is None; it starts at 0.")
    value = np.asarray(got)
    if value.shape != () or not np.issubdtype(value.dtype, np.number):
        raise Mismatch(f"num_batches_tracked must be one integer, got {got!r}.")
    if float(value) != expected:
        raise Mismatch(
            f"num_batches_tracked is {got!r}; it counts the training batches seen so far "
            "(while track_running_stats=True).",
            value.astype(np.float64),
        )
    return 0.0


def _should_be_none(key: str) -> str:
    if key in ("gamma", "beta", "dgamma", "dbeta"):
        return f"{key} must be None with affine=False: the layer has no gamma and beta."
    return (
        f"{key} must be None with track_running_stats=False: the layer keeps no running "
        "statistics then (and normalizes with the batch statistics in both modes)."
    )


def _batch_of_one_message(outcome: str) -> str:
    if outcome == "nothing":
        return (
            "a batch of one example must raise ValueError whenever the layer normalizes with "
            "batch statistics (training mode, and eval mode too when track_running_stats=False): "
            "its variance is 0 and the unbiased variance would divide by N - 1 = 0. The layer "
            "returned normally."
        )
    return f"a batch of one example must raise ValueError here; the layer raised {outcome}."


def _agrees(got, wrong) -> bool:
    """Whether the learner's value and a known-wrong layer's value are the same."""
    if got is None or got is MISSING or wrong is None:
        return (got is None or got is MISSING) and wrong is None
    if isinstance(got, str) or isinstance(wrong, str):
        return got == wrong
    try:
        got_arr = np.asarray(got, dtype=np.float64)
        wrong_arr = np.asarray(wrong, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if got_arr.shape != wrong_arr.shape or not np.all(np.isfinite(wrong_arr)):
        return False
    return relative_error(got_arr, wrong_arr) <= MATCH


# --- the adapter -----------------------------------------------------------------------------


class RunningStatsLesson:
    """Lesson 04 for the scenario engine: ``torch.nn.BatchNorm1d`` (``TorchBatchNorm1d``) is
    the reference, the layers of ``MISTAKES`` name the mistakes."""

    reference_name = "torch.nn.BatchNorm1d"
    key_order = KEY_ORDER
    mistakes = MISTAKES

    def reference(self) -> Driver:
        return Driver(TorchBatchNorm1d, guarded=False)

    def known_wrong(self, mistake: str) -> Driver:
        return Driver(functools.partial(KnownWrongBatchNorm1d, mistake), guarded=False)

    def compare(self, key: str, got, expected, scenario: Scenario) -> float:
        return compare_value(key, got, expected)

    def explains(self, wrong: dict, got: dict, expected: dict, keys: list[str]) -> bool:
        """A known-wrong layer explains a difference when it agrees with the learner's layer
        on every value compared so far at the step."""
        return all(_agrees(got.get(k, MISSING), wrong.get(k, MISSING)) for k in keys)

    def fallback_hint(self, scenario: Scenario, key: str, got: np.ndarray, expected) -> str:
        if key == "num_batches_tracked":
            return ""
        return generic_hint(got, np.asarray(expected))

    def label(self, step: Step, number: int, mode: str) -> str:
        if step.action in BATCHES:
            size = step.x.shape[0]
            examples = "one example" if size == 1 else f"{size} examples"
            return f"batch {number} ({examples}, {mode} mode, via {step.call})"
        return f"after {step.action}"


LESSON = RunningStatsLesson()
