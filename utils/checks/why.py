"""Checks for lesson 08_why_batchnorm_works: measurements of scale invariance, of the loss
landscape along the gradient, and of internal covariate shift.

The exercises, as the notebook states them (torch, float64; autograd allowed):

``output_changes(layer, weight, x, alphas) -> (K,)``
    ``||layer(x, a * weight) - layer(x, weight)|| / ||layer(x, weight)||`` (Frobenius norms)
    for every a in alphas; ``weight`` is not modified.
``weight_gradient_norms(layer, weight, x, alphas, upstream) -> (K,)``
    for every a: the Frobenius norm of the gradient of ``sum(layer(x, V) * upstream)`` with
    respect to the weight the layer holds, ``V = a * weight``.
``losses_along_gradient(model, loss_fn, step_sizes) -> (K,)``
    g = the gradient of ``loss_fn()`` over every parameter of ``model``; ``L(w - eta * g)``
    for every eta, each step from the original w; the parameters are restored afterwards.
``gradient_changes(model, loss_fn, step_sizes) -> (K,)``
    ``||grad L(w) - grad L(w - eta * g)||`` over all parameters (one flat vector); restored.
``input_shift(model, layer, x, update) -> (mean_shift, std_shift)``
    the input of ``layer`` when ``model`` runs on the probe batch x, recorded (no grad) before
    and after one call of ``update()``; the mean over units of the absolute change of the
    per-unit batch mean, and of the per-unit (biased) std. No hook is left behind.
``gradient_ics(model, loss_fn, layer, lr) -> (difference, cosine)``
    Santurkar et al.'s covariate shift of ``layer`` (a module of the Sequential ``model`` with
    a ``weight``): G = dL/d(layer.weight); every parameter of the modules *before* layer takes
    the SGD step ``p - lr * dL/dp`` (gradients at the original point); G' = dL/d(layer.weight)
    there. Returns ``||G - G'||`` and ``cos(G, G')``; the parameters are restored.

The expected values are closed forms where the answer is analytic (a layer without
BatchNorm, a quadratic loss, least squares, a deep linear network, an additive update of a
Linear layer) and PyTorch autograd otherwise. Known-wrong variants (stepping along +g,
steps that accumulate, gradients accumulated in ``.grad``, absolute instead of relative
norms, the output of a layer instead of its input, ...) are computed on the same case and
name the mistake.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.diagnose import TIGHT, CheckFailure, as_float_array, name_mistake, on_cases, report
from utils.landscape import batch_loss, linear_bn, linear_only, make_mlp, resample_noise, sgd_step


def _as_array(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The learner's result (array, list, tensor or number) as float64 of ``shape``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    elif isinstance(value, (list, tuple)):
        value = [v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in value]
    return as_float_array(value, name, shape)


def assert_close_scaled(
    name: str, got, expected, scale: float, mistakes: dict | None = None, fallback: str = ""
) -> float:
    """``max|got - expected| / scale <= TIGHT`` or a CheckFailure naming the mistake.

    For values that may be zero (a perfectly invariant output, a layer with nothing before it)
    a relative error is meaningless; ``scale`` is the size the error is measured against."""
    expected = np.asarray(expected, dtype=np.float64)
    got = _as_array(got, name, expected.shape)
    err = float(np.max(np.abs(got - expected), initial=0.0)) / scale
    if err <= TIGHT:
        return err
    mistake = name_mistake(got, merge_equal(mistakes or {}))
    hint = f"it looks like {mistake}." if mistake else f"no known mistake matches; {fallback}"
    raise CheckFailure(
        f"{name}: error {err:.1e} against the reference (must be below {TIGHT:.0e}). "
        f"Likely mistake: {hint}"
    )


def merge_equal(mistakes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One entry per distinct value: when two mistakes give the same numbers on a case (a
    layer with nothing after it cannot tell "the layer moved too" from "every layer moved"),
    the hint names both."""
    merged: dict[str, np.ndarray] = {}
    for hint, value in mistakes.items():
        value = np.asarray(value, dtype=np.float64)
        same = next(
            (k for k, v in merged.items() if v.shape == value.shape and np.allclose(v, value)),
            None,
        )
        if same is None:
            merged[hint] = value
        else:
            merged[f"{same}; or {hint}"] = merged.pop(same)
    return merged


def _quietly(fn: Callable, *args):
    """``fn(*args)`` with Python warnings silenced: a harmless UserWarning of the learner's
    code (e.g. float() of a tensor that requires grad) would write to stderr, and nbgrader
    gives a test cell that writes to stderr no points."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _grad_prefill(model: nn.Module, seed: int) -> None:
    """Leave a stale gradient in every ``.grad``, as a training loop does between steps."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)


def _assert_restored(model: nn.Module, before: list, what: str) -> None:
    """The parameters of ``model`` are the same objects with the same values as ``before``
    (a list of (parameter, copy)), and the model is still in training mode (every case
    starts in it): a measurement must leave the model where it found it."""
    if not model.training:
        raise CheckFailure(
            f"{what} left the model in eval mode: measure in the mode the model is in "
            "(training mode here) and leave it there; calling model.eval() changes what "
            "BatchNorm computes."
        )
    params = list(model.parameters())
    if len(params) != len(before) or any(
        p is not q for p, (q, _) in zip(params, before, strict=True)
    ):
        raise CheckFailure(
            f"{what} replaced the model's parameters by new tensors; an optimizer still holds "
            "the old ones. Change their values in place (p.copy_(...) under torch.no_grad())."
        )
    moved = max(
        float((p.detach() - saved).abs().max()) / max(float(saved.abs().max()), 1e-12)
        for p, saved in before
    )
    if moved > TIGHT:
        raise CheckFailure(
            f"{what} left the parameters moved (relative change {moved:.1e}): the next "
            "training step would start from the wrong weights. Save copies of the parameters "
            "before stepping and copy them back at the end."
        )


def _snapshot(model: nn.Module) -> list:
    return [(p, p.detach().clone()) for p in model.parameters()]


def _tensor(array) -> torch.Tensor:
    return torch.tensor(np.array(array, dtype=np.float64))


# --- part 1: scale invariance -------------------------------------------------------------------

LAYERS: dict[str, Callable] = {
    "Linear -> BatchNorm (eps=0)": partial(linear_bn, eps=0.0),
    "Linear without BatchNorm": linear_only,
    "Linear -> BatchNorm (eps=1e-5)": partial(linear_bn, eps=1e-5),
    "Linear -> BatchNorm (eps=0) -> ReLU": lambda x, w: torch.relu(linear_bn(x, w) + 0.3),
    "Linear -> BatchNorm (eps=0.1)": partial(linear_bn, eps=0.1),
    # x enters through tanh: scaling x is no longer the same as scaling the weight
    "tanh -> Linear without BatchNorm": lambda x, w: linear_only(torch.tanh(x), w),
}


@dataclass(frozen=True)
class ScaleCase:
    layer_name: str
    n: int
    d_in: int
    d_out: int
    alphas: tuple[float, ...]
    seed: int

    @property
    def label(self) -> str:
        return f"{self.layer_name}, x ({self.n}, {self.d_in}), {self.d_out} outputs"

    @property
    def layer(self) -> Callable:
        return LAYERS[self.layer_name]

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fresh (weight (D_out, D_in), x (N, D_in), upstream (N, D_out)) float64 tensors."""
        rng = np.random.default_rng(self.seed)
        weight = rng.standard_normal((self.d_out, self.d_in)) / math.sqrt(self.d_in)
        x = 0.5 + rng.standard_normal((self.n, self.d_in)) * rng.uniform(0.5, 2.0, self.d_in)
        upstream = rng.standard_normal((self.n, self.d_out))
        return _tensor(weight), _tensor(x), _tensor(upstream)


def output_changes_reference(layer, weight, x, alphas, denominator: str = "base") -> np.ndarray:
    """The relative output changes; ``denominator`` "scaled" and "none" make known mistakes."""
    with torch.no_grad():
        base = layer(x, weight)
        scaled = [layer(x, a * weight) for a in alphas]
    norm = {"base": lambda s: base.norm(), "scaled": lambda s: s.norm(), "none": lambda s: 1.0}
    return np.array([float((s - base).norm() / norm[denominator](s)) for s in scaled])


def weight_gradient_norms_reference(
    layer, weight, x, alphas, upstream, wrt: str = "scaled"
) -> np.ndarray:
    """``||d sum(layer(x, a W) * upstream) / d(a W)||`` for each a, by autograd.

    wrt="weight" differentiates with respect to W instead, and "x" with respect to x: two
    known mistakes."""
    norms = []
    for a in alphas:
        w = weight.clone().requires_grad_(True)
        xin = x.clone().requires_grad_(True)
        scaled = a * w if wrt == "weight" else (a * w).detach().requires_grad_(True)
        out = (layer(xin, scaled) * upstream).sum()
        target = {"weight": w, "x": xin, "scaled": scaled}[wrt]
        (grad,) = torch.autograd.grad(out, target)
        norms.append(float(torch.linalg.matrix_norm(grad)))
    return np.array(norms)


def _closed_form_plain(case: ScaleCase, weight, x, upstream) -> tuple[np.ndarray, np.ndarray]:
    """Without BatchNorm, f(x; aW) = a f(x; W): the relative change is |a - 1| and the gradient
    upstream^T x does not depend on a."""
    alphas = np.array(case.alphas)
    grad = upstream.numpy().T @ x.numpy()
    return np.abs(alphas - 1.0), np.full(len(alphas), np.linalg.norm(grad))


def _call_scale(fn: Callable, case: ScaleCase, *extra: str) -> tuple[np.ndarray, tuple]:
    weight, x, upstream = case.inputs()
    given = (weight.clone(), x.clone(), upstream.clone())
    args = [case.layer, given[0], given[1], list(case.alphas)]
    if extra:
        args.append(given[2])
    result = _quietly(fn, *args)
    name = fn.__name__
    if not torch.equal(given[0], weight):
        raise CheckFailure(
            f"{name} changed weight in place (weight *= alpha or weight.mul_): the scales "
            "compound from one alpha to the next. Build a new tensor, alpha * weight."
        )
    if not torch.equal(given[1], x):
        raise CheckFailure(f"{name} changed x in place; scale the weight, never the input.")
    return _as_array(result, f"the result of {name}", (len(case.alphas),)), (weight, x, upstream)


def _output_changes_error(fn: Callable, case: ScaleCase) -> float:
    got, (weight, x, upstream) = _call_scale(fn, case)
    expected = output_changes_reference(case.layer, weight, x, case.alphas)
    if case.layer is linear_only:
        expected = _closed_form_plain(case, weight, x, upstream)[0]
    with torch.no_grad():
        base = case.layer(x, weight)
        scaled_x = [
            float((case.layer(a * x, weight) - base).norm() / base.norm()) for a in case.alphas
        ]
    mistakes = {
        "alpha applied to x, layer(alpha * x, weight); scale the weight: layer(x, alpha * "
        "weight)": np.array(scaled_x),
        "the absolute change ||f(alpha W) - f(W)||; divide it by ||f(W)|| to make it "
        "relative": output_changes_reference(case.layer, weight, x, case.alphas, "none"),
        "a change divided by ||f(alpha W)||, the scaled output; divide by ||f(W)||": (
            output_changes_reference(case.layer, weight, x, case.alphas, "scaled")
        ),
    }
    return assert_close_scaled(
        "the output changes", got, expected, 1.0, mistakes,
        "compare layer(x, alpha * weight) with layer(x, weight), both on the same x.",
    )  # fmt: skip


def _gradient_norms_error(fn: Callable, case: ScaleCase) -> float:
    got, (weight, x, upstream) = _call_scale(fn, case, "upstream")
    reference = partial(weight_gradient_norms_reference, case.layer, weight, x, case.alphas)
    expected = reference(upstream)
    if case.layer is linear_only:
        expected = _closed_form_plain(case, weight, x, upstream)[1]
    mistakes = {
        "the gradient with respect to W (or with alpha applied to x) instead of the weight "
        "the layer holds, alpha * W: make alpha * W a leaf tensor and differentiate with "
        "respect to it": reference(upstream, wrt="weight"),
        "the squared norm; take the square root": expected**2,
        "the gradient of out.sum(); weight the output by upstream: (out * upstream).sum()": (
            reference(torch.ones_like(upstream))
        ),
        "the gradient with respect to x, not the weight": reference(upstream, wrt="x"),
    }
    scale = max(float(np.max(expected)), 1e-12)
    return assert_close_scaled(
        "the gradient norms", got, expected, scale, mistakes,
        "for each alpha, differentiate sum(layer(x, V) * upstream) with respect to V = alpha * "
        "weight and take the Frobenius norm.",
    )  # fmt: skip


VISIBLE_SCALE_CASES = (
    ScaleCase("Linear -> BatchNorm (eps=0)", 16, 5, 4, (0.1, 0.5, 1.0, 3.0, 20.0), 0),
    ScaleCase("Linear without BatchNorm", 16, 5, 4, (0.1, 0.5, 1.0, 3.0, 20.0), 1),
)
HIDDEN_SCALE_CASES = (
    ScaleCase("Linear -> BatchNorm (eps=1e-5)", 32, 8, 6, (1e-3, 0.01, 1.0, 100.0), 2),
    ScaleCase("Linear -> BatchNorm (eps=0) -> ReLU", 9, 3, 7, (2.0, 0.25, 7.0), 3),
    ScaleCase("Linear -> BatchNorm (eps=0.1)", 2, 4, 1, (0.05, 1.5, 40.0), 4),
    ScaleCase("Linear without BatchNorm", 3, 1, 2, (0.3, 12.0), 5),
    ScaleCase("Linear -> BatchNorm (eps=0)", 50, 10, 3, (4.0,), 6),
    ScaleCase("tanh -> Linear without BatchNorm", 6, 3, 2, (0.5, 3.0), 7),
)


def check_output_changes(output_changes: Callable) -> None:
    """Visible check: the BatchNorm layer's output does not change with alpha, the plain
    layer's changes by exactly |alpha - 1|."""
    err = on_cases(VISIBLE_SCALE_CASES, partial(_output_changes_error, output_changes))
    report("output_changes (with and without BatchNorm)", err)


def check_output_changes_hidden(output_changes: Callable) -> None:
    """Hidden check: eps > 0, a ReLU after BatchNorm, N=2, D_out=1, one alpha."""
    cases = HIDDEN_SCALE_CASES
    err = on_cases(cases, partial(_output_changes_error, output_changes))
    report(f"output_changes on {len(cases)} hidden layers", err)


def check_weight_gradient_norms(weight_gradient_norms: Callable) -> None:
    """Visible check: the 1/alpha law with BatchNorm, a constant norm without."""
    err = on_cases(VISIBLE_SCALE_CASES, partial(_gradient_norms_error, weight_gradient_norms))
    report("weight_gradient_norms (with and without BatchNorm)", err)


def check_weight_gradient_norms_hidden(weight_gradient_norms: Callable) -> None:
    """Hidden check of weight_gradient_norms on the hidden layers."""
    cases = HIDDEN_SCALE_CASES
    err = on_cases(cases, partial(_gradient_norms_error, weight_gradient_norms))
    report(f"weight_gradient_norms on {len(cases)} hidden layers", err)


# --- part 2: the landscape along the gradient ---------------------------------------------------


class QuadraticBowl(nn.Module):
    """A model whose forward returns the loss ``0.5 * w^T A w`` of its one parameter w (D,)."""

    def __init__(self, w: np.ndarray, a: np.ndarray):
        super().__init__()
        self.w = nn.Parameter(_tensor(w))
        self.register_buffer("a", _tensor(a))

    def forward(self) -> torch.Tensor:
        return 0.5 * self.w @ self.a @ self.w


@dataclass(frozen=True)
class LandscapeCase:
    """kind: "quadratic" (A positive definite), "saddle" (A indefinite), "least squares"
    (nn.Linear with a bias, mean squared error), "mlp" or "mlp with BatchNorm" (cross-entropy
    on a random batch, training mode)."""

    kind: str
    dim: int
    step_sizes: tuple[float, ...]
    seed: int

    @property
    def label(self) -> str:
        return f"{self.kind}, {self.dim} inputs, step sizes {list(self.step_sizes)}"

    def _matrix(self, rng: np.random.Generator) -> np.ndarray:
        q, _ = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
        eigen = rng.uniform(0.5, 3.0, self.dim)
        if self.kind == "saddle":
            eigen[: self.dim // 2] *= -1
        return q @ np.diag(eigen) @ q.T

    def _regression_data(self, rng: np.random.Generator):
        x = rng.standard_normal((12, self.dim)) + 0.5
        return x, x @ rng.standard_normal(self.dim) + rng.standard_normal(12)

    def build(self) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
        """A fresh model and its loss closure, the same for the same case."""
        rng = np.random.default_rng(self.seed)
        if self.kind in ("quadratic", "saddle"):
            a = self._matrix(rng)
            model = QuadraticBowl(rng.standard_normal(self.dim), a)
            return model, model
        if self.kind == "least squares":
            x, y = self._regression_data(rng)
            model = nn.Linear(self.dim, 1).double()
            with torch.no_grad():
                model.weight.copy_(_tensor(rng.standard_normal((1, self.dim))))
                model.bias.copy_(_tensor(rng.standard_normal(1)))
            xt, yt = _tensor(x), _tensor(y)
            return model, lambda: F.mse_loss(model(xt).squeeze(1), yt)
        norm = "bn" if self.kind == "mlp with BatchNorm" else "none"
        model = make_mlp((self.dim, 7, 6, 3), norm, seed=self.seed)
        x = _tensor(rng.standard_normal((10, self.dim)))
        y = torch.tensor(rng.integers(0, 3, 10))
        return model, batch_loss(model, x, y)

    def closed_form(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(losses, gradient changes) from the formulas, for the analytic kinds; else None.

        Quadratic: g = A w, L(w - eta g) = 0.5 (w - eta g)^T A (w - eta g) and the gradient
        changes by eta A g. Least squares with the design matrix Xa = [X, 1]: g = (2/N) Xa^T r
        and the gradient changes by eta H g with H = (2/N) Xa^T Xa."""
        rng = np.random.default_rng(self.seed)
        etas = np.array(self.step_sizes)
        if self.kind in ("quadratic", "saddle"):
            a = self._matrix(rng)
            w = rng.standard_normal(self.dim)
            g = a @ w
            moved = w[None, :] - etas[:, None] * g[None, :]
            losses = 0.5 * np.einsum("ki,ij,kj->k", moved, a, moved)
            return losses, etas * np.linalg.norm(a @ g)
        if self.kind == "least squares":
            x, y = self._regression_data(rng)
            theta = np.concatenate([rng.standard_normal(self.dim), rng.standard_normal(1)])
            design = np.hstack([x, np.ones((len(x), 1))])
            g = 2 / len(x) * design.T @ (design @ theta - y)
            hessian = 2 / len(x) * design.T @ design
            moved = theta[None, :] - etas[:, None] * g[None, :]
            losses = np.mean((moved @ design.T - y[None, :]) ** 2, axis=1)
            return losses, etas * np.linalg.norm(hessian @ g)
        return None


def _flat_grad(loss_fn, params) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(), params)])


def _set_flat(params, flat: torch.Tensor) -> None:
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, params)


def along_gradient_reference(
    case: LandscapeCase,
    *,
    sign: float = -1.0,
    direction: str = "gradient",
    cumulative: bool = False,
) -> dict[str, np.ndarray]:
    """Losses and gradient changes of a fresh ``case`` along the step ``sign * eta * d``.

    The options make the known-wrong variants: direction "unit" (g / ||g||) or "stale" (g
    added to the stale ``.grad`` of ``_grad_prefill``); ``cumulative`` steps from where the
    previous step size ended. Returns a dict with
    "losses", "changes", "relative" (changes / ||g||), "new_norms" (||grad L(moved)||) and
    "accumulated" (the changes when every backward() adds to the same .grad).
    """
    model, loss_fn = case.build()
    params = list(model.parameters())
    start = torch.nn.utils.parameters_to_vector(params).detach().clone()
    grad = _flat_grad(loss_fn, params)
    step = {"gradient": grad, "unit": grad / grad.norm()}.get(direction)
    if direction == "stale":
        _grad_prefill(model, case.seed)
        step = grad + torch.cat([p.grad.reshape(-1) for p in params])
    first = step if direction == "stale" else grad  # the gradient the changes start from
    out = {"losses": [], "changes": [], "new_norms": [], "accumulated": []}
    piled = torch.zeros_like(grad)  # what .grad holds when nobody zeroes it between backwards
    point = start
    for eta in case.step_sizes:
        point = (point if cumulative else start) + sign * eta * step
        _set_flat(params, point)
        moved = _flat_grad(loss_fn, params)
        with torch.no_grad():
            out["losses"].append(float(loss_fn()))
        out["changes"].append(float((first - moved).norm()))
        out["new_norms"].append(float(moved.norm()))
        piled = piled + moved
        out["accumulated"].append(float(piled.norm()))
    result = {k: np.array(v) for k, v in out.items()}
    result["relative"] = result["changes"] / float(grad.norm())
    return result


LANDSCAPE_FALLBACK = (
    "start every step from the original weights w and step along minus the full gradient "
    "g of loss_fn at w (every parameter), w - eta * g."
)


def _run_landscape(fn: Callable, case: LandscapeCase) -> np.ndarray:
    model, loss_fn = case.build()
    _grad_prefill(model, case.seed)
    before = _snapshot(model)
    result = _quietly(fn, model, loss_fn, list(case.step_sizes))
    _assert_restored(model, before, fn.__name__)
    return _as_array(result, f"the result of {fn.__name__}", (len(case.step_sizes),))


def _expected(case: LandscapeCase, what: str) -> np.ndarray:
    closed = case.closed_form()
    if closed is not None:
        return closed[0] if what == "losses" else closed[1]
    return along_gradient_reference(case)[what]


def _variants(case: LandscapeCase, what: str) -> dict[str, np.ndarray]:
    ref = partial(along_gradient_reference, case)
    variants = {
        "a step along +g: a descent step moves to w - eta * g": ref(sign=1.0)[what],
        "steps that accumulate: each step size must start from the original weights w, "
        "not from where the previous one ended": ref(cumulative=True)[what],
        "the gradient was added to the stale .grad already stored in the parameters: call "
        "model.zero_grad() first, or use torch.autograd.grad": ref(direction="stale")[what],
        "a unit direction g / ||g||; the step is eta * g itself": ref(direction="unit")[what],
    }
    if what == "changes":
        variants.update(
            {
                "a relative change ||delta grad|| / ||g||; return the absolute norm": ref()[
                    "relative"
                ],
                "the norm of the gradient at the moved point, not of the change": ref()[
                    "new_norms"
                ],
                "gradients that pile up in .grad: each backward() adds to it, so zero it in "
                "between (model.zero_grad()) or use torch.autograd.grad": ref()["accumulated"],
                "the squared norm; take the square root": ref()["changes"] ** 2,
            }
        )
    return variants


def _landscape_error(fn: Callable, what: str, case: LandscapeCase) -> float:
    got = _run_landscape(fn, case)
    expected = _expected(case, what)
    scale = max(float(np.max(np.abs(expected))), 1e-12)
    name = "the losses" if what == "losses" else "the gradient changes"
    return assert_close_scaled(
        name, got, expected, scale, _variants(case, what), LANDSCAPE_FALLBACK
    )


VISIBLE_LANDSCAPE_CASES = (
    LandscapeCase("quadratic", 4, (0.05, 0.1, 0.2, 0.4), 0),
    LandscapeCase("mlp with BatchNorm", 5, (0.1, 0.5, 1.0), 1),
)
HIDDEN_LANDSCAPE_CASES = (
    LandscapeCase("saddle", 6, (0.3, 0.01, 0.1), 2),
    LandscapeCase("least squares", 3, (0.02, 0.2, 0.6), 3),
    LandscapeCase("mlp", 4, (0.2, 2.0), 4),
    LandscapeCase("mlp with BatchNorm", 6, (0.05,), 5),
)


def check_losses_along_gradient(losses_along_gradient: Callable) -> None:
    """Visible check: a quadratic bowl (closed form) and a BatchNorm MLP (autograd); the
    parameters must be restored."""
    check = partial(_landscape_error, losses_along_gradient, "losses")
    report("losses_along_gradient", on_cases(VISIBLE_LANDSCAPE_CASES, check))


def check_losses_along_gradient_hidden(losses_along_gradient: Callable) -> None:
    """Hidden check: a saddle, least squares, an MLP without BatchNorm, one step size."""
    check = partial(_landscape_error, losses_along_gradient, "losses")
    cases = HIDDEN_LANDSCAPE_CASES
    report(f"losses_along_gradient on {len(cases)} hidden cases", on_cases(cases, check))


def check_gradient_changes(gradient_changes: Callable) -> None:
    """Visible check of gradient_changes on the quadratic bowl and the BatchNorm MLP."""
    check = partial(_landscape_error, gradient_changes, "changes")
    report("gradient_changes", on_cases(VISIBLE_LANDSCAPE_CASES, check))


def check_gradient_changes_hidden(gradient_changes: Callable) -> None:
    """Hidden check of gradient_changes on the hidden cases."""
    check = partial(_landscape_error, gradient_changes, "changes")
    cases = HIDDEN_LANDSCAPE_CASES
    report(f"gradient_changes on {len(cases)} hidden cases", on_cases(cases, check))


# --- part 3a: the shift of a layer's input distribution -----------------------------------------


@dataclass(frozen=True)
class ShiftCase:
    """kind "additive": a Linear -> ReLU -> Linear network whose ``update()`` adds a fixed
    (delta W, delta b) to the first Linear (closed form); otherwise a ``make_mlp`` network of
    that norm ("none", "bn", "noisy") whose update is one SGD step. ``layer``: the index of
    the module whose input is measured. ``eval_mode``: the model is handed over in evaluation
    mode (its BatchNorm layers use their running statistics)."""

    kind: str
    layer: int
    seed: int
    n: int = 12
    eval_mode: bool = False

    @property
    def label(self) -> str:
        mode = ", model in eval mode" if self.eval_mode else ""
        return f"{self.kind} network, input of module {self.layer}, probe batch of {self.n}{mode}"

    def _additive(self, rng: np.random.Generator):
        w, b = rng.standard_normal((5, 4)), rng.standard_normal(5)
        dw, db = 0.3 * rng.standard_normal((5, 4)), 0.5 * rng.standard_normal(5)
        x = rng.standard_normal((self.n, 4)) * 1.5 + 0.2
        return w, b, dw, db, x

    def build(self) -> tuple[nn.Sequential, nn.Module, torch.Tensor, Callable[[], None]]:
        """A fresh (model, layer, x, update), the same for the same case."""
        rng = np.random.default_rng(self.seed)
        if self.kind == "additive":
            w, b, dw, db, x = self._additive(rng)
            model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()
            with torch.no_grad():
                model[0].weight.copy_(_tensor(w))
                model[0].bias.copy_(_tensor(b))

            def update():
                with torch.no_grad():
                    model[0].weight += _tensor(dw)
                    model[0].bias += _tensor(db)

            return model.train(not self.eval_mode), model[self.layer], _tensor(x), update
        model = make_mlp((6, 8, 8, 4), self.kind, seed=self.seed).train(not self.eval_mode)
        noise = np.random.default_rng(self.seed + 100)
        resample_noise(model, noise)
        x = _tensor(rng.standard_normal((self.n, 6)) + 0.3)
        xb = _tensor(rng.standard_normal((16, 6)))
        loss_fn = batch_loss(model, xb, torch.tensor(rng.integers(0, 4, 16)))

        def update():
            sgd_step(model, loss_fn, 0.5)
            resample_noise(model, noise)

        return model, model[self.layer], x, update

    def closed_form(self) -> tuple[float, float] | None:
        if self.kind != "additive":
            return None
        w, b, dw, db, x = self._additive(np.random.default_rng(self.seed))
        if self.layer == 0:
            return 0.0, 0.0  # the raw input does not depend on the weights
        pre = [x @ w.T + b, x @ (w + dw).T + b + db]
        if self.layer == 2:  # the input of the second Linear is the ReLU's output
            pre = [np.maximum(z, 0.0) for z in pre]
        stats = [(z.mean(axis=0), z.std(axis=0)) for z in pre]
        (m0, s0), (m1, s1) = stats
        return float(np.mean(np.abs(m1 - m0))), float(np.mean(np.abs(s1 - s0)))


def input_shift_reference(
    case: ShiftCase, *, where: str = "input", eval_mode: bool = False, train_mode: bool = False
):
    """(mean shift, std shift, elementwise shift, unbiased std shift) of a fresh ``case``.

    where="output" records the layer's output instead of its input; ``eval_mode`` records in
    evaluation mode, ``train_mode`` in training mode, whatever mode the model was in (all
    three known mistakes)."""
    model, layer, x, update = case.build()

    def record() -> torch.Tensor:
        seen = []
        hook = (
            layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
            if where == "output"
            else layer.register_forward_pre_hook(lambda m, i: seen.append(i[0].detach().clone()))
        )
        mode = model.training
        with torch.no_grad():
            model.train(train_mode or (mode and not eval_mode))(x)
        model.train(mode)
        hook.remove()
        return seen[0]

    before = record()
    update()
    after = record()
    var0, mean0 = torch.var_mean(before, dim=0, correction=0)
    var1, mean1 = torch.var_mean(after, dim=0, correction=0)
    return (
        float((mean1 - mean0).abs().mean()),
        float((var1.sqrt() - var0.sqrt()).abs().mean()),
        float((after - before).abs().mean()),
        float((after.std(dim=0) - before.std(dim=0)).abs().mean()),
    )


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


FORCED_TRAIN = (
    "the model was switched to training mode while recording; record in the model's current mode"
)


def _input_shift_error(fn: Callable, case: ShiftCase) -> float:
    model, layer, x, update = case.build()
    calls, during = [], []
    mode = model.training

    def counted_update():
        calls.append(1)
        if _hook_count(model):
            during.append(
                "a hook was still registered while update() ran: update() runs the model on "
                "its training batch, so the hook recorded that batch too. Remove the hook "
                "after the first recording and register it again for the second."
            )
        if not torch.is_grad_enabled():
            during.append(
                "update() was called inside torch.no_grad(): a training step needs "
                "gradients. Record under no_grad, but call update() outside it."
            )
        update()

    try:
        result = _quietly(fn, model, layer, x.clone(), counted_update)
    except Exception as error:
        if during and not _hook_count(model):
            raise CheckFailure(
                f"input_shift failed ({type(error).__name__}): {during[0]}"
            ) from None
        raise
    if _hook_count(model):
        raise CheckFailure(
            "input_shift left a hook registered on the model: it would record every later "
            "forward pass. Keep the handle and call handle.remove() (in a finally block)."
        )
    if during:
        raise CheckFailure(f"input_shift: {during[0]}")
    if model.training != mode:
        if model.training:
            raise CheckFailure(
                f"input_shift left the model in training mode; it looks like {FORCED_TRAIN} "
                "(eval here) and leave it in that mode."
            )
        raise CheckFailure(
            "input_shift left the model in eval mode; leave it in the mode it was given in "
            "(record in that mode too)."
        )
    if len(calls) != 1:
        raise CheckFailure(
            f"input_shift called update() {len(calls)} times; call it exactly once, between "
            "the two recordings (it is one training step)."
        )
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise CheckFailure("input_shift must return a tuple (mean_shift, std_shift).")
    got = _as_array(result, "(mean_shift, std_shift)", (2,))
    closed = case.closed_form()
    ref = input_shift_reference(case)
    expected = np.array(closed if closed is not None else ref[:2])
    output = input_shift_reference(case, where="output")
    # the mode the recordings were forced into, where it is not the model's own mode
    forced_mode = (
        (FORCED_TRAIN, input_shift_reference(case, train_mode=True))
        if case.eval_mode
        else (
            "the recordings ran in evaluation mode; record in the mode the model is in",
            input_shift_reference(case, eval_mode=True),
        )
    )
    mistakes = {
        "the output of layer was recorded, not its input (a forward pre-hook sees the input)": (
            np.array(output[:2])
        ),
        forced_mode[0]: np.array(forced_mode[1][:2]),
        "the mean of |after - before| over all entries; compare the per-unit batch means and "
        "stds": np.array([ref[2], ref[2]]),
        "the unbiased std (correction=1); use the biased one, like BatchNorm": np.array(
            [ref[0], ref[3]]
        ),
    }
    return assert_close_scaled(
        "(mean_shift, std_shift)", got, expected, 1.0, mistakes,
        "record the input of layer on x before and after update(), then compare the "
        "per-unit means and the per-unit (biased) stds over the batch.",
    )  # fmt: skip


VISIBLE_SHIFT_CASES = (ShiftCase("additive", 1, 0), ShiftCase("bn", 4, 1))
HIDDEN_SHIFT_CASES = (
    ShiftCase("additive", 0, 2),
    ShiftCase("additive", 2, 3, n=3),
    ShiftCase("none", 2, 4),
    ShiftCase("noisy", 3, 5, n=2),
    ShiftCase("bn", 1, 6, n=20),
    ShiftCase("bn", 3, 7, n=10, eval_mode=True),
)


def check_input_shift(input_shift: Callable) -> None:
    """Visible check: a closed-form additive update, and one SGD step of a BatchNorm MLP."""
    err = on_cases(VISIBLE_SHIFT_CASES, partial(_input_shift_error, input_shift))
    report("input_shift (mean shift, std shift)", err)


def check_input_shift_hidden(input_shift: Callable) -> None:
    """Hidden check: the raw input, after a ReLU, no BatchNorm, noisy BatchNorm, N=2, and a
    BatchNorm network handed over in eval mode."""
    cases = HIDDEN_SHIFT_CASES
    err = on_cases(cases, partial(_input_shift_error, input_shift))
    report(f"input_shift on {len(cases)} hidden cases", err)


# --- part 3b: Santurkar et al.'s gradient-based covariate shift ---------------------------------


@dataclass(frozen=True)
class IcsCase:
    """kind "deep linear": three bias-free Linear layers, loss 0.5 * mean over samples of
    ||W3 W2 W1 x - y||^2 (closed form); "mlp" / "mlp with BatchNorm": cross-entropy."""

    kind: str
    layer: int
    lr: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.kind}, module {self.layer}, lr={self.lr:g}"

    def _linear(self, rng: np.random.Generator):
        dims = (4, 5, 3, 2)
        weights = [
            rng.standard_normal((o, i)) / math.sqrt(i)
            for i, o in zip(dims[:-1], dims[1:], strict=True)
        ]
        x, y = rng.standard_normal((4, 9)), rng.standard_normal((2, 9))  # samples as columns
        return weights, x, y

    def build(self) -> tuple[nn.Sequential, Callable[[], torch.Tensor]]:
        rng = np.random.default_rng(self.seed)
        if self.kind == "deep linear":
            weights, x, y = self._linear(rng)
            model = nn.Sequential(*(nn.Linear(1, 1, bias=False) for _ in weights)).double()
            for module, w in zip(model, weights, strict=True):
                module.weight = nn.Parameter(_tensor(w))
            xt, yt = _tensor(x.T), _tensor(y.T)
            return model, lambda: 0.5 * ((model(xt) - yt) ** 2).sum(dim=1).mean()
        norm = "bn" if self.kind == "mlp with BatchNorm" else "none"
        model = make_mlp((5, 6, 6, 6, 3), norm, seed=self.seed)
        x = _tensor(rng.standard_normal((10, 5)))
        return model, batch_loss(model, x, torch.tensor(rng.integers(0, 3, 10)))

    def closed_form(self) -> tuple[float, float, float] | None:
        """(||G - G'||, cos, ||G||) for the deep linear network: with P_k the product of the
        weights after layer k and Q_k that before it times X, dL/dW_k = P_k^T R Q_k^T / N."""
        if self.kind != "deep linear":
            return None
        weights, x, y = self._linear(np.random.default_rng(self.seed))

        def grads(ws):
            n = x.shape[1]
            out = [x]
            for w in ws:
                out.append(w @ out[-1])
            back, result = out[-1] - y, [None] * len(ws)
            for k in range(len(ws) - 1, -1, -1):
                result[k] = back @ out[k].T / n
                back = ws[k].T @ back
            return result

        g = grads(weights)
        moved = [
            w - self.lr * gk if k < self.layer else w
            for k, (w, gk) in enumerate(zip(weights, g, strict=True))
        ]
        g0, g1 = g[self.layer], grads(moved)[self.layer]
        cosine = np.sum(g0 * g1) / (np.linalg.norm(g0) * np.linalg.norm(g1))
        return float(np.linalg.norm(g0 - g1)), float(cosine), float(np.linalg.norm(g0))


def gradient_ics_reference(case: IcsCase, *, updated: str = "before", sign: float = -1.0):
    """(||G - G'||, cos(G, G'), ||G||, <G, G'>) of a fresh ``case`` by autograd.

    updated: which modules take the SGD step: "before" the layer (correct), "through" (the
    layer too), "all", or "previous" (only the module right before the layer)."""
    model, loss_fn = case.build()
    modules = list(model)
    stepped = {
        "before": modules[: case.layer],
        "through": modules[: case.layer + 1],
        "all": modules,
        "previous": modules[max(case.layer - 1, 0) : case.layer],
    }[updated]
    params = [p for m in stepped for p in m.parameters()]
    weight = modules[case.layer].weight
    every = list(model.parameters())
    grads = dict(zip(every, torch.autograd.grad(loss_fn(), every), strict=True))
    g0 = grads[weight].clone()
    with torch.no_grad():
        for p in params:
            p.add_(sign * case.lr * grads[p])
    (g1,) = torch.autograd.grad(loss_fn(), [weight])
    dot = float((g0 * g1).sum())
    norm0, norm1 = float(g0.norm()), float(g1.norm())
    return float((g0 - g1).norm()), dot / (norm0 * norm1), norm0, dot


def _gradient_ics_error(fn: Callable, case: IcsCase) -> float:
    model, loss_fn = case.build()
    _grad_prefill(model, case.seed)
    before = _snapshot(model)
    result = _quietly(fn, model, loss_fn, model[case.layer], case.lr)
    _assert_restored(model, before, "gradient_ics")
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise CheckFailure("gradient_ics must return a tuple (difference, cosine).")
    got = _as_array(result, "(difference, cosine)", (2,))
    ref = gradient_ics_reference(case)
    closed = case.closed_form()
    diff, cosine, norm = closed if closed is not None else ref[:3]
    variants = {
        "the layer itself took the step too; only the modules before it move": {
            "updated": "through"
        },
        "every layer took the step; only the modules before the layer move": {"updated": "all"},
        "only the module right before the layer took the step; every module before it moves": {
            "updated": "previous"
        },
        "a step along +grad: the SGD step is p - lr * grad": {"sign": 1.0},
    }
    mistakes = {}
    for hint, options in variants.items():
        wrong = gradient_ics_reference(case, **options)
        mistakes[hint] = np.array(wrong[:2]) / [norm, 1.0]
    mistakes["a relative difference ||G - G'|| / ||G||; return the absolute norm"] = np.array(
        [ref[0] / norm, ref[1]]
    ) / [norm, 1.0]
    mistakes["an unnormalized dot product <G, G'> instead of the cosine"] = np.array(
        [ref[0], ref[3]]
    ) / [norm, 1.0]
    # Compare (difference / ||G||, cosine): both dimensionless, and the first may be exactly 0.
    return assert_close_scaled(
        "(difference / ||G||, cosine)", got / [norm, 1.0], np.array([diff / norm, cosine]), 1.0,
        mistakes,
        "take G = dL/d(layer.weight), step every parameter of the modules before layer, "
        "recompute the gradient of layer.weight with the same loss_fn, and restore.",
    )  # fmt: skip


VISIBLE_ICS_CASES = (IcsCase("deep linear", 2, 0.3, 0), IcsCase("mlp with BatchNorm", 6, 0.5, 1))
HIDDEN_ICS_CASES = (
    IcsCase("deep linear", 0, 0.3, 2),
    IcsCase("deep linear", 1, 1.0, 3),
    IcsCase("mlp", 4, 0.2, 4),
    IcsCase("mlp with BatchNorm", 3, 1.0, 5),
    IcsCase("mlp with BatchNorm", 9, 0.1, 6),
)


def check_gradient_ics(gradient_ics: Callable) -> None:
    """Visible check: a deep linear network (closed form) and a BatchNorm MLP (autograd)."""
    err = on_cases(VISIBLE_ICS_CASES, partial(_gradient_ics_error, gradient_ics))
    report("gradient_ics (difference, cosine)", err)


def check_gradient_ics_hidden(gradient_ics: Callable) -> None:
    """Hidden check: the first layer (nothing before it), other layers and learning rates."""
    cases = HIDDEN_ICS_CASES
    err = on_cases(cases, partial(_gradient_ics_error, gradient_ics))
    report(f"gradient_ics on {len(cases)} hidden cases", err)
