"""Checks for lesson 09: batch normalization written as PyTorch code.

Three exercises are checked here, all in float64 against PyTorch:

* ``BatchNormFunction`` (a ``torch.autograd.Function``): its forward against
  ``F.batch_norm(training=True)``; its hand-written backward against autograd of
  ``F.batch_norm`` and against ``torch.autograd.gradcheck`` (finite differences of the
  learner's own forward). While the learner's code runs, a profiler refuses PyTorch's own
  normalization (any ``*_norm`` kernel of torch, whatever the spelling) and the autograd
  engine, so the gradient has to be written out by hand.
* ``BatchNorm2d`` (a ``torch.nn.Module``): stepped side by side with ``torch.nn.BatchNorm2d``
  through scripts of training batches, ``eval()``/``train()`` switches and ``load_state_dict``;
  after every step the output, the gradients of input, weight and bias, the running
  statistics and ``num_batches_tracked`` are compared (values and dtypes). Separate checks
  cover the registered state (parameters, buffers, ``state_dict``), ``.double()``, float32
  and device moves.
* ``fold_batchnorm``: a Linear or Conv2d followed by batch norm in eval mode must equal one
  Linear or Conv2d with the folded weight and bias (``F.linear``/``F.conv2d`` references),
  for numpy and torch inputs alike.

A failure names the case, the step and, by comparing with known-wrong variants run on the
same input, the likely mistake. Sections: forbidding PyTorch's normalization and autograd;
the references; the known-wrong variants; the Function checks; the module checks; the
folding checks.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from utils import reference
from utils.cases import LARGE_OFFSET, Case, make_case, signed, stream_parameters
from utils.checks.spatial import ChannelsLastCase, channels_last_view
from utils.diagnose import (
    MATCH,
    TIGHT,
    CheckFailure,
    assert_close,
    assert_default_eps,
    generic_hint,
    on_cases,
    report,
)
from utils.gradcheck import relative_error
from utils.mistakes import describe

FLOAT32 = 1e-5
"""Tolerance for float32 results against PyTorch's float32 results."""

# --- forbidding PyTorch's own normalization and autograd inside the learner's code -------------

NORM_KERNEL = re.compile(r"(batch|instance|layer|group|rms)_norm")
"""Names of torch functions that compute a normalization (F.batch_norm, torch.batch_norm,
torch.native_batch_norm, aten ops, decompositions, instance/layer/group norm that could be
bent into batch norm by a transpose)."""

TORCH_DIR = str(Path(torch.__file__).parent) + "/"
_PROFILER_SETTERS = tuple(
    f for f in (sys.setprofile, getattr(sys, "_setprofileallthreads", None)) if f is not None
)


@dataclass
class _Watcher:
    """A profiler that records the first forbidden torch call: a normalization kernel, or the
    autograd engine (``run_backward``, behind ``torch.autograd.grad`` and ``.backward()``)."""

    seen: list[str] = field(default_factory=list)
    tampered: bool = False
    armed: bool = True

    def __call__(self, frame, event, arg):
        if self.seen or not self.armed:
            return
        if event == "call" and frame.f_code.co_filename.startswith(TORCH_DIR):
            name = frame.f_code.co_name
            if name == "__call__" and frame.f_code.co_filename.endswith("_ops.py"):
                name = str(getattr(frame.f_locals.get("self"), "__name__", ""))  # torch.ops.aten
            self._record(name)
        elif event == "c_call":
            if any(arg is setter for setter in _PROFILER_SETTERS):
                self.tampered = True
            owner = (
                getattr(arg, "__module__", None) or type(getattr(arg, "__self__", None)).__name__
            )
            if "torch" in str(owner) or "Engine" in str(owner):
                self._record(getattr(arg, "__name__", ""))

    def _record(self, name: str) -> None:
        if NORM_KERNEL.search(name):
            self.seen.append(
                f"it calls PyTorch's own normalization ({name}); compute the mean, the biased "
                "variance and the normalization yourself with tensor operations"
            )
        elif name == "run_backward":
            self.seen.append(
                "it runs autograd (torch.autograd.grad or .backward()) inside; the backward "
                "must be written out by hand from the closed-form gradient"
            )


def _learner_error(what: str, error: Exception) -> CheckFailure:
    detail = f": {error}" if str(error) else ""
    if isinstance(error, NotImplementedError):
        detail += " (is the exercise filled in?)"
    return CheckFailure(f"{what} raised {type(error).__name__}{detail}")


def call_learner(what: str, fn: Callable, *args, watch: bool = True, **kwargs):
    """``fn(*args, **kwargs)``, the learner's code, with warnings silenced (stderr would zero
    the test cell). watch: refuse PyTorch's normalization and the autograd engine meanwhile.

    Raises CheckFailure naming ``what`` when fn calls something forbidden (even if it then
    fails), removes the profiler, or raises.
    """
    watcher = _Watcher() if watch else None
    previous, previous_threads = sys.getprofile(), threading.getprofile()
    if watcher is not None:
        sys.setprofile(watcher)
        threading.setprofile(watcher)
    result, raised = None, None
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = fn(*args, **kwargs)
    except CheckFailure:
        raise
    except Exception as error:  # the learner's own error, reported with what was called
        raised = error
    finally:
        if watcher is not None:
            watcher.armed = False
            watcher.tampered = watcher.tampered or sys.getprofile() is not watcher
            sys.setprofile(previous)
            threading.setprofile(previous_threads)
    if watcher is not None and watcher.tampered:
        raise CheckFailure(f"{what} changed the profiler (sys.setprofile); no points.")
    if watcher is not None and watcher.seen:
        raise CheckFailure(f"{what}: {watcher.seen[0]}. No points for this check.")
    if raised is not None:
        raise _learner_error(what, raised)
    return result


# --- references (float64 unless the case says otherwise) ---------------------------------------


def statistic_axes(x: torch.Tensor) -> list[int]:
    """Every axis but the channel axis 1: [0, 2, 3] for (N, C, H, W), [0] for (N, C)."""
    return list(reference.statistic_axes(x.dim()))


def per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """v (C,) shaped (1, C, 1, ...) to broadcast against an ``ndim``-D (N, C, ...) tensor."""
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def tensor_like_case(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """A float64 tensor with ``a``'s values and memory layout (a transposed, strided or
    channels-last view stays non-contiguous). A private copy: ``a`` is never written."""
    if a.flags.c_contiguous:
        t = torch.tensor(a)
    elif a.flags.f_contiguous:
        t = torch.tensor(np.ascontiguousarray(a.T)).permute(*reversed(range(a.ndim)))
    elif a.ndim == 4 and np.argsort(a.strides)[0] == 1:
        t = torch.tensor(np.array(a)).contiguous(memory_format=torch.channels_last)
    else:  # every other entry of a twice-wider tensor
        wide = torch.zeros(*a.shape[:-1], 2 * a.shape[-1], dtype=torch.float64)
        t = wide[..., ::2]
        t.copy_(torch.tensor(np.array(a)))
    return t.requires_grad_(requires_grad)


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


# --- the BatchNorm2d module checks ---------------------------------------------------------------

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Step:
    """One action on a module: "batch" (forward x, then backward dy), "train", "eval", or
    "load" (``load_state_dict(state)``, state a dict of float64/int64 tensors)."""

    action: str
    x: np.ndarray | None = None
    dy: np.ndarray | None = None
    state: dict | None = None


@dataclass(frozen=True)
class Scenario:
    """``BatchNorm2d(channels, **options)`` moved to ``device``/``dtype``, weight and bias set to
    gamma and beta (unless affine=False), then the steps. layout: "C" or "channels_last"."""

    label: str
    channels: int
    options: dict
    gamma: np.ndarray | None
    beta: np.ndarray | None
    steps: tuple[Step, ...]
    dtype: torch.dtype = torch.float64
    device: str = "cpu"
    layout: str = "C"

    def constructor(self) -> str:
        args = [str(self.channels)] + [f"{k}={v!r}" for k, v in self.options.items()]
        return f"BatchNorm2d({', '.join(args)})"

    @property
    def tolerance(self) -> float:
        return TIGHT if self.dtype == torch.float64 else FLOAT32


def _saved_state(rng: np.random.Generator, c: int, options: dict) -> dict:
    """A state_dict as a trained nn.BatchNorm2d(c, **options) would have it (float64)."""
    state = {}
    if options.get("affine", True):
        state["weight"] = torch.tensor(signed(rng, 0.5, 3.0, c))
        state["bias"] = torch.tensor(signed(rng, 0.2, 3.0, c))
    if options.get("track_running_stats", True):
        state["running_mean"] = torch.tensor(rng.normal(0.0, 3.0, c))
        state["running_var"] = torch.tensor(rng.uniform(0.05, 20.0, c))
        state["num_batches_tracked"] = torch.tensor(int(rng.integers(3, 50)))
    return state


def make_scenario(
    label: str,
    seed: int,
    script: str,
    channels: int = 3,
    spatial: tuple[int, int] = (2, 3),
    *,
    far_affine: bool = False,
    offset: float = 0.0,
    near_constant: bool = False,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    layout: str = "C",
    **options,
) -> Scenario:
    """A seeded scenario from a ``script`` of space-separated steps: a number N is a batch of
    N images (C channels of ``spatial`` positions) that drifts from batch to batch; "train",
    "eval" switch modes; "load" loads a seeded state_dict. ``options`` go to the constructor.
    far_affine: |gamma| 3-8, |beta| 5-20 (else 0.5-2 and 0.2-2); near_constant: channel 0 has
    spread ~3e-4; offset: added to every mean."""
    rng = np.random.default_rng(seed)
    c = channels
    loc, scale, gamma, beta = stream_parameters(
        rng, c, offset, near_constant, far_affine, options.get("affine", True)
    )
    steps = []
    for token in script.split():
        if token in ("train", "eval"):
            steps.append(Step(token))
        elif token == "load":
            steps.append(Step("load", state=_saved_state(rng, c, options)))
        else:
            shape = (int(token), c, *spatial)
            drift = rng.normal(0.0, 0.3, c) * scale
            x = per_channel_np(loc + drift, 4) + per_channel_np(scale, 4) * rng.normal(size=shape)
            steps.append(Step("batch", x, rng.normal(size=shape)))
    return Scenario(label, c, options, gamma, beta, tuple(steps), dtype, device, layout)


def per_channel_np(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape(1, -1, *([1] * (ndim - 2)))


TRAIN_3 = "4 3 2"
MODES = "4 3 eval 2 3 train 5 eval 1"
SWITCHING = "3 eval eval 2 train 4 train 2 eval 3 train 2 eval 1"

VISIBLE = {
    "training": [("default arguments, 3 training batches", 901, TRAIN_3, {})],
    "modes": [
        ("momentum=0.1, training then eval then training", 902, MODES, {}),
        ("momentum=None (cumulative average)", 903, "4 3 2 eval 2", {"momentum": None}),
        ("affine=False", 904, f"{TRAIN_3} eval 2", {"affine": False}),
        ("track_running_stats=False", 905, "4 eval 3 train 2", {"track_running_stats": False}),
    ],
    "state": [("load_state_dict of a trained nn.BatchNorm2d, then eval", 906, "2 load eval 3", {})],
}
"""topic -> (label, seed, script, options) of the visible scenarios (3 channels, 2 x 3 maps)."""

HIDDEN = {
    "training": [
        ("8 training batches, one channel, batches of 2", 911, "2 2 3 2 2 4 2 2", {"channels": 1}),
        (
            "momentum=0.3, eps=1e-3, far gamma/beta",
            912,
            TRAIN_3,
            {"momentum": 0.3, "eps": 1e-3, "far_affine": True},
        ),
        ("momentum=1.0, 1 x 1 maps", 913, TRAIN_3, {"momentum": 1.0, "spatial": (1, 1)}),
        ("momentum=0.0, a batch of one image", 914, "1 3 1", {"momentum": 0.0}),
        (f"large mean offset ({LARGE_OFFSET:g})", 915, TRAIN_3, {"offset": LARGE_OFFSET}),
        ("a near-constant channel", 916, TRAIN_3, {"near_constant": True}),
        ("channels_last input", 917, TRAIN_3, {"layout": "channels_last", "channels": 4}),
    ],
    "modes": [
        ("momentum=0.1, switching modes back and forth", 921, SWITCHING, {"channels": 4}),
        (
            "momentum=0.05, eps=1e-3, far gamma/beta",
            922,
            MODES,
            {"momentum": 0.05, "eps": 1e-3, "far_affine": True},
        ),
        ("eval right after construction", 923, "eval 3 train 2 eval 2", {}),
        ("momentum=None, switching modes", 924, SWITCHING, {"momentum": None}),
        (
            "momentum=None, affine=False, one channel",
            925,
            "3 2 4 eval 2",
            {"momentum": None, "affine": False, "channels": 1},
        ),
        (
            "affine=False, momentum=0.3, large offset",
            926,
            MODES,
            {"affine": False, "momentum": 0.3, "offset": LARGE_OFFSET},
        ),
        (
            "track_running_stats=False, switching modes",
            927,
            SWITCHING.replace(" 1", " 2"),
            {"track_running_stats": False},
        ),
        (
            "affine=False and track_running_stats=False",
            928,
            "3 eval 2",
            {"affine": False, "track_running_stats": False},
        ),
        (
            "momentum=None, track_running_stats=False",
            929,
            "3 2 eval 2",
            {"momentum": None, "track_running_stats": False},
        ),
    ],
    "state": [
        ("load_state_dict twice, training on", 931, "load 3 eval 2 load train 2 eval 2", {}),
        ("load_state_dict with momentum=None", 932, "2 load 3 eval 2", {"momentum": None}),
        ("load_state_dict, affine=False", 933, "load eval 2 train 3", {"affine": False}),
        ("float32 module and input", 934, MODES, {"dtype": torch.float32}),
        (
            "float32, momentum=None, channels_last",
            935,
            "3 2 eval 2",
            {"dtype": torch.float32, "momentum": None, "layout": "channels_last"},
        ),
    ],
}
"""topic -> (label, seed, script, options) of the hidden scenarios; options may also hold the
keyword arguments of make_scenario (channels, spatial, far_affine, offset, ...)."""

OPTION_SETS = (
    {},
    {"affine": False},
    {"track_running_stats": False},
    {"affine": False, "track_running_stats": False},
    {"momentum": None, "eps": 1e-3},
)
"""Constructor options whose registered state (parameters, buffers, state_dict) is compared."""


def scenarios(table: dict, topic: str) -> list[Scenario]:
    return [make_scenario(label, seed, script, **kw) for label, seed, script, kw in table[topic]]


def cuda_scenarios() -> list[Scenario]:
    """The module on CUDA (float64) against nn.BatchNorm2d on the CPU; [] without a GPU."""
    if not torch.cuda.is_available():
        return []
    return [
        make_scenario("on CUDA: training, eval, training", 941, MODES, device="cuda"),
        make_scenario(
            "on CUDA: momentum=None, load_state_dict",
            942,
            "3 load 2 eval 2",
            device="cuda",
            momentum=None,
        ),
    ]


# driving a module through a scenario


_MISSING = object()


@dataclass(frozen=True)
class Value:
    """A tensor read from a module, kept on the CPU with what the comparison needs to know."""

    data: torch.Tensor
    dtype: torch.dtype
    is_parameter: bool
    requires_grad: bool


def _read(value):
    if isinstance(value, torch.Tensor):
        return Value(
            value.detach().to("cpu", copy=True),
            value.dtype,
            isinstance(value, torch.nn.Parameter),
            value.requires_grad,
        )
    return value


@dataclass
class Runner:
    """Runs one module through a scenario and reads its state after each step.

    make: the class called as ``make(channels, **options)``. fn_cls: the learner's Function
    when ``make`` is the learner's module (calls are then watched and errors reported), None
    for PyTorch's module and the known-wrong ones.
    """

    make: Callable
    fn_cls: type | None = None
    module: torch.nn.Module | None = None

    def call(self, what: str, fn: Callable, *args, watch: bool = True):
        if self.fn_cls is None:
            return fn(*args)
        return call_learner(what, fn, *args, watch=watch)

    def read(self, *names) -> dict:
        return {n: _read(self.call(n, getattr, self.module, n, _MISSING)) for n in names}

    def start(self, s: Scenario) -> dict:
        module = self.call(s.constructor(), lambda: self.make(s.channels, **s.options))
        self.module = self.call(
            f"{s.constructor()}.to({s.device!r}, {s.dtype})", module.to, s.device, s.dtype
        )
        if s.gamma is not None:
            with torch.no_grad():
                for name, values in (("weight", s.gamma), ("bias", s.beta)):
                    param = self.call(name, getattr, self.module, name)
                    self.call(f"{name}.copy_(...)", param.copy_, torch.tensor(values))
        return self.read("training", "weight", "bias", *BUFFERS)

    def step(self, s: Scenario, step: Step) -> dict:
        if step.action == "batch":
            return self._batch(s, step)
        if step.action == "load":
            self.call("load_state_dict(state)", self.module.load_state_dict, dict(step.state))
            return self.read("weight", "bias", *BUFFERS)
        self.call(f"{step.action}()", getattr(self.module, step.action))
        return self.read("training", *BUFFERS)

    def _batch(self, s: Scenario, step: Step) -> dict:
        x = torch.tensor(step.x, dtype=s.dtype, device=s.device)
        if s.layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        for param in self.module.parameters():
            param.grad = None
        y = self.call("forward(x)", self.module, x)
        if not isinstance(y, torch.Tensor):
            raise CheckFailure(f"forward returned {type(y).__name__}, not a tensor.")
        if self.fn_cls is not None and _uses_batch_statistics(self.module):
            _require_function(y, self.fn_cls)
        dy = torch.tensor(step.dy, dtype=s.dtype, device=s.device)
        self.call("y.backward(dy)", y.backward, dy, watch=False)
        grads = {
            "y": _read(y),
            "x.grad": _read(x.grad),
            "weight.grad": _read(getattr(getattr(self.module, "weight", None), "grad", None)),
            "bias.grad": _read(getattr(getattr(self.module, "bias", None), "grad", None)),
        }
        return {**grads, **self.read(*BUFFERS)}


def _uses_batch_statistics(module) -> bool:
    return bool(module.training) or not getattr(module, "track_running_stats", True)


def _require_function(y: torch.Tensor, fn_cls) -> None:
    """CheckFailure unless the graph of y contains a node of the learner's Function."""
    queue, seen = [y.grad_fn], set()
    while queue:
        node = queue.pop()
        if node is None or id(node) in seen or len(seen) > 50:
            continue
        seen.add(id(node))
        if getattr(node, "_forward_cls", None) is fn_cls:
            return
        queue += [n for n, _ in node.next_functions]
    raise CheckFailure(
        f"in training mode the forward must normalize through your {fn_cls.__name__} "
        f"({fn_cls.__name__}.apply(x, weight, bias, self.eps)); it was not in the graph of y."
    )


def trace(make: Callable, s: Scenario, fn_cls=None) -> Iterator[dict]:
    """The values to compare after construction and after each step, lazily."""
    runner = Runner(make, fn_cls)
    yield runner.start(s)
    for step in s.steps:
        yield runner.step(s, step)


# known-wrong modules

MODULE_MISTAKES = {
    "biased": "running_var is updated with the biased batch variance; PyTorch stores the "
    "unbiased one (multiplied by M / (M - 1), M = N * H * W values per channel)",
    "keras": "the momentum weights are swapped (Keras' convention, running = momentum * "
    "running + (1 - momentum) * batch); PyTorch's is (1 - momentum) * running + momentum * batch",
    "none_ignored": "momentum=None is treated as 0.1; None means a cumulative average, weight "
    "1 / num_batches_tracked",
    "eval_batch": "eval mode normalizes with the batch statistics; it uses the running ones",
    "no_increment": "num_batches_tracked is not incremented in training",
    "updates_in_eval": "the running statistics are updated in eval mode too",
    "unbiased": "the normalization uses the unbiased variance; it uses the biased one (the "
    "running variance stores the unbiased one)",
    "eps_outside": describe("eps outside sqrt", use=""),
    "bessel_batch": "the unbiased running variance uses N / (N - 1) with N the batch size; the "
    "correction counts every value of a channel, M / (M - 1) with M = N * H * W",
    "eval_no_eps": "eval mode divides by sqrt(running_var) without eps; it is "
    "sqrt(running_var + eps)",
}


class KnownWrongBatchNorm2d(torch.nn.BatchNorm2d):
    """nn.BatchNorm2d with one classic mistake (a key of MODULE_MISTAKES), in plain torch."""

    def __init__(self, mistake: str, num_features: int, **options):
        super().__init__(num_features, **options)
        self.mistake = mistake

    def forward(self, x):
        mk, axes = self.mistake, statistic_axes(x)
        track = self.track_running_stats
        if track and (self.training or mk == "updates_in_eval"):
            self._update(x.detach(), axes)
        if self.training or not track or mk == "eval_batch":
            var, mean = torch.var_mean(x, axes, correction=int(mk == "unbiased"), keepdim=True)
        else:
            mean, var = per_channel(self.running_mean, 4), per_channel(self.running_var, 4)
        std = var.sqrt() + self.eps if mk == "eps_outside" else (var + self.eps).sqrt()
        if mk == "eval_no_eps" and not (self.training or not track):
            std = var.sqrt()
        y = (x - mean) / std
        if self.affine:
            y = y * per_channel(self.weight, 4) + per_channel(self.bias, 4)
        return y

    def _update(self, x, axes) -> None:
        mk, m = self.mistake, x.numel() // x.shape[1]
        var, mean = torch.var_mean(x, axes, correction=0)
        if mk != "no_increment":
            self.num_batches_tracked += 1
        if self.momentum is None:
            w = 0.1 if mk == "none_ignored" else 1.0 / float(self.num_batches_tracked)
        else:
            w = self.momentum
        w = 1 - w if mk == "keras" else w
        stored = var if mk == "biased" else var * m / (m - 1)
        if mk == "bessel_batch":
            n = x.shape[0]
            stored = var * n / (n - 1) if n > 1 else var * float("nan")
        self.running_mean.mul_(1 - w).add_(w * mean)
        self.running_var.mul_(1 - w).add_(w * stored)


def _partial_trace(mistake: str, s: Scenario) -> list[dict]:
    """A known-wrong module's snapshots (on the CPU), as far as it gets."""
    plain = dataclasses.replace(s, device="cpu")
    snapshots = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for snapshot in trace(lambda c, **o: KnownWrongBatchNorm2d(mistake, c, **o), plain):
                snapshots.append(snapshot)
        except Exception:  # noqa: BLE001 - a variant that breaks just stops naming mistakes
            pass
    return snapshots


def _agrees(got, wrong) -> bool:
    if not (isinstance(got, Value) and isinstance(wrong, Value)):
        return False
    a, b = got.data.double().numpy(), wrong.data.double().numpy()
    if a.shape != b.shape or not np.all(np.isfinite(b)):
        return False
    return relative_error(a, b) <= MATCH


def module_mistakes(s: Scenario, index: int, key: str, got, expected=None) -> list[str]:
    """Descriptions of the known-wrong modules that agree with ``got`` at ``key``; a mistake
    that gives the right ``expected`` value there too cannot explain the error and is left
    out (e.g. a wrong running_var does not change running_mean)."""
    found = []
    for mistake, description in MODULE_MISTAKES.items():
        wrong = _partial_trace(mistake, s)
        if len(wrong) <= index:
            continue
        value = wrong[index].get(key, _MISSING)
        if _agrees(got, value) and not (expected is not None and _agrees(expected, value)):
            found.append(description)
    return found


FLOAT32_HINT = (
    "an error of the size of float32 rounding: part of the computation ran in float32. "
    "1.0 / self.num_batches_tracked is a float32 tensor (the counter is an integer tensor): "
    "use float(self.num_batches_tracked) or .item(); create new tensors with dtype=x.dtype."
)


def _small_error_hint(s: Scenario, got: Value, expected: Value) -> str | None:
    """FLOAT32_HINT when a float64 scenario is off by float32 rounding only."""
    if s.dtype != torch.float64:
        return None
    err = relative_error(got.data.double().numpy(), expected.data.double().numpy())
    return FLOAT32_HINT if err < 1e-5 else None


# comparing snapshots


class _Mismatch(Exception):
    def __init__(self, message: str, numeric: bool = False):
        super().__init__(message)
        self.numeric = numeric


def _compare(key: str, got, expected, tol: float) -> float:
    """Relative error of the learner's ``got`` against nn.BatchNorm2d's ``expected``."""
    if key == "training":
        if got is not expected:
            raise _Mismatch(f"training is {got!r}, expected {expected}.")
        return 0.0
    if got is _MISSING:
        raise _Mismatch(
            f"the module has no attribute {key!r}; nn.BatchNorm2d has one "
            "(None when affine=False or track_running_stats=False)."
        )
    if expected is None:
        if got is not None:
            raise _Mismatch(f"{key} must be None here, as in nn.BatchNorm2d ({_why_none(key)}).")
        return 0.0
    if not isinstance(got, Value):
        raise _Mismatch(
            f"{key} is {got!r}, expected a tensor of shape {tuple(expected.data.shape)}."
        )
    if key in BUFFERS and got.is_parameter:
        raise _Mismatch(
            f"{key} is an nn.Parameter: running statistics are not trained by the optimizer; "
            f"register them with self.register_buffer({key!r}, ...)."
        )
    if key in BUFFERS and got.requires_grad:
        raise _Mismatch(
            f"{key} requires grad: it was computed from x with autograd on; update the running "
            "statistics under torch.no_grad() (or from x.detach())."
        )
    if got.data.shape != expected.data.shape:
        raise _Mismatch(
            f"{key} has shape {tuple(got.data.shape)}, expected {tuple(expected.data.shape)}."
        )
    if got.dtype != expected.dtype:
        raise _Mismatch(
            f"{key} has dtype {got.dtype}, nn.BatchNorm2d's has {expected.dtype}"
            + (
                " (a buffer registered with register_buffer follows .to() and .double())."
                if key in BUFFERS
                else "."
            )
        )
    err = relative_error(got.data.double().numpy(), expected.data.double().numpy())
    if not err <= tol:
        raise _Mismatch(
            f"{key}: relative error {err:.1e} against torch.nn.BatchNorm2d (must be below "
            f"{tol:.0e}).",
            numeric=True,
        )
    return err


def _why_none(key: str) -> str:
    if key in ("weight", "bias", "weight.grad", "bias.grad"):
        return "affine=False: no weight and bias; register_parameter(name, None)"
    return "track_running_stats=False: no running statistics; register_buffer(name, None)"


KEY_ORDER = ("training", "y", "x.grad", "weight", "bias", "weight.grad", "bias.grad", *BUFFERS)


def step_label(s: Scenario, index: int) -> str:
    if index == 0:
        return "after construction"
    step, mode = s.steps[index - 1], "training"
    for earlier in s.steps[: index - 1]:
        if earlier.action in ("train", "eval"):
            mode = "training" if earlier.action == "train" else "eval"
    if step.action == "batch":
        number = sum(t.action == "batch" for t in s.steps[:index])
        return f"batch {number} (x of shape {step.x.shape}, {mode} mode)"
    return f"after {step.action}()" if step.action != "load" else "after load_state_dict"


def compare_scenario(cls, fn_cls, s: Scenario) -> tuple[float, int]:
    """Run the learner's ``cls`` and nn.BatchNorm2d through ``s`` side by side.

    Returns (largest relative error, number of steps). Raises CheckFailure at the first
    difference, naming the scenario, the step and the likely mistake.
    """
    cpu = dataclasses.replace(s, device="cpu")
    traced = list(trace(torch.nn.BatchNorm2d, cpu))
    learner, worst = trace(cls, s, fn_cls), 0.0
    for index, expected in enumerate(traced):
        where = f"[{s.label}; {s.constructor()}] {step_label(s, index)}"
        try:
            got = next(learner)
        except CheckFailure as failure:
            raise CheckFailure(f"{where}: {failure}") from None
        for key in (k for k in KEY_ORDER if k in expected):
            try:
                worst = max(
                    worst, _compare(key, got.get(key, _MISSING), expected[key], s.tolerance)
                )
            except _Mismatch as mismatch:
                hint = ""
                if mismatch.numeric:
                    found = module_mistakes(s, index, key, got[key], expected[key])
                    small = _small_error_hint(s, got[key], expected[key])
                    hint = " Likely mistake: " + (
                        f"it looks like {'; or '.join(found)}"
                        if found
                        else small
                        or generic_hint(
                            got[key].data.double().numpy(), expected[key].data.double().numpy()
                        )
                    )
                raise CheckFailure(f"{where}: {mismatch}{hint}") from None
    return worst, len(s.steps)


def _check_scenarios(cls, fn_cls, what: str, cases: list[Scenario], hidden: bool) -> None:
    worst, steps = 0.0, 0
    for s in cases:
        err, count = compare_scenario(cls, fn_cls, s)
        worst, steps = max(worst, err), steps + count
    label = f"{len(cases)} {'hidden ' if hidden else ''}scenario{'s' * (len(cases) > 1)}"
    report(
        f"{cls.__name__}, {what}: {label}, {steps} steps side by side with nn.BatchNorm2d",
        worst,
        max(s.tolerance for s in cases),
    )


def check_module_training(cls, fn_cls) -> None:
    """Visible check: default arguments, three training batches (outputs, gradients, running
    statistics, num_batches_tracked), normalizing through ``fn_cls``."""
    _check_scenarios(cls, fn_cls, "training mode", scenarios(VISIBLE, "training"), False)


def check_module_training_hidden(cls, fn_cls) -> None:
    _check_scenarios(cls, fn_cls, "training mode", scenarios(HIDDEN, "training"), True)


def check_module_modes(cls, fn_cls) -> None:
    """Visible check: train/eval switches, momentum=None, affine=False and
    track_running_stats=False."""
    _check_scenarios(cls, fn_cls, "modes and options", scenarios(VISIBLE, "modes"), False)


def check_module_modes_hidden(cls, fn_cls) -> None:
    _check_scenarios(cls, fn_cls, "modes and options", scenarios(HIDDEN, "modes"), True)


# registered state: parameters, buffers, state_dict, .double(), both directions of loading


def _layout(entries) -> dict[str, tuple]:
    return {name: (tuple(t.shape), t.dtype) for name, t in entries if t is not None}


def compare_registration(cls, options: dict, channels: int = 3) -> None:
    """The learner's parameters, buffers and state_dict against nn.BatchNorm2d's: the same
    names, shapes and dtypes, at construction and after .double()."""
    ctor = f"BatchNorm2d({channels}{''.join(f', {k}={v!r}' for k, v in options.items())})"
    learner = call_learner(ctor, lambda: cls(channels, **options))
    torch_bn = torch.nn.BatchNorm2d(channels, **options)
    for stage in ("at construction", "after .double()"):
        where = f"[{ctor}, {stage}]"
        if stage != "at construction":
            learner = call_learner(f"{ctor}.double()", learner.double)
            torch_bn = torch_bn.double()
        mine = {
            "parameters()": _layout(call_learner("named_parameters()", learner.named_parameters)),
            "buffers()": _layout(call_learner("named_buffers()", learner.named_buffers)),
            "state_dict()": _layout(call_learner("state_dict()", learner.state_dict).items()),
        }
        theirs = {
            "parameters()": _layout(torch_bn.named_parameters()),
            "buffers()": _layout(torch_bn.named_buffers()),
            "state_dict()": _layout(torch_bn.state_dict().items()),
        }
        for what in mine:
            _compare_layout(where, what, mine[what], theirs[what], mine["parameters()"])
        if stage == "at construction":
            _compare_initial_values(where, learner, torch_bn)


def _compare_initial_values(where: str, learner, torch_bn) -> None:
    """A fresh module starts where nn.BatchNorm2d starts: weight 1, bias 0, running_mean 0,
    running_var 1, num_batches_tracked 0."""
    mine = dict(call_learner("state_dict()", learner.state_dict).items())
    for name, value in torch_bn.state_dict().items():
        got = mine[name].detach().cpu().double()
        if not torch.equal(got, value.double()):
            raise CheckFailure(
                f"{where} {name} starts at {got.numpy().round(4).tolist()}; nn.BatchNorm2d "
                f"starts it at {value.double().numpy().tolist()} (weight 1, bias 0, "
                "running_mean 0, running_var 1, num_batches_tracked 0: a fresh layer is the "
                "identity, and no batch has been seen yet)."
            )


def _compare_layout(where: str, what: str, got: dict, expected: dict, parameters: dict) -> None:
    misplaced = [n for n in BUFFERS if n in parameters]
    if misplaced:
        raise CheckFailure(
            f"{where} {misplaced[0]} is an nn.Parameter, so parameters() (and the optimizer) "
            f"include it: running statistics are state, not learned; use "
            f"self.register_buffer({misplaced[0]!r}, ...)."
        )
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    if missing:
        hint = (
            "a plain tensor attribute is not saved or moved: use self.register_buffer"
            if missing[0] in BUFFERS
            else "wrap it in nn.Parameter"
        )
        raise CheckFailure(
            f"{where} {what} lacks {missing[0]!r}, which nn.BatchNorm2d has ({hint})."
        )
    if extra:
        raise CheckFailure(
            f"{where} {what} has {extra[0]!r}, which nn.BatchNorm2d does not have; load_state_dict "
            "between the two modules would fail."
        )
    for name, (shape, dtype) in expected.items():
        if got[name] != (shape, dtype):
            raise CheckFailure(
                f"{where} {what}[{name!r}] has shape {got[name][0]} and dtype {got[name][1]}; "
                f"nn.BatchNorm2d's has shape {shape} and dtype {dtype}."
            )


def compare_saved_state(cls, fn_cls, s: Scenario) -> None:
    """Train the learner's module through ``s``, load its state_dict into a fresh
    nn.BatchNorm2d (strict) and check that both now compute the same in eval mode."""
    runner = Runner(cls, fn_cls)
    runner.start(s)
    for step in s.steps:
        runner.step(s, step)
    state = call_learner("state_dict()", runner.module.state_dict)
    torch_bn = torch.nn.BatchNorm2d(s.channels, **s.options).to(dtype=s.dtype)
    try:
        torch_bn.load_state_dict({k: v.cpu() for k, v in state.items()})
    except Exception as error:  # noqa: BLE001 - any refusal is the learner's
        raise CheckFailure(
            f"[{s.label}] nn.BatchNorm2d.load_state_dict(your_module.state_dict()) failed: "
            f"{str(error).splitlines()[0]}"
        ) from None
    x = torch.tensor(s.steps[-1].x, dtype=s.dtype)
    call_learner("eval()", runner.module.eval)
    with torch.no_grad():
        got = call_learner("forward(x)", runner.module, x.to(s.device)).cpu().double()
        expected = torch_bn.eval()(x).double()
    assert_close(
        f"[{s.label}] eval output after loading your state_dict into nn.BatchNorm2d",
        got.numpy(),
        expected.numpy(),
        tol=s.tolerance,
    )


def check_module_state(cls, fn_cls) -> None:
    """Visible check: parameters, buffers and state_dict as in nn.BatchNorm2d (default
    arguments, and after .double()); loading state_dicts both ways."""
    compare_registration(cls, {})
    print(
        "parameters(), buffers() and state_dict(): same names, shapes and dtypes as "
        "nn.BatchNorm2d — correct"
    )
    visible = scenarios(VISIBLE, "state")
    compare_saved_state(cls, fn_cls, visible[0])
    _check_scenarios(cls, fn_cls, "load_state_dict", visible, False)


def check_module_state_hidden(cls, fn_cls) -> None:
    for options in OPTION_SETS:
        compare_registration(cls, options)
    hidden = scenarios(HIDDEN, "state") + cuda_scenarios()
    for s in hidden:
        compare_saved_state(cls, fn_cls, s)
    _check_scenarios(cls, fn_cls, "state, dtypes and devices", hidden, True)


# --- the folding checks --------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldCase:
    """A Linear (weight (out, in)) or Conv2d (weight (out, in, kh, kw), padding 1) followed by
    batch norm in eval mode; the arrays are handed over as numpy arrays or as torch tensors
    (``kind``; "parameters": tensors that require grad, as read from a model)."""

    label: str
    weight: np.ndarray
    bias: np.ndarray | None
    running_mean: np.ndarray
    running_var: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    x: np.ndarray
    kind: str

    @property
    def layer(self) -> str:
        return "Linear" if self.weight.ndim == 2 else "Conv2d"

    def arguments(self) -> tuple:
        """Fresh copies of (weight, bias, running_mean, running_var, gamma, beta) of ``kind``."""
        arrays = (
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.gamma,
            self.beta,
        )
        if self.kind == "numpy":
            return tuple(None if a is None else a.copy() for a in arrays)
        grad = self.kind == "parameters"
        return tuple(
            None if a is None else torch.tensor(a, requires_grad=grad and i < 2)
            for i, a in enumerate(arrays)
        )


def make_fold_case(
    label: str,
    seed: int,
    weight_shape: tuple[int, ...],
    kind: str,
    *,
    bias: bool = True,
    far: bool = False,
    eps: float = 1e-5,
) -> FoldCase:
    """A seeded FoldCase. far: gamma of magnitude 3-8, beta 5-20, running means ~ 30 and
    running variances spread over 1e-3 to 1e2 (otherwise 0.5-2, 0.2-2, ~1 and 0.3-3)."""
    rng = np.random.default_rng(seed)
    out, fan_in = weight_shape[0], int(np.prod(weight_shape[1:]))
    weight = rng.normal(0.0, fan_in**-0.5, weight_shape)
    b = rng.normal(0.0, 1.0, out) if bias else None
    if far:
        mean, var = rng.normal(0.0, 30.0, out), 10.0 ** rng.uniform(-3, 2, out)
        gamma, beta = signed(rng, 3.0, 8.0, out), signed(rng, 5.0, 20.0, out)
    else:
        mean, var = rng.normal(0.0, 1.0, out), rng.uniform(0.3, 3.0, out)
        gamma, beta = signed(rng, 0.5, 2.0, out), signed(rng, 0.2, 2.0, out)
    x_shape = (4, weight_shape[1]) if len(weight_shape) == 2 else (2, weight_shape[1], 5, 4)
    x = rng.normal(size=x_shape)
    return FoldCase(label, weight, b, mean, var, gamma, beta, eps, x, kind)


def _layer(weight: torch.Tensor, bias, x: torch.Tensor) -> torch.Tensor:
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, padding=1)


def fold_reference(case: FoldCase) -> np.ndarray:
    """The layer, then BatchNorm in eval mode (running statistics, ``utils.reference``): the
    output to match."""
    t = {
        k: None if v is None else torch.tensor(v)
        for k, v in vars(case).items()
        if isinstance(v, np.ndarray) or v is None
    }
    with torch.no_grad():
        z = _layer(t["weight"], t["bias"], t["x"]).numpy()
    return reference.batchnorm_eval_reference(
        z, case.running_mean, case.running_var, case.gamma, case.beta, case.eps
    )


def _wrong_fold(case: FoldCase, mistake: str):
    """(weight, bias) folded with one classic mistake (numpy), or None where it cannot run."""
    w, rm, rv, g, beta, eps = (
        case.weight,
        case.running_mean,
        case.running_var,
        case.gamma,
        case.beta,
        case.eps,
    )
    b = np.zeros_like(rm) if case.bias is None else case.bias
    s = {
        "no_eps": g / np.sqrt(rv),
        "no_sqrt": g / (rv + eps),
        "eps_outside": g / (np.sqrt(rv) + eps),
    }.get(mistake, g / np.sqrt(rv + eps))
    per_row = s.reshape(-1, *([1] * (w.ndim - 1)))
    folded_w = w * per_row
    if mistake == "input_axis":
        if w.shape[0] != w.shape[1]:
            return None
        folded_w = w * s.reshape(1, -1, *([1] * (w.ndim - 2)))
    folded_b = {
        "no_mean": b * s + beta,
        "bias_unscaled": b - rm + beta,
        "no_beta": (b - rm) * s,
        "bias_dropped": -rm * s + beta,
    }.get(mistake, (b - rm) * s + beta)
    if mistake == "bias_dropped" and case.bias is None:
        return None
    return folded_w, folded_b


FOLD_MISTAKES = {
    "no_mean": "the running mean is forgotten: the folded bias is (b - running_mean) * scale "
    "+ beta",
    "no_eps": "eps is missing: scale = gamma / sqrt(running_var + eps)",
    "no_sqrt": "the square root is missing: scale = gamma / sqrt(running_var + eps), not "
    "gamma / (running_var + eps)",
    "eps_outside": "eps is added outside the square root: scale = gamma / sqrt(running_var + eps)",
    "input_axis": "the scale multiplies the input dimension (the columns, weight.shape[1]); it "
    "belongs to the output rows/channels: weight * scale[:, None] (Linear) or "
    "weight * scale[:, None, None, None] (Conv2d)",
    "bias_unscaled": "the bias is not scaled: the folded bias is (b - running_mean) * scale + beta",
    "no_beta": "beta is missing from the folded bias: (b - running_mean) * scale + beta",
    "bias_dropped": "the layer's own bias is dropped: the folded bias is (b - running_mean) * "
    "scale + beta",
}


def fold_mistakes(case: FoldCase) -> dict[str, np.ndarray]:
    """Outputs of the layer with each known-wrong fold, on the case's x."""
    out = {}
    for mistake, description in FOLD_MISTAKES.items():
        folded = _wrong_fold(case, mistake)
        if folded is not None:
            w, b = (torch.tensor(a) for a in folded)
            out[description] = _layer(w, b, torch.tensor(case.x)).numpy()
    return out


def _folded_as_tensors(case: FoldCase, result, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's (weight, bias) as float64 tensors, after checking kind and shapes."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailure(
            f"{name} must return a pair (weight, bias), got {type(result).__name__}."
        )
    kind = np.ndarray if case.kind == "numpy" else torch.Tensor
    inputs = "numpy arrays" if case.kind == "numpy" else "torch tensors"
    tensors = []
    for what, value, shape in zip(
        ("weight", "bias"), result, (case.weight.shape, case.running_mean.shape), strict=True
    ):
        if value is None:
            raise CheckFailure(
                f"the folded {what} is None; the folded layer always has a bias "
                "(running_mean and beta move into it)."
            )
        if not isinstance(value, kind):
            raise CheckFailure(
                f"the folded {what} is a {type(value).__module__}.{type(value).__name__} for "
                f"{inputs}: return the same kind as the inputs."
            )
        if tuple(value.shape) != tuple(shape):
            raise CheckFailure(
                f"the folded {what} has shape {tuple(value.shape)}, expected {tuple(shape)}."
            )
        if kind is torch.Tensor and value.dtype != torch.float64:
            raise CheckFailure(
                f"the folded {what} has dtype {value.dtype}; the inputs are float64."
            )
        tensors.append(
            torch.tensor(np.array(value)) if kind is np.ndarray else value.detach().clone()
        )
    return tensors[0], tensors[1]


def _fold_one(fold, case: FoldCase) -> float:
    name = getattr(fold, "__name__", "fold_batchnorm")
    args = case.arguments()
    result = call_learner(
        f"{name} ({case.layer}, {case.kind} inputs)", fold, *args, eps=case.eps, watch=False
    )
    originals = (case.weight, case.bias, case.running_mean, case.running_var, case.gamma, case.beta)
    for argument, before, after in zip(
        ("weight", "bias", "running_mean", "running_var", "gamma", "beta"),
        originals,
        args,
        strict=True,
    ):
        if before is not None and not np.array_equal(
            before, np.asarray(after.detach() if isinstance(after, torch.Tensor) else after)
        ):
            raise CheckFailure(
                f"{name} changed its input {argument} in place; the model still "
                "needs it. Build new arrays instead of *= or mul_."
            )
    weight, bias = _folded_as_tensors(case, result, name)
    with torch.no_grad():
        got = _layer(weight, bias, torch.tensor(case.x)).numpy()
    return assert_close(
        f"output of the folded {case.layer}", got, fold_reference(case), fold_mistakes(case)
    )


def visible_fold_cases() -> list[FoldCase]:
    return [
        make_fold_case("Linear 5 -> 4, numpy arrays", 951, (4, 5), "numpy"),
        make_fold_case("Conv2d 3 -> 4, 3 x 3 kernel, torch tensors", 952, (4, 3, 3, 3), "torch"),
    ]


def hidden_fold_cases() -> list[FoldCase]:
    return [
        make_fold_case("Linear 6 -> 3, torch tensors", 961, (3, 6), "torch"),
        make_fold_case("Conv2d 2 -> 5, numpy arrays", 962, (5, 2, 3, 3), "numpy"),
        make_fold_case("Linear 4 -> 4 without bias, numpy", 963, (4, 4), "numpy", bias=False),
        make_fold_case(
            "Conv2d 3 -> 3, 1 x 1 kernel, without bias, torch",
            964,
            (3, 3, 1, 1),
            "torch",
            bias=False,
        ),
        make_fold_case(
            "Linear 4 -> 4, far gamma/beta/running statistics, numpy",
            965,
            (4, 4),
            "numpy",
            far=True,
        ),
        make_fold_case(
            "Conv2d 4 -> 4, far statistics, eps=1e-3, torch",
            966,
            (4, 4, 3, 2),
            "torch",
            far=True,
            eps=1e-3,
        ),
        make_fold_case("Linear 7 -> 1, eps=1e-3, numpy", 967, (1, 7), "numpy", eps=1e-3),
        make_fold_case("Linear 5 -> 5, parameters that require grad", 968, (5, 5), "parameters"),
        make_fold_case(
            "Conv2d 3 -> 2, parameters that require grad, no bias",
            969,
            (2, 3, 3, 3),
            "parameters",
            bias=False,
            far=True,
        ),
    ]


FOLD_DEFAULT_EPS = 1e-5
"""The contract's (and nn.BatchNorm2d's) default eps of ``fold_batchnorm``."""


def _fold_default_eps(fold) -> None:
    """Called without eps, ``fold`` must use the contract's default: every other call passes
    eps explicitly, so a wrong default in the signature would go unnoticed."""
    name = getattr(fold, "__name__", "fold_batchnorm")
    case = dataclasses.replace(visible_fold_cases()[0], eps=FOLD_DEFAULT_EPS)
    result = call_learner(f"{name} called without eps", fold, *case.arguments(), watch=False)
    weight, bias = _folded_as_tensors(case, result, name)
    with torch.no_grad():
        got = _layer(weight, bias, torch.tensor(case.x)).numpy()
    assert_default_eps(name, got, fold_reference(case), FOLD_DEFAULT_EPS)


def check_fold(fold) -> None:
    """Visible check: a Linear (numpy) and a Conv2d (torch) followed by batch norm in eval mode
    equal one layer with the folded weight and bias; called without eps, the default is used."""
    err = on_cases(visible_fold_cases(), lambda case: _fold_one(fold, case))
    _fold_default_eps(fold)
    report("fold_batchnorm: folded Linear and Conv2d vs layer + F.batch_norm (eval)", err)


def check_fold_hidden(fold) -> None:
    cases = hidden_fold_cases()
    err = on_cases(cases, lambda case: _fold_one(fold, case))
    report(f"fold_batchnorm: {len(cases)} hidden cases", err)
