"""Lesson 09's adapter to the scenario engine (``utils.checks.scenario``): running
``torch.nn.BatchNorm2d``, the known-wrong modules (here, on the CPU) and the learner's module
(through ``utils.autograd_call``, where the learner's code runs) through a scenario, comparing
one value with PyTorch's, and naming steps and mistakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from utils.checks import scenario as engine
from utils.checks.scenario import MISSING, Mismatch, Scenario, Step
from utils.checks.torch_module.common import (
    TORCH_DTYPES,
    Other,
    in_kernel,
    kind_of,
    per_channel,
    statistic_axes,
    tensor_of,
)
from utils.diagnose import MATCH, CheckFailure, generic_hint
from utils.gradcheck import relative_error
from utils.mistakes import describe

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

KEY_ORDER = ("training", "y", "x.grad", "weight", "bias", "weight.grad", "bias.grad", *BUFFERS)
"""The order in which the values of one step are compared (the first difference is reported)."""

# --- running a module through a scenario ---------------------------------------------------------


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
    """Runs PyTorch's (or a known-wrong) module through a scenario, here and on the CPU
    (whatever device the learner's module runs on), and reads its state after each step.
    make: the class called as ``make(channels, **options)``."""

    make: Callable
    module: torch.nn.Module | None = None

    def read(self, *names) -> dict:
        return {n: _read(getattr(self.module, n, MISSING)) for n in names}

    def start(self, s: Scenario) -> dict:
        self.module = self.make(s.features, **s.options).to("cpu", s.dtype)
        if s.gamma is not None:
            with torch.no_grad():
                self.module.weight.copy_(torch.tensor(s.gamma))
                self.module.bias.copy_(torch.tensor(s.beta))
        return self.read("training", "weight", "bias", *BUFFERS)

    def step(self, s: Scenario, step: Step) -> dict:
        if step.action == "batch":
            return self._batch(s, step)
        if step.action == "load":
            self.module.load_state_dict(dict(step.state))
            return self.read("weight", "bias", *BUFFERS)
        getattr(self.module, step.action)()
        return self.read("training", *BUFFERS)

    def _batch(self, s: Scenario, step: Step) -> dict:
        x = torch.tensor(step.x, dtype=s.dtype)
        if s.layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        for param in self.module.parameters():
            param.grad = None
        y = self.module(x)
        y.backward(torch.tensor(step.dout, dtype=s.dtype))
        grads = {
            "y": _read(y),
            "x.grad": _read(x.grad),
            "weight.grad": _read(getattr(getattr(self.module, "weight", None), "grad", None)),
            "bias.grad": _read(getattr(getattr(self.module, "bias", None), "grad", None)),
        }
        return {**grads, **self.read(*BUFFERS)}


def value_of(described):
    """A ``utils.autograd_call.describe`` answer as what the comparison reads: a Value, None,
    a bool, MISSING or an ``Other``."""
    if described is None or type(described) is bool:
        return described
    if kind_of(described) == "missing":
        return MISSING
    t = tensor_of(described)
    if t is None:
        return Other(kind_of(described))
    return Value(
        t,
        TORCH_DTYPES[described["dtype"]],
        described.get("parameter") is True,
        described.get("requires_grad") is True,
    )


def values_of(answer) -> dict:
    """The named reads of a module call, each through ``value_of``."""
    if type(answer) is not dict:
        raise CheckFailure("the module could not be read.")
    return {str(k): value_of(v) for k, v in answer.items()}


def state_arrays(state: dict | None) -> dict | None:
    """A step's state_dict as ndarrays (what crosses to the learner's code)."""
    return None if state is None else {k: v.numpy() for k, v in state.items()}


@dataclass
class LearnerRunner:
    """Runs the learner's module class ``make`` through a scenario, each step one call into the
    learner's process (``utils.autograd_call``); fn_cls: the learner's Function, which the
    forward must use in training mode."""

    make: object
    fn_cls: object
    module: object = None

    def start(self, s: Scenario) -> dict:
        self.module, reads = _pair(
            in_kernel(
                "module_start",
                self.make,
                s.features,
                dict(s.options),
                s.constructor(),
                s.device,
                str(s.dtype),
                s.gamma,
                s.beta,
            )
        )
        return values_of(reads)

    def step(self, s: Scenario, step: Step) -> dict:
        answer = in_kernel(
            "module_step",
            self.module,
            step.action,
            self.fn_cls,
            s.device,
            str(s.dtype),
            s.layout,
            step.x,
            step.dout,
            state_arrays(step.state),
        )
        return values_of(answer)


def _pair(answer) -> tuple:
    if type(answer) is not tuple or len(answer) != 2:
        raise CheckFailure("the module could not be built.")
    return answer


# --- known-wrong modules -------------------------------------------------------------------------

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


def _agrees(got, wrong) -> bool:
    if not (isinstance(got, Value) and isinstance(wrong, Value)):
        return False
    a, b = got.data.double().numpy(), wrong.data.double().numpy()
    if a.shape != b.shape or not np.all(np.isfinite(b)):
        return False
    return relative_error(a, b) <= MATCH


FLOAT32_HINT = (
    "an error of the size of float32 rounding: part of the computation ran in float32. "
    "1.0 / self.num_batches_tracked is a float32 tensor (the counter is an integer tensor): "
    "use float(self.num_batches_tracked) or .item(); create new tensors with dtype=x.dtype."
)


def _small_error_hint(s: Scenario, got: np.ndarray, expected: np.ndarray) -> str | None:
    """FLOAT32_HINT when a float64 scenario is off by float32 rounding only."""
    if s.dtype != torch.float64:
        return None
    return FLOAT32_HINT if relative_error(got, expected) < 1e-5 else None


def trace(make: Callable, s: Scenario):
    """The values PyTorch's (or a known-wrong) module ``make`` gives after construction and
    after each step of ``s``, lazily (here, on the CPU)."""
    return engine.trace(Runner(make), s)


def module_mistakes(s: Scenario, index: int, key: str, got, expected=None) -> list[str]:
    """Descriptions of the known-wrong modules that agree with ``got`` at ``key`` at step
    ``index``; a mistake that gives the right ``expected`` value there too cannot explain the
    error and is left out (e.g. a wrong running_var does not change running_mean)."""
    return engine.likely_mistakes(LESSON, s, index, {key: got}, {key: expected}, [key])


# --- comparing one value -------------------------------------------------------------------------


def compare_value(key: str, got, expected, tol: float) -> float:
    """Relative error of the learner's ``got`` against nn.BatchNorm2d's ``expected``."""
    if key == "training":
        if got is not expected:
            raise Mismatch(f"training is {got!r}, expected {expected}.")
        return 0.0
    if got is MISSING:
        raise Mismatch(
            f"the module has no attribute {key!r}; nn.BatchNorm2d has one "
            "(None when affine=False or track_running_stats=False)."
        )
    if expected is None:
        if got is not None:
            raise Mismatch(f"{key} must be None here, as in nn.BatchNorm2d ({_why_none(key)}).")
        return 0.0
    if not isinstance(got, Value):
        raise Mismatch(
            f"{key} is {got!r}, expected a tensor of shape {tuple(expected.data.shape)}."
        )
    if key in BUFFERS and got.is_parameter:
        raise Mismatch(
            f"{key} is an nn.Parameter: running statistics are not trained by the optimizer; "
            f"register them with self.register_buffer({key!r}, ...)."
        )
    if key in BUFFERS and got.requires_grad:
        raise Mismatch(
            f"{key} requires grad: it was computed from x with autograd on; update the running "
            "statistics under torch.no_grad() (or from x.detach())."
        )
    if got.data.shape != expected.data.shape:
        raise Mismatch(
            f"{key} has shape {tuple(got.data.shape)}, expected {tuple(expected.data.shape)}."
        )
    if got.dtype != expected.dtype:
        raise Mismatch(
            f"{key} has dtype {got.dtype}, nn.BatchNorm2d's has {expected.dtype}"
            + (
                " (a buffer registered with register_buffer follows .to() and .double())."
                if key in BUFFERS
                else "."
            )
        )
    array = got.data.double().numpy()
    err = relative_error(array, expected.data.double().numpy())
    if not err <= tol:
        raise Mismatch(
            f"{key}: relative error {err:.1e} against torch.nn.BatchNorm2d (must be below "
            f"{tol:.0e}).",
            array,
        )
    return err


def _why_none(key: str) -> str:
    if key in ("weight", "bias", "weight.grad", "bias.grad"):
        return "affine=False: no weight and bias; register_parameter(name, None)"
    return "track_running_stats=False: no running statistics; register_buffer(name, None)"


# --- the adapter ---------------------------------------------------------------------------------


class TorchModuleLesson:
    """Lesson 09 for the scenario engine: ``torch.nn.BatchNorm2d`` is the reference, the
    modules of ``MODULE_MISTAKES`` name the mistakes."""

    reference_name = "nn.BatchNorm2d"
    key_order = KEY_ORDER
    mistakes = MODULE_MISTAKES

    def reference(self) -> Runner:
        return Runner(torch.nn.BatchNorm2d)

    def known_wrong(self, mistake: str) -> Runner:
        return Runner(lambda c, **options: KnownWrongBatchNorm2d(mistake, c, **options))

    def compare(self, key: str, got, expected, scenario: Scenario) -> float:
        return compare_value(key, got, expected, scenario.tolerance)

    def explains(self, wrong: dict, got: dict, expected: dict, keys: list[str]) -> bool:
        """A known-wrong module explains a difference when it agrees with the learner's module
        on the failing value and differs from PyTorch there."""
        value = wrong.get(keys[-1], MISSING)
        right = expected[keys[-1]]
        return _agrees(got[keys[-1]], value) and not (right is not None and _agrees(right, value))

    def fallback_hint(self, scenario: Scenario, key: str, got: np.ndarray, expected) -> str:
        want = expected.data.double().numpy()
        return _small_error_hint(scenario, got, want) or generic_hint(got, want)

    def label(self, step: Step, number: int, mode: str) -> str:
        if step.action == "batch":
            return f"batch {number} (x of shape {step.x.shape}, {mode} mode)"
        return f"after {step.action}()" if step.action != "load" else "after load_state_dict"


LESSON = TorchModuleLesson()
