"""utils.landscape: the layers, networks, training loop and plots lesson 08 builds on."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from utils.data import DigitsSplit
from utils.landscape import (
    NORMS,
    NoisyBatchNorm1d,
    batch_loss,
    gradient_norm,
    linear_bn,
    linear_layers,
    linear_only,
    loglog_slope,
    make_mlp,
    plot_band,
    plot_scale_law,
    resample_noise,
    restore_running_statistics,
    running_statistics,
    sgd_step,
    train,
)


def _tensor(shape, seed):
    return torch.tensor(np.random.default_rng(seed).standard_normal(shape))


def test_linear_bn_is_batch_norm_of_the_linear_output():
    x, w = _tensor((8, 5), 0), _tensor((3, 5), 1)
    expected = F.batch_norm(x @ w.T, None, None, training=True, eps=1e-3)
    torch.testing.assert_close(linear_bn(x, w, eps=1e-3), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(linear_only(x, w), x @ w.T)


@given(st.floats(0.01, 100.0), st.integers(2, 20), st.integers(0, 1000))
def test_linear_bn_without_eps_ignores_the_scale_of_the_weight(alpha, n, seed):
    x, w = _tensor((n, 4), seed), _tensor((3, 4), seed + 1)
    torch.testing.assert_close(linear_bn(x, alpha * w), linear_bn(x, w), rtol=0, atol=1e-9)


@pytest.mark.parametrize("norm", NORMS)
def test_make_mlp_layer_order_and_biases(norm):
    model = make_mlp((6, 5, 4, 3), norm, seed=0)
    kinds = [type(m) for m in model]
    middle = {"none": [], "bn": [nn.BatchNorm1d], "noisy": [NoisyBatchNorm1d]}[norm]
    assert kinds == ([nn.Linear, *middle, nn.ReLU] * 2) + [nn.Linear]
    linears = linear_layers(model)
    assert [layer.bias is None for layer in linears] == [norm != "none"] * 2 + [False]
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_make_mlp_uses_the_same_weights_for_every_norm_and_the_fan_in_rule():
    weights = {
        norm: [layer.weight for layer in linear_layers(make_mlp((400, 300, 10), norm, 3))]
        for norm in NORMS
    }
    for norm in ("bn", "noisy"):
        for a, b in zip(weights["none"], weights[norm], strict=True):
            assert torch.equal(a, b)
    assert float(weights["none"][0].detach().std()) == pytest.approx(np.sqrt(2 / 400), rel=0.02)


def test_make_mlp_rejects_an_unknown_norm():
    with pytest.raises(ValueError, match="norm must be one of"):
        make_mlp((3, 2), "layer")


def test_noisy_batchnorm_adds_a_per_unit_noise_in_training_only():
    layer = NoisyBatchNorm1d(4).double()
    plain = nn.BatchNorm1d(4).double()
    x = _tensor((10, 4), 0)
    torch.testing.assert_close(layer(x), plain(x))  # identity noise before the first draw
    layer.resample(np.random.default_rng(0))
    normalized = F.batch_norm(x, None, None, training=True)
    expected = normalized * layer.noise_scale + layer.noise_shift
    torch.testing.assert_close(layer(x), expected)
    first = layer.noise_shift.clone()
    layer.resample(np.random.default_rng(1))
    assert not torch.equal(first, layer.noise_shift)
    layer.eval()
    without_noise = F.batch_norm(x, layer.running_mean, layer.running_var, training=False)
    torch.testing.assert_close(layer(x), without_noise)


def test_resample_noise_reaches_every_noisy_layer():
    model = make_mlp((4, 5, 5, 2), "noisy")
    resample_noise(model, np.random.default_rng(0))
    noisy = [m for m in model if isinstance(m, NoisyBatchNorm1d)]
    assert len(noisy) == 2 and all(not torch.all(m.noise_shift == 0) for m in noisy)


def test_sgd_step_returns_the_loss_before_the_update_and_steps_every_parameter():
    model = make_mlp((4, 6, 3), "bn", seed=1)
    x, y = _tensor((8, 4), 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss_fn = batch_loss(model, x, y)
    before = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(loss_fn(), list(model.parameters()))
    expected_loss = F.cross_entropy(model(x), y).item()
    assert sgd_step(model, loss_fn, 0.3) == pytest.approx(expected_loss, rel=1e-12)
    for p, w, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), w - 0.3 * g)


def test_gradient_norm_leaves_grad_alone():
    model = make_mlp((4, 6, 3), "none", seed=1)
    loss_fn = batch_loss(model, _tensor((8, 4), 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    grads = torch.autograd.grad(loss_fn(), list(model.parameters()))
    expected = float(torch.sqrt(sum((g**2).sum() for g in grads)))
    assert gradient_norm(model, loss_fn) == pytest.approx(expected, rel=1e-12)
    first = linear_layers(model)[0].weight
    assert gradient_norm(model, loss_fn, [first]) == pytest.approx(float(grads[0].norm()))
    assert all(p.grad is None for p in model.parameters())


def _tiny_digits() -> DigitsSplit:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    y = (x[:, 0] > 0).astype(np.int64)
    return DigitsSplit(x, y, x[:10], y[:10], np.zeros(6), np.ones(6))


def test_train_probes_the_announced_steps_and_steps_once_each():
    seen = []

    def probe(model, loss_fn, update):
        seen.append(float(loss_fn()))
        update()
        return len(seen)

    run = train(make_mlp((6, 5, 2), "noisy"), _tiny_digits(), steps=7, lr=0.1, batch_size=8,
                probe_every=3, probe=probe)  # fmt: skip
    assert run.probe_steps == [0, 3, 6] and run.probes == [1, 2, 3]
    assert len(run.losses) == 7 and 0.0 <= run.test_accuracy <= 1.0
    assert run.losses[0] == pytest.approx(seen[0], rel=1e-12)  # measured before the step


@pytest.mark.parametrize("norm", ["bn", "noisy"])
def test_probes_leave_the_running_statistics_and_the_run_as_without_them(norm):
    def meddling_probe(model, loss_fn, update):
        # training-mode forwards at moved weights, before and after the step, as the
        # lesson's learning-rate probes do; each updates the running statistics
        params = list(model.parameters())
        start = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p.add_(3.0)
            loss_fn()
            for p, w in zip(params, start, strict=True):
                p.copy_(w)
        update()
        with torch.no_grad():
            model(torch.full((8, 6), 50.0, dtype=torch.float64))

    runs, stats = [], []
    for probe in (None, meddling_probe):
        model = make_mlp((6, 5, 5, 2), norm, seed=3)
        runs.append(train(model, _tiny_digits(), steps=7, lr=0.1, batch_size=8, probe_every=2,
                          probe=probe, seed=4))  # fmt: skip
        stats.append(running_statistics(model))
    assert runs[0].losses == runs[1].losses
    assert runs[0].test_accuracy == runs[1].test_accuracy
    assert all(torch.equal(a, b) for a, b in zip(*stats, strict=True))
    assert int(stats[1][2]) == 7  # num_batches_tracked: the 7 training steps, no probe pass


def test_running_statistics_round_trip():
    model = make_mlp((6, 5, 5, 2), "bn", seed=0)
    saved = running_statistics(model)
    assert len(saved) == 6  # two BatchNorm layers: mean, var, count each
    with torch.no_grad():
        model(_tensor((8, 6), 1))
    assert not torch.equal(saved[0], running_statistics(model)[0])
    restore_running_statistics(model, saved)
    assert all(torch.equal(a, b) for a, b in zip(saved, running_statistics(model), strict=True))


def test_make_mlp_init_scale_sets_the_weight_std():
    weights = [make_mlp((400, 300, 2), "none", seed=0, init_scale=s)[0].weight for s in (1.0, 2.0)]
    assert float(weights[0].std()) == pytest.approx(1.0 / 20.0, rel=0.02)
    assert torch.allclose(weights[1], 2.0 * weights[0])


def test_train_refuses_a_probe_that_does_not_step():
    with pytest.raises(RuntimeError, match="called update\\(\\) 0 times"):
        train(make_mlp((6, 5, 2), "bn"), _tiny_digits(), steps=2, lr=0.1, batch_size=8,
              probe_every=1, probe=lambda model, loss_fn, update: None)  # fmt: skip


def test_training_reduces_the_loss():
    run = train(make_mlp((6, 8, 2), "bn"), _tiny_digits(), steps=60, lr=0.2, batch_size=16)
    assert np.mean(run.losses[-10:]) < 0.5 * np.mean(run.losses[:10])


@given(st.floats(-3.0, 3.0), st.floats(0.1, 10.0))
def test_loglog_slope_recovers_a_power_law(power, factor):
    xs = np.logspace(-2, 2, 7)
    assert loglog_slope(xs, factor * xs**power) == pytest.approx(power, abs=1e-9)


def test_plots_draw_bands_and_the_reference_line():
    fig, ax = plt.subplots()
    plot_band(ax, [0, 5, 10], np.array([[1.0, 2.0], [0.5, 3.0], [0.2, 0.4]]), "bn")
    alphas = np.logspace(-1, 1, 5)
    plot_scale_law(ax, alphas, 2.0 / alphas, "law")
    dotted = ax.lines[-1]
    np.testing.assert_allclose(dotted.get_ydata(), 2.0 / alphas)
    assert len(ax.collections) == 1
    plt.close(fig)
