"""utils.nn: every layer's forward and backward, and the loss, against PyTorch in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from utils.diagnose import TIGHT
from utils.gradcheck import relative_error
from utils.nn import BatchNorm1d, Linear, Parameter, ReLU, minibatches, softmax_cross_entropy
from utils.reference import as_tensor, to_numpy

TOL = TIGHT  # float64 against torch; 1e-10 was flaky on all-but-zero outputs

sizes = st.integers(min_value=2, max_value=9)
seeds = st.integers(min_value=0, max_value=2**16)


def _close(a, b, tol: float = TOL) -> None:
    assert relative_error(a, b) < tol


def _random(seed: int, *shape: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    return offset + scale * np.random.default_rng(seed).standard_normal(shape)


@given(n=sizes, d_in=sizes, d_out=sizes, bias=st.booleans(), seed=seeds)
def test_linear_forward_and_backward_match_torch(n, d_in, d_out, bias, seed):
    layer = Linear(d_in, d_out, np.random.default_rng(seed), bias=bias)
    if bias:
        layer.bias.data = _random(seed + 1, d_out)
    x, dout = _random(seed + 2, n, d_in), _random(seed + 3, n, d_out)
    xt = as_tensor(x, requires_grad=True)
    wt = as_tensor(layer.weight.data.T, requires_grad=True)
    bt = as_tensor(layer.bias.data, requires_grad=True) if bias else None
    yt = F.linear(xt, wt, bt)
    yt.backward(as_tensor(dout))

    _close(layer(x), to_numpy(yt))
    _close(layer.backward(dout), to_numpy(xt.grad))
    _close(layer.weight.grad, to_numpy(wt.grad).T)
    if bias:
        _close(layer.bias.grad, to_numpy(bt.grad))
    assert len(layer.parameters()) == (2 if bias else 1)


def test_linear_draws_its_weight_by_the_fan_in_rule_from_the_given_rng():
    weights = [Linear(400, 300, np.random.default_rng(s), init_scale=0.7) for s in (0, 0, 1)]
    w = weights[0].weight.data
    assert w.shape == (400, 300)
    assert np.array_equal(w, weights[1].weight.data)
    assert not np.array_equal(w, weights[2].weight.data)
    assert abs(w.std() / (0.7 / np.sqrt(400)) - 1) < 0.01
    assert np.array_equal(weights[0].bias.data, np.zeros(300))
    assert Linear(3, 2, np.random.default_rng(0), bias=False).bias is None


def test_only_the_weight_consumes_random_numbers():
    rng = np.random.default_rng(5)
    Linear(3, 4, rng, bias=True)
    with_bias_next = rng.standard_normal()
    rng = np.random.default_rng(5)
    Linear(3, 4, rng, bias=False)
    assert rng.standard_normal() == with_bias_next


@given(n=sizes, d=sizes, seed=seeds)
def test_relu_matches_torch(n, d, seed):
    x, dout = _random(seed, n, d), _random(seed + 1, n, d)
    xt = as_tensor(x, requires_grad=True)
    yt = F.relu(xt)
    yt.backward(as_tensor(dout))
    layer = ReLU()
    _close(layer(x), to_numpy(yt))
    _close(layer.backward(dout), to_numpy(xt.grad))
    assert layer.parameters() == []


def _torch_bn(layer: BatchNorm1d) -> torch.nn.BatchNorm1d:
    module = torch.nn.BatchNorm1d(layer.num_features, layer.eps, layer.momentum).double()
    with torch.no_grad():
        module.weight.copy_(as_tensor(layer.gamma.data))
        module.bias.copy_(as_tensor(layer.beta.data))
        module.running_mean.copy_(as_tensor(layer.running_mean))
        module.running_var.copy_(as_tensor(layer.running_var))
    return module


def _bn_with_random_parameters(d: int, seed: int) -> BatchNorm1d:
    layer = BatchNorm1d(d)
    rng = np.random.default_rng(seed)
    layer.gamma.data = rng.uniform(0.5, 2.0, d)
    layer.beta.data = rng.uniform(-1.0, 1.0, d)
    layer.running_mean = rng.uniform(-1.0, 1.0, d)
    layer.running_var = rng.uniform(0.5, 2.0, d)
    return layer


@given(n=sizes, d=sizes, training=st.booleans(), seed=seeds)
def test_batchnorm_matches_torch_in_both_modes(n, d, training, seed):
    layer = _bn_with_random_parameters(d, seed).train(training)
    module = _torch_bn(layer).train(training)
    x, dout = _random(seed + 1, n, d, scale=3.0, offset=2.0), _random(seed + 2, n, d)
    xt = as_tensor(x, requires_grad=True)
    yt = module(xt)
    yt.backward(as_tensor(dout))

    _close(layer(x), to_numpy(yt))
    _close(layer.backward(dout), to_numpy(xt.grad), TIGHT)
    _close(layer.gamma.grad, to_numpy(module.weight.grad), TIGHT)
    _close(layer.beta.grad, to_numpy(module.bias.grad))
    _close(layer.running_mean, to_numpy(module.running_mean))
    _close(layer.running_var, to_numpy(module.running_var))


def test_batchnorm_running_statistics_follow_torch_over_many_batches():
    layer = BatchNorm1d(3, momentum=0.3)
    module = _torch_bn(layer)
    for seed in range(6):
        x = _random(seed, 2 + seed, 3, scale=2.0, offset=float(seed))
        layer(x)
        module(as_tensor(x))
    _close(layer.running_mean, to_numpy(module.running_mean))
    _close(layer.running_var, to_numpy(module.running_var))


def test_batchnorm_refuses_one_sample_in_training_but_not_in_eval():
    layer = BatchNorm1d(4)
    with pytest.raises(ValueError, match="more than one sample"):
        layer(np.ones((1, 4)))
    assert layer.eval()(np.ones((1, 4))).shape == (1, 4)


def test_train_and_eval_switch_the_mode_and_return_the_layer():
    for layer in (Linear(2, 2, np.random.default_rng(0)), ReLU(), BatchNorm1d(2)):
        assert layer.training
        assert layer.eval() is layer and not layer.training
        assert layer.train() is layer and layer.training
        assert not layer.train(False).training


@given(n=sizes, c=sizes, seed=seeds, scale=st.sampled_from([1.0, 50.0, 1e3]))
def test_softmax_cross_entropy_matches_torch_even_for_huge_logits(n, c, seed, scale):
    logits = _random(seed, n, c, scale=scale)
    y = np.random.default_rng(seed + 1).integers(0, c, n)
    lt = as_tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(lt, torch.tensor(y))
    loss_t.backward()
    loss, dlogits = softmax_cross_entropy(logits, y)
    assert isinstance(loss, float)
    assert abs(loss - loss_t.item()) <= TOL * max(1.0, abs(loss))
    _close(dlogits, to_numpy(lt.grad))


def test_a_parameter_holds_a_float_copy_and_a_zero_gradient():
    source = np.array([1, 2, 3])
    p = Parameter(source)
    assert p.data.dtype == np.float64 and p.data is not source
    assert np.array_equal(p.grad, np.zeros(3))


@given(n=st.integers(2, 200), batch_size=st.integers(1, 50), seed=seeds)
def test_minibatches_cut_a_permutation_into_equal_batches(n, batch_size, seed):
    if batch_size > n:
        with pytest.raises(ValueError):
            minibatches(n, batch_size, np.random.default_rng(seed))
        return
    batches = minibatches(n, batch_size, np.random.default_rng(seed))
    assert len(batches) == n // batch_size
    assert all(len(b) == batch_size for b in batches)
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == len(seen) and seen.min() >= 0 and seen.max() < n


def test_minibatches_depend_on_the_generator():
    first = minibatches(100, 10, np.random.default_rng(0))
    again = minibatches(100, 10, np.random.default_rng(0))
    other = minibatches(100, 10, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


# --- describe() and from_description(): a layer as plain data and back -----------------------


def _plain(value) -> bool:
    """Whether ``value`` is what the checker's channel carries as data (no objects)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or type(value) in (bool, int, float, str, np.ndarray)


@given(bias=st.booleans(), training=st.booleans(), seed=seeds)
def test_a_linear_rebuilt_from_its_description_is_the_same_layer(bias, training, seed):
    layer = Linear(3, 4, np.random.default_rng(seed), bias=bias).train(training)
    if bias:
        layer.bias.data = _random(seed, 4)
    described = layer.describe()
    assert _plain(described) and described["kind"] == "Linear"
    copy = Linear.from_description(described)
    assert copy.training == training and (copy.bias is None) == (not bias)
    x = _random(seed + 1, 5, 3)
    assert np.array_equal(copy(x), layer(x))


@given(training=st.booleans(), seed=seeds)
def test_a_batchnorm_rebuilt_from_its_description_is_the_same_layer(training, seed):
    layer = _bn_with_random_parameters(3, seed).train(training)
    layer.eps, layer.momentum = 1e-3, 0.3
    described = layer.describe()
    assert _plain(described) and described["kind"] == "BatchNorm1d"
    copy = BatchNorm1d.from_description(described)
    x = _random(seed + 1, 5, 3)
    assert np.array_equal(copy(x), layer(x))
    assert np.array_equal(copy.running_var, layer.running_var)
    assert (copy.eps, copy.momentum, copy.training) == (1e-3, 0.3, training)


def test_a_description_is_a_copy_and_so_is_a_rebuilt_layer():
    layer = _bn_with_random_parameters(2, 0)
    described = layer.describe()
    described["gamma"][0] = 100.0
    assert layer.gamma.data[0] != 100.0
    copy = BatchNorm1d.from_description(described)
    described["running_mean"][0] = 100.0
    assert copy.running_mean[0] != 100.0
    assert ReLU.from_description(ReLU().eval().describe()).training is False
