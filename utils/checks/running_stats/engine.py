"""Driving a layer through a lesson 04 scenario, comparing it with the reference after every
step and naming the likely mistake at the first difference."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from utils.cases import copy_with_layout
from utils.checks.running_stats.reference import MISTAKES, KnownWrongBatchNorm1d, TorchBatchNorm1d
from utils.checks.running_stats.scenario import KEY_ORDER, STATE, Scenario, Step
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

# --- driving a layer through a scenario ------------------------------------------------------

_MISSING = object()
"""Stands for an attribute the layer does not have."""


class LayerRaised(Exception):
    """The learner's layer raised ``error`` in ``what``."""

    def __init__(self, what: str, error: Exception):
        detail = f": {error}" if str(error) else ""
        if isinstance(error, NotImplementedError):
            detail += " (is the exercise filled in?)"
        super().__init__(f"{what} raised {type(error).__name__}{detail}")
        self.what, self.error = what, error


@dataclass
class Driver:
    """Runs one layer through a scenario and reads its state after each step.

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
        """The attribute ``key`` of the layer, or _MISSING."""
        return self.call(key, getattr, self.layer, key, _MISSING)

    def state(self, keys=STATE) -> dict:
        return {key: self.read(key) for key in keys}

    def start(self, scenario: Scenario) -> dict:
        """Construct the layer; its initial state; then assign the scenario's gamma/beta."""
        self.layer = self.call(
            scenario.constructor(),
            lambda: self.make(scenario.num_features, **scenario.options),
        )
        initial = self.state(("training", "gamma", "beta", *STATE))
        if scenario.gamma is not None:
            self.call("gamma = ...", setattr, self.layer, "gamma", scenario.gamma.copy())
            self.call("beta = ...", setattr, self.layer, "beta", scenario.beta.copy())
        return initial

    def step(self, step: Step) -> dict:
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


def _mode_before(scenario: Scenario, index: int) -> str:
    """ "training" or "eval": the mode in which step ``index`` (1-based) runs."""
    mode = "training"
    for step in scenario.steps[: index - 1]:
        if step.action in ("train", "eval", "train(False)"):
            mode = "training" if step.action == "train" else "eval"
    return mode


def step_label(scenario: Scenario, index: int) -> str:
    """How a failure message names step ``index`` (0: the constructor)."""
    if index == 0:
        return "after construction"
    step = scenario.steps[index - 1]
    batches = sum(s.action in ("batch", "batch_of_one") for s in scenario.steps[:index])
    if step.action in ("batch", "batch_of_one"):
        size = step.x.shape[0]
        examples = "one example" if size == 1 else f"{size} examples"
        mode = _mode_before(scenario, index)
        return f"batch {batches} ({examples}, {mode} mode, via {step.call})"
    return f"after {step.action}"


def trace(make: Callable, scenario: Scenario, guarded: bool = False) -> Iterator[dict]:
    """The values to compare after construction and after each step, lazily."""
    driver = Driver(make, guarded)
    yield driver.start(scenario)
    for step in scenario.steps:
        yield driver.step(step)


def _partial_trace(make: Callable, scenario: Scenario) -> list[dict]:
    """The trace of a known-wrong layer, as far as it gets (it may raise on a batch of one)."""
    snapshots = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for snapshot in trace(make, scenario):
                snapshots.append(snapshot)
        except Exception:  # noqa: BLE001 - a variant that breaks just stops naming mistakes
            pass
    return snapshots


# --- comparison and diagnosis ----------------------------------------------------------------


class _Mismatch(Exception):
    def __init__(self, key: str, message: str, got=None):
        super().__init__(message)
        self.key, self.got = key, got


def _compare_value(key: str, got, expected) -> float:
    """Relative error of the learner's ``got`` against PyTorch's ``expected`` for ``key``;
    _Mismatch (with the learner's value as an array where there is one) when it differs."""
    if key == "raises":
        if got != expected:
            raise _Mismatch(key, _batch_of_one_message(got))
        return 0.0
    if got is _MISSING and not (expected is None and key in ("dgamma", "dbeta")):
        raise _Mismatch(key, f"the layer has no attribute {key!r}.")
    if expected is None:
        if got is not None and got is not _MISSING:
            raise _Mismatch(key, _should_be_none(key))
        return 0.0
    if key == "training":
        if got not in (True, False) or bool(got) != expected:
            raise _Mismatch(key, f"training is {got!r}, expected {expected}.")
        return 0.0
    if key == "num_batches_tracked":
        return _compare_count(got, expected)
    if got is None:
        raise _Mismatch(key, f"{key} is None; expected an array of shape {expected.shape}.")
    got = as_float_array(got, key, expected.shape)
    err = relative_error(got, expected)
    if not err <= TIGHT:
        raise _Mismatch(
            key,
            f"{key}: relative error {err:.1e} against torch.nn.BatchNorm1d (must be below "
            f"{TIGHT:.0e}).",
            got,
        )
    return err


def _compare_count(got, expected: int) -> float:
    if got is None:
        raise _Mismatch("num_batches_tracked", "num_batches_tracked is None; it starts at 0.")
    value = np.asarray(got)
    if value.shape != () or not np.issubdtype(value.dtype, np.number):
        raise _Mismatch(
            "num_batches_tracked", f"num_batches_tracked must be one integer, got {got!r}."
        )
    if float(value) != expected:
        raise _Mismatch(
            "num_batches_tracked",
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
    if got is None or got is _MISSING or wrong is None:
        return (got is None or got is _MISSING) and wrong is None
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


def name_mistakes(scenario: Scenario, index: int, snapshot: dict, keys: list[str]) -> list[str]:
    """The descriptions of the known-wrong layers that, at step ``index`` of ``scenario``,
    agree with the learner's ``snapshot`` on every key in ``keys`` (several can agree on one
    step, e.g. swapped momentum weights and a cumulative average when momentum=0)."""
    found = []
    for mistake, description in MISTAKES.items():
        wrong = _partial_trace(functools.partial(KnownWrongBatchNorm1d, mistake), scenario)
        if len(wrong) > index and all(
            _agrees(snapshot.get(k, _MISSING), wrong[index].get(k, _MISSING)) for k in keys
        ):
            found.append(description)
    return found


def _hint(mismatch: _Mismatch, expected, mistakes: list[str]) -> str:
    if mistakes:
        return f" Likely mistake: it looks like {'; or '.join(mistakes)}"
    if mismatch.key == "num_batches_tracked":
        return ""
    return f" Likely mistake: {generic_hint(mismatch.got, np.asarray(expected))}"


def compare_scenario(cls: Callable, scenario: Scenario) -> tuple[float, int]:
    """Run ``cls`` and torch.nn.BatchNorm1d through ``scenario`` side by side.

    Returns (largest relative error, number of steps). Raises CheckFailure at the first
    difference, naming the scenario, the step and the likely mistake.
    """
    reference = list(trace(TorchBatchNorm1d, scenario))
    worst, learner = 0.0, trace(cls, scenario, guarded=True)
    for index, expected in enumerate(reference):
        where = f"[{scenario.label}; {scenario.constructor()}] {step_label(scenario, index)}"
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a warning on stderr would zero the test cell
                got = next(learner)
        except LayerRaised as raised:
            raise CheckFailure(f"{where}: {raised}") from None
        except CheckFailure as failure:
            raise CheckFailure(f"{where}: {failure}") from None
        keys = [k for k in KEY_ORDER if k in expected]
        for position, key in enumerate(keys):
            try:
                worst = max(worst, _compare_value(key, got.get(key, _MISSING), expected[key]))
            except _Mismatch as mismatch:
                hint = ""
                if mismatch.got is not None:  # a wrong value, not a wrong kind of value
                    found = name_mistakes(scenario, index, got, keys[: position + 1])
                    hint = _hint(mismatch, expected[key], found)
                raise CheckFailure(f"{where}: {mismatch}{hint}") from None
            except CheckFailure as failure:
                raise CheckFailure(f"{where}: {failure}") from None
    return worst, len(scenario.steps)
