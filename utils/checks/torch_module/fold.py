"""The ``fold_batchnorm`` checks: fold cases, the reference, known-wrong folds and the checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from utils import reference
from utils.cases import signed
from utils.checks.torch_module.common import call_learner
from utils.diagnose import CheckFailure, assert_close, assert_default_eps, on_cases, report

# --- the folding checks --------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldCase:
    """A Linear (weight (out, in)) or Conv2d (weight (out, in, kh, kw), padding 1) followed by
    batch norm in eval mode; the arrays are handed over as numpy arrays or as torch tensors
    (``kind``; "parameters": tensors that require grad, as read from a model)."""

    label: str
    weight: np.ndarray
    bias: np.ndarray | None
    running_mean: np.ndarray
    running_var: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    x: np.ndarray
    kind: str

    @property
    def layer(self) -> str:
        return "Linear" if self.weight.ndim == 2 else "Conv2d"

    def arguments(self) -> tuple:
        """Fresh copies of (weight, bias, running_mean, running_var, gamma, beta) of ``kind``."""
        arrays = (
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.gamma,
            self.beta,
        )
        if self.kind == "numpy":
            return tuple(None if a is None else a.copy() for a in arrays)
        grad = self.kind == "parameters"
        return tuple(
            None if a is None else torch.tensor(a, requires_grad=grad and i < 2)
            for i, a in enumerate(arrays)
        )


def make_fold_case(
    label: str,
    seed: int,
    weight_shape: tuple[int, ...],
    kind: str,
    *,
    bias: bool = True,
    far: bool = False,
    eps: float = 1e-5,
) -> FoldCase:
    """A seeded FoldCase. far: gamma of magnitude 3-8, beta 5-20, running means ~ 30 and
    running variances spread over 1e-3 to 1e2 (otherwise 0.5-2, 0.2-2, ~1 and 0.3-3)."""
    rng = np.random.default_rng(seed)
    out, fan_in = weight_shape[0], int(np.prod(weight_shape[1:]))
    weight = rng.normal(0.0, fan_in**-0.5, weight_shape)
    b = rng.normal(0.0, 1.0, out) if bias else None
    if far:
        mean, var = rng.normal(0.0, 30.0, out), 10.0 ** rng.uniform(-3, 2, out)
        gamma, beta = signed(rng, 3.0, 8.0, out), signed(rng, 5.0, 20.0, out)
    else:
        mean, var = rng.normal(0.0, 1.0, out), rng.uniform(0.3, 3.0, out)
        gamma, beta = signed(rng, 0.5, 2.0, out), signed(rng, 0.2, 2.0, out)
    x_shape = (4, weight_shape[1]) if len(weight_shape) == 2 else (2, weight_shape[1], 5, 4)
    x = rng.normal(size=x_shape)
    return FoldCase(label, weight, b, mean, var, gamma, beta, eps, x, kind)


def _layer(weight: torch.Tensor, bias, x: torch.Tensor) -> torch.Tensor:
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, padding=1)


def fold_reference(case: FoldCase) -> np.ndarray:
    """The layer, then BatchNorm in eval mode (running statistics, ``utils.reference``): the
    output to match."""
    t = {
        k: None if v is None else torch.tensor(v)
        for k, v in vars(case).items()
        if isinstance(v, np.ndarray) or v is None
    }
    with torch.no_grad():
        z = _layer(t["weight"], t["bias"], t["x"]).numpy()
    return reference.batchnorm_eval_reference(
        z, case.running_mean, case.running_var, case.gamma, case.beta, case.eps
    )


def _wrong_fold(case: FoldCase, mistake: str):
    """(weight, bias) folded with one classic mistake (numpy), or None where it cannot run."""
    w, rm, rv, g, beta, eps = (
        case.weight,
        case.running_mean,
        case.running_var,
        case.gamma,
        case.beta,
        case.eps,
    )
    b = np.zeros_like(rm) if case.bias is None else case.bias
    s = {
        "no_eps": g / np.sqrt(rv),
        "no_sqrt": g / (rv + eps),
        "eps_outside": g / (np.sqrt(rv) + eps),
    }.get(mistake, g / np.sqrt(rv + eps))
    per_row = s.reshape(-1, *([1] * (w.ndim - 1)))
    folded_w = w * per_row
    if mistake == "input_axis":
        if w.shape[0] != w.shape[1]:
            return None
        folded_w = w * s.reshape(1, -1, *([1] * (w.ndim - 2)))
    folded_b = {
        "no_mean": b * s + beta,
        "bias_unscaled": b - rm + beta,
        "no_beta": (b - rm) * s,
        "bias_dropped": -rm * s + beta,
    }.get(mistake, (b - rm) * s + beta)
    if mistake == "bias_dropped" and case.bias is None:
        return None
    return folded_w, folded_b


FOLD_MISTAKES = {
    "no_mean": "the running mean is forgotten: the folded bias is (b - running_mean) * scale "
    "+ beta",
    "no_eps": "eps is missing: scale = gamma / sqrt(running_var + eps)",
    "no_sqrt": "the square root is missing: scale = gamma / sqrt(running_var + eps), not "
    "gamma / (running_var + eps)",
    "eps_outside": "eps is added outside the square root: scale = gamma / sqrt(running_var + eps)",
    "input_axis": "the scale multiplies the input dimension (the columns, weight.shape[1]); it "
    "belongs to the output rows/channels: weight * scale[:, None] (Linear) or "
    "weight * scale[:, None, None, None] (Conv2d)",
    "bias_unscaled": "the bias is not scaled: the folded bias is (b - running_mean) * scale + beta",
    "no_beta": "beta is missing from the folded bias: (b - running_mean) * scale + beta",
    "bias_dropped": "the layer's own bias is dropped: the folded bias is (b - running_mean) * "
    "scale + beta",
}


def fold_mistakes(case: FoldCase) -> dict[str, np.ndarray]:
    """Outputs of the layer with each known-wrong fold, on the case's x."""
    out = {}
    for mistake, description in FOLD_MISTAKES.items():
        folded = _wrong_fold(case, mistake)
        if folded is not None:
            w, b = (torch.tensor(a) for a in folded)
            out[description] = _layer(w, b, torch.tensor(case.x)).numpy()
    return out


def _folded_as_tensors(case: FoldCase, result, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's (weight, bias) as float64 tensors, after checking kind and shapes."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailure(
            f"{name} must return a pair (weight, bias), got {type(result).__name__}."
        )
    kind = np.ndarray if case.kind == "numpy" else torch.Tensor
    inputs = "numpy arrays" if case.kind == "numpy" else "torch tensors"
    tensors = []
    for what, value, shape in zip(
        ("weight", "bias"), result, (case.weight.shape, case.running_mean.shape), strict=True
    ):
        if value is None:
            raise CheckFailure(
                f"the folded {what} is None; the folded layer always has a bias "
                "(running_mean and beta move into it)."
            )
        if not isinstance(value, kind):
            raise CheckFailure(
                f"the folded {what} is a {type(value).__module__}.{type(value).__name__} for "
                f"{inputs}: return the same kind as the inputs."
            )
        if tuple(value.shape) != tuple(shape):
            raise CheckFailure(
                f"the folded {what} has shape {tuple(value.shape)}, expected {tuple(shape)}."
            )
        if kind is torch.Tensor and value.dtype != torch.float64:
            raise CheckFailure(
                f"the folded {what} has dtype {value.dtype}; the inputs are float64."
            )
        tensors.append(
            torch.tensor(np.array(value)) if kind is np.ndarray else value.detach().clone()
        )
    return tensors[0], tensors[1]


def _fold_one(fold, case: FoldCase) -> float:
    name = getattr(fold, "__name__", "fold_batchnorm")
    args = case.arguments()
    result = call_learner(
        f"{name} ({case.layer}, {case.kind} inputs)", fold, *args, eps=case.eps, watch=False
    )
    originals = (case.weight, case.bias, case.running_mean, case.running_var, case.gamma, case.beta)
    for argument, before, after in zip(
        ("weight", "bias", "running_mean", "running_var", "gamma", "beta"),
        originals,
        args,
        strict=True,
    ):
        if before is not None and not np.array_equal(
            before, np.asarray(after.detach() if isinstance(after, torch.Tensor) else after)
        ):
            raise CheckFailure(
                f"{name} changed its input {argument} in place; the model still "
                "needs it. Build new arrays instead of *= or mul_."
            )
    weight, bias = _folded_as_tensors(case, result, name)
    with torch.no_grad():
        got = _layer(weight, bias, torch.tensor(case.x)).numpy()
    return assert_close(
        f"output of the folded {case.layer}", got, fold_reference(case), fold_mistakes(case)
    )


def visible_fold_cases() -> list[FoldCase]:
    return [
        make_fold_case("Linear 5 -> 4, numpy arrays", 951, (4, 5), "numpy"),
        make_fold_case("Conv2d 3 -> 4, 3 x 3 kernel, torch tensors", 952, (4, 3, 3, 3), "torch"),
    ]


FOLD_DEFAULT_EPS = 1e-5
"""The contract's (and nn.BatchNorm2d's) default eps of ``fold_batchnorm``."""


def _fold_default_eps(fold) -> None:
    """Called without eps, ``fold`` must use the contract's default: every other call passes
    eps explicitly, so a wrong default in the signature would go unnoticed."""
    name = getattr(fold, "__name__", "fold_batchnorm")
    case = dataclasses.replace(visible_fold_cases()[0], eps=FOLD_DEFAULT_EPS)
    result = call_learner(f"{name} called without eps", fold, *case.arguments(), watch=False)
    weight, bias = _folded_as_tensors(case, result, name)
    with torch.no_grad():
        got = _layer(weight, bias, torch.tensor(case.x)).numpy()
    assert_default_eps(name, got, fold_reference(case), FOLD_DEFAULT_EPS)


def check_fold(fold) -> None:
    """Visible check: a Linear (numpy) and a Conv2d (torch) followed by batch norm in eval mode
    equal one layer with the folded weight and bias; called without eps, the default is used."""
    err = on_cases(visible_fold_cases(), lambda case: _fold_one(fold, case))
    _fold_default_eps(fold)
    report("fold_batchnorm: folded Linear and Conv2d vs layer + F.batch_norm (eval)", err)
