"""What lesson 08 (why BatchNorm works) needs but does not teach: the layers of the scale
experiment, the MLPs (plain, BatchNorm, "noisy" BatchNorm), one SGD step, a training loop that
hands each step's loss closure to the lesson's measurements, and the plots.

Everything is float64 and seeded. The networks are ``torch.nn.Sequential`` models so that the
learner's measurements can use autograd freely.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

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
    run.test_accuracy = eval_accuracy(model, data.x_test, data.y_test)
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


def eval_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of x whose argmax logit is y, with ``model`` in evaluation mode
    (it is put back in training mode afterwards)."""
    model.eval()
    with torch.no_grad():
        predictions = model(torch.tensor(x)).argmax(dim=1).numpy()
    model.train()
    return float(np.mean(predictions == y))


# --- the checks' cases, built from plain data ---------------------------------------------------
# The lesson's checks hand the learner's measurements the layers, models and closures below. When
# a notebook is graded the checks run in the grader's checker and the learner's functions in the
# kernel, and only plain data crosses between them: so a case is built from its description
# (kind, sizes, seed) on the side that calls the learner, by ``run_on_case``, which reports back
# as plain data what the call returned and what it left behind. The check builds the same case
# again for its references and decides everything from that report.


def _tensor(array) -> torch.Tensor:
    return torch.tensor(np.array(array, dtype=np.float64))


def _relu_after_bn(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.relu(linear_bn(x, weight) + 0.3)


def _tanh_then_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # x enters through tanh: scaling x is no longer the same as scaling the weight
    return linear_only(torch.tanh(x), weight)


SCALE_LAYERS: dict[str, Callable] = {
    "Linear -> BatchNorm (eps=0)": partial(linear_bn, eps=0.0),
    "Linear without BatchNorm": linear_only,
    "Linear -> BatchNorm (eps=1e-5)": partial(linear_bn, eps=1e-5),
    "Linear -> BatchNorm (eps=0) -> ReLU": _relu_after_bn,
    "Linear -> BatchNorm (eps=0.1)": partial(linear_bn, eps=0.1),
    "tanh -> Linear without BatchNorm": _tanh_then_linear,
}
"""The layers ``layer(x, weight)`` of the scale cases, by name."""


def scale_inputs(
    seed: int, n: int, d_in: int, d_out: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fresh float64 (weight (d_out, d_in), x (n, d_in), upstream (n, d_out)) of a scale case."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((d_out, d_in)) / math.sqrt(d_in)
    x = 0.5 + rng.standard_normal((n, d_in)) * rng.uniform(0.5, 2.0, d_in)
    upstream = rng.standard_normal((n, d_out))
    return _tensor(weight), _tensor(x), _tensor(upstream)


class QuadraticBowl(nn.Module):
    """A model whose forward returns the loss ``0.5 * w^T A w`` of its one parameter w (D,)."""

    def __init__(self, w: np.ndarray, a: np.ndarray):
        super().__init__()
        self.w = nn.Parameter(_tensor(w))
        self.register_buffer("a", _tensor(a))

    def forward(self) -> torch.Tensor:
        return 0.5 * self.w @ self.a @ self.w


def bowl_matrix(kind: str, dim: int, rng: np.random.Generator) -> np.ndarray:
    """A (dim, dim) symmetric matrix with eigenvalues in [0.5, 3]; for kind "saddle" the first
    dim // 2 of them are negated."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    eigen = rng.uniform(0.5, 3.0, dim)
    if kind == "saddle":
        eigen[: dim // 2] *= -1
    return q @ np.diag(eigen) @ q.T


def regression_data(dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x (12, dim), y (12,)): a noisy linear target."""
    x = rng.standard_normal((12, dim)) + 0.5
    return x, x @ rng.standard_normal(dim) + rng.standard_normal(12)


def landscape_model(kind: str, dim: int, seed: int) -> tuple[nn.Module, Callable]:
    """A fresh (model, loss_fn) of a landscape case, the same for the same arguments.

    kind: "quadratic" (QuadraticBowl, A positive definite), "saddle" (A indefinite), "least
    squares" (nn.Linear(dim, 1) with a bias, mean squared error), "mlp" or "mlp with BatchNorm"
    (cross-entropy of a (dim, 7, 6, 3) make_mlp on a random batch of 10, training mode)."""
    rng = np.random.default_rng(seed)
    if kind in ("quadratic", "saddle"):
        a = bowl_matrix(kind, dim, rng)
        model = QuadraticBowl(rng.standard_normal(dim), a)
        return model, model
    if kind == "least squares":
        x, y = regression_data(dim, rng)
        model = nn.Linear(dim, 1).double()
        with torch.no_grad():
            model.weight.copy_(_tensor(rng.standard_normal((1, dim))))
            model.bias.copy_(_tensor(rng.standard_normal(1)))
        xt, yt = _tensor(x), _tensor(y)
        return model, lambda: F.mse_loss(model(xt).squeeze(1), yt)
    model = make_mlp((dim, 7, 6, 3), "bn" if kind == "mlp with BatchNorm" else "none", seed=seed)
    x = _tensor(rng.standard_normal((10, dim)))
    return model, batch_loss(model, x, torch.tensor(rng.integers(0, 3, 10)))


def additive_shift_data(n: int, rng: np.random.Generator):
    """(w (5, 4), b (5,), dw, db, x (n, 4)) of the additive shift case: the first Linear of a
    Linear -> ReLU -> Linear network, the update added to it, and the probe batch."""
    w, b = rng.standard_normal((5, 4)), rng.standard_normal(5)
    dw, db = 0.3 * rng.standard_normal((5, 4)), 0.5 * rng.standard_normal(5)
    x = rng.standard_normal((n, 4)) * 1.5 + 0.2
    return w, b, dw, db, x


def shift_model(
    kind: str, layer: int, seed: int, n: int = 12, eval_mode: bool = False
) -> tuple[nn.Sequential, nn.Module, torch.Tensor, Callable[[], None]]:
    """A fresh (model, model[layer], probe batch x (n, D), update) of a shift case.

    kind "additive": a Linear -> ReLU -> Linear network whose ``update()`` adds a fixed
    (delta W, delta b) to the first Linear; otherwise a (6, 8, 8, 4) ``make_mlp`` of that norm
    whose ``update()`` is one SGD step (lr 0.5) on a batch of 16, then new noise.
    ``eval_mode``: the model is handed over in evaluation mode."""
    rng = np.random.default_rng(seed)
    if kind == "additive":
        w, b, dw, db, x = additive_shift_data(n, rng)
        model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()
        with torch.no_grad():
            model[0].weight.copy_(_tensor(w))
            model[0].bias.copy_(_tensor(b))

        def update():
            with torch.no_grad():
                model[0].weight += _tensor(dw)
                model[0].bias += _tensor(db)

        return model.train(not eval_mode), model[layer], _tensor(x), update
    model = make_mlp((6, 8, 8, 4), kind, seed=seed).train(not eval_mode)
    noise = np.random.default_rng(seed + 100)
    resample_noise(model, noise)
    x = _tensor(rng.standard_normal((n, 6)) + 0.3)
    xb = _tensor(rng.standard_normal((16, 6)))
    loss_fn = batch_loss(model, xb, torch.tensor(rng.integers(0, 4, 16)))

    def update():
        sgd_step(model, loss_fn, 0.5)
        resample_noise(model, noise)

    return model, model[layer], x, update


def deep_linear_data(rng: np.random.Generator):
    """(weights [(5, 4), (3, 5), (2, 3)], x (4, 9), y (2, 9)) of the deep linear case; the
    samples are columns."""
    dims = (4, 5, 3, 2)
    weights = [
        rng.standard_normal((o, i)) / math.sqrt(i) for i, o in zip(dims[:-1], dims[1:], strict=True)
    ]
    return weights, rng.standard_normal((4, 9)), rng.standard_normal((2, 9))


def ics_model(kind: str, seed: int) -> tuple[nn.Sequential, Callable]:
    """A fresh (model, loss_fn) of a covariate-shift case: kind "deep linear" (three bias-free
    Linear layers, loss 0.5 * mean over samples of ||W3 W2 W1 x - y||^2), "mlp" or "mlp with
    BatchNorm" (a (5, 6, 6, 6, 3) make_mlp, cross-entropy on a batch of 10)."""
    rng = np.random.default_rng(seed)
    if kind == "deep linear":
        weights, x, y = deep_linear_data(rng)
        model = nn.Sequential(*(nn.Linear(1, 1, bias=False) for _ in weights)).double()
        for module, w in zip(model, weights, strict=True):
            module.weight = nn.Parameter(_tensor(w))
        xt, yt = _tensor(x.T), _tensor(y.T)
        return model, lambda: 0.5 * ((model(xt) - yt) ** 2).sum(dim=1).mean()
    model = make_mlp((5, 6, 6, 6, 3), "bn" if kind == "mlp with BatchNorm" else "none", seed=seed)
    x = _tensor(rng.standard_normal((10, 5)))
    return model, batch_loss(model, x, torch.tensor(rng.integers(0, 3, 10)))


def stale_gradients(model: nn.Module, seed: int) -> None:
    """Leave a stale gradient in every ``.grad``, as a training loop does between steps."""
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)


def hook_count(model: nn.Module) -> int:
    """Forward hooks and forward pre-hooks registered on the modules of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


REPORTED_ERROR = 2000
"""Characters of a learner's error message that ``run_on_case`` reports."""


def run_on_case(fn: Callable, problem: str, case: dict) -> dict:
    """Build the case ``case`` describes and call the learner's measurement ``fn`` on it.

    problem: "scale" (``fn(layer, weight, x, alphas[, upstream])``), "landscape" (``fn(model,
    loss_fn, step_sizes)``), "shift" (``fn(model, layer, x, update)``) or "ics" (``fn(model,
    loss_fn, layer, lr)``); case: the keyword arguments of that problem's run below, plain data.
    Returns plain data (numbers, strings, arrays, lists and dicts of them): "result", what fn
    returned, and what the call left behind (see each run). Python warnings of the learner's
    code are silenced: one on stderr would cost a test cell its points."""
    runs = {"scale": _scale_run, "landscape": _landscape_run, "shift": _shift_run, "ics": _ics_run}
    if problem not in runs:
        raise ValueError(f"unknown problem {problem!r}; one of {', '.join(runs)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return runs[problem](fn, **case)


def _scale_run(
    fn: Callable,
    layer_name: str,
    n: int,
    d_in: int,
    d_out: int,
    alphas: Sequence[float],
    seed: int,
    upstream: bool = False,
) -> dict:
    """Also "weight" and "x": the tensors fn was given, as arrays after the call."""
    weight, x, up = scale_inputs(seed, n, d_in, d_out)
    args = [SCALE_LAYERS[layer_name], weight, x, list(alphas)] + ([up] if upstream else [])
    result = fn(*args)
    return {"result": result, "weight": _array(weight), "x": _array(x)}


def _landscape_run(fn: Callable, kind: str, dim: int, step_sizes: Sequence[float], seed: int):
    """The model starts with stale gradients; also what ``_parameters_after`` reports."""
    model, loss_fn = landscape_model(kind, dim, seed)
    stale_gradients(model, seed)
    return _parameters_after(model, lambda: fn(model, loss_fn, list(step_sizes)))


def _ics_run(fn: Callable, kind: str, layer: int, lr: float, seed: int) -> dict:
    """As ``_landscape_run``; fn gets ``model[layer]``."""
    model, loss_fn = ics_model(kind, seed)
    stale_gradients(model, seed)
    return _parameters_after(model, lambda: fn(model, loss_fn, model[layer], lr))


def _parameters_after(model: nn.Module, call: Callable) -> dict:
    """call()'s result, and after it: "training" (the model's mode), "ids_before" and
    "ids_after" (the id of each parameter tensor before and after; the tensors before are held
    meanwhile, so no id is reused) and "parameters" (their values, arrays)."""
    before = list(model.parameters())
    result = call()
    after = list(model.parameters())
    return {
        "result": result,
        "training": model.training,
        "ids_before": [id(p) for p in before],
        "ids_after": [id(p) for p in after],
        "parameters": [_array(p) for p in after],
    }


def _shift_run(
    fn: Callable, kind: str, layer: int, seed: int, n: int = 12, eval_mode: bool = False
) -> dict:
    """Also "error" (what fn raised, "" if nothing), "training_after" (the model's mode),
    "hooks_after" (hook_count after the call), and for each call of
    update(): "hooks_during" (hook_count) and "grad_during" (whether autograd was on)."""
    model, module, x, update = shift_model(kind, layer, seed, n, eval_mode)
    report = {"result": None, "error": ""}
    hooks, grad = [], []

    def counted_update():
        hooks.append(hook_count(model))
        grad.append(torch.is_grad_enabled())
        update()

    try:
        report["result"] = fn(model, module, x, counted_update)
    except Exception as error:  # the check names what went wrong, with what happened around it
        report["error"] = f"{type(error).__name__}: {error}"[:REPORTED_ERROR]
    return report | {
        "training_after": model.training,
        "hooks_after": hook_count(model),
        "hooks_during": hooks,
        "grad_during": grad,
    }


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


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
