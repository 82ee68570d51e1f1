"""Checks for lesson 01_why_normalize: a deep MLP's activations, their per-layer statistics
and the fan-in weight initialisation.

The exercises, as the notebook states them (numpy, float64):

``mlp_activations(x, weights, activation) -> list``
    x (N, D0); weights: L arrays, W[l] of shape (D_l, D_{l+1}); activation "tanh" or "relu".
    Returns the L post-activation arrays a[l] = f(a[l-1] @ W[l]) with a[-1] = x; the
    activation is applied on every layer, the last one included; no biases.
``layer_statistics(activations) -> dict``
    activations: L arrays of shape (N, D_l). Returns a dict of five arrays of shape (L,):
    "mean" and "std" (population std, ddof=0) over all N * D_l entries of each layer,
    "saturated" (fraction of entries with |a| > 0.99), "zero" (fraction of entries exactly 0)
    and "dead" (fraction of units, i.e. columns, that are exactly 0 for every sample).
``init_weights(dims, scale, rng) -> list``
    dims: L + 1 layer widths. Returns L arrays, W[l] of shape (dims[l], dims[l+1]) with
    independent N(0, (scale / sqrt(dims[l]))**2) entries drawn from the Generator ``rng``.

The first two are compared with PyTorch in float64 (the references below); the third is random,
so its check is statistical: closed-form expectations with a six-sigma tolerance on the
learner's own draws: each statistic fails a correct implementation with probability about
2e-9, the whole check (a few dozen statistics) about 1e-7.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.twins import On, paired
from utils.diagnose import CheckFailure, as_float_array, assert_close, report
from utils.guard import call_without_torch
from utils.reference import as_tensor, to_numpy

SATURATION = 0.99
"""|a| above this counts as a saturated tanh unit (tanh'(z) = 1 - a**2 < 0.02 there)."""

STATISTICS = ("mean", "std", "saturated", "zero", "dead")
"""The keys layer_statistics returns, in the order they are checked."""

SIGMAS = 6.0
"""Tolerance of the statistical init checks, in standard errors of the statistic."""

ACTIVATIONS = ("tanh", "relu")


# --- PyTorch references (float64) ------------------------------------------------------------


def mlp_activations_reference(x, weights, activation: str) -> list[np.ndarray]:
    """The post-activation arrays of a bias-free MLP, computed by PyTorch.

    x (N, D0); weights: W[l] of shape (D_l, D_{l+1}); activation "tanh" or "relu".
    Returns L float64 arrays, the l-th of shape (N, D_{l+1}).
    """
    nonlinearity = {"tanh": torch.tanh, "relu": F.relu}[activation]
    outputs, a = [], as_tensor(x)
    with torch.no_grad():
        for w in weights:
            a = nonlinearity(F.linear(a, as_tensor(w).T))  # F.linear wants (out, in) weights
            outputs.append(to_numpy(a))
    return outputs


def layer_statistics_reference(activations) -> dict[str, np.ndarray]:
    """Per-layer mean, population std, saturated, zero and dead fractions, by PyTorch.

    activations: L arrays of shape (N, D_l). Returns {key: float64 array of shape (L,)}.
    """
    rows = []
    for a in activations:
        t = as_tensor(a)
        rows.append(
            [
                t.mean().item(),
                t.std(correction=0).item(),
                (t.abs() > SATURATION).double().mean().item(),
                (t == 0).double().mean().item(),
                (t == 0).all(dim=0).double().mean().item(),
            ]
        )
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(STATISTICS))
    return {key: table[:, k] for k, key in enumerate(STATISTICS)}


def init_std(fan_in: int, scale: float) -> float:
    """The std of the fan-in rule, scale / sqrt(fan_in): the same formula as PyTorch's
    ``nn.init.kaiming_normal_(w, mode="fan_in")`` with gain ``scale`` (sqrt(2) for ReLU)."""
    return scale / math.sqrt(fan_in)


# --- known-wrong variants (numpy), keyed by what completes "it looks like ..." -----------------


def _numpy_activation(activation: str) -> Callable[[np.ndarray], np.ndarray]:
    return {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}[activation]


def _other_activation(activation: str) -> str:
    return "relu" if activation == "tanh" else "tanh"


def _forward(x, weights, f, g_last=None, before=False) -> list[np.ndarray]:
    """a[l] = f(a[l-1] @ W[l]) (or f(a[l-1]) @ W[l] when ``before``), g_last on the last layer."""
    outputs, a = [], x
    for i, w in enumerate(weights):
        g = g_last if (g_last is not None and i == len(weights) - 1) else f
        a = g(a) @ w if before else g(a @ w)
        outputs.append(a)
    return outputs


NO_LAST_ACTIVATION = "the last layer has no activation: apply f on every layer, the last one too"
PRE_ACTIVATIONS = "the list holds the pre-activations a @ W instead of the outputs f(a @ W)"


def mlp_mistakes(x, weights, activation: str) -> dict[str, list[np.ndarray]]:
    """Known-wrong lists of layer outputs for the same inputs.

    On the last layer the pre-activation variant equals the missing-last-activation one; the
    check therefore names it only on earlier layers (it fails there first).
    """
    f = _numpy_activation(activation)
    other = _other_activation(activation)
    return {
        "the activation is applied before the matrix product (f(a) @ W instead of "
        "f(a @ W))": _forward(x, weights, f, before=True),
        NO_LAST_ACTIVATION: _forward(x, weights, f, g_last=lambda z: z),
        PRE_ACTIVATIONS: _pre_activations(x, weights, f),
        f"{other} was used although the activation argument is {activation!r}": _forward(
            x, weights, _numpy_activation(other)
        ),
    }


def _pre_activations(x, weights, f) -> list[np.ndarray]:
    outputs, a = [], x
    for w in weights:
        z = a @ w
        outputs.append(z)
        a = f(z)
    return outputs


def statistics_mistakes(activations) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong values of each layer_statistics key: {key: {description: (L,) array}}."""

    def per_layer(stat) -> np.ndarray:
        return np.array([stat(np.asarray(a, dtype=np.float64)) for a in activations])

    return {
        "mean": {
            "the mean of |a| instead of the mean of a": per_layer(lambda a: np.abs(a).mean()),
        },
        "std": {
            "the sample std (ddof=1); the lesson asks for the population std (ddof=0)": (
                per_layer(lambda a: a.std(ddof=1))
            ),
            "the std is taken per unit (axis=0) and then averaged; take it over all entries": (
                per_layer(lambda a: a.std(axis=0).mean())
            ),
            "the std is taken per sample (axis=1) and then averaged; take it over all "
            "entries": per_layer(lambda a: a.std(axis=1).mean()),
            "the variance instead of the std": per_layer(np.var),
            "the root mean square sqrt(mean(a**2)): the mean is not subtracted": per_layer(
                lambda a: np.sqrt(np.mean(a**2))
            ),
        },
        "saturated": {
            f"|a| >= {SATURATION} is counted; saturated means strictly |a| > {SATURATION}": (
                per_layer(lambda a: np.mean(np.abs(a) >= SATURATION))
            ),
            f"only a > {SATURATION} is counted: tanh also saturates at -1, use |a|": per_layer(
                lambda a: np.mean(a > SATURATION)
            ),
            "a count instead of a fraction": per_layer(lambda a: np.sum(np.abs(a) > SATURATION)),
        },
        "zero": {
            "a <= 0 is counted; count entries exactly equal to 0": per_layer(
                lambda a: np.mean(a <= 0)
            ),
            "the fraction of non-zero entries": per_layer(lambda a: np.mean(a != 0)),
            "a count instead of a fraction": per_layer(lambda a: np.sum(a == 0)),
        },
        "dead": {
            "dead is taken over the wrong axis (samples that are 0 at every unit); a dead "
            "unit is a column that is 0 for every sample": per_layer(
                lambda a: np.mean(np.all(a == 0, axis=1))
            ),
            "units that are 0 for at least one sample are counted (any instead of all)": (
                per_layer(lambda a: np.mean(np.any(a == 0, axis=0)))
            ),
            "a count of dead units instead of a fraction": per_layer(
                lambda a: np.sum(np.all(a == 0, axis=0))
            ),
        },
    }


def init_std_mistakes(fan_in: int, fan_out: int, scale: float) -> dict[str, float]:
    """Known-wrong stds of an init rule for one (fan_in, fan_out) matrix."""
    return {
        "the std is scale / sqrt(fan_out); the fan-in rule divides by sqrt(fan_in) (dims[l])": (
            scale / math.sqrt(fan_out)
        ),
        "scale multiplies the variance (std = sqrt(scale / fan_in)); it multiplies the std": (
            math.sqrt(scale / fan_in)
        ),
        "the square root is missing: std = scale / sqrt(fan_in), not scale / fan_in": (
            scale / fan_in
        ),
        "an extra sqrt(2) (He's factor) is applied; it belongs in scale, not in the rule": (
            scale * math.sqrt(2.0 / fan_in)
        ),
        "Glorot's std scale * sqrt(2 / (fan_in + fan_out)); this lesson uses fan_in only": (
            scale * math.sqrt(2.0 / (fan_in + fan_out))
        ),
        "the scale is not applied: std = scale / sqrt(fan_in)": 1.0 / math.sqrt(fan_in),
        "the entries are not scaled at all (standard normal)": 1.0,
    }


# --- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPCase:
    """An input batch x (N, D0), weights W[l] (D_l, D_{l+1}), an activation and a label."""

    x: np.ndarray
    weights: tuple[np.ndarray, ...]
    activation: str
    label: str


def make_mlp_case(
    dims: Sequence[int], n: int, activation: str, scale: float, seed: int, layout: str = "C"
) -> MLPCase:
    """A seeded MLP case: x has per-feature offsets and spreads; W[l] ~ N(0, scale**2/D_l).

    layout "C" or "transposed" (x and the weights as F-ordered views).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 1.0, dims[0]) + rng.uniform(0.5, 2.0, dims[0]) * rng.normal(
        size=(n, dims[0])
    )
    weights = [
        init_std(d_in, scale) * rng.normal(size=(d_in, d_out))
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=False)
    ]
    if layout == "transposed":
        x = np.ascontiguousarray(x.T).T
        weights = [np.ascontiguousarray(w.T).T for w in weights]
    elif layout != "C":
        raise ValueError(f"unknown layout {layout!r}")
    shape = "-".join(str(d) for d in dims)
    label = f"{activation} MLP {shape}, N={n}, scale {scale:g}" + (
        ", non-contiguous x and weights" if layout != "C" else ""
    )
    return MLPCase(x, tuple(weights), activation, label)


def visible_mlp_cases() -> list[MLPCase]:
    """The small fixed cases of the visible check: one tanh and one ReLU net, 3 layers."""
    return [
        make_mlp_case((5, 4, 6, 3), 6, "tanh", 1.5, seed=2010),
        make_mlp_case((5, 4, 6, 3), 6, "relu", 1.5, seed=2015),
    ]


def with_planted_values(activations: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Copies of ``activations`` with one dead unit (a column of zeros) in the first layer, one
    all-zero sample (a row) in the last, and entries exactly +-0.99, -0.995 and 0 in every
    layer, so that every boundary and axis mistake shows."""
    rng = np.random.default_rng(seed)
    planted = [np.array(a, dtype=np.float64) for a in activations]
    first, last = planted[0], planted[-1]
    first[:, rng.integers(first.shape[1])] = 0.0
    if last.shape[0] > 1:
        last[rng.integers(last.shape[0]), :] = 0.0
    values = np.array([SATURATION, -SATURATION, -0.995, 0.0])
    for a in planted:
        flat = a.reshape(-1)  # a view: planted arrays are fresh C-ordered copies
        free = np.flatnonzero(flat != 0)
        spots = rng.choice(free, size=min(values.size, free.size), replace=False)
        flat[spots] = values[: spots.size]
    return planted


def visible_statistics_cases() -> list[tuple[list[np.ndarray], str]]:
    """The visible activation lists: the visible MLP cases with planted boundary values."""
    return [
        (with_planted_values(mlp_activations_reference(c.x, c.weights, c.activation), k), c.label)
        for k, c in enumerate(visible_mlp_cases())
    ]


# --- learner-output validation ------------------------------------------------------------------


def _as_layer_list(result, name: str, expected_len: int) -> list:
    """The learner's list of per-layer arrays, or a CheckFailure saying what is wrong."""
    if isinstance(result, np.ndarray):
        raise CheckFailure(
            f"{name} returned one array of shape {result.shape}; return a list with one "
            f"array per layer ({expected_len} here)."
        )
    if not isinstance(result, (list, tuple)):
        raise CheckFailure(f"{name} returned {type(result).__name__}; return a list of arrays.")
    if len(result) != expected_len:
        extra = (
            " Is the input x the first element? Return only the layer outputs."
            if len(result) == expected_len + 1
            else ""
        )
        raise CheckFailure(
            f"{name} returned {len(result)} arrays, expected {expected_len} (one per layer).{extra}"
        )
    return list(result)


def _unchanged(before: Sequence[np.ndarray], after: Sequence[np.ndarray], name: str, what: str):
    for b, a in zip(before, after, strict=True):
        if not np.array_equal(b, a):
            raise CheckFailure(f"{name} changed {what} in place; work on new arrays instead.")


# --- mlp_activations ----------------------------------------------------------------------------


def _check_mlp_case(fn, case: MLPCase) -> float:
    x, weights = case.x.copy(), [w.copy() for w in case.weights]
    name = f"mlp_activations(x, weights, {case.activation!r})"
    got = call_without_torch(fn, x, weights, case.activation, name="mlp_activations")
    _unchanged([case.x, *case.weights], [x, *weights], name, "x or a weight matrix")
    got = _as_layer_list(got, f"{name} on {case.label}", len(case.weights))
    expected = mlp_activations_reference(case.x, case.weights, case.activation)
    mistakes = mlp_mistakes(case.x, case.weights, case.activation)
    worst = 0.0
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        layer_mistakes = {
            d: wrong[i]
            for d, wrong in mistakes.items()
            if not (d == PRE_ACTIVATIONS and i == len(expected) - 1)
        }
        label = f"{name}[{i}] (layer {i + 1} of {len(expected)}; {case.label})"
        worst = max(worst, assert_close(label, g, e, layer_mistakes))
    return worst


@paired(
    lambda: On(visible_mlp_cases(), "mlp_activations (tanh and relu, 3 layers, against PyTorch)")
)
def check_mlp_activations(on: On, fn) -> None:
    """Visible check: a small tanh and ReLU MLP of 3 layers against PyTorch."""
    err = max(_check_mlp_case(fn, case) for case in on.cases)
    report(on.label, err)


# --- layer_statistics ---------------------------------------------------------------------------


def _check_statistics_case(fn, activations: list[np.ndarray], label: str) -> float:
    given = [a.copy() for a in activations]
    got = call_without_torch(fn, given, name="layer_statistics")
    _unchanged(activations, given, "layer_statistics", "an activation array")
    if not isinstance(got, Mapping):
        raise CheckFailure(
            f"layer_statistics returned {type(got).__name__}; return a dict with the keys "
            f"{', '.join(STATISTICS)}."
        )
    missing = [key for key in STATISTICS if key not in got]
    if missing:
        raise CheckFailure(f"layer_statistics's dict lacks the key(s) {', '.join(missing)}.")
    expected = layer_statistics_reference(activations)
    mistakes = statistics_mistakes(activations)
    worst = 0.0
    for key in STATISTICS:
        name = f"layer_statistics(...)[{key!r}] on {label}"
        _require_one_value_per_layer(got[key], name, len(activations))
        worst = max(worst, assert_close(name, got[key], expected[key], mistakes[key]))
    return worst


def _require_one_value_per_layer(value, name: str, layers: int) -> None:
    try:
        shape = np.shape(value)
    except ValueError:  # a ragged list of per-layer arrays
        shape = None
    if shape != (layers,):
        raise CheckFailure(
            f"{name} should hold one number per layer (shape ({layers},)), got "
            f"{'a ragged list' if shape is None else f'shape {shape}'}: take each statistic "
            "over all N * D entries of a layer (dead: over the units), not along one axis."
        )


@paired(
    lambda: On(
        visible_statistics_cases(),
        "layer_statistics (mean, std, saturated, zero, dead; against PyTorch)",
    )
)
def check_layer_statistics(on: On, fn) -> None:
    """Visible check: the five statistics of two small activation lists against PyTorch."""
    err = max(_check_statistics_case(fn, acts, label) for acts, label in on.cases)
    report(on.label, err)


# --- init_weights -------------------------------------------------------------------------------

NORMAL_WITHIN_ONE_STD = math.erf(1 / math.sqrt(2))
"""P(|w| <= std) for a normal w: about 0.6827 (a uniform w gives 0.5774)."""


@dataclass(frozen=True)
class InitCase:
    """An init_weights input: layer widths, scale, and the seed of the generator passed."""

    dims: tuple[int, ...]
    scale: float
    seed: int


def _draw(fn, case: InitCase, seed: int | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(case.seed if seed is None else seed)
    dims = list(case.dims)
    got = call_without_torch(fn, dims, case.scale, rng, name="init_weights")
    if dims != list(case.dims):
        raise CheckFailure("init_weights changed its dims argument in place.")
    name = f"init_weights({list(case.dims)}, {case.scale:g}, rng)"
    got = _as_layer_list(got, name, len(case.dims) - 1)
    return [
        as_float_array(w, f"{name}[{i}]", (d_in, d_out))
        for i, (w, d_in, d_out) in enumerate(zip(got, case.dims[:-1], case.dims[1:], strict=True))
    ]


def _z_std(w: np.ndarray, std: float) -> float:
    """How many standard errors the sample std of w is away from ``std`` (mean 0 assumed)."""
    return (float(np.sqrt(np.mean(w**2))) / std - 1.0) * math.sqrt(2 * w.size)


def _check_init_matrix(w: np.ndarray, fan_in: int, fan_out: int, scale: float, name: str) -> float:
    """Statistical checks of one matrix; returns the relative error of its sample std."""
    std, n = init_std(fan_in, scale), w.size
    spread = max(float(np.std(w)), np.finfo(float).tiny) / math.sqrt(n)  # a t-test of the mean
    if abs(float(np.mean(w))) > SIGMAS * spread:
        raise CheckFailure(
            f"{name}: the entries have mean {np.mean(w):.3g}, expected 0 (for entries with "
            f"this spread, the mean of a zero-mean draw lies within {SIGMAS * spread:.1g} of 0)."
        )
    if abs(_z_std(w, std)) > SIGMAS:
        sample = float(np.std(w))
        wrong = {d: s for d, s in init_std_mistakes(fan_in, fan_out, scale).items()}
        match = next((d for d, s in wrong.items() if abs(_z_std(w, s)) <= SIGMAS), None)
        hint = f"it looks like {match}" if match else "compare with std = scale / sqrt(dims[l])"
        raise CheckFailure(
            f"{name}: sample std {sample:.4g}, expected scale / sqrt(fan_in) = {std:.4g}. "
            f"Likely mistake: {hint}."
        )
    within = float(np.mean(np.abs(w) <= std))
    p = NORMAL_WITHIN_ONE_STD
    if abs(within - p) / math.sqrt(p * (1 - p) / n) > SIGMAS:
        raise CheckFailure(
            f"{name}: {within:.1%} of the entries lie within one std of 0; a normal draw puts "
            f"{p:.1%} there. Draw from a normal distribution (rng.standard_normal), not a "
            "uniform one."
        )
    return abs(float(np.std(w)) / std - 1.0)


def _check_init_case(fn, case: InitCase) -> float:
    weights = _draw(fn, case)
    worst = 0.0
    for i, (w, d_in, d_out) in enumerate(zip(weights, case.dims[:-1], case.dims[1:], strict=True)):
        name = f"init_weights({list(case.dims)}, {case.scale:g}, rng)[{i}]"
        worst = max(worst, _check_init_matrix(w, d_in, d_out, case.scale, name))
    return worst


def _check_uses_rng(fn, case: InitCase) -> None:
    """Same seed, same weights; another seed, other weights."""
    first, again = _draw(fn, case), _draw(fn, case)
    if not all(np.array_equal(a, b) for a, b in zip(first, again, strict=True)):
        raise CheckFailure(
            "init_weights gave different weights for two generators with the same seed: draw "
            "every number from the rng argument (np.random.randn and np.random.normal ignore it)."
        )
    other = _draw(fn, case, seed=case.seed + 1)
    if any(np.array_equal(a, b) for a, b in zip(first, other, strict=True)):
        raise CheckFailure(
            "init_weights gave the same weights for generators with different seeds: draw from "
            "the rng argument instead of making a generator of your own."
        )


def _check_layers_independent(fn, case: InitCase) -> None:
    """Layers of equal shape must hold different, uncorrelated draws."""
    weights = _draw(fn, case)
    for i in range(1, len(weights)):
        a, b = weights[i - 1].ravel(), weights[i].ravel()
        if a.shape != b.shape:
            continue
        corr = float(np.corrcoef(a, b)[0, 1])
        if abs(corr) * math.sqrt(a.size) > SIGMAS:
            raise CheckFailure(
                f"init_weights: W[{i - 1}] and W[{i}] are correlated ({corr:.2f}); draw each "
                "layer's matrix separately, do not reuse one draw."
            )


VISIBLE_INIT = InitCase((300, 200, 100), 1.7, seed=2010)


def _report_init(what: str, deviation: float) -> None:
    print(
        f"{what}: mean 0, normal, std within {deviation:.1%} of scale / sqrt(fan_in) "
        f"(allowed: {SIGMAS:g} standard errors) — correct"
    )


def check_init_weights(fn) -> None:
    """Visible check: shapes, mean, std and normality of each matrix, and use of the rng."""
    deviation = _check_init_case(fn, VISIBLE_INIT)
    _check_uses_rng(fn, VISIBLE_INIT)
    _report_init("init_weights", deviation)
