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

The scenario engine (steps, scenarios, running them side by side, diagnosis) is shared with
lesson 09 in ``utils.checks.scenario``; this package holds what is lesson 04's: ``scenario``
(building scenarios from scripts, and their visible table), ``reference`` (PyTorch's layer in
numpy terms and the known-wrong layers), ``adapter`` (driving a layer through a scenario and
comparing one value); the checks the notebook calls are here.
"""

from __future__ import annotations

from collections.abc import Callable

from utils.checks import scenario as engine
from utils.checks.running_stats.adapter import LESSON, Driver
from utils.checks.running_stats.reference import MISTAKES, KnownWrongBatchNorm1d, TorchBatchNorm1d
from utils.checks.running_stats.scenario import make_scenario, visible_scenarios
from utils.checks.scenario import Scenario
from utils.checks.twins import On, paired
from utils.diagnose import TIGHT

# --- the checks ------------------------------------------------------------------------------

TOPICS = {
    "training": "training mode",
    "eval": "training and eval mode",
    "cumulative": "momentum=None (cumulative average)",
    "options": "affine=False and track_running_stats=False",
    "batch_of_one": "batches of one",
}


def compare_scenario(cls: Callable, scenario: Scenario) -> tuple[float, int]:
    """Run ``cls`` and torch.nn.BatchNorm1d through ``scenario`` side by side.

    Returns (largest relative error, number of steps). Raises CheckFailure at the first
    difference, naming the scenario, the step and the likely mistake.
    """
    return engine.compare_scenario(LESSON, Driver(cls, guarded=True), scenario)


def _check(cls: Callable, topic: str, scenarios: list[Scenario], hidden: bool) -> None:
    """Compare ``cls`` with PyTorch on every scenario; print one line when all agree."""
    name = getattr(cls, "__name__", "BatchNorm1d")
    learner = Driver(cls, guarded=True)
    engine.check_scenarios(LESSON, learner, name, TOPICS[topic], scenarios, hidden)


@paired(lambda: On(visible_scenarios("training")))
def check_batchnorm1d_training(on: On, cls) -> None:
    """Visible check: default constructor, initial state, three training batches."""
    _check(cls, "training", on.cases, on.hidden)


@paired(lambda: On(visible_scenarios("eval")))
def check_batchnorm1d_eval(on: On, cls) -> None:
    """Visible check: training batches, then eval mode (running statistics, the simple
    backward, no updates), including a batch of one in eval, then back to training."""
    _check(cls, "eval", on.cases, on.hidden)


@paired(lambda: On(visible_scenarios("cumulative")))
def check_batchnorm1d_cumulative(on: On, cls) -> None:
    """Visible check of momentum=None: running statistics are the plain average."""
    _check(cls, "cumulative", on.cases, on.hidden)


@paired(lambda: On(visible_scenarios("options")))
def check_batchnorm1d_options(on: On, cls) -> None:
    """Visible check of affine=False and of track_running_stats=False."""
    _check(cls, "options", on.cases, on.hidden)


@paired(lambda: On(visible_scenarios("batch_of_one")))
def check_batchnorm1d_batch_of_one(on: On, cls) -> None:
    """Visible check: a training batch of one example raises ValueError."""
    _check(cls, "batch_of_one", on.cases, on.hidden)


__all__ = [
    "KnownWrongBatchNorm1d",
    "MISTAKES",
    "TIGHT",
    "TOPICS",
    "TorchBatchNorm1d",
    "check_batchnorm1d_batch_of_one",
    "check_batchnorm1d_cumulative",
    "check_batchnorm1d_eval",
    "check_batchnorm1d_options",
    "check_batchnorm1d_training",
    "compare_scenario",
    "make_scenario",
    "visible_scenarios",
]
