"""The scenario engine of the ``BatchNorm2d`` checks: scripts of steps (training batches,
mode switches, ``load_state_dict``), the tables that hold them, and the runner that steps a
module through one and records what to compare."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from utils.cases import signed, stream_parameters
from utils.checks.torch_module.common import (
    FLOAT32,
    TORCH_DTYPES,
    Other,
    in_kernel,
    kind_of,
    tensor_of,
)
from utils.diagnose import TIGHT, CheckFailure

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


def scenarios(table: dict, topic: str) -> list[Scenario]:
    return [make_scenario(label, seed, script, **kw) for label, seed, script, kw in table[topic]]


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
    """Runs PyTorch's (or a known-wrong) module through a scenario, here, and reads its state
    after each step. make: the class called as ``make(channels, **options)``."""

    make: Callable
    module: torch.nn.Module | None = None

    def read(self, *names) -> dict:
        return {n: _read(getattr(self.module, n, _MISSING)) for n in names}

    def start(self, s: Scenario) -> dict:
        self.module = self.make(s.channels, **s.options).to(s.device, s.dtype)
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
        x = torch.tensor(step.x, dtype=s.dtype, device=s.device)
        if s.layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        for param in self.module.parameters():
            param.grad = None
        y = self.module(x)
        y.backward(torch.tensor(step.dy, dtype=s.dtype, device=s.device))
        grads = {
            "y": _read(y),
            "x.grad": _read(x.grad),
            "weight.grad": _read(getattr(getattr(self.module, "weight", None), "grad", None)),
            "bias.grad": _read(getattr(getattr(self.module, "bias", None), "grad", None)),
        }
        return {**grads, **self.read(*BUFFERS)}


def value_of(described):
    """A ``utils.autograd_call.describe`` answer as what the comparison reads: a Value, None,
    a bool, _MISSING or an ``Other``."""
    if described is None or type(described) is bool:
        return described
    if kind_of(described) == "missing":
        return _MISSING
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
                s.channels,
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
            step.dy,
            state_arrays(step.state),
        )
        return values_of(answer)


def _pair(answer) -> tuple:
    if type(answer) is not tuple or len(answer) != 2:
        raise CheckFailure("the module could not be built.")
    return answer


def trace(make: Callable, s: Scenario, fn_cls=None) -> Iterator[dict]:
    """The values to compare after construction and after each step, lazily: PyTorch's and the
    known-wrong modules here, the learner's (``fn_cls`` given) where the learner's code runs."""
    runner = Runner(make) if fn_cls is None else LearnerRunner(make, fn_cls)
    yield runner.start(s)
    for step in s.steps:
        yield runner.step(s, step)


# known-wrong modules
