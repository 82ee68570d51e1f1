"""Checks for lesson 04: a numpy ``BatchNorm1d`` class stepped side by side with
``torch.nn.BatchNorm1d`` (float64).

A *scenario* is a constructor call followed by a script of steps: switch mode (``train()``,
``eval()``, ``train(False)``), run a batch (forward, or ``__call__``, then backward), or feed a
training batch of one example (which must raise ``ValueError``). The learner's layer and
PyTorch's run the same script; after every step every piece of state is compared: ``out``,
``dx``, ``dgamma``, ``dbeta``, ``running_mean``, ``running_var``, ``num_batches_tracked``,
``training`` (and ``gamma``/``beta`` at the start). Every call into the learner's object
(constructor, methods and attribute reads) goes through ``call_without_torch``.

At the first difference the check names the step and, by running the known-wrong layers of
this module through the same script, the likely mistake.

Sections: scenarios; the PyTorch reference; the known-wrong variants; driving a layer;
comparison and diagnosis; the checks the notebook calls.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from utils.cases import copy_with_layout, stream_parameters, strided_view
from utils.diagnose import (
    MATCH,
    TIGHT,
    CheckFailure,
    as_float_array,
    assert_unchanged,
    generic_hint,
    report,
)
from utils.gradcheck import relative_error
from utils.guard import GuardTamperedError, TorchUsedError, call_without_torch
from utils.reference import as_tensor, to_numpy

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

# --- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One action on a layer.

    action: "train", "eval", "train(False)", "batch" (forward then backward) or "batch_of_one"
    (a training batch of one example: must raise ValueError; always the last step).
    x, dout: (N, D) arrays for a batch. call: how the forward is invoked, "forward" or
    "__call__".
    """

    action: str
    x: np.ndarray | None = None
    dout: np.ndarray | None = None
    call: str = "forward"


@dataclass(frozen=True)
class Scenario:
    """A constructor call (``BatchNorm1d(num_features, **options)``), the gamma/beta to assign
    afterwards (None: leave them, e.g. with affine=False) and the steps to run."""

    label: str
    num_features: int
    options: dict
    gamma: np.ndarray | None
    beta: np.ndarray | None
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def constructor(self) -> str:
        args = [str(self.num_features)] + [f"{k}={v!r}" for k, v in self.options.items()]
        return f"BatchNorm1d({', '.join(args)})"


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
        if token in ("train", "eval", "train(False)"):
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
    return Scenario(label, d, options, gamma, beta, tuple(steps))


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


def _scenarios(table: dict, topic: str) -> list[Scenario]:
    return [
        make_scenario(label, seed, script, d, **options)
        for label, seed, script, d, options in table[topic]
    ]


def visible_scenarios(topic: str) -> list[Scenario]:
    """The small fixed scenarios of the visible check on ``topic`` (a key of ``TOPICS``)."""
    return _scenarios(VISIBLE, topic)


def hidden_scenarios(topic: str) -> list[Scenario]:
    """The hidden scenarios on ``topic`` (a key of ``TOPICS``)."""
    return _scenarios(HIDDEN, topic)


# --- the PyTorch reference -------------------------------------------------------------------


def _numpy_or_none(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else to_numpy(tensor)


class TorchBatchNorm1d:
    """``torch.nn.BatchNorm1d`` in float64 behind the lesson's numpy interface: the oracle.

    Same constructor, ``.train(mode)``, ``.eval()``, ``.forward(x)``/``__call__``,
    ``.backward(dout) -> dx`` (sets ``.dgamma``, ``.dbeta``; None with affine=False), and the
    attributes as numpy arrays (None where PyTorch has None), ``num_batches_tracked`` an int.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        self.module = torch.nn.BatchNorm1d(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            dtype=torch.float64,
        )
        self._graph = None
        self.dgamma = self.dbeta = None

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def _set_parameter(self, parameter: torch.Tensor, value) -> None:
        with torch.no_grad():
            parameter.copy_(as_tensor(value))

    @property
    def gamma(self) -> np.ndarray | None:
        return _numpy_or_none(self.module.weight)

    @gamma.setter
    def gamma(self, value) -> None:
        self._set_parameter(self.module.weight, value)

    @property
    def beta(self) -> np.ndarray | None:
        return _numpy_or_none(self.module.bias)

    @beta.setter
    def beta(self, value) -> None:
        self._set_parameter(self.module.bias, value)

    @property
    def running_mean(self) -> np.ndarray | None:
        return _numpy_or_none(self.module.running_mean)

    @property
    def running_var(self) -> np.ndarray | None:
        return _numpy_or_none(self.module.running_var)

    @property
    def num_batches_tracked(self) -> int | None:
        count = self.module.num_batches_tracked
        return None if count is None else int(count.item())

    def forward(self, x):
        x_t = as_tensor(x, requires_grad=True)
        out = self.module(x_t)
        self._graph = (x_t, out)
        return to_numpy(out)

    __call__ = forward

    def backward(self, dout):
        x_t, out = self._graph
        self.module.zero_grad(set_to_none=True)
        out.backward(as_tensor(dout))
        self.dgamma = _numpy_or_none(getattr(self.module.weight, "grad", None))
        self.dbeta = _numpy_or_none(getattr(self.module.bias, "grad", None))
        return to_numpy(x_t.grad)


# --- known-wrong variants --------------------------------------------------------------------

MISTAKES = {
    "biased_running_var": "running_var is updated with the biased batch variance (divided by "
    "N); the running variance uses the unbiased one, var * N / (N - 1), while the "
    "normalization itself keeps the biased one",
    "keras_momentum": "the momentum weights are swapped (Keras' convention); PyTorch's is "
    "running = (1 - momentum) * running + momentum * batch",
    "eval_batch_stats": "eval mode normalizes with the batch statistics; with "
    "track_running_stats=True it must use running_mean and running_var",
    "update_in_eval": "the running statistics are updated in eval mode too; only training "
    "batches update them",
    "counter_in_eval": "num_batches_tracked is incremented in eval mode too; only training "
    "batches count",
    "counter_not_incremented": "num_batches_tracked is not incremented: add 1 for every "
    "training batch (while track_running_stats=True)",
    "none_as_default": "momentum=None is treated as 0.1; None means a cumulative average, "
    "with factor 1 / num_batches_tracked",
    "cumulative_off_by_one": "the cumulative average counts the initial running values as a "
    "batch (factor 1 / (k + 1)); increment num_batches_tracked first and use "
    "1 / num_batches_tracked, so the first batch replaces the initial values",
    "momentum_zero_as_none": "momentum=0 is treated like momentum=None (a test such as `if "
    "not momentum`); test `momentum is None`: with momentum=0 the running statistics never "
    "change",
    "eval_backward_batch_formula": "in eval mode the backward uses the training-mode formula "
    "(with its mean and variance terms); in eval mode the statistics are constants, so "
    "dx = dout * gamma / sqrt(running_var + eps)",
    "running_var_starts_at_zero": "running_var starts at zeros; like PyTorch it starts at "
    "ones (and running_mean at zeros)",
}
"""mistake -> description (completes "it looks like ...")."""


class KnownWrongBatchNorm1d:
    """A numpy BatchNorm1d with exactly one of the ``MISTAKES`` built in (the first argument).

    Its outputs and state, run through a scenario, are what a learner's layer with that
    mistake produces; a check compares them with the learner's to name the mistake.
    """

    def __init__(
        self, mistake, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True
    ):
        if mistake not in MISTAKES:
            raise ValueError(f"unknown mistake {mistake!r}")
        self.mistake, self.eps, self.momentum = mistake, eps, momentum
        self.training, self.affine, self.track = True, affine, track_running_stats
        self.gamma = np.ones(num_features) if affine else None
        self.beta = np.zeros(num_features) if affine else None
        self.running_mean = self.running_var = self.num_batches_tracked = None
        if track_running_stats:
            self.running_mean = np.zeros(num_features)
            start = 0.0 if mistake == "running_var_starts_at_zero" else 1.0
            self.running_var = np.full(num_features, start)
            self.num_batches_tracked = 0
        self._seen = 0
        self.dgamma = self.dbeta = None

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def _factor(self) -> float:
        cumulative = self.momentum is None or (
            self.mistake == "momentum_zero_as_none" and not self.momentum
        )
        if not cumulative:
            return 1 - self.momentum if self.mistake == "keras_momentum" else self.momentum
        if self.mistake == "none_as_default":
            return 0.1
        return 1 / (self._seen + 1) if self.mistake == "cumulative_off_by_one" else 1 / self._seen

    def _update(self, mean, var, n) -> None:
        self._seen += 1
        if self.mistake != "counter_not_incremented":
            self.num_batches_tracked += 1
        batch_var = var if self.mistake == "biased_running_var" else var * n / (n - 1)
        f = self._factor()
        self.running_mean = (1 - f) * self.running_mean + f * mean
        self.running_var = (1 - f) * self.running_var + f * batch_var

    def forward(self, x):
        n = x.shape[0]
        mean, var = x.mean(axis=0), x.var(axis=0)
        if self.track and (self.training or self.mistake == "update_in_eval"):
            self._update(mean, var, n)
        if self.track and not self.training and self.mistake == "counter_in_eval":
            self.num_batches_tracked += 1
        batch_mode = self.training or not self.track or self.mistake == "eval_batch_stats"
        if not batch_mode:
            mean, var = self.running_mean, self.running_var
        inv_std = 1 / np.sqrt(var + self.eps)
        x_hat = (x - mean) * inv_std
        self._cache = (batch_mode, x_hat, inv_std)
        if not self.affine:
            return x_hat
        return self.gamma * x_hat + self.beta

    __call__ = forward

    def backward(self, dout):
        batch_mode, x_hat, inv_std = self._cache
        dx_hat = dout * self.gamma if self.affine else dout
        if batch_mode or self.mistake == "eval_backward_batch_formula":
            n = dout.shape[0]
            mean_term = dx_hat.sum(axis=0)
            variance_term = x_hat * (dx_hat * x_hat).sum(axis=0)
            dx = inv_std / n * (n * dx_hat - mean_term - variance_term)
        else:
            dx = dx_hat * inv_std
        if self.affine:
            self.dgamma, self.dbeta = (dout * x_hat).sum(axis=0), dout.sum(axis=0)
        return dx


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


# --- the checks ------------------------------------------------------------------------------

TOPICS = {
    "training": "training mode",
    "eval": "training and eval mode",
    "cumulative": "momentum=None (cumulative average)",
    "options": "affine=False and track_running_stats=False",
    "batch_of_one": "batches of one",
}


def _check(cls: Callable, topic: str, scenarios: list[Scenario], hidden: bool) -> None:
    """Compare ``cls`` with PyTorch on every scenario; print one line when all agree."""
    worst, steps = 0.0, 0
    for scenario in scenarios:
        err, count = compare_scenario(cls, scenario)
        worst, steps = max(worst, err), steps + count
    plural = "s" if len(scenarios) > 1 else ""
    what = f"{len(scenarios)} {'hidden ' if hidden else ''}scenario{plural}, {steps} steps"
    name = getattr(cls, "__name__", "BatchNorm1d")
    report(f"{name}, {TOPICS[topic]}: {what} side by side with torch.nn.BatchNorm1d", worst)


def check_batchnorm1d_training(cls) -> None:
    """Visible check: default constructor, initial state, three training batches."""
    _check(cls, "training", visible_scenarios("training"), hidden=False)


def check_batchnorm1d_training_hidden(cls) -> None:
    _check(cls, "training", hidden_scenarios("training"), hidden=True)


def check_batchnorm1d_eval(cls) -> None:
    """Visible check: training batches, then eval mode (running statistics, the simple
    backward, no updates), including a batch of one in eval, then back to training."""
    _check(cls, "eval", visible_scenarios("eval"), hidden=False)


def check_batchnorm1d_eval_hidden(cls) -> None:
    _check(cls, "eval", hidden_scenarios("eval"), hidden=True)


def check_batchnorm1d_cumulative(cls) -> None:
    """Visible check of momentum=None: running statistics are the plain average."""
    _check(cls, "cumulative", visible_scenarios("cumulative"), hidden=False)


def check_batchnorm1d_cumulative_hidden(cls) -> None:
    _check(cls, "cumulative", hidden_scenarios("cumulative"), hidden=True)


def check_batchnorm1d_options(cls) -> None:
    """Visible check of affine=False and of track_running_stats=False."""
    _check(cls, "options", visible_scenarios("options"), hidden=False)


def check_batchnorm1d_options_hidden(cls) -> None:
    _check(cls, "options", hidden_scenarios("options"), hidden=True)


def check_batchnorm1d_batch_of_one(cls) -> None:
    """Visible check: a training batch of one example raises ValueError."""
    _check(cls, "batch_of_one", visible_scenarios("batch_of_one"), hidden=False)


def check_batchnorm1d_batch_of_one_hidden(cls) -> None:
    _check(cls, "batch_of_one", hidden_scenarios("batch_of_one"), hidden=True)
