"""Lesson 05's torch oracle and the copy of the learner's network into utils.nn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from utils import nn as layers_nn
from utils.reference import as_tensor, to_numpy

# --- the torch oracle and the copy into utils.nn ---------------------------------------------


def torch_mlp(
    dims: Sequence[int],
    use_bn: bool,
    *,
    bias_before_bn: bool = False,
    seed: int = 0,
    perturb: bool = True,
) -> nn.Sequential:
    """The lesson's MLP in torch, float64: (Linear [-> BatchNorm1d] -> ReLU) per hidden layer,
    then a Linear. A Linear before a BatchNorm1d has no bias unless ``bias_before_bn``.

    perturb: give biases, gamma, beta and the running statistics random values (never the
    defaults 0 and 1, which hide bugs)."""
    torch.manual_seed(seed)
    modules: list[nn.Module] = []
    hidden = len(dims) - 2
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        normalized = use_bn and i < hidden
        modules.append(nn.Linear(d_in, d_out, bias=not normalized or bias_before_bn))
        if normalized:
            modules.append(nn.BatchNorm1d(d_out))
        if i < hidden:
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules).double()
    if perturb:
        _perturb(model, np.random.default_rng(seed))
    return model


def _perturb(model: nn.Sequential, rng: np.random.Generator) -> None:
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.copy_(as_tensor(rng.uniform(-0.5, 0.5, module.out_features)))
            if isinstance(module, nn.BatchNorm1d):
                d = module.num_features
                module.weight.copy_(as_tensor(rng.uniform(0.5, 1.5, d)))
                module.bias.copy_(as_tensor(rng.uniform(-0.5, 0.5, d)))
                module.running_mean.copy_(as_tensor(rng.uniform(-1.0, 1.0, d)))
                module.running_var.copy_(as_tensor(rng.uniform(0.5, 2.0, d)))


def layers_from_torch(model: nn.Sequential) -> list[layers_nn.Layer]:
    """``utils.nn`` copies of the modules of ``model`` (Linear, BatchNorm1d, ReLU), same values
    and same train/eval mode. The numpy Linear holds the transposed weight."""
    layers: list[layers_nn.Layer] = []
    for module in model:
        if isinstance(module, nn.Linear):
            layer = layers_nn.Linear(
                module.in_features,
                module.out_features,
                np.random.default_rng(0),
                bias=module.bias is not None,
            )
            layer.weight.data = to_numpy(module.weight).T.copy()
            if module.bias is not None:
                layer.bias.data = to_numpy(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            layer = layers_nn.BatchNorm1d(module.num_features, module.eps, module.momentum)
            layer.gamma.data = to_numpy(module.weight)
            layer.beta.data = to_numpy(module.bias)
            layer.running_mean = to_numpy(module.running_mean)
            layer.running_var = to_numpy(module.running_var)
        elif isinstance(module, nn.ReLU):
            layer = layers_nn.ReLU()
        else:
            raise TypeError(f"no utils.nn layer for {module!r}")
        layers.append(layer.train(module.training))
    return layers


@dataclass
class State:
    """A network's values, flattened in layer order: the parameters (torch's layout:
    a Linear's weight as (out, in)) and the BatchNorm running statistics."""

    parameters: np.ndarray
    running: np.ndarray


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def torch_state(model: nn.Sequential) -> State:
    params, running = [], []
    for module in model:
        params += [to_numpy(p) for p in module.parameters()]
        if isinstance(module, nn.BatchNorm1d):
            running += [to_numpy(module.running_mean), to_numpy(module.running_var)]
    return State(_flat(params), _flat(running))


def numpy_state(layers: Sequence[layers_nn.Layer]) -> State:
    params, running = [], []
    for layer in layers:
        if isinstance(layer, layers_nn.Linear):
            params.append(np.asarray(layer.weight.data).T)
            if layer.bias is not None:
                params.append(layer.bias.data)
        elif isinstance(layer, layers_nn.BatchNorm1d):
            params += [layer.gamma.data, layer.beta.data]
            running += [layer.running_mean, layer.running_var]
    return State(_flat(params), _flat(running))
