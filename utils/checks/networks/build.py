"""Lesson 05's build_mlp checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from utils.checks.networks.oracle import (
    _flat,
    read_network,
    torch_description,
    torch_mlp,
    what_it_is,
)
from utils.checks.twins import On, paired
from utils.diagnose import CheckFailure, assert_close, on_cases, report
from utils.guard import call_without_torch
from utils.reference import one_torch_thread

# --- build_mlp ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildCase:
    dims: tuple[int, ...]
    use_bn: bool
    init_scale: float
    seed: int

    @property
    def label(self) -> str:
        return f"dims={list(self.dims)}, use_bn={self.use_bn}, init_scale={self.init_scale:.3g}"


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


@one_torch_thread()
def _check_build_case(build_mlp: Callable, case: BuildCase) -> float:
    rng = np.random.default_rng(case.seed)
    result = call_without_torch(
        build_mlp, list(case.dims), case.use_bn, rng, case.init_scale, name="build_mlp"
    )
    if not isinstance(result, (list, tuple)):
        raise CheckFailure(f"build_mlp must return a list of layers, got {what_it_is(result)}.")
    network = read_network(result)
    reference = torch_description(torch_mlp(case.dims, case.use_bn, perturb=False))
    got = [layer["kind"] for layer in network]
    expected = [layer["kind"] for layer in reference]
    if got != expected:
        raise CheckFailure(
            f"the layers are {' -> '.join(got) or 'none'}, expected {' -> '.join(expected)}. "
            f"Likely mistake: {_structure_hint(got, expected, case.use_bn)}"
        )
    for i, (layer, wanted) in enumerate(zip(network, reference, strict=True)):
        followed_by_bn = i + 1 < len(reference) and reference[i + 1]["kind"] == "BatchNorm1d"
        _compare_layer(i, layer, wanted, followed_by_bn)
    weights = [layer["weight"] for layer in network if layer["kind"] == "Linear"]
    return _compare_weights(weights, case)


def _compare_layer(i: int, layer: dict, wanted: dict, followed_by_bn: bool) -> None:
    """Layer ``i`` as ``read_network`` read it against the ``torch_description`` of its twin."""
    if layer["kind"] == "BatchNorm1d" and len(layer["gamma"]) != len(wanted["gamma"]):
        raise CheckFailure(
            f"layer {i} is BatchNorm1d({len(layer['gamma'])}), expected "
            f"BatchNorm1d({len(wanted['gamma'])}): one feature per output of the Linear before."
        )
    if layer["kind"] != "Linear":
        return
    shape = wanted["weight"].shape
    if layer["weight"].shape != shape:
        raise CheckFailure(
            f"layer {i} (Linear) has a weight of shape {layer['weight'].shape}, expected "
            f"{shape}: Linear(dims[l], dims[l + 1]) for layer l."
        )
    if followed_by_bn and layer["bias"] is not None:
        raise CheckFailure(
            f"layer {i} (Linear) keeps its bias although BatchNorm1d follows it. Likely mistake: "
            "a bias before BatchNorm is redundant (the batch mean subtracts it again); pass "
            "bias=False to a Linear that BatchNorm1d follows."
        )
    if not followed_by_bn and layer["bias"] is None:
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


@paired(lambda: On(VISIBLE_BUILD_CASES, "build_mlp: layers in the right order; weights"))
def check_build_mlp(on: On, build_mlp: Callable) -> None:
    """Visible check of ``build_mlp``: the layer order, shapes, biases and weights, with and
    without BatchNorm, against the same network built in torch."""
    err = on_cases(on.cases, lambda c: _check_build_case(build_mlp, c))
    report(on.label, err)
