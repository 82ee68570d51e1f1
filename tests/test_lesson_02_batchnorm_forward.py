"""Lesson 02: the notebook's own grade cells (hidden tests included) against planted bugs.

Every planted bug must lose the points of its exercise's grade cell; an independently written
correct implementation must keep them; calling PyTorch loses them.
"""

from __future__ import annotations

import pytest

from tests.harness import (
    Template,
    planted,
    planted_and_correct_tests,
    planted_cases,
    solution_tests,
    template_cases,
)

pytestmark = pytest.mark.slow

STATS = ["test_batch_statistics"]
FORWARD = ["test_batchnorm_forward"]
CACHE = ["test_batchnorm_cache"]


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    {**dict.fromkeys(STATS, 1), **dict.fromkeys(FORWARD, 3), **dict.fromkeys(CACHE, 1)}
)


# --- batch_statistics ------------------------------------------------------------------------

STATISTICS_BUGS = {
    "unbiased": "def batch_statistics(x):\n    return x.mean(0), x.var(0, ddof=1)",
    "one value per sample": "def batch_statistics(x):\n    return x.mean(1), x.var(1)",
    "standard deviation": "def batch_statistics(x):\n    return x.mean(0), x.std(0)",
    "mean": "def batch_statistics(x):\n    return x.mean(), x.var(0)",
    "tuple (mean, var)": "def batch_statistics(x):\n    return [x.mean(0), x.var(0)]",
}

INDEPENDENT_STATISTICS = """
    def batch_statistics(x):
        n = x.shape[0]
        ones = np.ones(n) / n
        mean = ones @ x
        var = ones @ np.square(x - mean[None, :])
        return mean, var
    """


# --- batchnorm_forward -----------------------------------------------------------------------

_FORWARD_SOURCE = """
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    var = x.var(axis={axis}, ddof={ddof}) if {axis} == 0 else x.var(axis=1, keepdims=True)
    mu = mu if {axis} == 0 else x.mean(axis=1, keepdims=True)
    inv_std = 1.0 / ({denominator})
    x_hat = (x - mu) * inv_std
    out = {affine}
    cache = dict(x=x, gamma=gamma, beta=beta, eps=eps, mean=mu, var=var, x_hat=x_hat,
                 inv_std=inv_std)
    return out, cache
"""
GOOD = dict(axis=0, ddof=0, denominator="np.sqrt(var + eps)", affine="gamma * x_hat + beta")
FORWARD_TEMPLATE = Template(_FORWARD_SOURCE, GOOD)


FORWARD_BUGS = [
    ({"ddof": 1}, "unbiased"),
    ({"denominator": "np.sqrt(var) + eps"}, "outside the square root"),
    ({"denominator": "np.sqrt(var)"}, "eps is missing"),
    ({"denominator": "np.sqrt(np.sqrt(var) + eps)"}, "standard deviation went under"),
    ({"denominator": "var + eps"}, "divided by (var + eps)"),
    ({"axis": 1}, "per sample"),
    ({"affine": "beta * x_hat + gamma"}, "swapped"),
    ({"affine": "x_hat"}, "not applied"),
    ({"affine": "gamma * x_hat"}, "beta is not added"),
    ({"denominator": "np.sqrt(var + 1e-5)"}, "eps argument"),
]

IN_PLACE_FORWARD = """
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        mean, var = x.mean(0), x.var(0)
        x -= mean
        x_hat = x / np.sqrt(var + eps)
        cache = dict(x=x, gamma=gamma, beta=beta, eps=eps, mean=mean, var=var, x_hat=x_hat,
                     inv_std=1 / np.sqrt(var + eps))
        return gamma * x_hat + beta, cache
    """

INDEPENDENT_FORWARD = """
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        n = len(x)
        mean = np.add.reduce(x, axis=0, keepdims=True) / n
        deviation = np.subtract(x, mean)
        var = np.einsum("ij,ij->j", deviation, deviation) / n
        std = np.sqrt(var + eps)
        x_hat = np.divide(deviation, std)
        out = np.add(np.multiply(x_hat, gamma), beta)
        return out, {"x": x, "gamma": gamma, "beta": beta, "eps": eps, "mean": mean,
                     "var": var, "x_hat": x_hat, "inv_std": np.reciprocal(std)}
    """

TORCH_FORWARD = """
    import torch as tt

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        xt = tt.tensor(x)
        out = tt.nn.functional.batch_norm(xt, None, None, tt.tensor(gamma), tt.tensor(beta),
                                          training=True, eps=eps)
        mean, var = x.mean(0), x.var(0)
        cache = dict(x=x, gamma=gamma, beta=beta, eps=eps, mean=mean, var=var,
                     x_hat=(x - mean) / np.sqrt(var + eps), inv_std=1 / np.sqrt(var + eps))
        return out.numpy(), cache
    """

# the signature's default differs from the contract's eps=1e-5; every explicit call is right
WRONG_DEFAULT_EPS = """
_solution_batchnorm_forward = batchnorm_forward


def batchnorm_forward(x, gamma, beta, eps=1e-3):
    return _solution_batchnorm_forward(x, gamma, beta, eps)
"""

PLANTED = [
    *planted_cases(STATS, [(hint, code, hint) for hint, code in STATISTICS_BUGS.items()]),
    *template_cases(FORWARD, FORWARD_TEMPLATE, FORWARD_BUGS),
    *planted_cases(FORWARD, [("in place", IN_PLACE_FORWARD, "in place")]),
    *planted_cases(FORWARD + CACHE, [("calls torch", TORCH_FORWARD, "PyTorch")]),
    *planted_cases(
        FORWARD, [("wrong default eps", WRONG_DEFAULT_EPS, "default must be eps=1e-05")]
    ),
]
CORRECT = {
    "independent batch_statistics": (STATS, INDEPENDENT_STATISTICS),
    "template with no bug": (FORWARD + CACHE, planted(FORWARD_TEMPLATE)),
    "independent forward": (FORWARD + CACHE, INDEPENDENT_FORWARD),
}


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, CORRECT
)


# --- the cache -------------------------------------------------------------------------------

CACHE_BUGS = [
    ("del cache['inv_std']", "missing 'inv_std'"),
    ("cache['inv_std'] = np.sqrt(cache['var'] + eps)", "inverse"),
    ("cache['var'] = x.var(0, ddof=1)", "unbiased"),
    ("cache['x_hat'] = out", "cache['x_hat']"),
    ("cache['inv_std'] = 1 / (np.sqrt(cache['var']) + eps)", "outside the square root"),
]


CACHE_TEMPLATE = Template("""
_solution_forward = batchnorm_forward

def batchnorm_forward(x, gamma, beta, eps=1e-5):
    out, cache = _solution_forward(x, gamma, beta, eps)
    cache = dict(cache)
    {edit}
    return out, cache
""")


@pytest.mark.parametrize("edit, hint", CACHE_BUGS, ids=[h for _, h in CACHE_BUGS])
def test_cache_bugs_lose_the_cache_point_but_not_the_forward_points(nb, edit, hint):
    code = planted(CACHE_TEMPLATE, edit=edit)
    nb.assert_keeps_points(FORWARD, code)
    nb.assert_loses_points(CACHE, code, hint)


# --- knowledge check -------------------------------------------------------------------------


@pytest.mark.parametrize("question, key", [(1, "c"), (2, "b")])
def test_knowledge_check_needs_the_right_letter(nb, question, key):
    outcomes = nb.assert_only_the_key_passes(
        f"test_kc_q{question}", f"answer_q{question}", key, "abcde"
    )
    assert "must be one of" in outcomes["e"].message
