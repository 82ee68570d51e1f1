"""Small numpy layers for training an MLP by hand: Linear, ReLU, BatchNorm1d and the softmax
cross-entropy loss, forward and backward side by side.

Lesson 05 provides these (it does not teach them): the learner wires them into a network and
a training step. Every layer works on a batch x of shape (N, D), float64, and has

* ``forward(x)`` (also ``layer(x)``), which remembers what its backward needs;
* ``backward(dout)``, which takes dL/d(output) (N, D_out), returns dL/dx (N, D_in) and
  *overwrites* the ``grad`` of each of its parameters (no zeroing between steps);
* ``parameters()``, a list of ``Parameter`` (``.data`` and ``.grad``, same shape);
* ``train(mode=True)`` / ``eval()`` and ``training``, as in PyTorch; only BatchNorm1d behaves
  differently in the two modes;
* ``describe()``, the layer as plain data (a dict of its kind, mode, settings and copies of its
  arrays), and the class method ``from_description(description)``, which builds a layer from
  such a dict. Lesson 05's checks read and build networks through these two, so the same check
  works on layers in the notebook and on layers in a graded kernel it reaches by handle.

Weights follow lesson 01's layout: ``y = x @ weight + bias`` with weight (D_in, D_out), the
transpose of ``torch.nn.Linear.weight``.
"""

from __future__ import annotations

import math

import numpy as np


class Parameter:
    """A trainable array: ``data`` float64 (any shape) and ``grad``, dL/d(data), same shape
    (zeros until the first backward)."""

    def __init__(self, data):
        self.data = np.array(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape})"


class Layer:
    """What every layer shares: the train/eval switch and an empty parameter list."""

    training = True

    def train(self, mode: bool = True) -> Layer:
        """Training mode (mode=True) or evaluation mode (mode=False); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Evaluation mode, the same as ``train(False)``; returns the layer."""
        return self.train(False)

    def parameters(self) -> list[Parameter]:
        return []

    def describe(self) -> dict:
        """``{"kind": class name, "training": bool}`` and, in a layer with state, its settings
        and copies of its arrays (the keys ``from_description`` reads)."""
        return {"kind": type(self).__name__, "training": self.training}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Linear(Layer):
    """``y = x @ weight + bias``: x (N, in_features) -> y (N, out_features).

    weight (in_features, out_features) is drawn from ``rng`` at construction as
    ``init_scale / sqrt(in_features) * rng.standard_normal((in_features, out_features))``
    (lesson 01's fan-in rule; sqrt(2) suits ReLU). bias (out_features,) starts at zero and
    is None when ``bias=False``. Only the weight consumes random numbers.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rng: np.random.Generator,
        bias: bool = True,
        init_scale: float = math.sqrt(2),
    ):
        self.in_features, self.out_features = in_features, out_features
        std = init_scale / math.sqrt(in_features)
        self.weight = Parameter(std * rng.standard_normal((in_features, out_features)))
        self.bias = Parameter(np.zeros(out_features)) if bias else None
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        out = x @ self.weight.data
        return out if self.bias is None else out + self.bias.data

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.weight.grad = self._x.T @ dout
        if self.bias is not None:
            self.bias.grad = dout.sum(axis=0)
        return dout @ self.weight.data.T

    def parameters(self) -> list[Parameter]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def describe(self) -> dict:
        """Adds ``weight`` (in_features, out_features) and ``bias`` (out_features,) or None."""
        bias = None if self.bias is None else self.bias.data.copy()
        return {**super().describe(), "weight": self.weight.data.copy(), "bias": bias}

    @classmethod
    def from_description(cls, description: dict) -> Linear:
        """The Linear that ``describe()`` described (its weight, bias and mode)."""
        weight, bias = description["weight"], description["bias"]
        d_in, d_out = np.shape(weight)
        layer = cls(d_in, d_out, np.random.default_rng(0), bias=bias is not None)
        layer.weight.data = np.array(weight, dtype=np.float64)
        if bias is not None:
            layer.bias.data = np.array(bias, dtype=np.float64)
        return layer.train(description.get("training", True))

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class ReLU(Layer):
    """``max(x, 0)`` elementwise; the gradient passes where x > 0."""

    def __init__(self):
        self._positive = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._positive = x > 0
        return np.where(self._positive, x, 0.0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.where(self._positive, dout, 0.0)

    @classmethod
    def from_description(cls, description: dict) -> ReLU:
        """A ReLU in the mode ``describe()`` described."""
        return cls().train(description.get("training", True))

    def __repr__(self) -> str:
        return "ReLU()"


class BatchNorm1d(Layer):
    """Batch normalization of x (N, num_features), the semantics of ``torch.nn.BatchNorm1d``.

    Training mode normalizes with the batch mean and the biased batch variance (eps inside
    the square root) and updates ``running_mean`` / ``running_var`` (D,) by
    ``r <- (1 - momentum) * r + momentum * batch_value``, with the *unbiased* variance;
    evaluation mode normalizes with the running statistics and updates nothing.
    gamma (D,) starts at 1 and beta (D,) at 0. Training on a batch of one raises ValueError.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = Parameter(np.ones(num_features))
        self.beta = Parameter(np.zeros(num_features))
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self._x_hat = self._inv_std = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ValueError("BatchNorm1d needs more than one sample per batch in training")
            mean, var = x.mean(axis=0), x.var(axis=0)
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * var * n / (n - 1)
        else:
            mean, var = self.running_mean, self.running_var
        self._inv_std = 1.0 / np.sqrt(var + self.eps)
        self._x_hat = (x - mean) * self._inv_std
        return self.gamma.data * self._x_hat + self.beta.data

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.gamma.grad = np.sum(dout * self._x_hat, axis=0)
        self.beta.grad = dout.sum(axis=0)
        dx_hat = dout * self.gamma.data
        if not self.training:  # the running statistics are constants
            return dx_hat * self._inv_std
        # closed form (lesson 03): remove the parts of dx_hat along 1 and along x_hat
        return self._inv_std * (
            dx_hat - dx_hat.mean(axis=0) - self._x_hat * np.mean(dx_hat * self._x_hat, axis=0)
        )

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta]

    def describe(self) -> dict:
        """Adds ``eps``, ``momentum`` and copies of ``gamma``, ``beta``, ``running_mean`` and
        ``running_var``, each (num_features,)."""
        return {
            **super().describe(),
            "eps": self.eps,
            "momentum": self.momentum,
            "gamma": self.gamma.data.copy(),
            "beta": self.beta.data.copy(),
            "running_mean": np.array(self.running_mean),
            "running_var": np.array(self.running_var),
        }

    @classmethod
    def from_description(cls, description: dict) -> BatchNorm1d:
        """The BatchNorm1d that ``describe()`` described (arrays, settings and mode)."""
        layer = cls(len(description["gamma"]), description["eps"], description["momentum"])
        layer.gamma.data = np.array(description["gamma"], dtype=np.float64)
        layer.beta.data = np.array(description["beta"], dtype=np.float64)
        layer.running_mean = np.array(description["running_mean"], dtype=np.float64)
        layer.running_var = np.array(description["running_var"], dtype=np.float64)
        return layer.train(description.get("training", True))

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.num_features})"


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits: float64 (N, C); y: ints (N,) in 0..C-1.
    Returns (loss, dlogits): loss a float, the same as ``torch.nn.functional.cross_entropy``;
    dlogits (N, C) = (softmax(logits) - one_hot(y)) / N.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow in exp
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    rows = np.arange(n)
    loss = -float(log_probs[rows, y].mean())
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1.0
    return loss, dlogits / n


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's index batches: a permutation of range(n) drawn from rng, cut into
    ``n // batch_size`` batches of exactly ``batch_size`` indices. The few samples left over
    are skipped this epoch (a different few each time): a tiny last batch would give batch
    normalization very noisy statistics, and a batch of one cannot train at all.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and n={n}, got {batch_size}")
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
