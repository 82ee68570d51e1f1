"""Lesson 04's PyTorch reference (``torch.nn.BatchNorm1d`` driven in numpy terms) and the
known-wrong layers that name a learner's mistake."""

from __future__ import annotations

import numpy as np
import torch

from utils.reference import as_tensor, to_numpy

# --- the PyTorch reference -------------------------------------------------------------------


def _numpy_or_none(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else to_numpy(tensor)


def _module_array(attribute: str, settable: bool = False) -> property:
    """The module's ``attribute`` as a numpy array (None where PyTorch has None); a settable
    one copies an assigned value into the module's tensor."""

    def get(self) -> np.ndarray | None:
        return _numpy_or_none(getattr(self.module, attribute))

    def set_(self, value) -> None:
        with torch.no_grad():
            getattr(self.module, attribute).copy_(as_tensor(value))

    return property(get, set_ if settable else None)


class TorchBatchNorm1d:
    """``torch.nn.BatchNorm1d`` in float64 behind the lesson's numpy interface: the oracle.

    Same constructor, ``.train(mode)``, ``.eval()``, ``.forward(x)``/``__call__``,
    ``.backward(dout) -> dx`` (sets ``.dgamma``, ``.dbeta``; None with affine=False), and the
    attributes as numpy arrays (None where PyTorch has None), ``num_batches_tracked`` an int.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        self.module = torch.nn.BatchNorm1d(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            dtype=torch.float64,
        )
        self._graph = None
        self.dgamma = self.dbeta = None

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    gamma = _module_array("weight", settable=True)
    beta = _module_array("bias", settable=True)
    running_mean = _module_array("running_mean")
    running_var = _module_array("running_var")

    @property
    def num_batches_tracked(self) -> int | None:
        count = self.module.num_batches_tracked
        return None if count is None else int(count.item())

    def forward(self, x):
        x_t = as_tensor(x, requires_grad=True)
        out = self.module(x_t)
        self._graph = (x_t, out)
        return to_numpy(out)

    __call__ = forward

    def backward(self, dout):
        x_t, out = self._graph
        self.module.zero_grad(set_to_none=True)
        out.backward(as_tensor(dout))
        self.dgamma = _numpy_or_none(getattr(self.module.weight, "grad", None))
        self.dbeta = _numpy_or_none(getattr(self.module.bias, "grad", None))
        return to_numpy(x_t.grad)


# --- known-wrong variants --------------------------------------------------------------------

MISTAKES = {
    "biased_running_var": "running_var is updated with the biased batch variance (divided by "
    "N); the running variance uses the unbiased one, var * N / (N - 1), while the "
    "normalization itself keeps the biased one",
    "keras_momentum": "the momentum weights are swapped (Keras' convention); PyTorch's is "
    "running = (1 - momentum) * running + momentum * batch",
    "eval_batch_stats": "eval mode normalizes with the batch statistics; with "
    "track_running_stats=True it must use running_mean and running_var",
    "update_in_eval": "the running statistics are updated in eval mode too; only training "
    "batches update them",
    "counter_in_eval": "num_batches_tracked is incremented in eval mode too; only training "
    "batches count",
    "counter_not_incremented": "num_batches_tracked is not incremented: add 1 for every "
    "training batch (while track_running_stats=True)",
    "none_as_default": "momentum=None is treated as 0.1; None means a cumulative average, "
    "with factor 1 / num_batches_tracked",
    "cumulative_off_by_one": "the cumulative average counts the initial running values as a "
    "batch (factor 1 / (k + 1)); increment num_batches_tracked first and use "
    "1 / num_batches_tracked, so the first batch replaces the initial values",
    "momentum_zero_as_none": "momentum=0 is treated like momentum=None (a test such as `if "
    "not momentum`); test `momentum is None`: with momentum=0 the running statistics never "
    "change",
    "eval_backward_batch_formula": "in eval mode the backward uses the training-mode formula "
    "(with its mean and variance terms); in eval mode the statistics are constants, so "
    "dx = dout * gamma / sqrt(running_var + eps)",
    "running_var_starts_at_zero": "running_var starts at zeros; like PyTorch it starts at "
    "ones (and running_mean at zeros)",
}
"""mistake -> description (completes "it looks like ...")."""


class KnownWrongBatchNorm1d:
    """A numpy BatchNorm1d with exactly one of the ``MISTAKES`` built in (the first argument).

    Its outputs and state, run through a scenario, are what a learner's layer with that
    mistake produces; a check compares them with the learner's to name the mistake.
    """

    def __init__(
        self, mistake, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True
    ):
        if mistake not in MISTAKES:
            raise ValueError(f"unknown mistake {mistake!r}")
        self.mistake, self.eps, self.momentum = mistake, eps, momentum
        self.training, self.affine, self.track = True, affine, track_running_stats
        self.gamma = np.ones(num_features) if affine else None
        self.beta = np.zeros(num_features) if affine else None
        self.running_mean = self.running_var = self.num_batches_tracked = None
        if track_running_stats:
            self.running_mean = np.zeros(num_features)
            start = 0.0 if mistake == "running_var_starts_at_zero" else 1.0
            self.running_var = np.full(num_features, start)
            self.num_batches_tracked = 0
        self._seen = 0
        self.dgamma = self.dbeta = None

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def _factor(self) -> float:
        cumulative = self.momentum is None or (
            self.mistake == "momentum_zero_as_none" and not self.momentum
        )
        if not cumulative:
            return 1 - self.momentum if self.mistake == "keras_momentum" else self.momentum
        if self.mistake == "none_as_default":
            return 0.1
        return 1 / (self._seen + 1) if self.mistake == "cumulative_off_by_one" else 1 / self._seen

    def _update(self, mean, var, n) -> None:
        self._seen += 1
        if self.mistake != "counter_not_incremented":
            self.num_batches_tracked += 1
        batch_var = var if self.mistake == "biased_running_var" else var * n / (n - 1)
        f = self._factor()
        self.running_mean = (1 - f) * self.running_mean + f * mean
        self.running_var = (1 - f) * self.running_var + f * batch_var

    def forward(self, x):
        n = x.shape[0]
        mean, var = x.mean(axis=0), x.var(axis=0)
        if self.track and (self.training or self.mistake == "update_in_eval"):
            self._update(mean, var, n)
        if self.track and not self.training and self.mistake == "counter_in_eval":
            self.num_batches_tracked += 1
        batch_mode = self.training or not self.track or self.mistake == "eval_batch_stats"
        if not batch_mode:
            mean, var = self.running_mean, self.running_var
        inv_std = 1 / np.sqrt(var + self.eps)
        x_hat = (x - mean) * inv_std
        self._cache = (batch_mode, x_hat, inv_std)
        if not self.affine:
            return x_hat
        return self.gamma * x_hat + self.beta

    __call__ = forward

    def backward(self, dout):
        batch_mode, x_hat, inv_std = self._cache
        dx_hat = dout * self.gamma if self.affine else dout
        if batch_mode or self.mistake == "eval_backward_batch_formula":
            n = dout.shape[0]
            mean_term = dx_hat.sum(axis=0)
            variance_term = x_hat * (dx_hat * x_hat).sum(axis=0)
            dx = inv_std / n * (n * dx_hat - mean_term - variance_term)
        else:
            dx = dx_hat * inv_std
        if self.affine:
            self.dgamma, self.dbeta = (dout * x_hat).sum(axis=0), dout.sum(axis=0)
        return dx
