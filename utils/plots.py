"""Small matplotlib helpers the lessons draw with.

Each helper draws one kind of figure through pyplot (so Jupyter's inline backend shows it at
the end of the cell) and returns the ``Figure``; a caller that is done with it may
``plt.close(fig)``. Helpers that accept ``ax`` draw into an existing axes instead, which lets
a notebook combine panels or redraw inside an ipywidgets callback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def activation_histograms(
    activations: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    bins: int = 40,
    value_range: tuple[float, float] | None = None,
    suptitle: str | None = None,
    panel_width: float = 1.6,
) -> Figure:
    """One small histogram per layer, in a row: how the distribution changes with depth.

    activations: L arrays of any shape (all entries of a layer are pooled into one histogram).
    titles: L panel titles (default "layer 1" ... "layer L", with the std of the layer).
    value_range: a common x range for every panel (e.g. (-1, 1) for tanh); None lets each
    panel fit its own data, so a layer whose values shrank is still visible.
    Returns the Figure, with L axes. Raises ValueError for an empty list or a title count
    that differs from L.
    """
    if len(activations) == 0:
        raise ValueError("activation_histograms needs at least one layer")
    if titles is not None and len(titles) != len(activations):
        raise ValueError(f"{len(titles)} titles for {len(activations)} layers")
    count = len(activations)
    # A fixed layout rather than "constrained": it renders twice as fast, which matters for
    # a lesson that draws several of these rows.
    fig, axes = plt.subplots(1, count, figsize=(panel_width * count + 0.6, 2.2), squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.15, top=0.68, wspace=0.12)
    for i, (ax, values) in enumerate(zip(axes[0], activations, strict=True)):
        values = np.asarray(values, dtype=np.float64).ravel()
        ax.hist(values, bins=bins, range=value_range, density=True, color="tab:blue")
        ax.set_title(
            titles[i] if titles is not None else f"layer {i + 1}\nstd {values.std():.2g}",
            fontsize=8,
        )
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def layer_statistic_plot(
    series: Mapping[str, Sequence[float]],
    *,
    ylabel: str,
    title: str | None = None,
    logy: bool = False,
    reference: float | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A line per series of one per-layer statistic against the layer number (1 ... L).

    series: {legend label: L values}; series may differ in length. logy: a log y axis (for a
    std that vanishes or explodes). reference: a dashed horizontal line (e.g. the input's std).
    ax: draw into this axes instead of a new figure. Returns the Figure drawn into.
    Raises ValueError for no series.
    """
    if not series:
        raise ValueError("layer_statistic_plot needs at least one series")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.2), layout="constrained")
    for label, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        ax.plot(np.arange(1, values.size + 1), values, marker="o", markersize=3, label=label)
    if reference is not None:
        ax.axhline(reference, color="gray", linestyle="--", linewidth=1)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return ax.figure


def before_after_histograms(
    before: np.ndarray,
    after: np.ndarray,
    *,
    labels: tuple[str, str] = ("before", "after"),
    bins: int = 40,
    title: str | None = None,
) -> Figure:
    """Two histograms side by side: the same quantity before and after a transformation.

    before, after: arrays of any shape (all entries pooled). Each panel's title gives the
    label, the mean and the std, so a learner can read the change off the figure.
    Returns the Figure, with 2 axes.
    """
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.8), layout="constrained")
    for ax, values, label in zip(axes, (before, after), labels, strict=True):
        values = np.asarray(values, dtype=np.float64).ravel()
        ax.hist(values, bins=bins, density=True, color="tab:blue")
        ax.set_title(f"{label}\nmean {values.mean():.3g}, std {values.std():.3g}", fontsize=9)
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def steps_to_target_plot(
    lrs: Sequence[float],
    steps: Mapping[str, np.ndarray],
    *,
    target: float,
    max_steps: int,
    same_lr: float,
) -> Figure:
    """Steps to a target accuracy, per seed, against the learning rate (left), and at one
    shared learning rate and at each network's best learning rate (right).

    lrs: K learning rates; steps: {legend label: (K, S) step counts, ``np.inf`` where the
    target was not reached within max_steps}. Left: one dot per seed, a line through the
    medians; runs that never got there are drawn as crosses above the dashed max_steps line.
    Right: for ``same_lr`` and for each series' best learning rate (smallest median), a bar at
    the median, whiskers from the fastest to the slowest seed, dots for the seeds.
    Returns the Figure, with 2 axes. Raises ValueError for no series or a shape mismatch.
    """
    # imported here, not at the top: lesson 01's grading kernel may read utils.plots but not
    # utils.training (grader.policy)
    from utils.training import best_learning_rate

    if not steps:
        raise ValueError("steps_to_target_plot needs at least one series")
    lrs = np.asarray(lrs, dtype=np.float64)
    steps = {label: np.asarray(values, dtype=np.float64) for label, values in steps.items()}
    for label, values in steps.items():
        if values.ndim != 2 or values.shape[0] != lrs.size:
            raise ValueError(f"{label}: steps {values.shape} for {lrs.size} learning rates")
    ceiling = max_steps * 1.2
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.4), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / len(steps)
    for i, (label, values) in enumerate(steps.items()):
        color = colors[i % len(colors)]
        reached = np.isfinite(values)
        offsets = np.arange(values.shape[1]) - (values.shape[1] - 1) / 2
        jitter = lrs[:, None] * np.exp(0.04 * offsets)  # seeds side by side on the log axis
        left.scatter(jitter[reached], values[reached], color=color, s=14, alpha=0.7)
        left.scatter(jitter[~reached], np.full((~reached).sum(), ceiling), color=color, marker="x")
        medians = np.median(values, axis=1)
        finite = np.isfinite(medians)
        left.plot(lrs[finite], medians[finite], color=color, marker="o", label=label)
        for j, lr in enumerate((same_lr, best_learning_rate(lrs, values)[0])):
            seeds = values[int(np.argmin(np.abs(lrs - lr)))]
            x = j + (i - (len(steps) - 1) / 2) * width
            shown = np.where(np.isfinite(seeds), seeds, ceiling)
            median = np.median(shown)
            right.bar(
                x, median, width * 0.9, color=color, alpha=0.5, label=label if j == 0 else None
            )
            right.errorbar(x, median, [[median - shown.min()], [shown.max() - median]], color=color)
            right.scatter(np.full(shown.size, x), shown, color=color, s=12, zorder=3)
            right.annotate(f"lr {lr:g}", (x, shown.max()), ha="center", va="bottom", fontsize=7)
    for ax in (left, right):
        ax.axhline(max_steps, color="gray", linestyle="--", linewidth=1)
        ax.set_ylabel(f"steps to {target:.0%} test accuracy")
        ax.set_ylim(0, ceiling * 1.1)
        ax.legend(fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("learning rate (x: not reached)")
    right.set_xticks([0, 1], [f"same lr ({same_lr:g})", "each network's best lr"])
    return fig


def gradient_flow_plot(flows: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Per-layer gradient norms (left) and update-to-weight ratios (right) over training, one
    row per network, as returned by ``utils.training.gradient_flow``.

    flows: {row label: {"grad_norm": (T, L), "update_ratio": (T, L)}}. One line per weight
    matrix, coloured from the first layer (dark) to the output layer (light); log y axes; the
    dashed line marks an update ratio of 1e-3, a common rule of thumb for SGD.
    Returns the Figure, with 2 axes per row. Raises ValueError for no networks.
    """
    if not flows:
        raise ValueError("gradient_flow_plot needs at least one network")
    fig, axes = plt.subplots(
        len(flows), 2, figsize=(10.0, 2.6 * len(flows)), squeeze=False, layout="constrained"
    )
    for (label, flow), (left, right) in zip(flows.items(), axes, strict=True):
        for ax, key, name in (
            (left, "grad_norm", "gradient norm ||dL/dW||"),
            (right, "update_ratio", "update / weight"),
        ):
            values = np.asarray(flow[key], dtype=np.float64)
            colors = plt.cm.viridis(np.linspace(0.0, 0.9, values.shape[1]))
            for j in range(values.shape[1]):
                ax.plot(values[:, j], color=colors[j], linewidth=0.8, label=f"W{j + 1}")
            ax.set_yscale("log")
            ax.set(xlabel="step", ylabel=name, title=f"{label}: {name}")
        right.axhline(1e-3, color="gray", linestyle="--", linewidth=1)
    axes[0, 1].legend(fontsize=6, ncol=2)
    return fig
