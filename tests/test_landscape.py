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
    SCALE_LAYERS,
    NoisyBatchNorm1d,
    batch_loss,
    gradient_norm,
    hook_count,
    ics_model,
    landscape_model,
    linear_bn,
    linear_layers,
    linear_only,
    loglog_slope,
    make_mlp,
    plot_band,
    plot_scale_law,
    resample_noise,
    restore_running_statistics,
    run_on_case,
    running_statistics,
    scale_inputs,
    sgd_step,
    shift_model,
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
        seen.append(loss_fn().item())
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
    assert weights[0].std().item() == pytest.approx(1.0 / 20.0, rel=0.02)
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


# --- the checks' cases, built from plain data ---------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["quadratic", "saddle", "least squares", "mlp", "mlp with BatchNorm"]
)
def test_a_landscape_case_rebuilds_identically_and_its_loss_needs_no_argument(kind):
    (first, loss), (second, _) = landscape_model(kind, 4, 3), landscape_model(kind, 4, 3)
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q) and p.dtype == torch.float64
    assert loss().ndim == 0


def test_the_shift_and_ics_cases_hand_over_their_module_in_the_mode_asked():
    model, layer, x, update = shift_model("bn", 3, seed=7, n=10, eval_mode=True)
    assert not model.training and layer is model[3] and x.shape == (10, 6)
    before = [p.detach().clone() for p in model.parameters()]
    update()
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    deep, loss_fn = ics_model("deep linear", seed=0)
    assert [m.weight.shape for m in deep] == [(5, 4), (3, 5), (2, 3)] and loss_fn().ndim == 0


def test_run_on_case_reports_plain_data_of_what_the_call_left():
    def careless(model, loss_fn, step_sizes):
        model.eval()
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return torch.tensor(step_sizes)

    seen = run_on_case(
        careless, "landscape", {"kind": "mlp", "dim": 3, "step_sizes": (0.1,), "seed": 0}
    )
    fresh, _ = landscape_model("mlp", 3, 0)
    assert seen["training"] is False and seen["ids_before"] == seen["ids_after"]
    assert all(isinstance(v, np.ndarray) for v in seen["parameters"])
    moved = seen["parameters"][0] - next(fresh.parameters()).detach().numpy()
    np.testing.assert_allclose(moved, 1.0)


def test_run_on_case_counts_the_updates_and_hooks_and_reports_an_error():
    def hooked(model, layer, x, update):
        layer.register_forward_pre_hook(lambda m, i: None)
        with torch.no_grad():
            update()
        raise ValueError("boom")

    seen = run_on_case(hooked, "shift", {"kind": "additive", "layer": 1, "seed": 0})
    assert seen["error"] == "ValueError: boom" and seen["result"] is None
    assert seen["hooks_during"] == [1] and seen["grad_during"] == [False]
    assert seen["hooks_after"] == 1 and seen["training_after"] is True


def test_run_on_case_hands_the_scale_layers_fresh_inputs_and_reports_them_after():
    def doubles(layer, weight, x, alphas, upstream):
        weight.mul_(2.0)
        return [float(layer(x, weight).norm())] * len(alphas)

    case = {"layer_name": "Linear without BatchNorm", "n": 4, "d_in": 3, "d_out": 2,
            "alphas": (1.0, 2.0), "seed": 5, "upstream": True}  # fmt: skip
    seen = run_on_case(doubles, "scale", case)
    weight, x, _ = scale_inputs(5, 4, 3, 2)
    np.testing.assert_array_equal(seen["weight"], 2 * weight.numpy())
    np.testing.assert_array_equal(seen["x"], x.numpy())
    assert SCALE_LAYERS["Linear without BatchNorm"] is linear_only
    assert hook_count(make_mlp((3, 2, 2), "bn")) == 0
    with pytest.raises(ValueError, match="unknown problem"):
        run_on_case(doubles, "elsewhere", {})
