"""PyTorch references in float64: the oracle every check compares a learner's numpy code with.

One function per reference; numpy arrays in, numpy arrays out (float64). Nothing here is
ever shown to a learner as a solution: it only calls PyTorch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def as_tensor(array, requires_grad: bool = False) -> torch.Tensor:
    """A float64 tensor holding a private copy of ``array`` (safe for read-only inputs)."""
    return torch.tensor(np.array(array, dtype=np.float64), requires_grad=requires_grad)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``tensor`` (detached)."""
    return tensor.detach().numpy().astype(np.float64, copy=True)


def batch_statistics_reference(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature batch mean and biased variance of x (N, D): two arrays of shape (D,)."""
    var, mean = torch.var_mean(as_tensor(x), dim=0, correction=0)
    return to_numpy(mean), to_numpy(var)


def batchnorm_statistics_reference(x, eps: float = 1e-5) -> dict[str, np.ndarray]:
    """What a batchnorm forward caches about x (N, D): "mean", "var" (biased), "inv_std"
    (all (D,)) and "x_hat" (N, D), the normalized x."""
    xt = as_tensor(x)
    var, mean = torch.var_mean(xt, dim=0, correction=0)
    x_hat = F.batch_norm(xt, None, None, training=True, eps=eps)
    return {
        "mean": to_numpy(mean),
        "var": to_numpy(var),
        "inv_std": to_numpy(torch.rsqrt(var + eps)),
        "x_hat": to_numpy(x_hat),
    }


def _batch_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float):
    """Training-mode batch norm of x (N, D) or (N, C, ...) with per-feature gamma and beta."""
    return F.batch_norm(x, None, None, weight=gamma, bias=beta, training=True, eps=eps)


def batchnorm_forward_reference(x, gamma, beta, eps: float = 1e-5) -> np.ndarray:
    """``F.batch_norm(training=True)`` of x (N, D) or (N, C, ...) with gamma, beta (D,) or (C,):
    out shaped like x.

    The batch statistics are per feature (channel, axis 1) over every other axis: the mean and
    the biased variance, eps inside the square root. Raises ValueError when a feature has one
    value only (PyTorch refuses a batch of one in training).
    """
    with torch.no_grad():
        out = _batch_norm(as_tensor(x), as_tensor(gamma), as_tensor(beta), eps)
    return to_numpy(out)


def batchnorm_gradients_reference(
    x, gamma, beta, dout, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Autograd gradients of ``sum(batch_norm(x, gamma, beta) * dout)``.

    x, dout: (N, D) or (N, C, ...); gamma, beta: one value per feature (axis 1).
    Returns (dx shaped like x, dgamma, dbeta).
    """
    xt = as_tensor(x, requires_grad=True)
    gt = as_tensor(gamma, requires_grad=True)
    bt = as_tensor(beta, requires_grad=True)
    _batch_norm(xt, gt, bt, eps).backward(as_tensor(dout))
    return to_numpy(xt.grad), to_numpy(gt.grad), to_numpy(bt.grad)
