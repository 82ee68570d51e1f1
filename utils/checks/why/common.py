"""What lesson 08's checks share: the comparison, the call of the learner's measurement on a
case (here or in the graded kernel) and the checks on what it left behind."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from utils import diagnose, landscape
from utils.diagnose import TIGHT, CheckFailure, as_float_array, name_mistake
from utils.guard import _checker_session
from utils.reference import one_torch_thread


def _as_array(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The learner's result (array, list, tensor or number) as float64 of ``shape``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    elif isinstance(value, (list, tuple)):
        value = [v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in value]
    return as_float_array(value, name, shape)


def assert_close_scaled(
    name: str, got, expected, scale: float, mistakes: dict | None = None, fallback: str = ""
) -> float:
    """``max|got - expected| / scale <= TIGHT`` or a CheckFailure naming the mistake.

    For values that may be zero (a perfectly invariant output, a layer with nothing before it)
    a relative error is meaningless; ``scale`` is the size the error is measured against."""
    expected = np.asarray(expected, dtype=np.float64)
    got = _as_array(got, name, expected.shape)
    err = float(np.max(np.abs(got - expected), initial=0.0)) / scale
    if err <= TIGHT:
        return err
    mistake = name_mistake(got, merge_equal(mistakes or {}))
    hint = f"it looks like {mistake}." if mistake else f"no known mistake matches; {fallback}"
    raise CheckFailure(
        f"{name}: error {err:.1e} against the reference (must be below {TIGHT:.0e}). "
        f"Likely mistake: {hint}"
    )


def merge_equal(mistakes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One entry per distinct value: when two mistakes give the same numbers on a case (a
    layer with nothing after it cannot tell "the layer moved too" from "every layer moved"),
    the hint names both."""
    merged: dict[str, np.ndarray] = {}
    for hint, value in mistakes.items():
        value = np.asarray(value, dtype=np.float64)
        same = next(
            (k for k, v in merged.items() if v.shape == value.shape and np.allclose(v, value)),
            None,
        )
        if same is None:
            merged[hint] = value
        else:
            merged[f"{same}; or {hint}"] = merged.pop(same)
    return merged


def on_cases(cases, check: Callable) -> float:
    """``utils.diagnose.on_cases`` with torch on one thread (then as it was): the cases are tiny
    matrices, on which more threads only spin (measured in the grader's checker: 2-9 CPU-s of a
    notebook's 11)."""
    with one_torch_thread():
        return diagnose.on_cases(cases, check)


def run_on_case(fn: Callable, problem: str, case: dict) -> dict:
    """What ``utils.landscape.run_on_case(fn, problem, case)`` reports: run here for the
    learner's own function (JupyterLab, the tests), in the kernel when ``fn`` is the grader's
    proxy of a kernel function (the copy of the runner that the kernel's set-up cell imported).

    The report is checked for its form here; what it says is judged by the caller, never taken
    as a verdict."""
    session = _checker_session(fn)
    runner = landscape.run_on_case if session is None else session.resolve("run_on_case")
    report = runner(fn, problem, case)
    if type(report) is not dict or not all(type(k) is str for k in report):
        raise CheckFailure(f"the measurement's report is malformed ({type(report).__name__}).")
    return report


def reported(report: dict, key: str, kind: type, listed: bool = False):
    """``report[key]`` if it is a ``kind`` (``listed``: a list of them), else a CheckFailure."""
    value = report.get(key)
    items = value if listed and type(value) is list else [value]
    if (listed and type(value) is not list) or not all(
        isinstance(v, kind) and (kind is bool or type(v) is not bool) for v in items
    ):
        raise CheckFailure(f"the measurement's report has a malformed {key!r}.")
    return value


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or "your function"


def _assert_restored(report: dict, start: nn.Module, what: str) -> None:
    """The model the learner's function was given (``report``, from ``run_on_case``) ends where
    ``start`` (the same case, freshly built here) begins: in training mode (every case starts
    in it), holding the same parameter tensors, with ``start``'s values."""
    if reported(report, "training", bool) is not True:
        raise CheckFailure(
            f"{what} left the model in eval mode: measure in the mode the model is in "
            "(training mode here) and leave it there; calling model.eval() changes what "
            "BatchNorm computes."
        )
    if reported(report, "ids_before", int, True) != reported(report, "ids_after", int, True):
        raise CheckFailure(
            f"{what} replaced the model's parameters by new tensors; an optimizer still holds "
            "the old ones. Change their values in place (p.copy_(...) under torch.no_grad())."
        )
    values = reported(report, "parameters", np.ndarray, listed=True)
    saved = [p.detach().numpy() for p in start.parameters()]
    if len(values) != len(saved):
        raise CheckFailure(f"{what}: {len(values)} parameters reported, {len(saved)} expected.")
    changes = [_relative_change(v, s) for v, s in zip(values, saved, strict=True)]
    moved = max(changes, default=0.0)
    if moved > TIGHT:
        raise CheckFailure(
            f"{what} left the parameters moved (relative change {moved:.1e}): the next "
            "training step would start from the wrong weights. Save copies of the parameters "
            "before stepping and copy them back at the end."
        )


def _relative_change(value: np.ndarray, saved: np.ndarray) -> float:
    if value.shape != saved.shape or not np.issubdtype(value.dtype, np.number):
        return math.inf
    change = np.abs(value.astype(np.float64) - saved)
    if not np.all(np.isfinite(change)):
        return math.inf
    return float(change.max(initial=0.0)) / max(float(np.abs(saved).max(initial=0.0)), 1e-12)
