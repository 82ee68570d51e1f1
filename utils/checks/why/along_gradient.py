"""Lesson 08, part 2: the loss landscape along the gradient, with and without BatchNorm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from utils.checks.twins import On, paired
from utils.checks.why.common import (
    _as_array,
    _assert_restored,
    _name,
    assert_close_scaled,
    on_cases,
    run_on_case,
)
from utils.diagnose import report
from utils.landscape import bowl_matrix, landscape_model, regression_data, stale_gradients

# --- part 2: the landscape along the gradient ---------------------------------------------------


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

    def build(self) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
        """A fresh model and its loss closure, the same for the same case."""
        return landscape_model(self.kind, self.dim, self.seed)

    def closed_form(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(losses, gradient changes) from the formulas, for the analytic kinds; else None.

        Quadratic: g = A w, L(w - eta g) = 0.5 (w - eta g)^T A (w - eta g) and the gradient
        changes by eta A g. Least squares with the design matrix Xa = [X, 1]: g = (2/N) Xa^T r
        and the gradient changes by eta H g with H = (2/N) Xa^T Xa."""
        rng = np.random.default_rng(self.seed)
        etas = np.array(self.step_sizes)
        if self.kind in ("quadratic", "saddle"):
            a = bowl_matrix(self.kind, self.dim, rng)
            w = rng.standard_normal(self.dim)
            g = a @ w
            moved = w[None, :] - etas[:, None] * g[None, :]
            losses = 0.5 * np.einsum("ki,ij,kj->k", moved, a, moved)
            return losses, etas * np.linalg.norm(a @ g)
        if self.kind == "least squares":
            x, y = regression_data(self.dim, rng)
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
    added to the stale ``.grad`` of ``stale_gradients``); ``cumulative`` steps from where the
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
        stale_gradients(model, case.seed)
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
    seen = run_on_case(fn, "landscape", asdict(case))
    _assert_restored(seen, case.build()[0], _name(fn))
    return _as_array(seen.get("result"), f"the result of {_name(fn)}", (len(case.step_sizes),))


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


@paired(lambda: On(VISIBLE_LANDSCAPE_CASES, "losses_along_gradient"))
def check_losses_along_gradient(on: On, losses_along_gradient: Callable) -> None:
    """Visible check: a quadratic bowl (closed form) and a BatchNorm MLP (autograd); the
    parameters must be restored."""
    check = partial(_landscape_error, losses_along_gradient, "losses")
    report(on.label, on_cases(on.cases, check))


@paired(lambda: On(VISIBLE_LANDSCAPE_CASES, "gradient_changes"))
def check_gradient_changes(on: On, gradient_changes: Callable) -> None:
    """Visible check of gradient_changes on the quadratic bowl and the BatchNorm MLP."""
    check = partial(_landscape_error, gradient_changes, "changes")
    report(on.label, on_cases(on.cases, check))
