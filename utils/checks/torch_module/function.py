"""The ``BatchNormFunction`` checks: known-wrong Functions and the forward/backward checks
(autograd of ``F.batch_norm`` and ``torch.autograd.gradcheck``)."""

from __future__ import annotations

import numpy as np
import torch

from utils import reference
from utils.cases import LARGE_OFFSET, Case, make_case
from utils.checks.spatial import ChannelsLastCase, channels_last_view
from utils.checks.torch_module.common import (
    call_learner,
    per_channel,
    statistic_axes,
    tensor_like_case,
)
from utils.diagnose import CheckFailure, assert_close, on_cases, report
from utils.mistakes import describe

# --- known-wrong Functions (torch, float64), keyed by a description completing "it looks like"


def _wrong_forward(
    x, gamma, beta, eps, *, axes=None, correction=0, eps_outside=False, times_std=False
):
    axes = statistic_axes(x) if axes is None else axes
    var, mean = torch.var_mean(x, dim=axes, correction=correction, keepdim=True)
    std = var.sqrt() + eps if eps_outside else (var + eps).sqrt()
    scale = std if times_std else 1 / std
    return per_channel(gamma, x.dim()) * (x - mean) * scale + per_channel(beta, x.dim())


FUNCTION = {
    "m": "M",
    "mean": "mean",
    "variance": "variance",
    "statistics": "the mean and the variance",
    "dout": "dy",
}
"""The words of lesson 09's Function for ``utils.mistakes.describe``."""


def forward_mistakes(x, gamma, beta, eps) -> dict[str, np.ndarray]:
    """Known-wrong outputs of the forward on float64 tensors x (N, C, ...), gamma, beta (C,)."""
    nd = x.dim()
    variants = {
        "the variance is the unbiased one (correction=1, divided by M - 1); normalization uses "
        "the biased variance (divided by M, the number of values per channel)": dict(correction=1),
        describe("eps outside sqrt"): dict(eps_outside=True),
        describe("eps fixed"): {},
        "the statistics are taken over the batch axis only (dim=0); they run over every axis "
        "except the channel axis 1": dict(axes=[0]),
        "the statistics are taken per example (over every axis but 0); batch norm takes them "
        "per channel, over every axis except 1": dict(axes=list(range(1, nd))),
        "x - mean is multiplied by the standard deviation (gamma * std); normalizing divides "
        "by it: y = gamma * (x - mean) / sqrt(var + eps) + beta": dict(times_std=True),
    }
    out = {}
    with torch.no_grad():
        for description, options in variants.items():
            e = 1e-5 if description == describe("eps fixed") else eps
            out[description] = _wrong_forward(x, gamma, beta, e, **options).numpy()
        out[describe("gamma beta swapped", out="y")] = _wrong_forward(x, beta, gamma, eps).numpy()
    return out


def backward_mistakes(x, gamma, dy, eps) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma, dbeta on float64 tensors x, dy (N, C, ...) and gamma (C,)."""
    axes = statistic_axes(x)
    m = x.numel() // x.shape[1]
    var, mean = torch.var_mean(x, dim=axes, correction=0, keepdim=True)
    inv_std = torch.rsqrt(var + eps)
    x_hat = (x - mean) * inv_std
    g = per_channel(gamma, x.dim())
    dxh = dy * g
    mean_term = dxh.sum(axes, keepdim=True)
    var_term = x_hat * (dxh * x_hat).sum(axes, keepdim=True)

    def closed(dx_hat, mean_t, var_t, count=m):
        return (inv_std / count * (count * dx_hat - mean_t - var_t)).numpy()

    dx = {
        describe("dx without mean term", **FUNCTION): closed(dxh, 0, var_term),
        describe("dx without variance term", **FUNCTION): closed(dxh, mean_term, 0),
        describe("dx with constant statistics", **FUNCTION): (dxh * inv_std).numpy(),
        describe("dx without gamma", **FUNCTION): closed(
            dy, dy.sum(axes, keepdim=True), x_hat * (dy * x_hat).sum(axes, keepdim=True)
        ),
        "the mean term of dx sums dy without gamma; it is -sum(dx_hat) / M with dx_hat = "
        "gamma * dy": closed(dxh, dy.sum(axes, keepdim=True), var_term),
        "the mean term of dx has a flipped sign; it is subtracted: dx = inv_std / M * "
        "(M * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))": closed(
            dxh, -mean_term, var_term
        ),
    }
    if m > 1:
        dx[
            "dx uses M - 1 where the closed form has M = N*H*W, the number of values per "
            "channel (the biased variance divides by M, so its gradient does too)"
        ] = closed(dxh, mean_term, var_term, m - 1)
    if x.dim() > 2:
        dx[
            "the sums in dx run over the batch axis only (dim=0); they run over every axis "
            "except 1, and M is the number of values per channel"
        ] = closed(
            dxh, dxh.sum(0, keepdim=True), x_hat * (dxh * x_hat).sum(0, keepdim=True), x.shape[0]
        )
    sum_dy, sum_dy_xh = dy.sum(axes).numpy(), (dy * x_hat).sum(axes).numpy()
    return {
        "dx": dx,
        "dgamma": {
            "dgamma is sum(dy): the x_hat factor is missing, or dgamma and dbeta are swapped": (
                sum_dy
            ),
            "dgamma uses x instead of x_hat: dgamma = sum(dy * x_hat)": (dy * x).sum(axes).numpy(),
        },
        "dbeta": {
            "dbeta is sum(dy * x_hat): dgamma and dbeta are swapped": sum_dy_xh,
            "dbeta averages dy; it is the sum over every axis except 1": dy.mean(axes).numpy(),
        },
    }


# --- the BatchNormFunction checks ----------------------------------------------------------------

VISIBLE_SHAPES = ((5, 3), (2, 3, 2, 2))
HIDDEN_SHAPES = ((2, 1), (6, 4), (2, 1, 3, 2), (3, 2, 3), (1, 3, 2, 2), (4, 2, 1, 1))
SPECIAL_SHAPE = (3, 3, 2, 2)


def visible_cases() -> list[Case]:
    """A 2-D and a 4-D case."""
    return [
        make_case(s, 909 + i, f"visible case, x of shape {s}") for i, s in enumerate(VISIBLE_SHAPES)
    ]


def hidden_cases(seed: int = 9_090) -> list[Case]:
    """Random shapes (N=2, C=1, 3-D, a batch of one image, 1x1 maps), then on SPECIAL_SHAPE:
    far gamma/beta, a large offset, a near-constant channel, a channels-last view, a
    transposed and a strided x, and eps=1e-3."""
    cases = [make_case(s, seed + i, f"random x of shape {s}") for i, s in enumerate(HIDDEN_SHAPES)]
    special = [
        ("gamma and beta far from 1 and 0", {"far_affine": True}),
        (f"large mean offset ({LARGE_OFFSET:g})", {"offset": LARGE_OFFSET}),
        ("a near-constant channel (variance ~1e-7)", {"near_constant": True}),
        ("non-contiguous x (a transposed view)", {"layout": "transposed"}),
        ("non-contiguous x (every other entry of a wider tensor)", {"layout": "strided"}),
        ("eps=1e-3 passed as an argument", {"eps": 1e-3}),
    ]
    k = len(cases)
    for j, (label, options) in enumerate(special):
        cases.append(make_case(SPECIAL_SHAPE, seed + k + j, label, **options))
    last = make_case(SPECIAL_SHAPE, seed + 99, "non-contiguous x (channels_last memory format)")
    cases.append(ChannelsLastCase(**{**vars(last), "x": channels_last_view(last.x)}))
    return cases


def _inputs(case: Case, requires_grad: bool = True) -> tuple[torch.Tensor, ...]:
    return (
        tensor_like_case(case.x, requires_grad),
        torch.tensor(case.gamma, requires_grad=requires_grad),
        torch.tensor(case.beta, requires_grad=requires_grad),
    )


def require_own_backward(fn_cls) -> None:
    """CheckFailure unless ``fn_cls`` is a torch.autograd.Function defining its own backward."""
    if not (isinstance(fn_cls, type) and issubclass(fn_cls, torch.autograd.Function)):
        raise CheckFailure(f"{fn_cls!r} is not a subclass of torch.autograd.Function.")
    owner = next(k for k in fn_cls.__mro__ if "backward" in vars(k))
    if owner.__module__.startswith("torch"):
        raise CheckFailure(
            f"{fn_cls.__name__} does not define backward; autograd cannot differentiate a "
            "Function by itself. Write @staticmethod def backward(ctx, dy) returning "
            "(dx, dgamma, dbeta, None)."
        )


def _apply(fn_cls, x, gamma, beta, eps) -> torch.Tensor:
    """``fn_cls.apply(x, gamma, beta, eps)``, watched; the output must be the Function's own
    node in the graph (not autograd of other operations)."""
    name = fn_cls.__name__
    y = call_learner(f"{name}.apply(x, gamma, beta, eps)", fn_cls.apply, x, gamma, beta, eps)
    if not isinstance(y, torch.Tensor):
        raise CheckFailure(f"{name}.forward returned {type(y).__name__}, not a tensor.")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, gamma, beta)):
        if getattr(y.grad_fn, "_forward_cls", None) is not fn_cls:
            raise CheckFailure(
                f"the output of {name}.apply was not made by {name} (its grad_fn is "
                f"{type(y.grad_fn).__name__}): do not override apply; forward computes y "
                "without autograd, and backward gives its gradient."
            )
    return y


def _check_tensor(name: str, got, like: torch.Tensor) -> np.ndarray:
    """``got`` as a float64 array after checking it is a tensor of ``like``'s shape and dtype."""
    if not isinstance(got, torch.Tensor):
        kind = "None" if got is None else type(got).__name__
        raise CheckFailure(f"{name} is {kind}; expected a tensor of shape {tuple(like.shape)}.")
    if got.shape != like.shape:
        hint = ""
        if name in ("dgamma", "dbeta") and got.numel() != like.numel():
            hint = " Sum over every axis except the channel axis 1, e.g. dim=(0, 2, 3)."
        raise CheckFailure(
            f"{name} has shape {tuple(got.shape)}, expected {tuple(like.shape)}.{hint}"
        )
    if got.dtype != like.dtype:
        raise CheckFailure(f"{name} has dtype {got.dtype}, expected {like.dtype}.")
    return got.detach().cpu().numpy().astype(np.float64)


def _forward_one(fn_cls, case: Case) -> float:
    x, gamma, beta = _inputs(case, requires_grad=False)
    before = x.clone()
    y = _apply(fn_cls, x, gamma, beta, case.eps)
    if not torch.equal(x, before):
        raise CheckFailure(f"{fn_cls.__name__}.forward changed its input x in place.")
    expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    got = _check_tensor("y", y, torch.tensor(expected))
    mistakes = forward_mistakes(*(t.detach() for t in _inputs(case, False)), case.eps)
    return assert_close("y", got, expected, mistakes)


def _backward_one(fn_cls, case: Case, with_gradcheck: bool) -> float:
    """The learner's backward on ``case``: called directly (watched) and through the autograd
    engine, against autograd of F.batch_norm; then gradcheck against finite differences."""
    name = fn_cls.__name__
    x, gamma, beta = _inputs(case)
    dy = torch.tensor(case.dout)
    y = _apply(fn_cls, x, gamma, beta, case.eps)
    grads = call_learner(f"{name}.backward(ctx, dy)", y.grad_fn.apply, dy.clone())
    if not isinstance(grads, tuple) or len(grads) != 4:
        raise CheckFailure(
            f"{name}.backward must return 4 values, one per input of forward "
            "(dx, dgamma, dbeta, None for eps)."
        )
    if grads[3] is not None:
        raise CheckFailure(f"{name}.backward must return None for eps, a float, not a gradient.")
    expected = dict(
        zip(
            ("dx", "dgamma", "dbeta"),
            reference.batchnorm_gradients_reference(
                case.x, case.gamma, case.beta, case.dout, case.eps
            ),
            strict=True,
        )
    )
    mistakes = backward_mistakes(x.detach(), gamma.detach(), dy, case.eps)
    worst = 0.0
    for key, got, like in zip(("dx", "dgamma", "dbeta"), grads, (x, gamma, beta), strict=False):
        arr = _check_tensor(key, got, like.detach())
        worst = max(worst, assert_close(key, arr, expected[key], mistakes[key]))
    x2, g2, b2 = _inputs(case)
    y2 = _apply(fn_cls, x2, g2, b2, case.eps)
    via_engine = call_learner(
        "torch.autograd.grad through your Function",
        torch.autograd.grad,
        y2,
        (x2, g2, b2),
        dy,
        watch=False,
    )
    for key, got in zip(("dx", "dgamma", "dbeta"), via_engine, strict=True):
        worst = max(worst, assert_close(f"{key} through autograd", got.numpy(), expected[key]))
    if with_gradcheck:
        _gradcheck(fn_cls, case)
    return worst


def _gradcheck(fn_cls, case: Case) -> None:
    """torch.autograd.gradcheck: the learner's backward against finite differences of the
    learner's own forward (float64, nondefault tolerances are not needed)."""
    inputs = (*_inputs(case), case.eps)
    try:
        call_learner("gradcheck", torch.autograd.gradcheck, fn_cls.apply, inputs, watch=False)
    except CheckFailure as failure:
        first = str(failure).splitlines()[0]
        raise CheckFailure(
            f"torch.autograd.gradcheck: the backward disagrees with finite differences of "
            f"the forward ({first})."
        ) from None


def check_function_forward(fn_cls) -> None:
    """Visible check: BatchNormFunction.apply on a 2-D and a 4-D x against F.batch_norm."""
    err = on_cases(visible_cases(), lambda case: _forward_one(fn_cls, case))
    report(f"{fn_cls.__name__}.forward, x of shapes {VISIBLE_SHAPES}, vs F.batch_norm", err)


def check_function_forward_hidden(fn_cls) -> None:
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _forward_one(fn_cls, case))
    report(f"{fn_cls.__name__}.forward, {len(cases)} hidden cases, vs F.batch_norm", err)


def check_function_backward(fn_cls) -> None:
    """Visible check: backward defined by hand, against autograd of F.batch_norm, then
    torch.autograd.gradcheck on the 2-D and the 4-D case."""
    require_own_backward(fn_cls)
    err = on_cases(visible_cases(), lambda case: _backward_one(fn_cls, case, True))
    report(f"{fn_cls.__name__}.backward vs autograd of F.batch_norm", err)
    print(f"torch.autograd.gradcheck({fn_cls.__name__}.apply, float64 inputs): passed")


def check_function_backward_hidden(fn_cls) -> None:
    require_own_backward(fn_cls)
    cases = hidden_cases()
    err = on_cases(cases, lambda case: _backward_one(fn_cls, case, case.x.size <= 24))
    report(f"{fn_cls.__name__}.backward, {len(cases)} hidden cases", err)
    on_cases(cases[:2], lambda case: _only_x_requires_grad(fn_cls, case))


def _only_x_requires_grad(fn_cls, case: Case) -> float:
    """gamma and beta that do not require grad (ctx.needs_input_grad): dx is still right."""
    x = tensor_like_case(case.x, True)
    gamma, beta = torch.tensor(case.gamma), torch.tensor(case.beta)
    y = _apply(fn_cls, x, gamma, beta, case.eps)
    (dx,) = call_learner(
        "torch.autograd.grad with only x requiring grad",
        torch.autograd.grad,
        y,
        x,
        torch.tensor(case.dout),
        watch=False,
    )
    expected = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )[0]
    return assert_close("dx (gamma and beta not requiring grad)", dx.numpy(), expected)
