"""Training outcomes measured over seeds: how many steps a network needs to reach a target
accuracy, and which learning rate gets it there first.

Lesson 05 trains with the learner's own ``train_step`` and ``accuracy``; these helpers only
drive them (a step, an evaluation now and then, stop at the target) and summarize the step
counts, so that the notebook's cells stay short and a test can assert the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from utils.nn import minibatches


def steps_to_accuracy(
    layers: list,
    train_step: Callable,
    accuracy: Callable,
    data,
    lr: float,
    *,
    target: float,
    max_steps: int,
    eval_every: int = 3,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Train ``layers`` in place until its test accuracy first reaches ``target``.

    layers: a network (list of utils.nn layers); train_step(layers, x, y, lr) -> loss and
    accuracy(layers, x, y) -> float are the lesson's functions. data: x_train (N, D), y_train
    (N,), x_test, y_test (as ``utils.data.DigitsSplit``). Mini-batches of ``batch_size`` come
    from epochs shuffled by ``np.random.default_rng(seed)``.
    Returns the number of steps after which ``accuracy(layers, x_test, y_test) >= target``
    (checked every ``eval_every`` steps, so a multiple of it), or ``np.inf`` when the target is
    not reached within ``max_steps`` steps or the loss becomes inf or NaN (training stops).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for step, loss in _sgd_steps(layers, train_step, data, lr, max_steps, batch_size, seed):
            if not np.isfinite(loss):
                return np.inf
            if step % eval_every == 0 and accuracy(layers, data.x_test, data.y_test) >= target:
                return step
    return np.inf


def _sgd_steps(layers, train_step, data, lr, steps, batch_size, seed) -> Iterator[tuple]:
    """(step, loss) after each of ``steps`` calls of ``train_step`` (steps counted from 1), on
    mini-batches of ``data.x_train`` from epochs shuffled by ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    step = 0
    while True:
        for idx in minibatches(len(data.x_train), batch_size, rng):
            if step == steps:
                return
            step += 1
            yield step, train_step(layers, data.x_train[idx], data.y_train[idx], lr)


def best_learning_rate(lrs: Sequence[float], steps: np.ndarray) -> tuple[float, np.ndarray]:
    """The learning rate whose median step count over the seeds is smallest.

    lrs: K learning rates; steps: (K, S) step counts per learning rate and seed, ``np.inf``
    where the target was not reached. Ties go to the smaller learning rate.
    Returns (that learning rate, its S step counts). Raises ValueError if the shapes differ.
    """
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 2 or steps.shape[0] != len(lrs):
        raise ValueError(f"steps must be ({len(lrs)}, seeds), got {steps.shape}")
    best = int(np.argmin(np.median(steps, axis=1)))
    return float(lrs[best]), steps[best]


def describe_steps(values: Sequence[float]) -> str:
    """'median 42 (range 36-45)' for step counts over seeds (``np.inf``: not reached), or
    'not reached in any seed'."""
    values = np.asarray(values, dtype=np.float64)
    if np.isinf(values).all():
        return "not reached in any seed"

    def show(v: float) -> str:
        return "not reached" if np.isinf(v) else f"{v:.0f}"

    return f"median {show(np.median(values))} (range {show(values.min())}-{show(values.max())})"


def gradient_flow(
    layers: list,
    train_step: Callable,
    data,
    lr: float,
    *,
    steps: int,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per-layer gradient norms and update-to-weight ratios of the weight matrices over training.

    layers: a network of utils.nn layers, trained in place with ``train_step(layers, x, y, lr)``
    (plain SGD, so a weight's update is ``lr * grad``) for ``steps`` steps on mini-batches of
    ``data.x_train`` drawn as in ``steps_to_accuracy``. After every step, for each layer with
    a ``weight`` (the Linear layers, in order), it records ||dL/dW|| and
    ||lr * dL/dW|| / ||W before the step|| (Frobenius norms).
    Returns {"grad_norm": (steps, L), "update_ratio": (steps, L)}; rows after a non-finite
    loss are NaN.
    """
    linears = [layer for layer in layers if hasattr(layer, "weight")]
    grad_norm = np.full((steps, len(linears)), np.nan)
    update_ratio = np.full((steps, len(linears)), np.nan)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for step, loss in _sgd_steps(layers, train_step, data, lr, steps, batch_size, seed):
            if not np.isfinite(loss):
                break
            for j, layer in enumerate(linears):
                grad = layer.weight.grad
                before = layer.weight.data + lr * grad  # the step was data -= lr * grad
                grad_norm[step - 1, j] = np.linalg.norm(grad)
                update_ratio[step - 1, j] = lr * grad_norm[step - 1, j] / np.linalg.norm(before)
    return {"grad_norm": grad_norm, "update_ratio": update_ratio}
