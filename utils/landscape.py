"""What lesson 08 (why BatchNorm works) needs but does not teach: the layers of the scale
experiment, the MLPs (plain, BatchNorm, "noisy" BatchNorm), one SGD step, a training loop that
hands each step's loss closure to the lesson's measurements, and the plots.

Everything is float64 and seeded. The networks are ``torch.nn.Sequential`` models so that the
learner's measurements can use autograd freely.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

NORMS = ("none", "bn", "noisy")
"""The three kinds of hidden layer: Linear -> ReLU, Linear -> BatchNorm1d -> ReLU, and
Linear -> BatchNorm1d -> noise -> ReLU."""

LABELS = {"none": "no BatchNorm", "bn": "BatchNorm", "noisy": "noisy BatchNorm"}
COLORS = {"none": "tab:red", "bn": "tab:blue", "noisy": "tab:green"}

# --- part 1: one layer, as a function of its weight ---------------------------------------------


def linear_bn(x: torch.Tensor, weight: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Linear (no bias) then BatchNorm in training mode (gamma 1, beta 0):
    x (N, D_in), weight (D_out, D_in) -> (N, D_out), ``batch_norm(x @ weight.T)``.

    eps=0 makes the scale invariance exact; with eps > 0 it holds while the batch variance of
    ``x @ weight.T`` is large against eps."""
    z = x @ weight.T
    var, mean = torch.var_mean(z, dim=0, correction=0)
    return (z - mean) / torch.sqrt(var + eps)  # F.batch_norm refuses eps=0


def linear_only(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Linear without bias and without BatchNorm: x (N, D_in), weight (D_out, D_in) ->
    ``x @ weight.T`` (N, D_out)."""
    return x @ weight.T


# --- part 2 and 3: the networks -----------------------------------------------------------------


class NoisyBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d followed, in training mode, by a per-unit affine noise ``out * scale +
    shift`` that is the same for every sample of a batch and changes at every step.

    ``resample(rng)`` draws the noise of the next step: the mean of the shifts is itself drawn
    anew each step (uniform in [-spread, spread]), every unit's shift scatters around it with
    std ``spread / 2``, and the scales are drawn in [1/(1 + spread), 1 + spread]. So the
    distribution the next layer sees moves at every step, by design. Evaluation mode adds no
    noise. Until the first ``resample`` the noise is the identity.
    """

    def __init__(self, num_features: int, spread: float = 0.5):
        super().__init__(num_features)
        self.spread = spread
        self.register_buffer("noise_scale", torch.ones(num_features))
        self.register_buffer("noise_shift", torch.zeros(num_features))

    def resample(self, rng: np.random.Generator) -> None:
        d, s = self.num_features, self.spread
        centre = rng.uniform(-s, s)
        shift = centre + s / 2 * rng.standard_normal(d)
        scale = np.exp(rng.uniform(-np.log1p(s), np.log1p(s), d))
        self.noise_shift = torch.tensor(shift, dtype=self.noise_shift.dtype)
        self.noise_scale = torch.tensor(scale, dtype=self.noise_scale.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out * self.noise_scale + self.noise_shift if self.training else out


def make_mlp(
    dims: Sequence[int], norm: str, seed: int = 0, init_scale: float = math.sqrt(2)
) -> nn.Sequential:
    """A float64 MLP: per hidden layer Linear -> [BatchNorm1d | NoisyBatchNorm1d] -> ReLU,
    then a Linear (the logits). ``norm`` is one of NORMS. A Linear followed by a normalization
    has no bias; the other biases start at 0. Weights are drawn with lesson 01's fan-in rule,
    N(0, init_scale**2 / fan_in): the default sqrt(2) suits ReLU, and the plain network trains
    well with it; init_scale 1 shrinks its activations layer after layer (lessons 01 and 05).
    The same seed gives the same weights for every ``norm``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    modules: list[nn.Module] = []
    hidden = len(dims) - 2
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        is_hidden = i < hidden
        normalized = is_hidden and norm != "none"
        modules.append(nn.Linear(d_in, d_out, bias=not normalized, dtype=torch.float64))
        if normalized:
            kind = nn.BatchNorm1d if norm == "bn" else NoisyBatchNorm1d
            modules.append(kind(d_out).double())
        if is_hidden:
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules).double()
    generator = torch.Generator().manual_seed(seed)  # the same draws whatever the norm
    with torch.no_grad():
        for layer in linear_layers(model):
            std = init_scale / math.sqrt(layer.in_features)
            layer.weight.normal_(0.0, std, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    """The Linear modules of ``model``, in order."""
    return [m for m in model if isinstance(m, nn.Linear)]


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A closure ``loss_fn()`` returning the mean cross-entropy of ``model`` on (x, y) with the
    model's current parameters (a scalar tensor connected to the autograd graph)."""
    return lambda: F.cross_entropy(model(x), y)


def sgd_step(model: nn.Module, loss_fn: Callable[[], torch.Tensor], lr: float) -> float:
    """One plain SGD step ``p -= lr * dL/dp`` on every parameter; returns the loss before it."""
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return loss.item()


def gradient_norm(
    model: nn.Module, loss_fn: Callable[[], torch.Tensor], params: list | None = None
) -> float:
    """||dL/dp|| over ``params`` (default: every parameter of ``model``) as one flat vector;
    leaves ``.grad`` alone."""
    grads = torch.autograd.grad(loss_fn(), list(model.parameters()) if params is None else params)
    return float(torch.sqrt(sum((g**2).sum() for g in grads)))


def _running_buffers(model: nn.Module) -> list[torch.Tensor]:
    return [
        buffer
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for buffer in (module.running_mean, module.running_var, module.num_batches_tracked)
    ]


def running_statistics(model: nn.Module) -> list[torch.Tensor]:
    """Copies of the running mean, running variance and batch count of every BatchNorm layer
    of ``model``, in order (for ``restore_running_statistics``)."""
    return [buffer.detach().clone() for buffer in _running_buffers(model)]


def restore_running_statistics(model: nn.Module, saved: list[torch.Tensor]) -> None:
    """Write ``saved`` (from ``running_statistics`` of this model) back, in place."""
    with torch.no_grad():
        for buffer, value in zip(_running_buffers(model), saved, strict=True):
            buffer.copy_(value)


def resample_noise(model: nn.Module, rng: np.random.Generator) -> None:
    """Draw the next step's noise in every NoisyBatchNorm1d of ``model`` (none: no effect)."""
    for module in model.modules():
        if isinstance(module, NoisyBatchNorm1d):
            module.resample(rng)


@dataclass
class Run:
    """A training run: the loss of every step, whatever the probe returned at the probed
    steps (``probe_steps``), and the final test accuracy (evaluation mode)."""

    norm: str
    losses: list[float] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    probes: list = field(default_factory=list)
    test_accuracy: float = float("nan")


def train(
    model: nn.Sequential,
    data,
    *,
    steps: int,
    lr: float,
    batch_size: int = 64,
    probe_every: int = 0,
    probe: Callable | None = None,
    seed: int = 0,
    norm: str = "",
) -> Run:
    """Train ``model`` in place with SGD on ``data`` (a ``utils.data.DigitsSplit``).

    Every step draws a mini-batch, builds ``loss_fn = batch_loss(model, xb, yb)`` and an
    ``update()`` closure (one SGD step on that batch, then the next step's noise). At steps
    0, probe_every, 2 * probe_every ... it calls ``probe(model, loss_fn, update)`` instead,
    which must call ``update()`` exactly once and returns what ``Run.probes`` records. A
    probe's own forward passes do not count: the BatchNorm running statistics (and so the
    final evaluation) are those of the training steps alone, exactly as without a probe. A
    diverging run (loss inf or NaN) stops early.
    """
    rng = np.random.default_rng(seed)
    x_train = torch.tensor(data.x_train)
    y_train = torch.tensor(data.y_train)
    run = Run(norm)
    model.train()
    resample_noise(model, rng)
    for step in tqdm(range(steps), desc=f"training ({LABELS.get(norm, norm)})", leave=False):
        idx = torch.tensor(rng.choice(len(x_train), batch_size, replace=False))
        loss_fn = batch_loss(model, x_train[idx], y_train[idx])
        losses = []

        def update(loss_fn=loss_fn, losses=losses):
            losses.append(sgd_step(model, loss_fn, lr))
            resample_noise(model, rng)

        if probe is not None and probe_every and step % probe_every == 0:
            run.probe_steps.append(step)
            run.probes.append(_probe_leaving_statistics(model, probe, loss_fn, update))
        else:
            update()
        if len(losses) != 1:
            raise RuntimeError(f"the probe called update() {len(losses)} times, expected once")
        run.losses.append(losses[0])
        if not np.isfinite(losses[0]):
            break
    run.test_accuracy = accuracy(model, data.x_test, data.y_test)
    return run


def _probe_leaving_statistics(model: nn.Module, probe: Callable, loss_fn, update: Callable):
    """``probe(model, loss_fn, update)``, after which the running statistics are those the
    training step alone left: a probe's forward passes (at moved weights, in training mode)
    update them too, so the step starts from the statistics before the probe, and they are put
    back to what the step left once the probe returns. Returns what the probe returns."""
    start, kept = running_statistics(model), []

    def step() -> None:
        restore_running_statistics(model, start)
        update()
        kept.append(running_statistics(model))

    recorded = probe(model, loss_fn, step)
    if len(kept) == 1:  # otherwise train() refuses the probe
        restore_running_statistics(model, kept[0])
    return recorded


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of x whose argmax logit is y, with ``model`` in evaluation mode
    (it is put back in training mode afterwards)."""
    model.eval()
    with torch.no_grad():
        predictions = model(torch.tensor(x)).argmax(dim=1).numpy()
    model.train()
    return float(np.mean(predictions == y))


# --- plots --------------------------------------------------------------------------------------


def plot_band(ax, steps, values, norm: str, label: str | None = None) -> None:
    """A band from the min to the max of ``values`` (one row per step) for one network kind."""
    values = np.asarray(values, dtype=np.float64)
    color = COLORS.get(norm, "gray")
    ax.fill_between(
        steps, values.min(axis=1), values.max(axis=1), color=color, alpha=0.35, linewidth=0
    )
    ax.plot(steps, values.min(axis=1), color=color, linewidth=0.8)
    ax.plot(steps, values.max(axis=1), color=color, linewidth=0.8, label=label or LABELS[norm])


def plot_scale_law(ax, alphas, norms, label: str, **style) -> None:
    """Gradient norm against alpha on log-log axes, with the slope -1 line through alpha=1."""
    alphas = np.asarray(alphas, dtype=np.float64)
    norms = np.asarray(norms, dtype=np.float64)
    ax.loglog(alphas, norms, marker="o", markersize=3, label=label, **style)
    at_one = norms[np.argmin(np.abs(np.log(alphas)))]
    ax.loglog(alphas, at_one / alphas, ":", color="gray", linewidth=1)


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(ys) against log(xs): -1 when ys is proportional to 1/xs."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])
