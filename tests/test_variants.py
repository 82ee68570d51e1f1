"""utils.variants: the shaded sets of the cube figure and the batch-dependence measurement."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from utils.variants import (
    KINDS,
    SMALL_BATCH_KINDS,
    _normalize_hidden,
    batch_dependence,
    digit_feature_maps,
    draw_normalization_cubes,
    plot_batch_dependence,
    plot_small_batch_accuracy,
    shared_statistics_mask,
    small_batch_accuracy,
)


@given(
    n=st.integers(1, 4),
    groups=st.integers(1, 3),
    size=st.integers(1, 3),
    hw=st.integers(1, 4),
    sample=st.integers(0, 3),
    channel=st.integers(0, 8),
)
def test_each_set_holds_the_entries_that_share_one_mean(n, groups, size, hw, sample, channel):
    c = groups * size
    sample, channel = sample % n, channel % c
    shape = (n, c, hw)
    masks = {k: shared_statistics_mask(k, shape, groups, sample, channel) for k in KINDS}
    assert masks["batch norm"].sum() == n * hw and masks["batch norm"][:, channel].all()
    assert masks["layer norm"].sum() == c * hw and masks["layer norm"][sample].all()
    assert masks["instance norm"].sum() == hw and masks["instance norm"][sample, channel].all()
    first = channel // size * size
    assert masks["group norm"].sum() == size * hw
    assert masks["group norm"][sample, first : first + size].all()
    assert np.array_equal(
        shared_statistics_mask("group norm", shape, 1, sample, channel), masks["layer norm"]
    )
    assert np.array_equal(
        shared_statistics_mask("group norm", shape, c, sample, channel), masks["instance norm"]
    )


def test_unknown_kinds_and_uneven_groups_are_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        shared_statistics_mask("weight norm", (2, 4, 3))
    with pytest.raises(ValueError, match="cannot be split"):
        shared_statistics_mask("group norm", (2, 6, 3), num_groups=4)


def test_the_cube_figure_has_one_panel_per_kind():
    fig = draw_normalization_cubes(shape=(2, 4, 3), num_groups=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == len(KINDS)
    assert "6 values share one mean" in titles[0]  # batch norm: N * H*W = 2 * 3
    assert "6 values share one mean" in titles[3]  # group norm: 2 channels * 3 positions
    plt.close(fig)


def test_only_batch_norm_depends_on_the_rest_of_the_batch():
    features = np.random.default_rng(0).normal(size=(40, 8, 3, 3)) * np.arange(1, 41).reshape(
        -1, 1, 1, 1
    )
    sizes = (32, 8, 2)
    dependence = batch_dependence(features, sizes, draws=8, seed=1)
    batch = dependence.pop("batch norm")
    assert batch[-1] > batch[0] > 0
    for name, values in dependence.items():
        assert np.all(values < 1e-12), name
    fig = plot_batch_dependence(sizes, {"batch norm": batch, **dependence})
    assert len(fig.axes[0].lines) == 3
    plt.close(fig)


def test_batch_sizes_must_fit_the_data():
    features = np.ones((5, 4, 2, 2))
    with pytest.raises(ValueError, match="batch sizes"):
        batch_dependence(features, (1, 4))
    with pytest.raises(ValueError, match="batch sizes"):
        batch_dependence(features, (6,))


def test_digit_feature_maps_are_seeded_rectified_maps():
    a, b = digit_feature_maps(channels=4, seed=3), digit_feature_maps(channels=4, seed=3)
    assert a.shape[1:] == (4, 8, 8) and a.dtype == np.float64
    assert np.array_equal(a, b) and a.min() >= 0
    assert not np.array_equal(a, digit_feature_maps(channels=4, seed=4))


def test_hidden_normalizations_match_pytorch():
    h = torch.tensor(np.random.default_rng(0).standard_normal((3, 5, 8)) * 2 + 1)
    flat = h.reshape(-1, 8)
    expected = {
        "batch norm": torch.stack([F.batch_norm(x, None, None, training=True) for x in h]),
        "layer norm": F.layer_norm(flat, (8,)).reshape(h.shape),
        "group norm (4 groups)": F.group_norm(flat, 4).reshape(h.shape),
    }
    for kind in SMALL_BATCH_KINDS:
        assert torch.allclose(_normalize_hidden(h, kind), expected[kind], atol=1e-12), kind


def test_small_batch_accuracy_is_seeded_and_shaped():
    first = small_batch_accuracy((16, 2), (0, 1), steps=20)
    again = small_batch_accuracy((16, 2), (0, 1), steps=20)
    assert list(first) == list(SMALL_BATCH_KINDS)
    for kind in SMALL_BATCH_KINDS:
        assert first[kind].shape == (2, 2) and np.array_equal(first[kind], again[kind])
        assert np.all((0 <= first[kind]) & (first[kind] <= 1))
    fig = plot_small_batch_accuracy((16, 2), first)
    assert len(fig.axes[0].get_lines()) == len(SMALL_BATCH_KINDS)
    plt.close(fig)


def test_small_batch_accuracy_refuses_a_batch_of_one():
    with pytest.raises(ValueError, match="2 or more"):
        small_batch_accuracy((8, 1))
