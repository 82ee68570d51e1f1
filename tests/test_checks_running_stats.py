"""utils.checks.running_stats: the side-by-side checks pass correct classes, fail every known
mistake with its description, and guard against PyTorch.

The correct class below is written here, independently of the lesson's solution and of the
module's known-wrong variants; PyTorch (through the checks) is the only oracle.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from utils.checks import running_stats as rs
from utils.checks.hidden import running_stats as hidden_running_stats
from utils.diagnose import CheckFailure
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import TorchUsedError

CHECKS = [f"check_batchnorm1d_{topic}" for topic in rs.TOPICS]
HIDDEN_CHECKS = [f"{name}_hidden" for name in CHECKS]


class LoopBatchNorm1d:
    """A correct layer written feature by feature with Python floats where it is cheap."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        self.d, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track = affine, track_running_stats
        self.training = True
        self.gamma = np.ones(num_features) if affine else None
        self.beta = np.zeros(num_features) if affine else None
        self.running_mean = np.zeros(num_features) if track_running_stats else None
        self.running_var = np.ones(num_features) if track_running_stats else None
        self.num_batches_tracked = 0 if track_running_stats else None
        self.dgamma = self.dbeta = None

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        n = x.shape[0]
        batch = self.training or not self.track
        if batch and n == 1:
            raise ValueError("a batch of one has no variance")
        if self.training and self.track:
            self.num_batches_tracked += 1
        out, self.saved = np.empty_like(x), []
        for j in range(self.d):
            column = x[:, j]
            if batch:
                mean = float(np.mean(column))
                var = float(np.mean((column - mean) ** 2))
                if self.training and self.track:
                    f = self.momentum
                    f = 1.0 / self.num_batches_tracked if f is None else f
                    self.running_mean[j] += f * (mean - self.running_mean[j])
                    self.running_var[j] += f * (var * n / (n - 1) - self.running_var[j])
            else:
                mean, var = self.running_mean[j], self.running_var[j]
            s = 1.0 / np.sqrt(var + self.eps)
            x_hat = (column - mean) * s
            g, b = (self.gamma[j], self.beta[j]) if self.affine else (1.0, 0.0)
            out[:, j] = g * x_hat + b
            self.saved.append((batch, x_hat, s, g))
        return out

    def backward(self, dout):
        dx = np.empty_like(dout)
        dgamma, dbeta = np.empty(self.d), np.empty(self.d)
        for j, (batch, x_hat, s, g) in enumerate(self.saved):
            d = dout[:, j] * g
            if batch:
                d = d - d.mean() - x_hat * np.mean(d * x_hat)
            dx[:, j] = d * s
            dgamma[j], dbeta[j] = dout[:, j] @ x_hat, dout[:, j].sum()
        if self.affine:
            self.dgamma, self.dbeta = dgamma, dbeta
        return dx


def known_wrong(mistake):
    return functools.partial(rs.KnownWrongBatchNorm1d, mistake)


# --- correct classes pass --------------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS + HIDDEN_CHECKS)
def test_an_independent_correct_class_passes_every_check(check, capsys):
    getattr(hidden_running_stats if check.endswith("_hidden") else rs, check)(LoopBatchNorm1d)
    out = capsys.readouterr().out
    assert "side by side with torch.nn.BatchNorm1d" in out and "— correct" in out


script_tokens = st.lists(
    st.sampled_from(["2", "3", "5", "train", "eval", "train(False)", "1"]), min_size=1, max_size=8
)


@given(
    tokens=script_tokens,
    seed=st.integers(0, 2**16),
    d=st.integers(1, 4),
    momentum=st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]),
    affine=st.booleans(),
    track=st.booleans(),
)
def test_any_scenario_agrees_with_pytorch_for_a_correct_class(
    tokens, seed, d, momentum, affine, track
):
    if not track:  # without running statistics a batch of one is an error in every mode
        tokens = [t for t in tokens if t != "1"]
    else:  # a batch of one is only legal in eval mode
        mode, kept = "training", []
        for t in tokens:
            mode = {"train": "training", "eval": "eval", "train(False)": "eval"}.get(t, mode)
            if t != "1" or mode == "eval":
                kept.append(t)
        tokens = kept
    scenario = rs.make_scenario(
        "random",
        seed,
        " ".join(tokens + ["1!"]),
        d,
        momentum=momentum,
        affine=affine,
        track_running_stats=track,
    )
    err, steps = rs.compare_scenario(LoopBatchNorm1d, scenario)
    assert err <= rs.TIGHT and steps == len(tokens) + 1


# --- every known mistake is caught and named -------------------------------------------------


@pytest.mark.parametrize("mistake", list(rs.MISTAKES))
def test_each_known_mistake_fails_a_hidden_check_that_names_it(mistake):
    messages = []
    for check in HIDDEN_CHECKS:
        try:
            getattr(hidden_running_stats if check.endswith("_hidden") else rs, check)(
                known_wrong(mistake)
            )
        except CheckFailure as failure:
            messages.append(str(failure))
    assert messages, f"{mistake} passed every hidden check"
    assert any(rs.MISTAKES[mistake] in m for m in messages), messages


@pytest.mark.parametrize(
    "mistake",
    [
        "biased_running_var",
        "keras_momentum",
        "counter_not_incremented",
        "running_var_starts_at_zero",
    ],
)
def test_mistakes_of_training_mode_fail_the_visible_training_check(mistake):
    with pytest.raises(CheckFailure, match="Likely mistake: it looks like"):
        rs.check_batchnorm1d_training(known_wrong(mistake))


@pytest.mark.parametrize(
    "mistake",
    ["eval_batch_stats", "update_in_eval", "counter_in_eval", "eval_backward_batch_formula"],
)
def test_mistakes_of_eval_mode_fail_only_once_eval_mode_is_checked(mistake):
    hidden_running_stats.check_batchnorm1d_training_hidden(known_wrong(mistake))
    with pytest.raises(CheckFailure) as info:
        rs.check_batchnorm1d_eval(known_wrong(mistake))
    assert rs.MISTAKES[mistake] in str(info.value)
    assert "eval mode" in str(info.value)  # the step label says where it went wrong


def test_a_layer_that_never_raises_on_a_batch_of_one_is_told_so():
    with pytest.raises(CheckFailure, match="must raise ValueError") as info:
        rs.check_batchnorm1d_batch_of_one(known_wrong("eval_batch_stats"))
    assert "returned normally" in str(info.value)


def test_known_wrong_layers_need_a_known_mistake():
    with pytest.raises(ValueError, match="unknown mistake"):
        rs.KnownWrongBatchNorm1d("none", 3)


# --- the PyTorch reference -------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_the_reference_backward_matches_finite_differences_of_its_forward(training):
    rng = np.random.default_rng(0)
    x, dout = rng.normal(2.0, 1.5, (5, 3)), rng.normal(size=(5, 3))
    layer = rs.TorchBatchNorm1d(3, momentum=0.3)
    layer.gamma, layer.beta = rng.uniform(0.5, 2.0, 3), rng.uniform(0.2, 1.0, 3)
    layer(rng.normal(size=(4, 3)))  # move the running statistics away from 0 and 1
    layer.train(training)
    layer.forward(x)
    dx = layer.backward(dout)
    numeric = numerical_gradient(lambda x_: layer.forward(x_), x.copy(), dout)
    assert relative_error(dx, numeric) < 1e-7


def test_the_reference_does_not_accumulate_parameter_gradients_across_steps():
    rng = np.random.default_rng(1)
    layer = rs.TorchBatchNorm1d(2)
    x, dout = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    layer.forward(x)
    layer.backward(dout)
    first = layer.dgamma.copy()
    layer.eval().train()
    layer.forward(x)
    layer.backward(dout)
    np.testing.assert_allclose(layer.dgamma, first, rtol=1e-12)


def test_the_reference_reports_none_where_pytorch_has_none():
    layer = rs.TorchBatchNorm1d(2, affine=False, track_running_stats=False)
    assert layer.gamma is None and layer.running_mean is None
    assert layer.num_batches_tracked is None
    layer.forward(np.arange(6.0).reshape(3, 2))
    layer.backward(np.ones((3, 2)))
    assert layer.dgamma is None and layer.dbeta is None


# --- the guard, errors and hygiene -----------------------------------------------------------


class TorchInBackward(LoopBatchNorm1d):
    def backward(self, dout):
        return super().backward(torch.tensor(dout).numpy())


class TensorBuffer(LoopBatchNorm1d):
    def __init__(self, num_features, **kwargs):
        super().__init__(num_features, **kwargs)
        self.running_mean = torch.zeros(num_features, dtype=torch.float64)


@pytest.mark.parametrize("cls", [TorchInBackward, TensorBuffer])
def test_using_torch_anywhere_in_the_class_gets_no_points(cls):
    with pytest.raises(TorchUsedError):
        rs.check_batchnorm1d_training(cls)


class RaisesInBackward(LoopBatchNorm1d):
    def backward(self, dout):
        raise KeyError("cache")


def test_an_exception_in_the_learners_class_names_the_step_and_method():
    with pytest.raises(CheckFailure, match=r"batch 1 .*backward\(dout\) raised KeyError"):
        rs.check_batchnorm1d_training(RaisesInBackward)


class Unfinished:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError()


def test_an_unfinished_exercise_is_pointed_out():
    with pytest.raises(CheckFailure, match="is the exercise filled in"):
        rs.check_batchnorm1d_training(Unfinished)


class DividesByZero(LoopBatchNorm1d):
    """Forgets the batch-of-one error and lets numpy divide by N - 1 = 0."""

    def forward(self, x):
        if x.shape[0] == 1 and self.training:
            return (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1))
        return super().forward(x)


def test_a_failing_check_writes_nothing_to_stderr_and_raises_no_warning(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckFailure, match="must raise ValueError"):
            rs.check_batchnorm1d_batch_of_one(DividesByZero)
    assert caught == [] and capfd.readouterr().err == ""


def test_a_batch_of_one_that_must_raise_is_the_last_step():
    with pytest.raises(ValueError, match="last step"):
        rs.make_scenario("bad", 0, "1! 3")


def test_scenarios_use_non_contiguous_x_and_gamma_beta_away_from_one_and_zero():
    strided = rs.make_scenario("s", 0, "3 4", layout="strided").steps[0].x
    transposed = rs.make_scenario("t", 0, "3 4", layout="transposed").steps[0].x
    assert not strided.flags.c_contiguous and not transposed.flags.c_contiguous
    for topic in rs.TOPICS:
        for scenario in hidden_running_stats.hidden_scenarios(topic) + rs.visible_scenarios(topic):
            if scenario.gamma is not None:
                assert np.all(np.abs(np.abs(scenario.gamma) - 1) > 1e-3)
                assert np.all(np.abs(scenario.beta) > 0.1)


def test_every_topic_has_visible_and_hidden_scenarios_covering_the_momenta():
    momenta = {
        s.options.get("momentum", 0.1)
        for t in rs.TOPICS
        for s in hidden_running_stats.hidden_scenarios(t)
    }
    assert {None, 0.0, 0.1, 1.0} <= momenta
    assert all(
        rs.visible_scenarios(t) and hidden_running_stats.hidden_scenarios(t) for t in rs.TOPICS
    )
