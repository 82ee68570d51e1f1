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


SMALL_BATCH_KINDS = ("batch norm", "group norm (4 groups)", "layer norm")
"""The normalizations ``small_batch_accuracy`` trains with, in the order of its result."""


def _normalize_hidden(h: torch.Tensor, kind: str, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode normalization of hidden features h (S, B, D) of S networks, without gamma
    and beta: batch norm over B (axis 1), layer norm over D, group norm over 4 groups of D/4."""
    if kind == "batch norm":
        var, mean = torch.var_mean(h, dim=1, keepdim=True, correction=0)
    elif kind == "layer norm":
        var, mean = torch.var_mean(h, dim=2, keepdim=True, correction=0)
    else:
        grouped = h.reshape(*h.shape[:2], 4, -1)
        var, mean = torch.var_mean(grouped, dim=3, keepdim=True, correction=0)
        return ((grouped - mean) / torch.sqrt(var + eps)).reshape(h.shape)
    return (h - mean) / torch.sqrt(var + eps)


class _StackedMLPs:
    """S seeds x the kinds of SMALL_BATCH_KINDS, trained side by side: MLPs on the digits,
    Linear -> normalization -> ReLU per hidden layer, weights stacked as (K * S, d_in, d_out)
    so that one batched matrix product runs every network. Each seed's networks start from the
    same weights, whatever the kind; batch norm keeps running statistics (momentum 0.1,
    unbiased variance) and uses them in evaluation."""

    def __init__(self, dims: Sequence[int], seeds: Sequence[int], momentum: float = 0.1):
        self.s, self.k, self.momentum = len(seeds), len(SMALL_BATCH_KINDS), momentum
        self.weights, self.biases = [], []
        for layer, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            drawn = [
                torch.randn(d_in, d_out, generator=torch.Generator().manual_seed(100 * s + layer))
                for s in seeds
            ]
            stacked = torch.stack(drawn).double() * np.sqrt(2.0 / d_in)
            self.weights.append(stacked.repeat(self.k, 1, 1))
            self.biases.append(torch.zeros(self.k * self.s, 1, d_out, dtype=torch.float64))
        hidden = dims[1:-1]
        shape = [(self.k * self.s, 1, d) for d in hidden]
        self.gammas = [torch.ones(s, dtype=torch.float64) for s in shape]
        self.betas = [torch.zeros(s, dtype=torch.float64) for s in shape]
        self.running = [
            [torch.zeros(self.s, 1, d, dtype=torch.float64), torch.ones(self.s, 1, d).double()]
            for d in hidden
        ]
        self.parameters = [*self.weights, *self.biases, *self.gammas, *self.betas]
        for p in self.parameters:
            p.requires_grad_(True)

    def logits(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """x (S, B, D_0): seed s's batch goes to every kind's network s. Returns (K * S, B, C)."""
        h = x.repeat(self.k, 1, 1)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.bmm(h, weight) + bias
            if layer == len(self.running):
                return h
            parts = list(h.reshape(self.k, self.s, *h.shape[1:]))
            pairs = zip(parts, SMALL_BATCH_KINDS, strict=True)
            normalized = [_normalize_hidden(part, kind) for part, kind in pairs]
            mean, var = self.running[layer]
            if training:
                n, m = h.shape[1], self.momentum
                batch_var, batch_mean = torch.var_mean(parts[0], dim=1, keepdim=True, correction=0)
                mean.mul_(1 - m).add_(m * batch_mean.detach())
                var.mul_(1 - m).add_(m * batch_var.detach() * n / (n - 1))
            else:
                normalized[0] = (parts[0] - mean) / torch.sqrt(var + 1e-5)
            h = torch.relu(torch.cat(normalized) * self.gammas[layer] + self.betas[layer])
        return h


def small_batch_accuracy(
    batch_sizes: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    *,
    steps: int = 150,
    lr: float = 0.1,
    width: int = 64,
    hidden: int = 2,
) -> dict[str, np.ndarray]:
    """Test accuracy on the digits after training with each normalization at each batch size.

    For every batch size B and seed, MLPs 64 -> ``hidden`` x (Linear(width) -> norm -> ReLU)
    -> Linear(10), one per kind of SMALL_BATCH_KINDS and all from the same initial weights,
    take ``steps`` steps of plain SGD (learning rate ``lr``) on the same mini-batches of B
    training digits (epochs shuffled by the seed). Batch norm is evaluated with its running
    statistics, as in eval mode. Returns kind -> array (len(batch_sizes), len(seeds)) of test
    accuracies. Raises ValueError for a batch size below 2.
    """
    if min(batch_sizes) < 2:
        raise ValueError(f"batch norm needs batches of 2 or more, got {list(batch_sizes)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only fight over the cores (25x slower)
    try:
        return _train_and_score(batch_sizes, seeds, steps, lr, [width] * hidden)
    finally:
        torch.set_num_threads(threads)


def _train_and_score(batch_sizes, seeds, steps, lr, hidden_dims) -> dict[str, np.ndarray]:
    """small_batch_accuracy's work, with the arguments checked."""
    data = load_digits_split()
    x_train, y_train = torch.tensor(data.x_train), torch.tensor(data.y_train)
    x_test, y_test = torch.tensor(data.x_test), torch.tensor(data.y_test)
    n, dims = len(x_train), [x_train.shape[1], *hidden_dims, 10]
    result = {kind: np.zeros((len(batch_sizes), len(seeds))) for kind in SMALL_BATCH_KINDS}
    for i, size in enumerate(batch_sizes):
        nets = _StackedMLPs(dims, seeds)
        per_epoch = n // size
        epochs = -(-steps // per_epoch)
        order = torch.tensor(
            np.stack(
                [
                    np.concatenate([rng.permutation(n)[: per_epoch * size] for _ in range(epochs)])
                    for rng in (np.random.default_rng(s) for s in seeds)
                ]
            )
        )
        for step in range(steps):
            batch = order[:, step * size : (step + 1) * size]  # (S, B)
            logits = nets.logits(x_train[batch], training=True)
            labels = y_train[batch].repeat(len(SMALL_BATCH_KINDS), 1)
            # the sum of every network's mean loss: each network gets its own gradient
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum") / size
            grads = torch.autograd.grad(loss, nets.parameters)
            with torch.no_grad():
                for p, g in zip(nets.parameters, grads, strict=True):
                    p -= lr * g
        with torch.no_grad():
            test_logits = nets.logits(x_test.expand(len(seeds), -1, -1), training=False)
        correct = (test_logits.argmax(dim=-1) == y_test).double().mean(dim=-1)
        for kind, values in zip(SMALL_BATCH_KINDS, correct.reshape(-1, len(seeds)), strict=True):
            result[kind][i] = values.numpy()
    return result


def plot_small_batch_accuracy(
    batch_sizes: Sequence[int], accuracy: dict[str, np.ndarray]
) -> Figure:
    """The result of ``small_batch_accuracy`` against the batch size (log scale): a dot per
    seed, a line through the medians. Returns the Figure."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    sizes = np.asarray(batch_sizes, dtype=np.float64)
    for (name, values), marker in zip(accuracy.items(), "osd", strict=False):
        (line,) = ax.plot(sizes, np.median(values, axis=1), marker=marker, label=name)
        for seed_values in np.asarray(values).T:
            ax.scatter(sizes, seed_values, color=line.get_color(), s=10, alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(b) for b in batch_sizes])
    ax.set(
        xlabel="batch size (training)",
        ylabel="test accuracy (dots: seeds, line: median)",
        ylim=(0, 1),
        title="Training with small batches",
    )
    ax.legend()
    fig.tight_layout()
    return fig
