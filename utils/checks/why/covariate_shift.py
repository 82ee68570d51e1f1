"""Lesson 08, part 3: the shift of a layer's input distribution (3a) and Santurkar et al.'s
gradient-based measure of internal covariate shift (3b)."""

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
    assert_close_scaled,
    on_cases,
    reported,
    run_on_case,
)
from utils.diagnose import CheckFailure, report
from utils.landscape import additive_shift_data, deep_linear_data, ics_model, shift_model

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

    def build(self) -> tuple[nn.Sequential, nn.Module, torch.Tensor, Callable[[], None]]:
        """A fresh (model, layer, x, update), the same for the same case."""
        return shift_model(self.kind, self.layer, self.seed, self.n, self.eval_mode)

    def closed_form(self) -> tuple[float, float] | None:
        if self.kind != "additive":
            return None
        w, b, dw, db, x = additive_shift_data(self.n, np.random.default_rng(self.seed))
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


FORCED_TRAIN = (
    "the model was switched to training mode while recording; record in the model's current mode"
)


def _update_mistakes(seen: dict) -> list[str]:
    """What was wrong around the calls of update(), from the report of ``run_on_case``."""
    mistakes = []
    if any(reported(seen, "hooks_during", int, listed=True)):
        mistakes.append(
            "a hook was still registered while update() ran: update() runs the model on "
            "its training batch, so the hook recorded that batch too. Remove the hook "
            "after the first recording and register it again for the second."
        )
    if not all(reported(seen, "grad_during", bool, listed=True)):
        mistakes.append(
            "update() was called inside torch.no_grad(): a training step needs "
            "gradients. Record under no_grad, but call update() outside it."
        )
    return mistakes


def _input_shift_error(fn: Callable, case: ShiftCase) -> float:
    seen = run_on_case(fn, "shift", asdict(case))
    during = _update_mistakes(seen)
    error = reported(seen, "error", str)
    hooks_left = reported(seen, "hooks_after", int)
    if error:
        if during and not hooks_left:
            raise CheckFailure(f"input_shift failed ({error.split(':')[0]}): {during[0]}")
        raise CheckFailure(f"input_shift failed with {error}")
    if hooks_left:
        raise CheckFailure(
            "input_shift left a hook registered on the model: it would record every later "
            "forward pass. Keep the handle and call handle.remove() (in a finally block)."
        )
    if during:
        raise CheckFailure(f"input_shift: {during[0]}")
    mode = reported(seen, "training_after", bool)
    if mode != (not case.eval_mode):
        if mode:
            raise CheckFailure(
                f"input_shift left the model in training mode; it looks like {FORCED_TRAIN} "
                "(eval here) and leave it in that mode."
            )
        raise CheckFailure(
            "input_shift left the model in eval mode; leave it in the mode it was given in "
            "(record in that mode too)."
        )
    calls = len(reported(seen, "hooks_during", int, listed=True))
    if calls != 1:
        raise CheckFailure(
            f"input_shift called update() {calls} times; call it exactly once, between "
            "the two recordings (it is one training step)."
        )
    result = seen.get("result")
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


@paired(lambda: On(VISIBLE_SHIFT_CASES, "input_shift (mean shift, std shift)"))
def check_input_shift(on: On, input_shift: Callable) -> None:
    """Visible check: a closed-form additive update, and one SGD step of a BatchNorm MLP."""
    err = on_cases(on.cases, partial(_input_shift_error, input_shift))
    report(on.label, err)


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

    def build(self) -> tuple[nn.Sequential, Callable[[], torch.Tensor]]:
        return ics_model(self.kind, self.seed)

    def closed_form(self) -> tuple[float, float, float] | None:
        """(||G - G'||, cos, ||G||) for the deep linear network: with P_k the product of the
        weights after layer k and Q_k that before it times X, dL/dW_k = P_k^T R Q_k^T / N."""
        if self.kind != "deep linear":
            return None
        weights, x, y = deep_linear_data(np.random.default_rng(self.seed))

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
    seen = run_on_case(fn, "ics", asdict(case))
    _assert_restored(seen, case.build()[0], "gradient_ics")
    result = seen.get("result")
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


@paired(lambda: On(VISIBLE_ICS_CASES, "gradient_ics (difference, cosine)"))
def check_gradient_ics(on: On, gradient_ics: Callable) -> None:
    """Visible check: a deep linear network (closed form) and a BatchNorm MLP (autograd)."""
    err = on_cases(on.cases, partial(_gradient_ics_error, gradient_ics))
    report(on.label, err)
