"""The ``BatchNormFunction`` checks: known-wrong Functions and the forward/backward checks
(autograd of ``F.batch_norm`` and ``torch.autograd.gradcheck``)."""

from __future__ import annotations

import numpy as np
import torch

from utils import autograd_call, reference
from utils.cases import Case, make_case
from utils.checks.torch_module.common import (
    in_kernel,
    kind_of,
    tensor_like_case,
    tensor_of,
)
from utils.checks.twins import On, paired
from utils.diagnose import CheckFailure, assert_close, on_cases, report
from utils.mistakes import catalogue, describe
from utils.mistakes.catalogue import PER_SAMPLE, batch_sets

# --- known-wrong outputs (numpy, float64), keyed by a description completing "it looks like"

FUNCTION = {
    "m": "M",
    "mean": "mean",
    "variance": "variance",
    "statistics": "the mean and the variance",
    "dout": "dy",
    "upstream": "dy",
    "axes": "every axis except 1",
}
"""The words of lesson 09's Function for ``utils.mistakes.describe``."""

FORWARD_MISTAKES = {
    describe("unbiased variance, correction"): {"ddof": 1},
    describe("eps outside sqrt"): {"spread": "sqrt(v) + eps"},
    describe("eps fixed"): {"eps": 1e-5},
    describe("function over the batch axis"): {"over": (0,)},
    describe("function per example"): {"over": PER_SAMPLE},
    describe("times std"): {"spread": "1 / sqrt(v + eps)"},
    describe("gamma beta swapped", out="y"): {"affine": "beta * x_hat + gamma"},
}
"""description -> the switches of ``utils.mistakes.catalogue.wrong_forward``."""

DX_MISTAKES = {
    describe("dx without mean term", **FUNCTION): {"mean_term": 0},
    describe("dx without variance term", **FUNCTION): {"variance_term": 0},
    describe("dx with constant statistics", **FUNCTION): {"mean_term": 0, "variance_term": 0},
    describe("dx without gamma", **FUNCTION): {"with_gamma": False},
    describe("function mean term without gamma"): {"mean_of_dout": True},
    describe("function mean term flipped"): {"mean_term": -1},
}
"""description -> the switches of ``utils.mistakes.catalogue.wrong_dx``, on any x."""
M_MINUS_ONE = {describe("function dx uses M - 1"): {"count": "m - 1"}}
"""A dx mistake that only differs from the right one when a channel has more than one value."""
BATCH_AXIS_ONLY = {describe("function dx over the batch axis"): {"sum_axes": (0,)}}
"""A dx mistake that only differs from the right one when x has spatial axes."""

PARAMETER_MISTAKES = {
    "dgamma": {
        describe("dgamma is sum(dout)", **FUNCTION): "sum(dout)",
        describe("dgamma uses x", **FUNCTION): "sum(dout * x)",
    },
    "dbeta": {
        describe("dbeta is sum(dout * x_hat)", **FUNCTION): "sum(dout * x_hat)",
        describe("dbeta averages", **FUNCTION): "mean(dout)",
    },
}


def forward_mistakes(case: Case) -> dict[str, np.ndarray]:
    """Known-wrong outputs of the forward on ``case``: x (N, C, ...), gamma, beta (C,)."""
    sets = batch_sets(case.x.ndim)
    return catalogue.forward_mistakes(
        sets, case.x, case.gamma, case.beta, case.eps, FORWARD_MISTAKES
    )


def backward_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma, dbeta on ``case`` (upstream gradient ``case.dout``)."""
    x, dy, eps, sets = case.x, case.dout, case.eps, batch_sets(case.x.ndim)
    picks = dict(DX_MISTAKES)
    if x.size > x.shape[1]:
        picks |= M_MINUS_ONE
    if x.ndim > 2:
        picks |= BATCH_AXIS_ONLY
    return {
        "dx": catalogue.dx_mistakes(sets, x, case.gamma, dy, eps, picks),
        **{
            which: catalogue.parameter_mistakes(sets, x, dy, eps, p)
            for which, p in PARAMETER_MISTAKES.items()
        },
    }


# --- the BatchNormFunction checks ----------------------------------------------------------------

VISIBLE_SHAPES = ((5, 3), (2, 3, 2, 2))


def visible_cases() -> list[Case]:
    """A 2-D and a 4-D case."""
    return [
        make_case(s, 909 + i, f"visible case, x of shape {s}") for i, s in enumerate(VISIBLE_SHAPES)
    ]


def _inputs(case: Case, requires_grad: bool = True) -> tuple[torch.Tensor, ...]:
    return (
        tensor_like_case(case.x, requires_grad),
        torch.tensor(case.gamma, requires_grad=requires_grad),
        torch.tensor(case.beta, requires_grad=requires_grad),
    )


def require_own_backward(fn_cls) -> None:
    """CheckFailure unless ``fn_cls`` is a torch.autograd.Function defining its own backward."""
    facts = in_kernel("function_facts", fn_cls)
    if type(facts) is not dict or facts.get("function") is not True:
        shown = str(facts.get("repr", "your object")) if type(facts) is dict else "your object"
        raise CheckFailure(f"{shown} is not a subclass of torch.autograd.Function.")
    if facts.get("own_backward") is not True:
        raise CheckFailure(
            f"{_named(facts.get('name'))} does not define backward; autograd cannot "
            "differentiate a Function by itself. Write @staticmethod def backward(ctx, dy) "
            "returning (dx, dgamma, dbeta, None)."
        )


def _named(name) -> str:
    return str(name)[:100] if type(name) is str else "your Function"


def _name_of(fn_cls) -> str:
    return _named(getattr(fn_cls, "__name__", None))


def _own_node(name: str, answer: dict) -> None:
    """CheckFailure unless the output of apply was the Function's own node in the graph."""
    if answer.get("own_node") is not True:
        raise CheckFailure(
            f"the output of {name}.apply was not made by {name} (its grad_fn is "
            f"{_named(answer.get('node'))}): do not override apply; forward computes y "
            "without autograd, and backward gives its gradient."
        )


def _check_tensor(name: str, got, like: torch.Tensor) -> np.ndarray:
    """``got`` (a ``describe`` answer) as a float64 array after checking it is a tensor of
    ``like``'s shape and dtype."""
    t = tensor_of(got)
    if t is None:
        raise CheckFailure(
            f"{name} is {kind_of(got)}; expected a tensor of shape {tuple(like.shape)}."
        )
    if t.shape != like.shape:
        hint = ""
        if name in ("dgamma", "dbeta") and t.numel() != like.numel():
            hint = " Sum over every axis except the channel axis 1, e.g. dim=(0, 2, 3)."
        raise CheckFailure(
            f"{name} has shape {tuple(t.shape)}, expected {tuple(like.shape)}.{hint}"
        )
    if got.get("dtype") != str(like.dtype):
        raise CheckFailure(f"{name} has dtype {got.get('dtype')}, expected {like.dtype}.")
    return t.numpy().astype(np.float64)


def _arguments(case: Case) -> tuple:
    """(x as C-ordered float64, its layout, gamma, beta): what crosses to the learner."""
    x = np.asarray(case.x, dtype=np.float64)
    return np.ascontiguousarray(x), autograd_call.layout_of(x), case.gamma, case.beta


def _forward_one(fn_cls, case: Case) -> float:
    name = _name_of(fn_cls)
    answer = in_kernel("function_forward", fn_cls, *_arguments(case), case.eps)
    if type(answer) is not dict:
        raise CheckFailure(f"{name}.forward could not be run.")
    if kind_of(answer.get("y")) != "tensor":
        raise CheckFailure(f"{name}.forward returned {kind_of(answer.get('y'))}, not a tensor.")
    if answer.get("x_changed") is not False:
        raise CheckFailure(f"{name}.forward changed its input x in place.")
    expected = reference.batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
    got = _check_tensor("y", answer["y"], torch.tensor(expected))
    mistakes = forward_mistakes(case)
    return assert_close("y", got, expected, mistakes)


def _grad(fn_cls, case: Case, needs=(True, True, True), direct: bool = True) -> dict:
    """The learner's Function on ``case`` with upstream gradient ``case.dout``."""
    name = _name_of(fn_cls)
    answer = in_kernel(
        "function_grad", fn_cls, *_arguments(case), case.eps, case.dout, list(needs), direct
    )
    if type(answer) is not dict:
        raise CheckFailure(f"{name}.backward could not be run.")
    if kind_of(answer.get("y")) != "tensor":
        raise CheckFailure(f"{name}.forward returned {kind_of(answer.get('y'))}, not a tensor.")
    _own_node(name, answer)
    return answer


def engine_answers(answer: dict, count: int) -> list:
    """The ``count`` gradients torch.autograd.grad gave through the learner's Function, as
    the kernel described them (lessons 09 and 11)."""
    if type(answer.get("engine_error")) is str:
        raise CheckFailure(answer["engine_error"][:2000])
    engine = answer.get("engine")
    if type(engine) is not list or len(engine) != count:
        raise CheckFailure("torch.autograd.grad through your Function gave no gradients.")
    return engine


def _engine(answer: dict, count: int) -> list[torch.Tensor | None]:
    """The gradients torch.autograd.grad gave through the learner's Function."""
    return [tensor_of(g) for g in engine_answers(answer, count)]


def backward_items(name: str, described) -> list:
    """The 4 values the learner's backward returned (described), after checking there are 4
    and that the one for eps is None (lessons 09 and 11)."""
    items = described.get("items") if type(described) is dict else None
    if kind_of(described) != "tuple" or type(items) is not list or len(items) != 4:
        raise CheckFailure(
            f"{name}.backward must return 4 values, one per input of forward "
            "(dx, dgamma, dbeta, None for eps)."
        )
    if items[3] is not None:
        raise CheckFailure(f"{name}.backward must return None for eps, a float, not a gradient.")
    return items


def forward_losses(outputs, count: int, dout: np.ndarray, what: str) -> list[float]:
    """sum(dout * y) for each of the ``count`` forward outputs ``outputs`` (float arrays shaped
    like dout) that the kernel gave for perturbed inputs; ``what`` names the forward in
    messages (lessons 09 and 11)."""
    if type(outputs) is not list or len(outputs) != count:
        raise CheckFailure(f"{what} gave no outputs for perturbed inputs.")
    losses = []
    for y in outputs:
        if not isinstance(y, np.ndarray) or y.shape != dout.shape:
            raise CheckFailure(f"{what}'s output on a perturbed input is malformed.")
        losses.append(float(np.sum(dout * y.astype(np.float64))))
    return losses


def reference_gradients(case: Case) -> dict[str, np.ndarray]:
    """{"dx", "dgamma", "dbeta"}: autograd of F.batch_norm on ``case``, in float64."""
    grads = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )
    return dict(zip(("dx", "dgamma", "dbeta"), grads, strict=True))


def _backward_one(fn_cls, case: Case, with_gradcheck: bool) -> float:
    """The learner's backward on ``case``: called directly (watched) and through the autograd
    engine, against autograd of F.batch_norm; then finite differences of its own forward."""
    name = _name_of(fn_cls)
    x, gamma, beta = _inputs(case)
    answer = _grad(fn_cls, case)
    items = backward_items(name, answer.get("direct"))
    expected = reference_gradients(case)
    mistakes = backward_mistakes(case)
    worst = 0.0
    for key, got, like in zip(("dx", "dgamma", "dbeta"), items, (x, gamma, beta), strict=False):
        arr = _check_tensor(key, got, like.detach())
        worst = max(worst, assert_close(key, arr, expected[key], mistakes[key]))
    via_engine = _engine(answer, 3)
    for key, got in zip(("dx", "dgamma", "dbeta"), via_engine, strict=True):
        if got is None:
            raise CheckFailure(f"torch.autograd.grad through your Function gave no {key}.")
        worst = max(worst, assert_close(f"{key} through autograd", got.numpy(), expected[key]))
    if with_gradcheck:
        _gradcheck(fn_cls, case, [g.double().numpy() for g in via_engine])
    return worst


FD_STEP = 1e-6
"""The step of the centered differences (torch.autograd.gradcheck's eps)."""
FD_ATOL, FD_RTOL = 1e-5, 1e-3
"""gradcheck's tolerances: |analytic - numeric| <= atol + rtol * |numeric|, entry by entry."""


def _gradcheck(fn_cls, case: Case, analytic: list[np.ndarray]) -> None:
    """The learner's gradients (through autograd, upstream gradient ``case.dout``) against
    centered finite differences of the learner's own forward, entry by entry of x, gamma and
    beta, all forwards in one call (what torch.autograd.gradcheck checks, for this dy)."""
    x, layout, gamma, beta = _arguments(case)
    base = (x, gamma, beta)
    points = []
    for which, a in enumerate(base):
        for index in np.ndindex(a.shape):
            for sign in (1.0, -1.0):
                moved = [b.copy() for b in base]
                moved[which][index] += sign * FD_STEP
                points.append(tuple(moved))
    outputs = in_kernel("function_outputs", fn_cls, points, layout, case.eps)
    losses = forward_losses(outputs, len(points), case.dout, "gradcheck: the forward")
    numeric = (np.array(losses[0::2]) - np.array(losses[1::2])) / (2 * FD_STEP)
    got = np.concatenate([g.ravel() for g in analytic])
    bad = np.abs(got - numeric) > FD_ATOL + FD_RTOL * np.abs(numeric)
    if bad.any():
        i = int(np.argmax(bad))
        raise CheckFailure(
            "torch.autograd.gradcheck: the backward disagrees with finite differences of "
            f"the forward (entry {i}: analytical {got[i]:.6g}, numerical {numeric[i]:.6g})."
        )


@paired(lambda: On(visible_cases(), f", x of shapes {VISIBLE_SHAPES}, vs F.batch_norm"))
def check_function_forward(on: On, fn_cls) -> None:
    """Visible check: BatchNormFunction.apply on a 2-D and a 4-D x against F.batch_norm."""
    err = on_cases(on.cases, lambda case: _forward_one(fn_cls, case))
    report(f"{_name_of(fn_cls)}.forward{on.label}", err)


def check_function_backward(fn_cls) -> None:
    """Visible check: backward defined by hand, against autograd of F.batch_norm, then
    torch.autograd.gradcheck on the 2-D and the 4-D case."""
    require_own_backward(fn_cls)
    err = on_cases(visible_cases(), lambda case: _backward_one(fn_cls, case, True))
    report(f"{_name_of(fn_cls)}.backward vs autograd of F.batch_norm", err)
    print(f"torch.autograd.gradcheck({_name_of(fn_cls)}.apply, float64 inputs): passed")


def _only_x_requires_grad(fn_cls, case: Case) -> float:
    """gamma and beta that do not require grad (ctx.needs_input_grad): dx is still right."""
    answer = _grad(fn_cls, case, (True, False, False), direct=False)
    (dx,) = _engine(answer, 1)
    if dx is None:
        raise CheckFailure("torch.autograd.grad with only x requiring grad gave no dx.")
    expected = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout, case.eps
    )[0]
    return assert_close("dx (gamma and beta not requiring grad)", dx.numpy(), expected)
