"""utils.training: steps to a target accuracy, the best learning rate, and how they print."""

from __future__ import annotations

import numpy as np
import pytest

from utils.data import load_digits_split
from utils.nn import Linear, minibatches, softmax_cross_entropy
from utils.training import best_learning_rate, describe_steps, gradient_flow, steps_to_accuracy


def _train_step(layers, x, y, lr):
    out = x
    for layer in layers:
        out = layer(out)
    loss, grad = softmax_cross_entropy(out, y)
    for layer in reversed(layers):
        grad = layer.backward(grad)
    for layer in layers:
        for p in layer.parameters():
            p.data -= lr * p.grad
    return loss


def _accuracy(layers, x, y):
    out = x
    for layer in layers:
        out = layer(out)
    return float(np.mean(out.argmax(axis=1) == y))


@pytest.fixture(scope="module")
def data():
    return load_digits_split()


def _linear(seed=0):
    return [Linear(64, 10, np.random.default_rng(seed), init_scale=1.0)]


def test_steps_to_accuracy_stops_at_the_first_check_that_reaches_the_target(data):
    steps = steps_to_accuracy(
        _linear(), _train_step, _accuracy, data, 0.1, target=0.9, max_steps=300, eval_every=3
    )
    assert np.isfinite(steps) and steps % 3 == 0
    # replaying the same run by hand: the target is reached at that step and not 3 steps before
    layers, rng, accs = _linear(), np.random.default_rng(0), {}
    step = 0
    while step < steps:
        for idx in minibatches(len(data.x_train), 64, rng):
            _train_step(layers, data.x_train[idx], data.y_train[idx], 0.1)
            step += 1
            if step % 3 == 0:
                accs[step] = _accuracy(layers, data.x_test, data.y_test)
            if step == steps:
                break
    assert accs[steps] >= 0.9 and all(a < 0.9 for s, a in accs.items() if s < steps)


def test_steps_to_accuracy_is_inf_when_out_of_steps_or_diverged(data):
    kwargs = dict(target=0.9, max_steps=6, eval_every=3)
    assert steps_to_accuracy(_linear(), _train_step, _accuracy, data, 1e-6, **kwargs) == np.inf
    with np.errstate(all="ignore"):
        huge = steps_to_accuracy(_linear(), _train_step, _accuracy, data, 1e300, **kwargs)
    assert huge == np.inf


def test_steps_to_accuracy_is_fixed_by_the_seed(data):
    def run(seed):
        return steps_to_accuracy(
            _linear(), _train_step, _accuracy, data, 0.05, target=0.85, max_steps=200, seed=seed
        )

    assert run(1) == run(1)


def test_best_learning_rate_takes_the_smallest_median_and_breaks_ties_low():
    steps = np.array([[50, 60, 70], [np.inf, 20, 30], [30, 30, np.inf]])
    lr, seeds = best_learning_rate([0.1, 0.3, 1.0], steps)
    assert lr == 0.3 and list(seeds) == [np.inf, 20, 30]
    assert best_learning_rate([1, 2], np.array([[5, 5], [5, 5]]))[0] == 1
    with pytest.raises(ValueError):
        best_learning_rate([0.1, 0.3], steps)


def test_describe_steps_names_the_median_the_range_and_what_was_not_reached():
    assert describe_steps([36, 45, 42]) == "median 42 (range 36-45)"
    assert describe_steps([10, 20, np.inf]) == "median 20 (range 10-not reached)"
    assert describe_steps([np.inf] * 3) == "not reached in any seed"


def test_gradient_flow_records_each_weights_gradient_and_relative_update(data):
    layers = [Linear(64, 16, np.random.default_rng(0)), Linear(16, 10, np.random.default_rng(1))]
    start = [layer.weight.data.copy() for layer in layers]
    flow = gradient_flow(layers, _train_step, data, 0.05, steps=3, batch_size=32)
    assert flow["grad_norm"].shape == flow["update_ratio"].shape == (3, 2)
    # replay: the first step's gradient and update, from the same weights and batch
    replay = [Linear(64, 16, np.random.default_rng(0)), Linear(16, 10, np.random.default_rng(1))]
    idx = minibatches(len(data.x_train), 32, np.random.default_rng(0))[0]
    _train_step(replay, data.x_train[idx], data.y_train[idx], 0.05)
    for j, layer in enumerate(replay):
        grad = np.linalg.norm(layer.weight.grad)
        assert flow["grad_norm"][0, j] == pytest.approx(grad, rel=1e-12)
        ratio = 0.05 * grad / np.linalg.norm(start[j])
        assert flow["update_ratio"][0, j] == pytest.approx(ratio, rel=1e-9)


def test_gradient_flow_leaves_nan_after_a_diverged_step(data):
    losses = iter([1.0, np.nan, 1.0, 1.0])

    def diverging_step(layers, x, y, lr):
        _train_step(layers, x, y, lr)
        return next(losses)

    flow = gradient_flow(_linear(), diverging_step, data, 0.1, steps=4)
    assert np.isfinite(flow["grad_norm"][0]).all() and np.isnan(flow["grad_norm"][1:]).all()
