"""Lesson 05's torch oracle, and the networks the checks hand to the learner's code and read back.

The checks never touch a learner's layer object directly: they build a network with the
``from_description`` class methods of ``utils.nn`` and read it with each layer's ``describe()``
(plain data: kinds, modes, settings, arrays). In the notebook those are this process's layers;
in grading the learner's functions are proxies of functions in the graded kernel, the layers
must live there too, and the same calls go over the checker's channel, by handle. Whatever
comes back is treated as hostile input: ``read_network`` checks every kind, type and shape
before a check compares anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from utils import nn as layers_nn
from utils.diagnose import CheckFailure
from utils.guard import _checker_session
from utils.reference import as_tensor, to_numpy

KINDS = ("Linear", "BatchNorm1d", "ReLU")
"""The ``utils.nn`` layers of the lesson's networks, by the names its set-up cell imports."""
_ARRAYS = {
    "Linear": ("weight",),
    "BatchNorm1d": ("gamma", "beta", "running_mean", "running_var"),
    "ReLU": (),
}

# --- the torch oracle ------------------------------------------------------------------------


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


def torch_description(model: nn.Sequential) -> list[dict]:
    """``model`` as ``utils.nn``'s ``describe()`` describes a network: one dict per module, the
    numpy Linear's weight being the transpose of torch's."""
    described = []
    for module in model:
        layer = {"training": module.training}
        if isinstance(module, nn.Linear):
            bias = None if module.bias is None else _copy(module.bias)
            layer |= {"kind": "Linear", "weight": _copy(module.weight).T, "bias": bias}
        elif isinstance(module, nn.BatchNorm1d):
            layer |= {"kind": "BatchNorm1d", "eps": module.eps, "momentum": module.momentum}
            layer |= {
                "gamma": _copy(module.weight),
                "beta": _copy(module.bias),
                "running_mean": _copy(module.running_mean),
                "running_var": _copy(module.running_var),
            }
        elif isinstance(module, nn.ReLU):
            layer["kind"] = "ReLU"
        else:
            raise TypeError(f"no utils.nn layer for {module!r}")
        described.append(layer)
    return described


def _copy(tensor: torch.Tensor) -> np.ndarray:
    return to_numpy(tensor).copy()  # the module's own memory changes when it trains


# --- the learner's side: building a network there, reading it back ---------------------------


def layer_builders(learner_fn: Callable | None) -> dict[str, Callable]:
    """``from_description`` of each kind of layer, on the side where ``learner_fn`` runs: this
    process's ``utils.nn`` in the notebook; in grading (``learner_fn`` a proxy of the graded
    kernel's function) the kernel's classes, by handle, under the names the lesson's set-up cell
    imports them as, so the learner's code gets layers that live beside it."""
    session = _kernel_session(learner_fn)
    if session is None:
        return {kind: getattr(layers_nn, kind).from_description for kind in KINDS}
    builders = {}
    for kind in KINDS:
        try:
            found = session.resolve(kind)
        except NameError:
            found = None
        if _kernel_session(found) is not session:
            raise CheckFailure(
                f"the notebook's name {kind} no longer names the class that the set-up cell "
                "imports from utils.nn; do not redefine it."
            )
        builders[kind] = found.from_description
    return builders


def _kernel_session(value):
    """The checker's session with the graded kernel when ``value`` is a proxy of one of its
    objects (``utils.guard._checker_session``, as lesson 08's checks find it); None for anything
    of this process."""
    return _checker_session(value)


def build_network(builders: dict[str, Callable], description: list[dict]) -> list:
    """The layers ``description`` describes, built by ``builders`` (``layer_builders``)."""
    return [builders[layer["kind"]](layer) for layer in description]


def layers_from_torch(model: nn.Sequential, builders: dict[str, Callable] | None = None) -> list:
    """``utils.nn`` copies of the modules of ``model`` (same values, same train/eval mode),
    here or where ``builders`` build them."""
    builders = builders or layer_builders(None)
    return build_network(builders, torch_description(model))


def read_network(layers: Sequence) -> list[dict]:
    """Each layer's ``describe()``, checked and copied: a known kind, a bool ``training``,
    float64 arrays of consistent shapes (a Linear's weight 2-D and its bias None or as long as
    its outputs; a BatchNorm1d's four arrays 1-D and equally long), numbers for eps and
    momentum. CheckFailure for anything else: the answer may come from a hostile kernel."""
    return [_checked(i, layer, _describe(i, layer)) for i, layer in enumerate(layers)]


def _describe(i: int, layer) -> object:
    try:
        describe = layer.describe
    except AttributeError:
        raise CheckFailure(
            f"element {i} is {what_it_is(layer)}, not a layer; build the network from the "
            "Linear, BatchNorm1d and ReLU classes of utils.nn."
        ) from None
    return describe()


def what_it_is(value) -> str:
    """How a message names the type of a learner's ``value`` (here, or in the graded kernel)."""
    return repr(value) if _kernel_session(value) else f"a {type(value).__name__}"


def _checked(i: int, layer, described) -> dict:
    if type(described) is not dict:
        raise CheckFailure(f"element {i}'s describe() did not describe a utils.nn layer.")
    kind = described.get("kind")
    if kind not in KINDS:
        name = kind[:60] if isinstance(kind, str) else "an unknown kind of layer"
        raise CheckFailure(
            f"element {i} is a {name}; build the network from the Linear, BatchNorm1d and ReLU "
            "classes of utils.nn."
        )
    training = described.get("training")
    if type(training) not in (bool, np.bool_):
        raise CheckFailure(f"element {i} ({kind}) has a training flag that is not True/False.")
    checked = {"kind": kind, "training": bool(training)}
    for key in _ARRAYS[kind]:
        checked[key] = _float_array(i, kind, key, described.get(key))
    if kind == "Linear":
        checked["bias"] = _bias(i, described.get("bias"), checked["weight"])
    if kind == "BatchNorm1d":
        _same_lengths(i, checked)
        for key in ("eps", "momentum"):
            value = described.get(key)
            if type(value) not in (int, float, np.float64):
                raise CheckFailure(f"element {i} (BatchNorm1d) has a {key} that is not a number.")
            checked[key] = float(value)
    return checked


def _float_array(i: int, kind: str, key: str, value) -> np.ndarray:
    ndim = 2 if key == "weight" else 1
    if not (isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == ndim):
        raise CheckFailure(f"element {i} ({kind}) has a {key} that is not a {ndim}-D float array.")
    return np.array(value, dtype=np.float64)


def _bias(i: int, bias, weight: np.ndarray) -> np.ndarray | None:
    if bias is None:
        return None
    bias = _float_array(i, "Linear", "bias", bias)
    if bias.shape != weight.shape[1:]:
        raise CheckFailure(
            f"element {i} (Linear) has a bias of shape {bias.shape} for a weight of shape "
            f"{weight.shape}."
        )
    return bias


def _same_lengths(i: int, checked: dict) -> None:
    shapes = {checked[key].shape for key in _ARRAYS["BatchNorm1d"]}
    if len(shapes) != 1:
        raise CheckFailure(
            f"element {i} (BatchNorm1d) has gamma, beta and running statistics of different "
            f"lengths ({sorted(shapes)})."
        )


def structure(description: list[dict]) -> list[tuple]:
    """What must stay fixed while a network trains: each layer's kind and array shapes."""
    shapes = []
    for layer in description:
        arrays = [np.shape(layer[key]) for key in _ARRAYS[layer["kind"]]]
        shapes.append((layer["kind"], layer.get("bias") is None, *arrays))
    return shapes


def read_network_like(layers: Sequence, expected: list[dict], what: str) -> list[dict]:
    """``read_network(layers)``, which must have ``expected``'s structure (``what`` names the
    learner's function that had the network last)."""
    got = read_network(layers)
    if structure(got) != structure(expected):
        raise CheckFailure(
            f"after {what} the network has other layers or other shapes than it was given: "
            f"{what} must change the values of the parameters in place, not the layers."
        )
    return got


# --- a network's values, flattened -----------------------------------------------------------


@dataclass
class State:
    """A network's values, flattened in layer order: the parameters (torch's layout:
    a Linear's weight as (out, in)) and the BatchNorm running statistics."""

    parameters: np.ndarray
    running: np.ndarray


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def state_of(description: list[dict]) -> State:
    """The State of a described network (``torch_description`` or ``read_network``)."""
    params, running = [], []
    for layer in description:
        if layer["kind"] == "Linear":
            params.append(layer["weight"].T)
            if layer["bias"] is not None:
                params.append(layer["bias"])
        elif layer["kind"] == "BatchNorm1d":
            params += [layer["gamma"], layer["beta"]]
            running += [layer["running_mean"], layer["running_var"]]
    return State(_flat(params), _flat(running))


def torch_state(model: nn.Sequential) -> State:
    return state_of(torch_description(model))


def numpy_state(layers: Sequence) -> State:
    return state_of(read_network(layers))
