"""utils.plots: every helper returns a Figure with the right number of axes and closes cleanly."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure

from utils.plots import (
    activation_histograms,
    before_after_histograms,
    gradient_flow_plot,
    layer_statistic_plot,
    steps_to_target_plot,
)


@pytest.fixture(autouse=True)
def no_figures_left_behind():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a test left a figure open"


def _renders(fig: Figure) -> bool:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue().startswith(b"\x89PNG")


@given(layers=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_activation_histograms_draws_one_panel_per_layer(layers, seed):
    rng = np.random.default_rng(seed)
    activations = [rng.normal(size=(8, 5)) * 10.0**-k for k in range(layers)]
    fig = activation_histograms(activations, suptitle="a title")
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == layers
        assert [ax.get_title().split("\n")[0] for ax in fig.axes] == [
            f"layer {i + 1}" for i in range(layers)
        ]
    finally:
        plt.close(fig)


def test_activation_histograms_titles_state_the_std():
    a = np.array([[-1.0, 1.0], [-1.0, 1.0]])
    fig = activation_histograms([a])
    assert fig.axes[0].get_title() == "layer 1\nstd 1"
    plt.close(fig)


def test_activation_histograms_common_range_and_custom_titles():
    acts = [np.linspace(-0.5, 0.5, 20), np.linspace(-1, 1, 20)]
    fig = activation_histograms(acts, titles=["a", "b"], value_range=(-1.0, 1.0))
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    for ax in fig.axes:
        left, right = ax.get_xlim()
        assert left <= -1.0 and right >= 1.0
    assert _renders(fig)
    plt.close(fig)


def test_activation_histograms_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one layer"):
        activation_histograms([])
    with pytest.raises(ValueError, match="2 titles for 1 layers"):
        activation_histograms([np.zeros(3)], titles=["a", "b"])
    assert plt.get_fignums() == []


def test_activation_histograms_survives_a_constant_layer():
    fig = activation_histograms([np.zeros((4, 3)), np.ones((4, 3))])
    assert _renders(fig)
    plt.close(fig)


def test_layer_statistic_plot_draws_one_line_per_series():
    series = {"a": [1.0, 0.5, 0.25], "b": [1.0, 2.0, 4.0, 8.0]}
    fig = layer_statistic_plot(series, ylabel="std", title="t", logy=True, reference=1.0)
    (ax,) = fig.axes
    data_lines = [line for line in ax.get_lines() if line.get_linestyle() != "--"]
    assert [list(line.get_xdata()) for line in data_lines] == [[1, 2, 3], [1, 2, 3, 4]]
    assert list(data_lines[1].get_ydata()) == [1.0, 2.0, 4.0, 8.0]
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "std" and ax.get_title() == "t"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert _renders(fig)
    plt.close(fig)


def test_layer_statistic_plot_draws_into_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    returned = layer_statistic_plot({"x": [0.1, 0.2]}, ylabel="fraction", ax=axes[1])
    assert returned is fig
    assert len(axes[1].get_lines()) == 1 and len(axes[0].get_lines()) == 0
    assert len(plt.get_fignums()) == 1
    plt.close(fig)


def test_layer_statistic_plot_needs_a_series():
    with pytest.raises(ValueError, match="at least one series"):
        layer_statistic_plot({}, ylabel="std")


def test_before_after_histograms_draws_two_panels_with_their_statistics():
    before = np.array([1.0, 3.0])
    after = np.array([-1.0, 1.0])
    fig = before_after_histograms(before, after, labels=("raw", "normalized"), title="t")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "raw\nmean 2, std 1"
    assert fig.axes[1].get_title() == "normalized\nmean 0, std 1"
    assert fig.get_suptitle() == "t"
    assert _renders(fig)
    plt.close(fig)


def test_steps_to_target_plot_draws_the_sweep_and_the_two_comparisons():
    steps = {
        "without BN": np.array([[120, 170, 160], [100, 150, np.inf], [np.inf] * 3]),
        "with BN": np.array([[45, 36, 42], [21, 27, 24], [33, 24, 27]]),
    }
    fig = steps_to_target_plot([0.1, 0.3, 1.0], steps, target=0.9, max_steps=300, same_lr=0.1)
    left, right = fig.axes
    assert len(left.get_lines()) >= 2 and len(right.patches) == 4  # a bar per network and pair
    labels = [t.get_text() for t in right.texts]
    assert labels.count("lr 0.1") == 2 and "lr 0.3" in labels
    assert _renders(fig)
    plt.close(fig)


def test_steps_to_target_plot_rejects_bad_input():
    with pytest.raises(ValueError):
        steps_to_target_plot([0.1], {}, target=0.9, max_steps=10, same_lr=0.1)
    with pytest.raises(ValueError):
        steps_to_target_plot(
            [0.1, 1.0], {"a": np.ones((3, 2))}, target=0.9, max_steps=10, same_lr=0.1
        )


def test_gradient_flow_plot_draws_a_line_per_layer_and_two_panels_per_network():
    rng = np.random.default_rng(0)
    flow = {
        "grad_norm": rng.uniform(0.1, 1, (20, 3)),
        "update_ratio": rng.uniform(1e-4, 1e-2, (20, 3)),
    }
    fig = gradient_flow_plot({"a": flow, "b": flow})
    assert len(fig.axes) == 4
    assert len(fig.axes[0].get_lines()) == 3 and len(fig.axes[1].get_lines()) == 4  # + 1e-3 line
    assert _renders(fig)
    plt.close(fig)
    with pytest.raises(ValueError):
        gradient_flow_plot({})
