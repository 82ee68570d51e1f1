"""Known-wrong variants of the BatchNorm computations, in numpy, for diagnosis.

Each function is one classic mistake and returns the one array the mistake corrupts. The
mapping helpers evaluate every variant on a ``utils.cases.Case`` and key it by a description
that completes the sentence "it looks like ...", the form ``utils.diagnose.assert_close``
wants for ``mistakes=``. All arrays are (N, D) inputs and (D,) per-feature parameters.
"""

from __future__ import annotations

import numpy as np

from utils.cases import Case


def _quietly():
    """A wrong variant may divide by a zero variance; its warning must not reach stderr
    (nbgrader zeroes a test cell that writes there)."""
    return np.errstate(all="ignore")


# --- forward: out (N, D) from x (N, D), gamma (D,), beta (D,), eps ---------------------------


def _normalize(x, mean, var, eps):
    return (x - mean) / np.sqrt(var + eps)


def forward_unbiased_variance(x, gamma, beta, eps):
    x_hat = _normalize(x, x.mean(axis=0), x.var(axis=0, ddof=1), eps)
    return gamma * x_hat + beta


def forward_eps_outside_sqrt(x, gamma, beta, eps):
    x_hat = (x - x.mean(axis=0)) / (np.sqrt(x.var(axis=0)) + eps)
    return gamma * x_hat + beta


def forward_without_eps(x, gamma, beta, eps):
    x_hat = _normalize(x, x.mean(axis=0), x.var(axis=0), 0.0)
    return gamma * x_hat + beta


def forward_std_under_sqrt(x, gamma, beta, eps):
    x_hat = _normalize(x, x.mean(axis=0), x.std(axis=0), eps)
    return gamma * x_hat + beta


def forward_divides_by_variance(x, gamma, beta, eps):
    x_hat = (x - x.mean(axis=0)) / (x.var(axis=0) + eps)
    return gamma * x_hat + beta


def forward_statistics_per_sample(x, gamma, beta, eps):
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return gamma * _normalize(x, mean, var, eps) + beta


def forward_statistics_over_everything(x, gamma, beta, eps):
    return gamma * _normalize(x, x.mean(), x.var(), eps) + beta


def forward_gamma_beta_swapped(x, gamma, beta, eps):
    return beta * _normalize(x, x.mean(axis=0), x.var(axis=0), eps) + gamma


def forward_without_gamma_and_beta(x, gamma, beta, eps):
    return _normalize(x, x.mean(axis=0), x.var(axis=0), eps)


def forward_without_gamma(x, gamma, beta, eps):
    return _normalize(x, x.mean(axis=0), x.var(axis=0), eps) + beta


def forward_without_beta(x, gamma, beta, eps):
    return gamma * _normalize(x, x.mean(axis=0), x.var(axis=0), eps)


def forward_default_eps(x, gamma, beta, eps):
    return gamma * _normalize(x, x.mean(axis=0), x.var(axis=0), 1e-5) + beta


FORWARD_MISTAKES = {
    "the variance is the unbiased one (ddof=1, divided by N - 1); batch norm normalizes "
    "with the biased variance (divided by N)": forward_unbiased_variance,
    "eps is added outside the square root: use sqrt(var + eps), not sqrt(var) + eps": (
        forward_eps_outside_sqrt
    ),
    "eps is missing: divide by sqrt(var + eps)": forward_without_eps,
    "the standard deviation went under the square root: sqrt(var + eps), not "
    "sqrt(std + eps)": forward_std_under_sqrt,
    "(x - mean) is divided by (var + eps) instead of by its square root": (
        forward_divides_by_variance
    ),
    "the statistics are taken per sample (axis=1) instead of per feature over the batch "
    "(axis=0)": forward_statistics_per_sample,
    "the statistics are taken over the whole array instead of per feature (axis=0)": (
        forward_statistics_over_everything
    ),
    "gamma and beta are swapped: out = gamma * x_hat + beta": forward_gamma_beta_swapped,
    "gamma and beta are not applied: out = gamma * x_hat + beta, not x_hat": (
        forward_without_gamma_and_beta
    ),
    "gamma is not applied: out = gamma * x_hat + beta": forward_without_gamma,
    "beta is not added: out = gamma * x_hat + beta": forward_without_beta,
    "eps is fixed at 1e-5 instead of using the eps argument": forward_default_eps,
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
                "the variance is the unbiased one (ddof=1, divided by N - 1); batch norm uses "
                "the biased one (divided by N)": case.x.var(axis=0, ddof=1),
                "this is the standard deviation; the variance is its square": np.sqrt(var),
            },
            "inv_std": {
                "inv_std holds sqrt(var + eps); it should hold the inverse 1 / sqrt(var + eps)": (
                    np.sqrt(var + case.eps)
                ),
                "inv_std has no eps: 1 / sqrt(var + eps)": 1 / np.sqrt(var),
                "inv_std has eps outside the square root: 1 / sqrt(var + eps)": (
                    1 / (np.sqrt(var) + case.eps)
                ),
                "inv_std uses the unbiased variance (ddof=1)": (
                    1 / np.sqrt(case.x.var(axis=0, ddof=1) + case.eps)
                ),
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
    "dx is missing the mean term (the -sum(dx_hat) / N that flows through the batch mean)": (
        dx_without_mean_term
    ),
    "dx is missing the variance term (the -x_hat * sum(dx_hat * x_hat) / N that flows "
    "through the batch variance)": dx_without_variance_term,
    "the batch mean and variance are treated as constants (dx = gamma * inv_std * dout); "
    "they depend on x too": dx_with_constant_statistics,
    "dx forgets gamma: dx_hat = dout * gamma, not dout": dx_without_gamma,
    "the backward uses the unbiased variance (N - 1) in the variance term; the forward "
    "divides by N": dx_with_unbiased_variance,
    "the variance term has the wrong power: d inv_std / d var = -1/2 (var + eps)^(-3/2)": (
        dx_with_wrong_power_in_variance_term
    ),
    "the backward drops eps (1 / sqrt(var) instead of cache['inv_std'])": dx_without_eps,
    "the sums in dx run over the features (axis=1) instead of over the batch (axis=0)": (
        dx_sums_over_features
    ),
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
            "dgamma is sum(dout): the x_hat factor is missing, or dgamma and dbeta are "
            "swapped": sum_dout,
            "dgamma uses x instead of x_hat: dgamma = sum(dout * x_hat)": (dout * x).sum(axis=0),
        },
        "dbeta": {
            "dbeta is sum(dout * x_hat): dgamma and dbeta are swapped": sum_dout_x_hat,
            "dbeta averages dout over the batch; it is the sum": dout.mean(axis=0),
        },
    }
