"""The scenario engine of the stateful checks (lesson 04's ``BatchNorm1d``, lesson 09's
``BatchNorm2d``).

A *scenario* builds a layer and then runs a script of steps on it: batches in training or
eval mode, mode switches, ``load_state_dict``. The learner's layer and the lesson's reference
run the same scenario; after construction and after every step the engine compares what both
report (outputs, gradients, running statistics, ...) and stops at the first difference with
a message that names the scenario, the step and, by running the lesson's known-wrong layers
through the same scenario, the likely mistake.

A lesson plugs in through a ``Lesson``: how to run its reference, the learner's layer and a
known-wrong layer (each a ``Runner``), how to compare one value, how to label a step and
which known-wrong layer explains a difference. Its scenario tables build ``Scenario`` values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from utils.diagnose import TIGHT, CheckFailure, report

# --- steps and scenarios -----------------------------------------------------------------------

MODE_SWITCHES = {"train": "training", "eval": "eval", "train(False)": "eval"}
"""Step action -> the mode the layer is in afterwards."""

BATCHES = ("batch", "batch_of_one")
"""The step actions that run a batch through the layer."""

MISSING = object()
"""Stands for an attribute the layer does not have."""


@dataclass(frozen=True)
class Step:
    """One action on a layer.

    action: "batch" (forward x, then backward dout), "batch_of_one" (a training batch of one
    example that must raise ValueError; lesson 04, always the last step), a key of
    ``MODE_SWITCHES``, or "load" (``load_state_dict(state)``; lesson 09).
    x, dout: arrays of the same shape, (N, D) or (N, C, H, W), for a batch.
    call: how lesson 04 invokes the forward, "forward" or "__call__".
    state: for "load", the state_dict to load (name -> float64/int64 torch tensor).
    """

    action: str
    x: np.ndarray | None = None
    dout: np.ndarray | None = None
    call: str = "forward"
    state: dict | None = None


@dataclass(frozen=True)
class Scenario:
    """``layer(features, **options)``, gamma and beta assigned afterwards (None: left as they
    are, e.g. with affine=False), then the steps.

    tolerance: the largest relative error accepted against the reference. dtype, device and
    layout: lesson 09's torch dtype, device ("cpu" or "cuda") and memory layout of x ("C" or
    "channels_last"); the numpy lesson 04 leaves them as they are.
    """

    label: str
    layer: str
    features: int
    options: dict
    gamma: np.ndarray | None
    beta: np.ndarray | None
    steps: tuple[Step, ...] = field(default_factory=tuple)
    tolerance: float = TIGHT
    dtype: object = None
    device: str = "cpu"
    layout: str = "C"

    def constructor(self) -> str:
        """The constructor call as a learner would write it: "BatchNorm1d(3, momentum=None)"."""
        args = [str(self.features)] + [f"{k}={v!r}" for k, v in self.options.items()]
        return f"{self.layer}({', '.join(args)})"


def scenarios_from(table: dict, topic: str, make_scenario: Callable) -> list[Scenario]:
    """The scenarios of ``table[topic]``: each row holds the positional arguments of
    ``make_scenario`` (label, seed, script, ...) and, last, a dict of its keyword arguments."""
    return [make_scenario(*row[:-1], **row[-1]) for row in table[topic]]


# --- running a layer through a scenario ---------------------------------------------------------


class Runner(Protocol):
    """Runs one layer through a scenario: ``start`` builds it and returns what to compare
    after construction (name -> value), ``step`` applies one step and returns what to compare
    after it."""

    def start(self, scenario: Scenario) -> dict: ...

    def step(self, scenario: Scenario, step: Step) -> dict: ...


def trace(runner: Runner, scenario: Scenario) -> Iterator[dict]:
    """The values to compare after construction and after each step, lazily."""
    yield runner.start(scenario)
    for step in scenario.steps:
        yield runner.step(scenario, step)


@contextmanager
def quiet():
    """Numpy's floating-point warnings and Python's warnings silenced meanwhile: a warning on
    stderr would zero the test cell."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def partial_trace(runner: Runner, scenario: Scenario) -> list[dict]:
    """The trace of a known-wrong layer, as far as it gets (it may raise, e.g. on a batch of
    one, or produce NaN where the reference does not)."""
    snapshots = []
    with quiet():
        try:
            for snapshot in trace(runner, scenario):
                snapshots.append(snapshot)
        except Exception:  # noqa: BLE001 - a variant that breaks just stops naming mistakes
            pass
    return snapshots


def mode_before(scenario: Scenario, index: int) -> str:
    """ "training" or "eval": the mode in which step ``index`` (1-based) runs."""
    mode = "training"
    for step in scenario.steps[: index - 1]:
        mode = MODE_SWITCHES.get(step.action, mode)
    return mode


def batch_number(scenario: Scenario, index: int) -> int:
    """How many batches steps 1 to ``index`` run (step ``index`` included)."""
    return sum(step.action in BATCHES for step in scenario.steps[:index])


# --- what a lesson supplies ---------------------------------------------------------------------


class Mismatch(Exception):
    """The learner's value differs from the reference's. got: the learner's value as a
    float64 array when it is a wrong value (then known-wrong layers are asked to explain it),
    None when it is a wrong kind of value (missing, None, a wrong shape or dtype, ...)."""

    def __init__(self, message: str, got: np.ndarray | None = None):
        super().__init__(message)
        self.got = got


class Lesson(Protocol):
    """What the engine needs from a lesson.

    reference_name: how messages name the reference ("torch.nn.BatchNorm1d").
    key_order: the names of the values in the order they are compared (the first difference
    is reported). mistakes: known-wrong layer key -> description (completes "it looks like
    ...").
    """

    reference_name: str
    key_order: Sequence[str]
    mistakes: dict[str, str]

    def reference(self) -> Runner:
        """A runner of the reference layer, here in the checker."""

    def known_wrong(self, mistake: str) -> Runner:
        """A runner of the layer with ``mistake`` (a key of ``mistakes``) built in."""

    def compare(self, key: str, got, expected, scenario: Scenario) -> float:
        """The relative error of the learner's ``got`` against the reference's ``expected``
        for ``key``; raises Mismatch (or CheckFailure) when they differ."""

    def explains(self, wrong: dict, got: dict, expected: dict, keys: list[str]) -> bool:
        """Whether a known-wrong layer's values ``wrong`` at the failing step explain the
        difference at ``keys[-1]`` (``keys``: the keys compared so far at this step)."""

    def fallback_hint(self, scenario: Scenario, key: str, got: np.ndarray, expected) -> str:
        """A likely mistake when no known-wrong layer explains the difference ("": none)."""

    def label(self, step: Step, number: int, mode: str) -> str:
        """How a message names ``step``; number: its batch number (batches so far, itself
        included); mode: "training" or "eval", the mode it runs in."""


def step_label(lesson: Lesson, scenario: Scenario, index: int) -> str:
    """How a failure message names step ``index`` of ``scenario`` (0: the constructor)."""
    if index == 0:
        return "after construction"
    number = batch_number(scenario, index)
    return lesson.label(scenario.steps[index - 1], number, mode_before(scenario, index))


def likely_mistakes(
    lesson: Lesson, scenario: Scenario, index: int, got: dict, expected: dict, keys: list[str]
) -> list[str]:
    """The descriptions of the known-wrong layers that explain the learner's values ``got``
    at step ``index`` (several can, e.g. swapped momentum weights and a cumulative average
    when momentum=0)."""
    found = []
    for mistake, description in lesson.mistakes.items():
        wrong = partial_trace(lesson.known_wrong(mistake), scenario)
        if len(wrong) > index and lesson.explains(wrong[index], got, expected, keys):
            found.append(description)
    return found


def _hint(lesson, scenario, index, got: dict, expected: dict, keys, array: np.ndarray) -> str:
    """ " Likely mistake: ..." for a wrong value at ``keys[-1]`` (array: the learner's)."""
    found = likely_mistakes(lesson, scenario, index, got, expected, keys)
    if found:
        return f" Likely mistake: it looks like {'; or '.join(found)}"
    fallback = lesson.fallback_hint(scenario, keys[-1], array, expected[keys[-1]])
    return f" Likely mistake: {fallback}" if fallback else ""


def _compare_step(lesson, scenario, index, got: dict, expected: dict) -> float:
    """The largest relative error at step ``index``; CheckFailure at the first difference."""
    worst, keys = 0.0, [k for k in lesson.key_order if k in expected]
    for position, key in enumerate(keys):
        try:
            worst = max(worst, lesson.compare(key, got.get(key, MISSING), expected[key], scenario))
        except Mismatch as mismatch:
            hint = ""
            if mismatch.got is not None:  # a wrong value, not a wrong kind of value
                compared = keys[: position + 1]
                hint = _hint(lesson, scenario, index, got, expected, compared, mismatch.got)
            raise CheckFailure(f"{mismatch}{hint}") from None
    return worst


def compare_scenario(lesson: Lesson, learner: Runner, scenario: Scenario) -> tuple[float, int]:
    """Run the learner's layer (``learner``) and the lesson's reference through ``scenario``
    side by side.

    Returns (largest relative error, number of steps). Raises CheckFailure at the first
    difference, naming the scenario, the step and the likely mistake.
    """
    reference = list(trace(lesson.reference(), scenario))
    learners, worst = trace(learner, scenario), 0.0
    for index, expected in enumerate(reference):
        where = (
            f"[{scenario.label}; {scenario.constructor()}] {step_label(lesson, scenario, index)}"
        )
        try:
            with quiet():
                got = next(learners)
                worst = max(worst, _compare_step(lesson, scenario, index, got, expected))
        except CheckFailure as failure:
            raise CheckFailure(f"{where}: {failure}") from None
    return worst, len(scenario.steps)


def check_scenarios(
    lesson: Lesson,
    learner: Runner,
    name: str,
    what: str,
    scenarios: Iterable[Scenario],
    hidden: bool,
) -> None:
    """``compare_scenario`` on each scenario; one line saying so when all agree.

    name: how the learner's class is called in that line; what: what the scenarios cover.
    """
    scenarios = list(scenarios)
    worst, steps = 0.0, 0
    for scenario in scenarios:
        err, count = compare_scenario(lesson, learner, scenario)
        worst, steps = max(worst, err), steps + count
    plural = "s" if len(scenarios) > 1 else ""
    counted = f"{len(scenarios)} {'hidden ' if hidden else ''}scenario{plural}, {steps} steps"
    report(
        f"{name}, {what}: {counted} side by side with {lesson.reference_name}",
        worst,
        max(s.tolerance for s in scenarios),
    )
