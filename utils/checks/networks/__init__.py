"""Checks for lesson 05_batchnorm_in_networks: building an MLP from ``utils.nn`` layers, one
SGD training step, and the test accuracy in evaluation mode.

The exercises, as the notebook states them (numpy, float64):

``build_mlp(dims, use_bn, rng, init_scale=sqrt(2)) -> list``
    dims: L + 1 widths. Hidden layer l is ``Linear -> BatchNorm1d -> ReLU`` (use_bn) or
    ``Linear -> ReLU``; the output layer is a plain ``Linear`` (the logits). A Linear followed
    by BatchNorm1d has no bias; every other Linear has one. Every Linear gets ``rng`` and
    ``init_scale``, in layer order.
``train_step(layers, x, y, lr) -> float``
    Training mode on every layer, forward, ``softmax_cross_entropy``, backward in reverse
    order, ``p.data -= lr * p.grad`` for every parameter; returns the loss before the update.
``accuracy(layers, x, y, batch_size=256) -> float``
    Evaluation mode on every layer, predictions batch by batch, the fraction of correct
    argmax predictions over all samples.

PyTorch is the oracle: the networks of the checks are built in ``torch.nn`` (float64) and
copied into ``utils.nn`` layers where the learner's code runs (this process in the notebook, the
graded kernel in grading: ``oracle``), and read back as plain data; one step of ``train_step``
must leave exactly the parameters and running statistics that one SGD step of the torch model
leaves. Known-wrong variants (the update's sign, eval mode during training, frozen parameters,
train mode at test time, a mean of per-batch accuracies ...) are computed by the same torch
model and name the mistake.

The package holds one module per exercise: ``oracle`` (the torch oracle, the copy into
``utils.nn`` and the reading of a network), ``build`` (``build_mlp``), ``training``
(``train_step``) and ``accuracy``; this module re-exports them. The hidden cases and checks are
in ``utils.checks.hidden.networks``.
"""

from __future__ import annotations

from utils.checks.networks.accuracy import (
    VISIBLE_ACCURACY_CASES,
    AccuracyCase,
    _accuracy_mistakes,
    check_accuracy,
)
from utils.checks.networks.build import VISIBLE_BUILD_CASES, BuildCase, check_build_mlp
from utils.checks.networks.oracle import (
    State,
    layer_builders,
    layers_from_torch,
    numpy_state,
    read_network,
    torch_description,
    torch_mlp,
    torch_state,
)
from utils.checks.networks.training import (
    STEP_MISTAKES,
    VISIBLE_STEP_CASES,
    StepCase,
    _variant,
    check_train_step,
    torch_sgd_step,
)

__all__ = [
    "AccuracyCase",
    "BuildCase",
    "STEP_MISTAKES",
    "State",
    "StepCase",
    "VISIBLE_ACCURACY_CASES",
    "VISIBLE_BUILD_CASES",
    "VISIBLE_STEP_CASES",
    "_accuracy_mistakes",
    "_variant",
    "check_accuracy",
    "check_build_mlp",
    "check_train_step",
    "layer_builders",
    "layers_from_torch",
    "numpy_state",
    "read_network",
    "torch_description",
    "torch_mlp",
    "torch_sgd_step",
    "torch_state",
]
