"""The scenario engine of the ``BatchNorm2d`` checks: scripts of steps (training batches,
mode switches, ``load_state_dict``), the tables that hold them, and the runner that steps a
module through one and records what to compare."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from utils.cases import LARGE_OFFSET, signed, stream_parameters
from utils.checks.torch_module.common import FLOAT32, call_learner
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
