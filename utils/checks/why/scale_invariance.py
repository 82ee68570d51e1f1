"""Lesson 08, part 1: BatchNorm's output does not change when the weights before it are scaled,
and the weight gradient shrinks by the same factor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch

from utils.checks.twins import On, paired
from utils.checks.why.common import _as_array, _name, assert_close_scaled, on_cases, run_on_case
from utils.diagnose import CheckFailure, report
from utils.landscape import SCALE_LAYERS, linear_only, scale_inputs

# --- part 1: scale invariance -------------------------------------------------------------------

LAYERS = SCALE_LAYERS


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
        return scale_inputs(self.seed, self.n, self.d_in, self.d_out)


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
    """The learner's result on ``case`` (with ``upstream`` when ``extra`` names it), after
    checking that the weight and x it was given are unchanged; and the case's fresh inputs."""
    weight, x, upstream = case.inputs()
    seen = run_on_case(fn, "scale", asdict(case) | {"upstream": bool(extra)})
    name = _name(fn)
    if not _unchanged(seen, "weight", weight):
        raise CheckFailure(
            f"{name} changed weight in place (weight *= alpha or weight.mul_): the scales "
            "compound from one alpha to the next. Build a new tensor, alpha * weight."
        )
    if not _unchanged(seen, "x", x):
        raise CheckFailure(f"{name} changed x in place; scale the weight, never the input.")
    got = _as_array(seen.get("result"), f"the result of {name}", (len(case.alphas),))
    return got, (weight, x, upstream)


def _unchanged(seen: dict, key: str, given: torch.Tensor) -> bool:
    after = seen.get(key)
    return isinstance(after, np.ndarray) and np.array_equal(after, given.numpy())


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


@paired(lambda: On(VISIBLE_SCALE_CASES, "output_changes (with and without BatchNorm)"))
def check_output_changes(on: On, output_changes: Callable) -> None:
    """Visible check: the BatchNorm layer's output does not change with alpha, the plain
    layer's changes by exactly |alpha - 1|."""
    err = on_cases(on.cases, partial(_output_changes_error, output_changes))
    report(on.label, err)


@paired(lambda: On(VISIBLE_SCALE_CASES, "weight_gradient_norms (with and without BatchNorm)"))
def check_weight_gradient_norms(on: On, weight_gradient_norms: Callable) -> None:
    """Visible check: the 1/alpha law with BatchNorm, a constant norm without."""
    err = on_cases(on.cases, partial(_gradient_norms_error, weight_gradient_norms))
    report(on.label, err)
