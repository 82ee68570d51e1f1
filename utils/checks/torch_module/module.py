"""The ``BatchNorm2d`` module checks: stepped side by side with ``torch.nn.BatchNorm2d``
through scenarios (``utils.checks.scenario`` with lesson 09's adapter), and the registered
state (parameters, buffers, state_dict, loading it into PyTorch)."""

from __future__ import annotations

import torch

from utils.checks import scenario as engine
from utils.checks.scenario import Scenario
from utils.checks.torch_module.adapter import (
    BUFFERS,
    LESSON,
    LearnerRunner,
    Value,
    value_of,
)
from utils.checks.torch_module.common import in_kernel, kind_of, tensor_of
from utils.checks.torch_module.scenario import VISIBLE, scenarios
from utils.checks.twins import On, paired
from utils.diagnose import CheckFailure, assert_close

# --- side by side with nn.BatchNorm2d ------------------------------------------------------------


def compare_scenario(cls, fn_cls, s: Scenario) -> tuple[float, int]:
    """Run the learner's ``cls`` (normalizing through ``fn_cls`` in training) and
    nn.BatchNorm2d through ``s`` side by side.

    Returns (largest relative error, number of steps). Raises CheckFailure at the first
    difference, naming the scenario, the step and the likely mistake.
    """
    return engine.compare_scenario(LESSON, LearnerRunner(cls, fn_cls), s)


def _check_scenarios(cls, fn_cls, what: str, cases: list[Scenario], hidden: bool) -> None:
    name = getattr(cls, "__name__", "BatchNorm2d")
    engine.check_scenarios(LESSON, LearnerRunner(cls, fn_cls), name, what, cases, hidden)


@paired(lambda: On(scenarios(VISIBLE, "training")))
def check_module_training(on: On, cls, fn_cls) -> None:
    """Visible check: default arguments, three training batches (outputs, gradients, running
    statistics, num_batches_tracked), normalizing through ``fn_cls``."""
    _check_scenarios(cls, fn_cls, "training mode", on.cases, on.hidden)


@paired(lambda: On(scenarios(VISIBLE, "modes")))
def check_module_modes(on: On, cls, fn_cls) -> None:
    """Visible check: train/eval switches, momentum=None, affine=False and
    track_running_stats=False."""
    _check_scenarios(cls, fn_cls, "modes and options", on.cases, on.hidden)


# --- registered state: parameters, buffers, state_dict, .double(), both directions of loading


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
    torch_bn = torch.nn.BatchNorm2d(s.features, **s.options).to(dtype=s.dtype)
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
