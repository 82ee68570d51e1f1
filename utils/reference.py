"""PyTorch references: the one oracle every check compares a learner's code with.

Every normalization of the course, by the axes its statistics run over:

====================  ===============================  =========================================
form                  statistics over                  PyTorch underneath
====================  ===============================  =========================================
``"batch"``           every axis but 1 (the feature)   ``F.batch_norm(training=True)``
``"layer"``           the last axis                    ``F.layer_norm``
``"instance"``        axes 2, 3 (each sample, channel) ``F.instance_norm``
``"group"``           each group of channels and H, W  ``F.group_norm``
``"rms"``             the last axis, not centered      ``F.rms_norm``
====================  ===============================  =========================================

BatchNorm of a 2-D x, spatial BatchNorm of a 4-D x and synchronized BatchNorm (the whole batch,
all ranks' shards concatenated) are all ``"batch"``. Numpy arrays in, numpy arrays out: a
floating input keeps its dtype (float64 stays float64, float32 stays float32), anything else
is computed in float64. Gradients come from autograd. Nothing here is ever shown to a learner
as a solution: it only calls PyTorch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

FORMS = ("batch", "layer", "instance", "group", "rms")
"""The normalizations ``normalize_reference`` knows; "rms" alone has no beta and no centering."""


def as_tensor(array, requires_grad: bool = False) -> torch.Tensor:
    """A float64 tensor holding a private copy of ``array`` (safe for read-only inputs)."""
    return torch.tensor(np.array(array, dtype=np.float64), requires_grad=requires_grad)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``tensor`` (detached)."""
    return tensor.detach().numpy().astype(np.float64, copy=True)


def _tensor(array, requires_grad: bool = False) -> torch.Tensor:
    """A private tensor copy of ``array`` keeping a floating dtype (float64 otherwise)."""
    a = np.asarray(array)
    dtype = a.dtype if a.dtype.kind == "f" else np.float64
    return torch.tensor(np.array(a, dtype=dtype), requires_grad=requires_grad)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy of ``tensor`` (detached), in its own dtype."""
    return tensor.detach().numpy().copy()


def statistic_axes(ndim: int) -> tuple[int, ...]:
    """Every axis but the feature (channel) axis 1: (0,) for (N, D), (0, 2, 3) for 4-D x."""
    return (0, *range(2, ndim))


def _normalize(form: str, x, gamma, beta, eps: float, num_groups: int) -> torch.Tensor:
    if form == "batch":
        return F.batch_norm(x, None, None, weight=gamma, bias=beta, training=True, eps=eps)
    if form == "layer":
        return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)
    if form == "instance":
        return F.instance_norm(x, weight=gamma, bias=beta, eps=eps)
    if form == "group":
        return F.group_norm(x, num_groups, gamma, beta, eps)
    if form == "rms":
        return F.rms_norm(x, x.shape[-1:], gamma, eps)
    raise ValueError(f"unknown normalization {form!r}; one of {', '.join(FORMS)}")


def _parameters(form: str, gamma, beta, requires_grad: bool = False) -> tuple:
    """(gamma, beta) as tensors; RMSNorm has no beta (None)."""
    beta = None if form == "rms" else _tensor(beta, requires_grad)
    return _tensor(gamma, requires_grad), beta


def normalize_reference(
    form: str, x, gamma, beta=None, eps: float = 1e-5, num_groups: int = 0
) -> np.ndarray:
    """The output of normalization ``form`` (one of FORMS) of x with per-feature gamma, beta:
    shaped like x. ``beta`` is ignored for "rms"; ``num_groups`` is used by "group" only.
    Raises what PyTorch raises (ValueError for a batch of one in "batch" training, say)."""
    gt, bt = _parameters(form, gamma, beta)
    with torch.no_grad():
        return _numpy(_normalize(form, _tensor(x), gt, bt, eps, num_groups))


def normalize_gradients_reference(
    form: str, x, gamma, beta, dout, eps: float = 1e-5, num_groups: int = 0
) -> tuple[np.ndarray, ...]:
    """Autograd gradients of ``sum(normalize(form, x, gamma, beta) * dout)``: (dx shaped like
    x, dgamma, dbeta), or (dx, dgamma) for "rms"."""
    xt = _tensor(x, requires_grad=True)
    gt, bt = _parameters(form, gamma, beta, requires_grad=True)
    _normalize(form, xt, gt, bt, eps, num_groups).backward(_tensor(dout))
    leaves = (xt, gt) if bt is None else (xt, gt, bt)
    return tuple(_numpy(t.grad) for t in leaves)


# --- BatchNorm: 2-D, spatial (any rank), and the whole batch of a synchronized BatchNorm -------


def moments_reference(x) -> tuple[float, np.ndarray, np.ndarray]:
    """(count, mean, biased var) per feature of x (N, C, ...) over every axis but 1: the
    statistics BatchNorm (and SyncBatchNorm over all ranks' shards) normalizes with. count is
    the number of values per feature; mean and var have shape (C,)."""
    xt = _tensor(x)
    var, mean = torch.var_mean(xt, dim=statistic_axes(xt.dim()), correction=0)
    return float(xt.numel() // xt.shape[1]), _numpy(mean), _numpy(var)


def batch_statistics_reference(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature batch mean and biased variance of x (N, D): two arrays of shape (D,)."""
    _, mean, var = moments_reference(x)
    return mean, var


def batchnorm_statistics_reference(x, eps: float = 1e-5) -> dict[str, np.ndarray]:
    """What a batchnorm forward caches about x (N, D): "mean", "var" (biased), "inv_std"
    (all (D,)) and "x_hat" (N, D), the normalized x."""
    xt = _tensor(x)
    var, mean = torch.var_mean(xt, dim=0, correction=0)
    x_hat = F.batch_norm(xt, None, None, training=True, eps=eps)
    return {
        "mean": _numpy(mean),
        "var": _numpy(var),
        "inv_std": _numpy(torch.rsqrt(var + eps)),
        "x_hat": _numpy(x_hat),
    }


def batchnorm_forward_reference(x, gamma, beta, eps: float = 1e-5) -> np.ndarray:
    """``F.batch_norm(training=True)`` of x (N, D) or (N, C, ...) with gamma, beta (D,) or (C,):
    out shaped like x.

    The batch statistics are per feature (channel, axis 1) over every other axis: the mean and
    the biased variance, eps inside the square root. Raises ValueError when a feature has one
    value only (PyTorch refuses a batch of one in training).
    """
    return normalize_reference("batch", x, gamma, beta, eps)


def batchnorm_gradients_reference(
    x, gamma, beta, dout, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Autograd gradients of ``sum(batch_norm(x, gamma, beta) * dout)``.

    x, dout: (N, D) or (N, C, ...); gamma, beta: one value per feature (axis 1).
    Returns (dx shaped like x, dgamma, dbeta).
    """
    return normalize_gradients_reference("batch", x, gamma, beta, dout, eps)


def batchnorm_eval_reference(x, running_mean, running_var, gamma, beta, eps: float = 1e-5):
    """``F.batch_norm(training=False)`` of x (N, C, ...): normalized with the given running
    statistics (C,) instead of the batch's, as a BatchNorm layer in eval mode does; shaped like
    x. The running statistics are read, never updated."""
    with torch.no_grad():
        out = F.batch_norm(
            _tensor(x),
            _tensor(running_mean),
            _tensor(running_var),
            _tensor(gamma),
            _tensor(beta),
            training=False,
            eps=eps,
        )
    return _numpy(out)


def shard_parameter_gradients_reference(
    x, gamma, beta, dout, sizes, eps: float = 1e-5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synchronized BatchNorm of the whole batch x (the shards of ``sizes`` examples
    concatenated along axis 0): each shard's (dgamma, dbeta), autograd of the global loss with
    dout zeroed outside that shard, the part of the parameter gradient its examples produce."""
    dout = np.asarray(dout)
    bounds = np.cumsum((0, *sizes))
    parts = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        masked = np.zeros_like(dout)
        masked[start:stop] = dout[start:stop]
        _, dgamma, dbeta = batchnorm_gradients_reference(x, gamma, beta, masked, eps)
        parts.append((dgamma, dbeta))
    return parts


def channels_to_rows_reference(x) -> np.ndarray:
    """x (N, C, H, W) as a matrix (N*H*W, C): one row per position (n, h, w) in C order; the
    layout spatial BatchNorm hands to the 2-D one."""
    xt = _tensor(x)
    return _numpy(xt.permute(0, 2, 3, 1).reshape(-1, xt.shape[1]))


def rows_to_channels_reference(rows, shape: tuple[int, int, int, int]) -> np.ndarray:
    """The inverse of ``channels_to_rows_reference``: rows (N*H*W, C) back to ``shape``."""
    n, c, h, w = shape
    return _numpy(_tensor(rows).reshape(n, h, w, c).permute(0, 3, 1, 2))


# --- the other normalizations ---------------------------------------------------------------


def layernorm_reference(x, gamma, beta, eps: float = 1e-5) -> np.ndarray:
    """``F.layer_norm(x, (D,), gamma, beta, eps)``: x of any rank >= 2, gamma, beta (D,)."""
    return normalize_reference("layer", x, gamma, beta, eps)


def instancenorm_reference(x, gamma, beta, eps: float = 1e-5) -> np.ndarray:
    """``F.instance_norm`` of x (N, C, H, W) with gamma, beta (C,); needs H * W > 1."""
    return normalize_reference("instance", x, gamma, beta, eps)


def groupnorm_reference(x, gamma, beta, num_groups: int, eps: float = 1e-5) -> np.ndarray:
    """``F.group_norm(x, num_groups, gamma, beta, eps)`` of x (N, C, H, W), gamma, beta (C,)."""
    return normalize_reference("group", x, gamma, beta, eps, num_groups)


def rmsnorm_reference(x, gamma, eps: float = 1e-6) -> np.ndarray:
    """``F.rms_norm(x, (D,), gamma, eps)``: x of any rank >= 2, gamma (D,)."""
    return normalize_reference("rms", x, gamma, None, eps)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread meanwhile (then as it was): a check's references are tiny matrices,
    on which more threads only spin and fight over the cores (measured in the grader's checker:
    2-9 CPU-s of a lesson-05 or lesson-08 notebook)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
