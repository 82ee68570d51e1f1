"""Figures and measurements for lesson 07 (normalization variants); nothing here is graded.

* ``shared_statistics_mask`` and ``draw_normalization_cubes``: the N / C / (H*W) cube of each
  variant with the entries that share one mean shaded (the picture idea is Wu & He's, "Group
  Normalization", 2018; the drawing code is ours).
* ``digit_feature_maps`` and ``batch_dependence``: how far one fixed example's normalized
  output moves, as its batch shrinks, from what the whole data set's statistics give.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from utils.data import load_digits_split

KINDS = ("batch norm", "layer norm", "instance norm", "group norm")


def shared_statistics_mask(
    kind: str, shape: tuple[int, int, int], num_groups: int = 2, sample: int = 0, channel: int = 0
) -> np.ndarray:
    """The entries of an (N, C, H*W) array that share their mean and variance with entry
    (sample, channel, 0) under ``kind`` (one of KINDS): a boolean array of ``shape``.

    Group norm puts channel ``channel`` in the group of C / num_groups contiguous channels.
    Raises ValueError for an unknown kind or a C that num_groups does not divide.
    """
    n, c, hw = shape
    if c % num_groups:
        raise ValueError(f"{c} channels cannot be split into {num_groups} groups")
    size = c // num_groups
    samples = np.arange(n)[:, None, None] == sample
    channels = np.arange(c)[None, :, None]
    rules = {
        "batch norm": channels == channel,
        "layer norm": samples,
        "instance norm": samples & (channels == channel),
        "group norm": samples & (channels // size == channel // size),
    }
    if kind not in rules:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return np.broadcast_to(rules[kind], shape).copy()


def draw_normalization_cubes(
    shape: tuple[int, int, int] = (4, 6, 5), num_groups: int = 3
) -> Figure:
    """Four 3-D panels, one per kind of KINDS: the (N, C, H*W) cube with the entries that share
    one mean shaded. Returns the Figure."""
    fig = plt.figure(figsize=(13, 3.8))
    for i, kind in enumerate(KINDS):
        ax = fig.add_subplot(1, len(KINDS), i + 1, projection="3d")
        shaded = shared_statistics_mask(kind, shape, num_groups)
        colors = np.where(shaded[..., None], np.array([0.12, 0.47, 0.71, 0.9]), [0.85] * 3 + [0.25])
        ax.voxels(np.ones(shape, dtype=bool), facecolors=colors, edgecolor=(1, 1, 1, 0.6))
        ax.set(xlabel="N (samples)", ylabel="C (channels)", zlabel="H·W (positions)")
        ax.set(xticks=[], yticks=[], zticks=[])
        ax.view_init(elev=22, azim=-58)
        ax.set_box_aspect(None, zoom=0.82)  # room for the axis labels
        title = f"{kind} ({num_groups} groups)" if kind == "group norm" else kind
        ax.set_title(f"{title}\n{int(shaded.sum())} values share one mean")
    fig.subplots_adjust(left=0.0, right=1.0, wspace=0.0)
    return fig


def digit_feature_maps(channels: int = 8, seed: int = 0) -> np.ndarray:
    """The training digits through one fixed random 3x3 convolution and a ReLU: realistic
    feature maps, float64 (n, channels, 8, 8), the same for the same seed."""
    images = torch.tensor(load_digits_split(seed=0).x_train.reshape(-1, 1, 8, 8))
    weight = torch.randn(channels, 1, 3, 3, generator=torch.Generator().manual_seed(seed))
    bias = torch.linspace(-0.5, 0.5, channels)
    return F.relu(F.conv2d(images, weight.double(), bias.double(), padding=1)).numpy()


NORMALIZERS = {
    "batch norm": lambda x: F.batch_norm(x, None, None, training=True),
    "group norm (4 groups)": lambda x: F.group_norm(x, 4),
    "layer norm over (C, H, W)": lambda x: F.group_norm(x, 1),
}
"""name -> normalization of a (B, C, H, W) tensor, without gamma and beta."""


def batch_dependence(
    features: np.ndarray, batch_sizes: Sequence[int], draws: int = 30, seed: int = 0
) -> dict[str, np.ndarray]:
    """How far example 0's normalized output moves from its value with whole-data statistics
    when it is normalized inside a small random batch.

    For each batch size B, example 0 of ``features`` (n, C, H, W) is normalized ``draws``
    times, each time with B - 1 other examples drawn at random (without replacement from
    examples 1 .. n-1), and compared with its output when all n examples form the batch
    (what eval mode would use with perfect running statistics). Returns name -> array
    (len(batch_sizes),): the root mean square of that difference over entries and draws
    (0: the rest of the batch does not matter). Raises ValueError for a batch size below 2
    or above n.
    """
    n = features.shape[0]
    if min(batch_sizes) < 2 or max(batch_sizes) > n:
        raise ValueError(f"batch sizes must lie in [2, {n}], got {list(batch_sizes)}")
    rng = np.random.default_rng(seed)
    x = torch.tensor(features)
    result = {name: np.zeros(len(batch_sizes)) for name in NORMALIZERS}
    for name, normalize in NORMALIZERS.items():
        whole = normalize(x)[0].numpy()
        for i, size in enumerate(batch_sizes):
            squares = [
                np.mean((normalize(x[_batch_with_first(rng, n, size)])[0].numpy() - whole) ** 2)
                for _ in range(draws)
            ]
            result[name][i] = np.sqrt(np.mean(squares))
    return result


def _batch_with_first(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Indices of a batch: example 0 and size - 1 others drawn without replacement."""
    return np.concatenate([[0], 1 + rng.choice(n - 1, size - 1, replace=False)])


def plot_batch_dependence(batch_sizes: Sequence[int], dependence: dict[str, np.ndarray]) -> Figure:
    """The result of ``batch_dependence`` against the batch size (log scale). Returns the Figure."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for (name, values), marker in zip(dependence.items(), "osd", strict=False):
        ax.plot(batch_sizes, values, marker=marker, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batch_sizes), [str(b) for b in batch_sizes])
    ax.set(
        xlabel="batch size",
        ylabel="RMS change of one example's output\n(vs. whole-data statistics)",
        title="How much does the rest of the batch change my output?",
    )
    ax.legend()
    fig.tight_layout()
    return fig
