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
copied into ``utils.nn`` layers; one step of ``train_step`` must leave exactly the parameters
and running statistics that one SGD step of the torch model leaves. Known-wrong variants
(the update's sign, eval mode during training, frozen parameters, train mode at test time,
a mean of per-batch accuracies ...) are computed by the same torch model and name the mistake.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils import nn as layers_nn
from utils.diagnose import (
    TIGHT,
    CheckFailure,
    as_float_array,
    assert_close,
    name_mistake,
    on_cases,
    report,
)
from utils.gradcheck import relative_error
from utils.guard import call_without_torch
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


# --- build_mlp ----------------------------------------------------------------------------------

_TORCH_TO_NUMPY = {nn.Linear: "Linear", nn.BatchNorm1d: "BatchNorm1d", nn.ReLU: "ReLU"}
_NUMPY_KINDS = {
    layers_nn.Linear: "Linear",
    layers_nn.BatchNorm1d: "BatchNorm1d",
    layers_nn.ReLU: "ReLU",
}


@dataclass(frozen=True)
class BuildCase:
    dims: tuple[int, ...]
    use_bn: bool
    init_scale: float
    seed: int

    @property
    def label(self) -> str:
        return f"dims={list(self.dims)}, use_bn={self.use_bn}, init_scale={self.init_scale:.3g}"


def _kind(layer, i: int) -> str:
    kind = _NUMPY_KINDS.get(type(layer))
    if kind is None:
        raise CheckFailure(
            f"element {i} is a {type(layer).__name__}; build the network from the Linear, "
            "BatchNorm1d and ReLU classes of utils.nn."
        )
    return kind


def _structure_hint(got: list[str], expected: list[str], use_bn: bool) -> str:
    """Why the sequence of layer kinds ``got`` differs from ``expected``."""
    pairs = list(zip(got, got[1:], strict=False))
    if use_bn and "BatchNorm1d" not in got:
        return "use_bn=True, but there is no BatchNorm1d."
    if not use_bn and "BatchNorm1d" in got:
        return "use_bn=False, but the network has a BatchNorm1d."
    if ("ReLU", "BatchNorm1d") in pairs:
        return (
            "BatchNorm1d comes after the ReLU; this lesson places it between the Linear and "
            "the ReLU (Linear -> BatchNorm1d -> ReLU)."
        )
    if got and got[-1] != "Linear":
        return (
            f"the network ends with {got[-1]}; the output layer must be a plain Linear that "
            "returns the logits (no BatchNorm1d or ReLU after it)."
        )
    return "compare the order with the lesson's diagram."


def _expected_weights(case: BuildCase) -> list[np.ndarray]:
    """The weights the spec promises: each Linear draws its weight from the one rng, in order."""
    rng = np.random.default_rng(case.seed)
    return [
        case.init_scale / math.sqrt(d_in) * rng.standard_normal((d_in, d_out))
        for d_in, d_out in zip(case.dims[:-1], case.dims[1:], strict=True)
    ]


def _check_build_case(build_mlp: Callable, case: BuildCase) -> float:
    rng = np.random.default_rng(case.seed)
    result = call_without_torch(
        build_mlp, list(case.dims), case.use_bn, rng, case.init_scale, name="build_mlp"
    )
    if not isinstance(result, (list, tuple)):
        raise CheckFailure(f"build_mlp must return a list of layers, got {type(result).__name__}.")
    got = [_kind(layer, i) for i, layer in enumerate(result)]
    reference = torch_mlp(case.dims, case.use_bn, perturb=False)
    expected = [_TORCH_TO_NUMPY[type(m)] for m in reference]
    if got != expected:
        raise CheckFailure(
            f"the layers are {' -> '.join(got) or 'none'}, expected {' -> '.join(expected)}. "
            f"Likely mistake: {_structure_hint(got, expected, case.use_bn)}"
        )
    for i, (layer, module) in enumerate(zip(result, reference, strict=True)):
        _compare_layer(i, layer, module, reference)
    weights = [layer.weight.data for layer in result if isinstance(layer, layers_nn.Linear)]
    return _compare_weights(weights, case)


def _compare_layer(i: int, layer, module: nn.Module, reference: nn.Sequential) -> None:
    if isinstance(module, nn.BatchNorm1d) and layer.num_features != module.num_features:
        raise CheckFailure(
            f"layer {i} is BatchNorm1d({layer.num_features}), expected "
            f"BatchNorm1d({module.num_features}): one feature per output of the Linear before."
        )
    if not isinstance(module, nn.Linear):
        return
    shape = (module.in_features, module.out_features)
    if np.shape(layer.weight.data) != shape:
        raise CheckFailure(
            f"layer {i} (Linear) has a weight of shape {np.shape(layer.weight.data)}, expected "
            f"{shape}: Linear(dims[l], dims[l + 1]) for layer l."
        )
    followed_by_bn = i + 1 < len(reference) and isinstance(reference[i + 1], nn.BatchNorm1d)
    if followed_by_bn and layer.bias is not None:
        raise CheckFailure(
            f"layer {i} (Linear) keeps its bias although BatchNorm1d follows it. Likely mistake: "
            "a bias before BatchNorm is redundant (the batch mean subtracts it again); pass "
            "bias=False to a Linear that BatchNorm1d follows."
        )
    if not followed_by_bn and layer.bias is None:
        raise CheckFailure(
            f"layer {i} (Linear) has no bias, but no BatchNorm1d follows it; only a Linear "
            "followed by BatchNorm1d drops its bias."
        )


def _compare_weights(weights: list[np.ndarray], case: BuildCase) -> float:
    expected = _expected_weights(case)
    got, want = _flat(weights), _flat(expected)
    mistakes = {}
    if not math.isclose(case.init_scale, math.sqrt(2)):
        mistakes["init_scale was not passed on to the Linear layers"] = _flat(
            [w * math.sqrt(2) / case.init_scale for w in expected]
        )
    try:
        return assert_close("the Linear weights", got, want, mistakes=mistakes)
    except CheckFailure as failure:
        raise CheckFailure(
            f"{failure} (Each Linear draws its weight from the rng it is given; create the "
            "layers in order and give every Linear the rng and init_scale passed to build_mlp.)"
        ) from None


VISIBLE_BUILD_CASES = (
    BuildCase((64, 32, 16, 10), True, math.sqrt(2), 0),
    BuildCase((64, 32, 16, 10), False, math.sqrt(2), 1),
)
HIDDEN_BUILD_CASES = (
    BuildCase((5, 3), True, math.sqrt(2), 2),
    BuildCase((7, 4, 3), True, 0.5, 3),
    BuildCase((7, 4, 3), False, 2.0, 4),
    BuildCase((10, 8, 8, 8, 4), True, 1.0, 5),
    BuildCase((3, 6, 1, 2), True, 3.0, 6),
)


def check_build_mlp(build_mlp: Callable) -> None:
    """Visible check of ``build_mlp``: the layer order, shapes, biases and weights, with and
    without BatchNorm, against the same network built in torch."""
    err = on_cases(VISIBLE_BUILD_CASES, lambda c: _check_build_case(build_mlp, c))
    report("build_mlp: layers in the right order; weights", err)


def check_build_mlp_hidden(build_mlp: Callable) -> None:
    """Hidden check of ``build_mlp`` on other depths, widths and init scales."""
    cases = HIDDEN_BUILD_CASES
    err = on_cases(cases, lambda c: _check_build_case(build_mlp, c))
    report(f"build_mlp on {len(cases)} hidden networks: weights", err)


# --- train_step ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCase:
    dims: tuple[int, ...]
    use_bn: bool
    batch: int
    lr: float
    steps: int
    seed: int
    start_in_eval: bool = False
    bias_before_bn: bool = False

    @property
    def label(self) -> str:
        extra = ", starting in eval mode" if self.start_in_eval else ""
        extra += ", bias before BatchNorm" if self.bias_before_bn else ""
        return (
            f"dims={list(self.dims)}, use_bn={self.use_bn}, batch {self.batch}, lr={self.lr:g}, "
            f"{self.steps} step(s){extra}"
        )

    def model(self) -> nn.Sequential:
        model = torch_mlp(
            self.dims, self.use_bn, bias_before_bn=self.bias_before_bn, seed=self.seed
        )
        return model.train(not self.start_in_eval)

    def batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(1000 + self.seed)
        return [
            (
                0.3 + 1.5 * rng.standard_normal((self.batch, self.dims[0])),
                rng.integers(0, self.dims[-1], self.batch),
            )
            for _ in range(self.steps)
        ]


def torch_sgd_step(
    model: nn.Sequential,
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    *,
    train_mode: bool = True,
    frozen: type | None = None,
    loss_after: bool = False,
) -> float:
    """One SGD step of ``model`` (changed in place) on (x, y); returns the loss.

    The options make the known-wrong variants: ``train_mode=False`` keeps the model in eval
    mode, ``frozen`` skips the update of every module of that type, ``loss_after`` returns the
    loss recomputed after the update (in eval mode, to leave the running statistics alone)."""
    model.train(train_mode)
    xt, yt = as_tensor(x), torch.tensor(np.array(y), dtype=torch.long)
    model.zero_grad()
    loss = F.cross_entropy(model(xt), yt)
    loss.backward()
    with torch.no_grad():
        for module in model:
            if frozen is not None and isinstance(module, frozen):
                continue
            for p in module.parameters(recurse=False):
                p -= lr * p.grad
        if loss_after:
            was = model.training
            loss = F.cross_entropy(model.eval()(xt), yt)
            model.train(was)
    return loss.item()


STEP_MISTAKES: dict[str, dict] = {
    "the update has the wrong sign (p.data += lr * p.grad climbs the loss instead of "
    "descending it)": {"lr_factor": -1.0},
    "the learning rate was not applied (p.data -= p.grad)": {"lr_value": 1.0},
    "the network stayed in evaluation mode: call layer.train() on every layer at the start "
    "of train_step (accuracy() switched them to eval)": {"train_mode": False},
    "BatchNorm's gamma and beta were not updated (update the parameters() of every layer)": {
        "frozen": nn.BatchNorm1d
    },
    "the Linear layers were not updated (update the parameters() of every layer)": {
        "frozen": nn.Linear
    },
}
"""Known-wrong variants of one SGD step: the hint, then the options of torch_sgd_step."""


def _variant(model: nn.Sequential, x, y, lr: float, options: dict) -> tuple[float, State]:
    model = copy.deepcopy(model)
    options = dict(options)
    step_lr = options.pop("lr_value", lr * options.pop("lr_factor", 1.0))
    loss = torch_sgd_step(model, x, y, step_lr, **options)
    return loss, torch_state(model)


def _step_mistakes(model, x, y, lr, expected: State) -> tuple[dict, dict, dict]:
    """Hints for the loss, the parameters and the running statistics of one step."""
    losses, params, running = {}, {}, {}
    for hint, options in STEP_MISTAKES.items():
        loss, state = _variant(model, x, y, lr, options)
        losses[hint] = np.array(loss)
        if not np.allclose(state.parameters, expected.parameters, rtol=0, atol=1e-12):
            params[hint] = state.parameters
        if not np.allclose(state.running, expected.running, rtol=0, atol=1e-12):
            running[hint] = state.running
    after, _ = _variant(model, x, y, lr, {"loss_after": True})
    losses["the loss was computed after the update; return the loss of the forward pass"] = (
        np.array(after)
    )
    return losses, params, running


def _check_step_case(train_step: Callable, case: StepCase) -> float:
    model = case.model()
    layers = layers_from_torch(model)
    worst = 0.0
    for k, (x, y) in enumerate(case.batches()):
        prefix = f"step {k + 1}: " if case.steps > 1 else ""
        before = copy.deepcopy(model)
        expected_loss = torch_sgd_step(model, x, y, case.lr)
        expected = torch_state(model)
        losses, params, running = _step_mistakes(before, x, y, case.lr, expected)
        loss = call_without_torch(
            train_step, layers, x.copy(), y.copy(), case.lr, name="train_step"
        )
        got = numpy_state(layers)
        try:
            worst = max(
                worst,
                assert_close("the returned loss", loss, expected_loss, mistakes=losses),
                assert_close(
                    "the updated parameters", got.parameters, expected.parameters, mistakes=params
                ),
                assert_close(
                    "the running statistics", got.running, expected.running, mistakes=running
                ),
            )
        except CheckFailure as failure:
            raise CheckFailure(prefix + str(failure)) from None
    return worst


VISIBLE_STEP_CASES = (
    StepCase((6, 5, 4, 3), True, batch=8, lr=0.1, steps=2, seed=0, start_in_eval=True),
    StepCase((6, 5, 4, 3), False, batch=8, lr=0.1, steps=1, seed=1),
)
HIDDEN_STEP_CASES = (
    StepCase((4, 3), True, batch=5, lr=0.5, steps=2, seed=2),
    StepCase((9, 7, 7, 7, 5), True, batch=16, lr=0.05, steps=3, seed=3),
    StepCase((9, 7, 5), True, batch=2, lr=0.2, steps=2, seed=4, start_in_eval=True),
    StepCase((8, 6, 4), True, batch=12, lr=0.3, steps=2, seed=5, bias_before_bn=True),
    StepCase((8, 6, 6, 4), False, batch=10, lr=0.7, steps=3, seed=6, start_in_eval=True),
)


def check_train_step(train_step: Callable) -> None:
    """Visible check of ``train_step``: loss, updated parameters and running statistics after
    one or two steps, against SGD on the same network in torch."""
    err = on_cases(VISIBLE_STEP_CASES, lambda c: _check_step_case(train_step, c))
    report("train_step (loss, parameters, running statistics)", err, TIGHT)


def check_train_step_hidden(train_step: Callable) -> None:
    """Hidden check of ``train_step`` on other networks, batch sizes and learning rates."""
    cases = HIDDEN_STEP_CASES
    err = on_cases(cases, lambda c: _check_step_case(train_step, c))
    report(f"train_step on {len(cases)} hidden networks", err, TIGHT)


# --- accuracy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyCase:
    dims: tuple[int, ...]
    n: int
    batch_size: int
    seed: int
    sorted_labels: bool = False
    use_bn: bool = True

    @property
    def label(self) -> str:
        extra = ", samples sorted by label" if self.sorted_labels else ""
        return f"dims={list(self.dims)}, {self.n} samples, batch_size={self.batch_size}{extra}"

    def data(self, model: nn.Sequential) -> tuple[np.ndarray, np.ndarray]:
        """Inputs, and labels that the eval-mode model gets mostly (not all) right."""
        rng = np.random.default_rng(2000 + self.seed)
        x = 0.5 + 2.0 * rng.standard_normal((self.n, self.dims[0]))
        with torch.no_grad():
            y = to_numpy(model.eval()(as_tensor(x))).argmax(axis=1)
        flip = rng.random(self.n) < 0.3
        y = np.where(flip, rng.integers(0, self.dims[-1], self.n), y)
        if self.sorted_labels:
            order = np.argsort(y, kind="stable")
            x, y = x[order], y[order]
        return x, y


def _predictions(model: nn.Sequential, x: np.ndarray, batch_size: int, train: bool) -> list:
    """Argmax predictions of ``model`` batch by batch (a copy in train mode when asked)."""
    model = copy.deepcopy(model).train(train)
    with torch.no_grad():
        return [
            to_numpy(model(as_tensor(x[i : i + batch_size]))).argmax(axis=1)
            for i in range(0, len(x), batch_size)
        ]


def _accuracy_mistakes(model, x, y, batch_size: int) -> dict[str, np.ndarray]:
    mistakes = {}
    try:
        train_pred = np.concatenate(_predictions(model, x, batch_size, train=True))
        mistakes[
            "the network was still in training mode: BatchNorm used each test batch's own "
            "statistics. Call layer.eval() on every layer first"
        ] = np.mean(train_pred == y)
    except ValueError:  # a batch of one cannot run in training mode at all
        pass
    pieces = _predictions(model, x, batch_size, train=False)
    labels = [y[i : i + batch_size] for i in range(0, len(x), batch_size)]
    per_batch = [np.mean(p == t) for p, t in zip(pieces, labels, strict=True)]
    mistakes["the mean of the per-batch accuracies, which overweights a smaller last batch"] = (
        np.mean(per_batch)
    )
    full = [(p, t) for p, t in zip(pieces, labels, strict=True) if len(p) == batch_size]
    if full:
        mistakes["the last, incomplete batch was left out"] = np.mean(
            np.concatenate([p == t for p, t in full])
        )
    mistakes["only the first batch was scored"] = per_batch[0]
    return mistakes


def _merge_equal(mistakes: dict[str, float]) -> dict[str, float]:
    """One entry per distinct value: on a small test set two mistakes can give the same
    accuracy, and then the hint names both."""
    merged: dict[str, float] = {}
    for hint, value in mistakes.items():
        same = next((k for k, v in merged.items() if v == value), None)
        if same is None:
            merged[hint] = value
        else:
            merged[f"{same}; or {hint}"] = merged.pop(same)
    return merged


def _check_accuracy_case(accuracy: Callable, case: AccuracyCase) -> float:
    model = torch_mlp(case.dims, case.use_bn, seed=case.seed)
    x, y = case.data(model)
    layers = [layer.train() for layer in layers_from_torch(model)]
    before = numpy_state(layers)
    result = call_without_torch(
        accuracy, layers, x.copy(), y.copy(), case.batch_size, name="accuracy"
    )
    value = as_float_array(result, "the accuracy", ())
    after = numpy_state(layers)
    if not np.array_equal(before.running, after.running):
        raise CheckFailure(
            "accuracy changed the BatchNorm running statistics: the network was still in "
            "training mode, so BatchNorm normalized each batch with its own statistics and "
            "updated its running ones. Call layer.eval() on every layer before predicting."
        )
    if not np.array_equal(before.parameters, after.parameters):
        raise CheckFailure("accuracy changed the network's parameters; it must only predict.")
    with torch.no_grad():
        expected = np.mean(to_numpy(model.eval()(as_tensor(x))).argmax(axis=1) == y)
    wrong = _accuracy_mistakes(model, x, y, case.batch_size)
    wrong["a percentage instead of a fraction"] = 100 * expected
    wrong["the number of correct predictions instead of the fraction"] = expected * len(y)
    wrong = _merge_equal({k: v for k, v in wrong.items() if v != expected})
    err = relative_error(value, expected)
    if not err <= TIGHT:
        mistake = name_mistake(value, wrong)
        hint = (
            f"it looks like {mistake}."
            if mistake
            else "no known mistake matches; predict one class per row (argmax over axis 1) "
            "and count every sample exactly once."
        )
        raise CheckFailure(
            f"the accuracy came out as {float(value):.4g}, which is wrong. Likely mistake: {hint}"
        )
    return err


VISIBLE_ACCURACY_CASES = (AccuracyCase((6, 8, 4), n=30, batch_size=8, seed=1),)
"""Chosen so that every known mistake gives its own, wrong, accuracy (a test verifies it)."""
HIDDEN_ACCURACY_CASES = (
    AccuracyCase((6, 8, 4), n=40, batch_size=10, seed=0, sorted_labels=True),
    AccuracyCase((5, 7, 7, 3), n=23, batch_size=4, seed=2),
    AccuracyCase((5, 7, 3), n=12, batch_size=64, seed=3),
    AccuracyCase((5, 7, 3), n=9, batch_size=1, seed=4),
    AccuracyCase((5, 7, 3), n=20, batch_size=6, seed=5, use_bn=False),
)


def check_accuracy(accuracy: Callable) -> None:
    """Visible check of ``accuracy`` against the torch model in eval mode."""
    err = on_cases(VISIBLE_ACCURACY_CASES, lambda c: _check_accuracy_case(accuracy, c))
    report("accuracy (eval mode, batch by batch)", err)


def check_accuracy_hidden(accuracy: Callable) -> None:
    """Hidden check of ``accuracy``: sorted labels, partial and single-sample batches."""
    cases = HIDDEN_ACCURACY_CASES
    err = on_cases(cases, lambda c: _check_accuracy_case(accuracy, c))
    report(f"accuracy on {len(cases)} hidden cases", err)
