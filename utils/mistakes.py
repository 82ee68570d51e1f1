"""Known-wrong normalizers, in numpy, for diagnosis: the one catalogue of classic mistakes.

``DESCRIPTIONS`` is the one table of what a mistake is called: a key per mistake, a template
that completes the sentence "it looks like ..." (``utils.diagnose.assert_close``'s
``mistakes=``), with fields for the words a lesson uses (``N`` or ``N*H*W``, ``var`` or
``mean square``, ``dout`` or ``dy``). Lesson check modules pick entries with ``describe``.

``standardize`` is the one parameterized wrong normalizer: statistics over given axes with a
switch per classic mistake. The lesson-02 functions below (BatchNorm of x (N, D), per-feature
(D,) parameters) are its named instances, each returning the one array the mistake corrupts;
the mapping helpers evaluate every variant on a ``utils.cases.Case``.
"""

from __future__ import annotations

import numpy as np

from utils.cases import Case

DESCRIPTIONS: dict[str, str] = {
    # --- forward: the statistics -------------------------------------------------------------
    "unbiased variance": "the variance is the unbiased one (ddof=1, divided by {m} - 1); batch "
    "norm normalizes with the biased variance (divided by {m})",
    "unbiased variance, uses": "the variance is the unbiased one (ddof=1, divided by {m} - 1); "
    "batch norm uses the biased one (divided by {m})",
    "statistics per sample": "the statistics are taken per sample (axis=1) instead of per "
    "feature over the batch (axis=0)",
    "statistics over everything": "the statistics are taken over the whole array instead of "
    "per feature (axis=0)",
    "variance is the std": "this is the standard deviation; the variance is its square",
    # --- forward: eps and the square root -----------------------------------------------------
    "eps outside sqrt": "eps is added outside the square root: {use}sqrt({v} + eps), not "
    "sqrt({v}) + eps",
    "eps missing": "eps is missing: divide by sqrt({v} + eps)",
    "eps fixed": "eps is fixed at {default} instead of using the eps argument",
    "std under sqrt": "the standard deviation went under the square root: sqrt(var + eps), not "
    "sqrt(std + eps)",
    "no square root": "{what} is divided by ({v} + eps) instead of by its square root",
    "inv_std is the std": "inv_std holds sqrt(var + eps); it should hold the inverse "
    "1 / sqrt(var + eps)",
    "inv_std without eps": "inv_std has no eps: 1 / sqrt(var + eps)",
    "inv_std eps outside": "inv_std has eps outside the square root: 1 / sqrt(var + eps)",
    "inv_std unbiased": "inv_std uses the unbiased variance (ddof=1)",
    # --- forward: gamma and beta --------------------------------------------------------------
    "gamma beta swapped": "gamma and beta are swapped: {out} = gamma * x_hat + beta",
    "no affine": "gamma and beta are not applied: out = gamma * x_hat + beta{not_x_hat}",
    "no gamma": "gamma is not applied: out = gamma * x_hat + beta",
    "no beta": "beta is not added: out = gamma * x_hat + beta",
    "affine along width": "gamma and beta of shape (C,) were broadcast along the last axis (W); "
    "reshape them to (1, C, 1, 1)",
    # --- backward: dx -------------------------------------------------------------------------
    "dx without mean term": "dx is missing the mean term (the -sum(dx_hat) / {m} that flows "
    "through the {mean})",
    "dx without variance term": "dx is missing the variance term (the -x_hat * sum(dx_hat * "
    "x_hat) / {m} that flows through the {variance})",
    "dx with constant statistics": "{statistics} are treated as constants (dx = gamma * inv_std "
    "* {dout}); they depend on x too",
    "dx without gamma": "dx forgets gamma: dx_hat = {dout} * gamma, not {dout}",
    "dx with unbiased variance": "the backward uses the unbiased variance ({m} - 1) in the "
    "variance term; the forward divides by {m}",
    "dx with wrong power": "the variance term has the wrong power: d inv_std / d var = -1/2 "
    "(var + eps)^(-3/2)",
    "dx without eps": "the backward drops eps (1 / sqrt({v}) instead of {instead})",
    "dx sums over features": "the sums in dx run over the features (axis=1) instead of over the "
    "batch (axis=0)",
    # --- backward: dgamma and dbeta -----------------------------------------------------------
    "dgamma is sum(dout)": "dgamma is sum(dout): the x_hat factor is missing{swapped}",
    "dgamma uses x": "dgamma uses x instead of {x_hat}: dgamma = sum(dout * x_hat){over}",
    "dbeta is sum(dout * x_hat)": "dbeta is sum(dout * x_hat): dgamma and dbeta are swapped",
    "dbeta averages over the batch": "dbeta averages dout over the batch; it is the sum",
    "dbeta averages": "dbeta averages dout; it is the sum over {axes}",
    # --- kernels (lesson 11): indexing, masks, accumulation -----------------------------------
    "channel is a contiguous block": "channel c was read as one contiguous block "
    "x[c*M:(c+1)*M]; in NCHW memory channel c of sample n starts at (n*C + c)*H*W",
    "channel index channels-last": "the channel of flat index i was taken as i % C (the "
    "channels-last layout); in NCHW it is (i // (H*W)) % C",
    "masked lanes counted": "the masked lanes of the last block entered the second pass: "
    "other=0.0 loads a 0 there, and (0 - mean)^2 is not 0 (keep them out with tl.where)",
    "dx divides by M - 1": "dx divides the two sums by M - 1; the forward's statistics divide "
    "by M = N*H*W",
    "one-pass variance": "the float64 cases pass but float32 with a large mean does not: the "
    "one-pass formula E[x^2] - E[x]^2 subtracts two numbers near 1e6 that float32 holds to "
    "0.06; use two passes over the channel or Welford/Chan merging",
}
"""key -> description template (fields in braces, filled by ``describe``)."""

BATCH = {
    "m": "N",
    "v": "var",
    "use": "use ",
    "default": "1e-5",
    "what": "(x - mean)",
    "out": "out",
    "not_x_hat": ", not x_hat",
    "mean": "batch mean",
    "variance": "batch variance",
    "statistics": "the batch mean and variance",
    "dout": "dout",
    "instead": "1 / sqrt(var + eps)",
    "swapped": ", or dgamma and dbeta are swapped",
    "x_hat": "x_hat",
    "over": "",
    "axes": "axis=0",
}
"""The words of lesson 02 (BatchNorm of x (N, D)); other lessons override some of them."""


def describe(key: str, **words: str) -> str:
    """The description of mistake ``key`` in ``DESCRIPTIONS``, its fields filled from ``words``
    over ``BATCH``: ``describe("eps outside sqrt", v="mean square")``."""
    return DESCRIPTIONS[key].format(**{**BATCH, **words})


def _quietly():
    """A wrong variant may divide by a zero variance; its warning must not reach stderr
    (nbgrader zeroes a test cell that writes there)."""
    return np.errstate(all="ignore")


# --- the parameterized wrong normalizer -----------------------------------------------------


def standardize(
    x: np.ndarray,
    axes: tuple[int, ...] | None,
    eps: float,
    *,
    center: bool = True,
    ddof: int = 0,
    average: bool = True,
    eps_outside: bool = False,
    root: bool = True,
) -> np.ndarray:
    """(x - mean) / sqrt(mean square + eps) over ``axes`` (None: all axes), with switches for
    the classic mistakes: no centering, ddof=1, a sum instead of a mean, eps outside the root,
    no root at all."""
    count = x.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
    centered = x - x.mean(axis=axes, keepdims=True) if center else x
    second = (centered**2).sum(axis=axes, keepdims=True)
    if average:
        second = second / (count - ddof)
    if eps_outside:
        return centered / (np.sqrt(second) + eps)
    return centered / (np.sqrt(second + eps) if root else second + eps)


# --- forward: out (N, D) from x (N, D), gamma (D,), beta (D,), eps ---------------------------


def _normalize(x, mean, var, eps):
    return (x - mean) / np.sqrt(var + eps)


def forward_unbiased_variance(x, gamma, beta, eps):
    return gamma * standardize(x, (0,), eps, ddof=1) + beta


def forward_eps_outside_sqrt(x, gamma, beta, eps):
    return gamma * standardize(x, (0,), eps, eps_outside=True) + beta


def forward_without_eps(x, gamma, beta, eps):
    return gamma * standardize(x, (0,), 0.0) + beta


def forward_std_under_sqrt(x, gamma, beta, eps):
    x_hat = _normalize(x, x.mean(axis=0), x.std(axis=0), eps)
    return gamma * x_hat + beta


def forward_divides_by_variance(x, gamma, beta, eps):
    return gamma * standardize(x, (0,), eps, root=False) + beta


def forward_statistics_per_sample(x, gamma, beta, eps):
    return gamma * standardize(x, (1,), eps) + beta


def forward_statistics_over_everything(x, gamma, beta, eps):
    return gamma * standardize(x, None, eps) + beta


def forward_gamma_beta_swapped(x, gamma, beta, eps):
    return beta * standardize(x, (0,), eps) + gamma


def forward_without_gamma_and_beta(x, gamma, beta, eps):
    return standardize(x, (0,), eps)


def forward_without_gamma(x, gamma, beta, eps):
    return standardize(x, (0,), eps) + beta


def forward_without_beta(x, gamma, beta, eps):
    return gamma * standardize(x, (0,), eps)


def forward_default_eps(x, gamma, beta, eps):
    return gamma * standardize(x, (0,), 1e-5) + beta


FORWARD_MISTAKES = {
    describe("unbiased variance"): forward_unbiased_variance,
    describe("eps outside sqrt"): forward_eps_outside_sqrt,
    describe("eps missing"): forward_without_eps,
    describe("std under sqrt"): forward_std_under_sqrt,
    describe("no square root"): forward_divides_by_variance,
    describe("statistics per sample"): forward_statistics_per_sample,
    describe("statistics over everything"): forward_statistics_over_everything,
    describe("gamma beta swapped"): forward_gamma_beta_swapped,
    describe("no affine"): forward_without_gamma_and_beta,
    describe("no gamma"): forward_without_gamma,
    describe("no beta"): forward_without_beta,
    describe("eps fixed"): forward_default_eps,
}
"""description (completes "it looks like ...") -> wrong forward(x, gamma, beta, eps)."""


def forward_mistakes(case: Case) -> dict[str, np.ndarray]:
    """Every known-wrong forward output on ``case``, keyed by its description."""
    with _quietly():
        return {
            description: wrong(case.x, case.gamma, case.beta, case.eps)
            for description, wrong in FORWARD_MISTAKES.items()
        }


# --- statistics: per-feature "var" and "inv_std" (D,), as returned or cached -------------


def statistics_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong per-feature "var" and "inv_std" (D,), and "x_hat" (N, D), on ``case``."""
    ones, zeros = np.ones_like(case.gamma), np.zeros_like(case.beta)
    with _quietly():
        var = case.x.var(axis=0)
        return {
            "x_hat": {  # the normalization mistakes, seen before gamma and beta apply
                description: wrong(case.x, ones, zeros, case.eps)
                for description, wrong in FORWARD_MISTAKES.items()
                if "gamma" not in description and "beta" not in description
            },
            "var": {
                describe("unbiased variance, uses"): case.x.var(axis=0, ddof=1),
                describe("variance is the std"): np.sqrt(var),
            },
            "inv_std": {
                describe("inv_std is the std"): np.sqrt(var + case.eps),
                describe("inv_std without eps"): 1 / np.sqrt(var),
                describe("inv_std eps outside"): 1 / (np.sqrt(var) + case.eps),
                describe("inv_std unbiased"): 1 / np.sqrt(case.x.var(axis=0, ddof=1) + case.eps),
            },
        }


# --- backward: dx (N, D), dgamma (D,), dbeta (D,) from x, gamma, dout, eps -------------------


def _statistics(x, eps):
    """(N, centered x, inv_std, x_hat) computed the correct way."""
    centered = x - x.mean(axis=0)
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
    return x.shape[0], centered, inv_std, centered * inv_std


def dx_without_mean_term(x, gamma, dout, eps):
    n, _, inv_std, x_hat = _statistics(x, eps)
    dx_hat = dout * gamma
    return inv_std / n * (n * dx_hat - x_hat * np.sum(dx_hat * x_hat, axis=0))


def dx_without_variance_term(x, gamma, dout, eps):
    n, _, inv_std, _ = _statistics(x, eps)
    dx_hat = dout * gamma
    return inv_std / n * (n * dx_hat - np.sum(dx_hat, axis=0))


def dx_with_constant_statistics(x, gamma, dout, eps):
    _, _, inv_std, _ = _statistics(x, eps)
    return dout * gamma * inv_std


def dx_without_gamma(x, gamma, dout, eps):
    n, _, inv_std, x_hat = _statistics(x, eps)
    return inv_std / n * (n * dout - np.sum(dout, axis=0) - x_hat * np.sum(dout * x_hat, axis=0))


def dx_with_unbiased_variance(x, gamma, dout, eps):
    """The staged backward with d var / d x = 2 (x - mean) / (N - 1)."""
    n, centered, inv_std, _ = _statistics(x, eps)
    dx_hat = dout * gamma
    dvar = -0.5 * np.sum(dx_hat * centered, axis=0) * inv_std**3
    dcentered = dx_hat * inv_std + dvar * 2 * centered / (n - 1)
    return dcentered - np.sum(dcentered, axis=0) / n


def dx_with_wrong_power_in_variance_term(x, gamma, dout, eps):
    """The staged backward with d inv_std / d var = -1/2 (var + eps)^(-1/2)."""
    n, centered, inv_std, _ = _statistics(x, eps)
    dx_hat = dout * gamma
    dvar = -0.5 * np.sum(dx_hat * centered, axis=0) * inv_std
    dcentered = dx_hat * inv_std + dvar * 2 * centered / n
    return dcentered - np.sum(dcentered, axis=0) / n


def dx_without_eps(x, gamma, dout, eps):
    """The closed form with x_hat from the cache but 1 / sqrt(var) recomputed without eps."""
    n, _, _, x_hat = _statistics(x, eps)
    dx_hat = dout * gamma
    inv_std_without_eps = 1 / np.sqrt(x.var(axis=0))
    total = np.sum(dx_hat, axis=0) + x_hat * np.sum(dx_hat * x_hat, axis=0)
    return inv_std_without_eps / n * (n * dx_hat - total)


def dx_sums_over_features(x, gamma, dout, eps):
    n, _, inv_std, x_hat = _statistics(x, eps)
    dx_hat = dout * gamma
    sum_dx_hat = np.sum(dx_hat, axis=1, keepdims=True)
    sum_dx_hat_x_hat = np.sum(dx_hat * x_hat, axis=1, keepdims=True)
    return inv_std / n * (n * dx_hat - sum_dx_hat - x_hat * sum_dx_hat_x_hat)


DX_MISTAKES = {
    describe("dx without mean term"): dx_without_mean_term,
    describe("dx without variance term"): dx_without_variance_term,
    describe("dx with constant statistics"): dx_with_constant_statistics,
    describe("dx without gamma"): dx_without_gamma,
    describe("dx with unbiased variance"): dx_with_unbiased_variance,
    describe("dx with wrong power"): dx_with_wrong_power_in_variance_term,
    describe("dx without eps", instead="cache['inv_std']"): dx_without_eps,
    describe("dx sums over features"): dx_sums_over_features,
}
"""description -> wrong dx(x, gamma, dout, eps)."""


def backward_mistakes(case: Case) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong dx, dgamma and dbeta on ``case``: {"dx": {description: array}, ...}."""
    x, gamma, dout, eps = case.x, case.gamma, case.dout, case.eps
    with _quietly():
        x_hat = _statistics(x, eps)[3]
        wrong_dx = {d: wrong(x, gamma, dout, eps) for d, wrong in DX_MISTAKES.items()}
    sum_dout, sum_dout_x_hat = dout.sum(axis=0), (dout * x_hat).sum(axis=0)
    return {
        "dx": wrong_dx,
        "dgamma": {
            describe("dgamma is sum(dout)"): sum_dout,
            describe("dgamma uses x"): (dout * x).sum(axis=0),
        },
        "dbeta": {
            describe("dbeta is sum(dout * x_hat)"): sum_dout_x_hat,
            describe("dbeta averages over the batch"): dout.mean(axis=0),
        },
    }
