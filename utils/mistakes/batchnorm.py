"""Lessons 02 and 03's picks from the catalogue: BatchNorm of x (N, D), per-feature (D,)
gamma and beta, statistics over the batch (axis 0). Each mapping below is
{description: switches of ``utils.mistakes.catalogue``}; the functions evaluate it on a
``utils.cases.Case``."""

from __future__ import annotations

import numpy as np

from utils.cases import Case
from utils.mistakes import catalogue
from utils.mistakes.catalogue import WHOLE, batch_sets
from utils.mistakes.descriptions import describe

FORWARD_MISTAKES = {
    describe("unbiased variance"): {"ddof": 1},
    describe("eps outside sqrt"): {"spread": "sqrt(v) + eps"},
    describe("eps missing"): {"eps": 0.0},
    describe("std under sqrt"): {"spread": "sqrt(sqrt(v) + eps)"},
    describe("no square root"): {"spread": "v + eps"},
    describe("statistics per sample"): {"over": (1,)},
    describe("statistics over everything"): {"over": WHOLE},
    describe("gamma beta swapped"): {"affine": "beta * x_hat + gamma"},
    describe("no affine"): {"affine": "x_hat"},
    describe("no gamma"): {"affine": "x_hat + beta"},
    describe("no beta"): {"affine": "gamma * x_hat"},
    describe("eps fixed"): {"eps": 1e-5},
}
"""description (completes "it looks like ...") -> the switches of ``wrong_forward``."""

NORMALIZATION_MISTAKES = {
    d: s for d, s in FORWARD_MISTAKES.items() if "gamma" not in d and "beta" not in d
}
"""The forward mistakes seen in x_hat, before gamma and beta apply."""

INV_STD_MISTAKES = {
    describe("inv_std is the std"): {"spread": "1 / sqrt(v + eps)"},
    describe("inv_std without eps"): {"eps": 0.0},
    describe("inv_std eps outside"): {"spread": "sqrt(v) + eps"},
    describe("inv_std unbiased"): {"ddof": 1},
}
"""description -> the switches of ``wrong_inv_std`` (a per-feature inv_std, as cached)."""

DX_MISTAKES = {
    describe("dx without mean term"): {"mean_term": 0},
    describe("dx without variance term"): {"variance_term": 0},
    describe("dx with constant statistics"): {"mean_term": 0, "variance_term": 0},
    describe("dx without gamma"): {"with_gamma": False},
    describe("dx with unbiased variance"): {"ddof": 1},
    describe("dx with wrong power"): {"wrong_power": True},
    describe("dx without eps", instead="cache['inv_std']"): {"eps_in_scale": False},
    describe("dx sums over features"): {"sum_axes": (1,), "count": "N"},
}
"""description -> the switches of ``wrong_dx``."""

PARAMETER_MISTAKES = {
    "dgamma": {
        describe("dgamma is sum(dout)"): "sum(dout)",
        describe("dgamma uses x"): "sum(dout * x)",
    },
    "dbeta": {
        describe("dbeta is sum(dout * x_hat)"): "sum(dout * x_hat)",
        describe("dbeta averages over the batch"): "mean(dout)",
    },
}
"""gradient -> description -> what ``parameter_mistakes`` computes for it."""

SETS = batch_sets(2)


def forward_mistakes(case: Case) -> dict[str, np.ndarray]:
    """Every known-wrong forward output on ``case``, keyed by its description."""
    return catalogue.forward_mistakes(
        SETS, case.x, case.gamma, case.beta, case.eps, FORWARD_MISTAKES
    )


def statistics_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong per-feature "var" and "inv_std" (D,), and "x_hat" (N, D), on ``case``."""
    x, eps = case.x, case.eps
    ones, zeros = np.ones_like(case.gamma), np.zeros_like(case.beta)
    var = x.var(axis=0)
    return {
        "x_hat": catalogue.forward_mistakes(SETS, x, ones, zeros, eps, NORMALIZATION_MISTAKES),
        "var": {
            describe("unbiased variance, uses"): x.var(axis=0, ddof=1),
            describe("variance is the std"): np.sqrt(var),
        },
        "inv_std": catalogue.inv_std_mistakes(SETS, x, eps, INV_STD_MISTAKES),
    }


def backward_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma and dbeta on ``case``: {"dx": {description: array}, ...}."""
    x, dout, eps = case.x, case.dout, case.eps
    return {
        "dx": catalogue.dx_mistakes(SETS, x, case.gamma, dout, eps, DX_MISTAKES),
        **{
            which: catalogue.parameter_mistakes(SETS, x, dout, eps, picks)
            for which, picks in PARAMETER_MISTAKES.items()
        },
    }
