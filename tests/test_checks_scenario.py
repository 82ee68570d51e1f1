"""utils.checks.scenario: the scenario engine of lessons 04 and 09, on a toy lesson (a layer
that scales its input and counts training batches) written here; the lessons' own tables and
adapters are tested in test_checks_running_stats.py and test_checks_torch_module.py."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from utils.checks import scenario as engine
from utils.checks.scenario import Mismatch, Scenario, Step
from utils.diagnose import TIGHT, CheckFailure
from utils.gradcheck import relative_error


class Scale:
    """out = factor * x; ``seen`` counts the batches of training mode."""

    def __init__(self, features, factor=2.0):
        self.factor, self.seen, self.training = factor, 0, True

    def forward(self, x):
        self.seen += self.training
        return self.factor * x


class ScaleTwice(Scale):
    def forward(self, x):
        return self.factor * super().forward(x)


class CountsInEval(Scale):
    def forward(self, x):
        self.seen += not self.training
        return super().forward(x)


class BreaksOnEval(Scale):
    def forward(self, x):
        if not self.training:
            np.log(-1.0)  # a numpy warning first: it must not reach stderr
            raise RuntimeError("broken")
        return super().forward(x)


@dataclass
class ToyRunner:
    make: type
    layer: object = None

    def start(self, s: Scenario) -> dict:
        self.layer = self.make(s.features, **s.options)
        return {"training": self.layer.training, "seen": self.layer.seen}

    def step(self, s: Scenario, step: Step) -> dict:
        if step.action == "batch":
            return {"out": self.layer.forward(step.x), "seen": self.layer.seen}
        self.layer.training = engine.MODE_SWITCHES[step.action] == "training"
        return {"training": self.layer.training}


class ToyLesson:
    reference_name = "Scale"
    key_order = ("training", "out", "seen")
    mistakes = {"twice": "the factor is applied twice", "counts": "eval batches are counted"}

    def reference(self):
        return ToyRunner(Scale)

    def known_wrong(self, mistake):
        return ToyRunner({"twice": ScaleTwice, "counts": CountsInEval}[mistake])

    def compare(self, key, got, expected, scenario):
        if key == "training":
            if got is not expected:
                raise Mismatch(f"training is {got!r}.")
            return 0.0
        err = relative_error(np.asarray(got, float), np.asarray(expected, float))
        if not err <= scenario.tolerance:
            raise Mismatch(f"{key}: relative error {err:.1e}.", np.asarray(got, float))
        return err

    def explains(self, wrong, got, expected, keys):
        return np.allclose(wrong[keys[-1]], got[keys[-1]])

    def fallback_hint(self, scenario, key, got, expected):
        return "" if key == "seen" else "compare the formula."

    def label(self, step, number, mode):
        return f"batch {number} ({mode} mode)" if step.action == "batch" else f"after {step}"


LESSON = ToyLesson()


def toy(script: str, **options) -> Scenario:
    """Batches of shape (N, 2) for numbers in ``script``; other tokens switch modes."""
    rng = np.random.default_rng(0)
    steps = tuple(
        Step(t) if t in engine.MODE_SWITCHES else Step("batch", rng.normal(size=(int(t), 2)))
        for t in script.split()
    )
    return Scenario("toy", "Scale", 2, options, None, None, steps)


def test_steps_are_labelled_by_batch_number_and_the_mode_they_run_in():
    s = toy("3 eval 2 train 4 train(False) 5")
    assert engine.step_label(LESSON, s, 0) == "after construction"
    labels = [engine.step_label(LESSON, s, i) for i in (1, 3, 5, 7)]
    assert labels == [
        "batch 1 (training mode)",
        "batch 2 (eval mode)",
        "batch 3 (training mode)",
        "batch 4 (eval mode)",
    ]


def test_the_constructor_is_written_as_a_learner_would_write_it():
    assert toy("2", factor=3.0).constructor() == "Scale(2, factor=3.0)"


def test_a_correct_layer_agrees_at_every_step():
    s = toy("3 eval 2 train 4")
    assert engine.compare_scenario(LESSON, ToyRunner(Scale), s) == (0.0, 5)


def test_the_first_difference_names_the_scenario_the_step_and_the_known_mistake():
    with pytest.raises(CheckFailure) as info:
        engine.compare_scenario(LESSON, ToyRunner(ScaleTwice), toy("3 eval 2"))
    assert str(info.value).startswith("[toy; Scale(2)] batch 1 (training mode): out: relative")
    assert str(info.value).endswith("Likely mistake: it looks like the factor is applied twice")


def test_a_difference_no_known_mistake_explains_gets_the_lessons_fallback():
    class Off(Scale):
        def forward(self, x):
            return super().forward(x) + 1.0

    with pytest.raises(CheckFailure, match="out: .* Likely mistake: compare the formula.$"):
        engine.compare_scenario(LESSON, ToyRunner(Off), toy("3"))


def test_a_wrong_kind_of_value_gets_no_likely_mistake():
    class StartsInEval(Scale):
        def __init__(self, features, factor=2.0):
            super().__init__(features, factor)
            self.training = False

    with pytest.raises(CheckFailure) as info:
        engine.compare_scenario(LESSON, ToyRunner(StartsInEval), toy("3"))
    assert str(info.value) == "[toy; Scale(2)] after construction: training is False."


def test_a_mistake_is_named_only_where_its_values_agree_with_the_learners():
    with pytest.raises(CheckFailure) as info:
        engine.compare_scenario(LESSON, ToyRunner(CountsInEval), toy("3 eval 2"))
    assert "batch 2 (eval mode): seen" in str(info.value)
    assert "Likely mistake: it looks like eval batches are counted" in str(info.value)
    assert "twice" not in str(info.value)


def test_a_known_wrong_layer_that_breaks_is_traced_as_far_as_it_gets_and_quietly(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snapshots = engine.partial_trace(ToyRunner(BreaksOnEval), toy("3 eval 2 train 4"))
    assert len(snapshots) == 3 and caught == [] and capfd.readouterr().err == ""


def test_table_rows_are_the_positional_then_the_keyword_arguments():
    rows = {"t": [("a", 1, "2 3", {"factor": 4.0}), ("b", 2, "eval 2", {})]}
    made = engine.scenarios_from(rows, "t", lambda label, seed, script, **kw: (label, seed, kw))
    assert made == [("a", 1, {"factor": 4.0}), ("b", 2, {})]


def test_a_passing_check_prints_one_line_with_the_loosest_tolerance(capsys):
    scenarios = [toy("3 eval 2"), Scenario("loose", "Scale", 2, {}, None, None, (), 1e-5)]
    engine.check_scenarios(LESSON, ToyRunner(Scale), "Mine", "toys", scenarios, hidden=True)
    line = capsys.readouterr().out
    assert line.startswith("Mine, toys: 2 hidden scenarios, 3 steps side by side with Scale")
    assert "(below 1e-05) — correct" in line and TIGHT < 1e-5
