"""What lesson 08's checks share: tolerances, the networks and batches they measure on."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from utils.diagnose import TIGHT, CheckFailure, as_float_array, name_mistake


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


def _quietly(fn: Callable, *args):
    """``fn(*args)`` with Python warnings silenced: a harmless UserWarning of the learner's
    code (e.g. float() of a tensor that requires grad) would write to stderr, and nbgrader
    gives a test cell that writes to stderr no points."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _grad_prefill(model: nn.Module, seed: int) -> None:
    """Leave a stale gradient in every ``.grad``, as a training loop does between steps."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)


def _assert_restored(model: nn.Module, before: list, what: str) -> None:
    """The parameters of ``model`` are the same objects with the same values as ``before``
    (a list of (parameter, copy)), and the model is still in training mode (every case
    starts in it): a measurement must leave the model where it found it."""
    if not model.training:
        raise CheckFailure(
            f"{what} left the model in eval mode: measure in the mode the model is in "
            "(training mode here) and leave it there; calling model.eval() changes what "
            "BatchNorm computes."
        )
    params = list(model.parameters())
    if len(params) != len(before) or any(
        p is not q for p, (q, _) in zip(params, before, strict=True)
    ):
        raise CheckFailure(
            f"{what} replaced the model's parameters by new tensors; an optimizer still holds "
            "the old ones. Change their values in place (p.copy_(...) under torch.no_grad())."
        )
    moved = max(
        float((p.detach() - saved).abs().max()) / max(float(saved.abs().max()), 1e-12)
        for p, saved in before
    )
    if moved > TIGHT:
        raise CheckFailure(
            f"{what} left the parameters moved (relative change {moved:.1e}): the next "
            "training step would start from the wrong weights. Save copies of the parameters "
            "before stepping and copy them back at the end."
        )


def _snapshot(model: nn.Module) -> list:
    return [(p, p.detach().clone()) for p in model.parameters()]


def _tensor(array) -> torch.Tensor:
    return torch.tensor(np.array(array, dtype=np.float64))
