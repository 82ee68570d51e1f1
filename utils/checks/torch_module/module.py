"""The ``BatchNorm2d`` module checks: known-wrong modules, the step-by-step comparison with
``torch.nn.BatchNorm2d``, and the registered-state checks."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from utils.checks.torch_module.common import (
    in_kernel,
    kind_of,
    per_channel,
    statistic_axes,
    tensor_of,
)
from utils.checks.torch_module.scenario import (
    _MISSING,
    BUFFERS,
    VISIBLE,
    LearnerRunner,
    Scenario,
    Value,
    scenarios,
    trace,
    value_of,
)
from utils.diagnose import MATCH, CheckFailure, assert_close, generic_hint, report
from utils.gradcheck import relative_error
from utils.mistakes import describe

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


def check_module_modes(cls, fn_cls) -> None:
    """Visible check: train/eval switches, momentum=None, affine=False and
    track_running_stats=False."""
    _check_scenarios(cls, fn_cls, "modes and options", scenarios(VISIBLE, "modes"), False)


# registered state: parameters, buffers, state_dict, .double(), both directions of loading


def _layout(entries) -> dict[str, tuple]:
    return {name: (tuple(t.shape), t.dtype) for name, t in entries if t is not None}


def _listed(module) -> dict[str, list]:
    """The learner module's parameters(), buffers() and state_dict(): name -> described."""
    answer = in_kernel("module_listed", module)
    if type(answer) is not dict:
        raise CheckFailure("the module's parameters and buffers could not be read.")
    listed = {}
    for what in ("parameters()", "buffers()", "state_dict()"):
        entries = answer.get(what)
        if type(entries) is not list:
            raise CheckFailure(f"{what} could not be read.")
        listed[what] = [e for e in entries if type(e) is list and len(e) == 2]
    return listed


def _learner_layout(entries: list) -> dict[str, tuple]:
    """{name: (shape, dtype)} of the learner's listed tensors (None entries left out)."""
    out = {}
    for name, described in entries:
        value = value_of(described)
        if value is None:
            continue
        out[str(name)] = (
            (tuple(value.data.shape), value.dtype) if isinstance(value, Value) else (None, value)
        )
    return out


def compare_registration(cls, options: dict, channels: int = 3) -> None:
    """The learner's parameters, buffers and state_dict against nn.BatchNorm2d's: the same
    names, shapes and dtypes, at construction and after .double()."""
    ctor = f"BatchNorm2d({channels}{''.join(f', {k}={v!r}' for k, v in options.items())})"
    learner = in_kernel("module_new", cls, channels, dict(options), ctor)
    torch_bn = torch.nn.BatchNorm2d(channels, **options)
    for stage in ("at construction", "after .double()"):
        where = f"[{ctor}, {stage}]"
        if stage != "at construction":
            learner = in_kernel("module_double", learner, ctor)
            torch_bn = torch_bn.double()
        listed = _listed(learner)
        mine = {what: _learner_layout(entries) for what, entries in listed.items()}
        theirs = {
            "parameters()": _layout(torch_bn.named_parameters()),
            "buffers()": _layout(torch_bn.named_buffers()),
            "state_dict()": _layout(torch_bn.state_dict().items()),
        }
        for what in mine:
            _compare_layout(where, what, mine[what], theirs[what], mine["parameters()"])
        if stage == "at construction":
            _compare_initial_values(where, listed["state_dict()"], torch_bn)


def _compare_initial_values(where: str, state: list, torch_bn) -> None:
    """A fresh module starts where nn.BatchNorm2d starts: weight 1, bias 0, running_mean 0,
    running_var 1, num_batches_tracked 0."""
    mine = {str(name): tensor_of(described) for name, described in state}
    for name, value in torch_bn.state_dict().items():
        got = mine.get(name)
        if got is None:
            raise CheckFailure(f"{where} state_dict() has no tensor {name!r}.")
        got = got.double()
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
    runner = LearnerRunner(cls, fn_cls)
    runner.start(s)
    for step in s.steps:
        runner.step(s, step)
    state = {str(name): tensor_of(d) for name, d in _listed(runner.module)["state_dict()"]}
    torch_bn = torch.nn.BatchNorm2d(s.channels, **s.options).to(dtype=s.dtype)
    try:
        torch_bn.load_state_dict(state)
    except Exception as error:  # noqa: BLE001 - any refusal is the learner's
        raise CheckFailure(
            f"[{s.label}] nn.BatchNorm2d.load_state_dict(your_module.state_dict()) failed: "
            f"{str(error).splitlines()[0]}"
        ) from None
    x = torch.tensor(s.steps[-1].x, dtype=s.dtype)
    answer = in_kernel("module_eval_output", runner.module, s.steps[-1].x, s.device, str(s.dtype))
    got = tensor_of(answer)
    if got is None:
        raise CheckFailure(f"[{s.label}] forward in eval mode returned {kind_of(answer)}.")
    with torch.no_grad():
        expected = torch_bn.eval()(x).double()
    assert_close(
        f"[{s.label}] eval output after loading your state_dict into nn.BatchNorm2d",
        got.double().numpy(),
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
