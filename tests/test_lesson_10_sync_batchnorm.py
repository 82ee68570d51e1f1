"""Lesson 10: the notebook's own grade cells (hidden tests included) against planted bugs.

Each exercise (global_moments, the synchronized forward and backward) gets planted bugs, the
classic mistakes of synchronized batch norm, that must lose its points with a hint naming the
mistake; an independently written correct implementation (one all_reduce for the counts and
sums, Chan-style combination of the ranks' (count, mean, M2), a staged backward) must keep
full points; a PyTorch-using version must lose them all.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.harness import Template, planted, solution_tests

pytestmark = pytest.mark.slow

MOMENTS = ["test_global_moments"]
FORWARD = ["test_sync_batchnorm_forward"]
BACKWARD = ["test_sync_batchnorm_backward"]
EXERCISES = MOMENTS + FORWARD + BACKWARD

SAME_CALLS = "same number of times"
"""The hint of a collective called a different number of times on different ranks."""


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    dict(zip(EXERCISES, [2, 2, 3], strict=True))
)


def test_the_gloo_demo_matches_one_process_or_says_why_not(nb):
    ranks = nb.namespace["ranks"]
    if ranks is None:
        pytest.skip("the multi-process demo did not run here")
    assert len(ranks) == 3
    assert all(np.abs(d).max() < 1e-12 for d in nb.namespace["differences"].values())


# --- global_moments ---------------------------------------------------------------------------

_MOMENTS_SOURCE = """
def global_moments(x, all_reduce):
    axes, shape = (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
    n_local = float(x.size // x.shape[1])
    count = {count}
    mean = {mean}
    var = {var}
    {extra}
    return count, mean, var
"""
MOMENTS_GOOD = dict(
    extra="",
    count="all_reduce(np.array(n_local))",
    mean="all_reduce(x.sum(axis=axes)) / count",
    var="all_reduce(((x - mean.reshape(shape)) ** 2).sum(axis=axes)) / count",
)
MOMENTS_TEMPLATE = Template(_MOMENTS_SOURCE, MOMENTS_GOOD)
PLAIN_AVERAGE = "all_reduce({values}) / all_reduce(np.array(1.0))"
MOMENTS_BUGS = [
    ({"mean": "x.mean(axis=axes)", "var": "x.var(axis=axes)"}, "its own shard only"),
    ({"count": "n_local"}, "count is this rank's own count"),
    ({"count": "all_reduce(np.array(float(x.shape[0])))"}, "count is the number of samples"),
    (
        {
            "mean": planted(PLAIN_AVERAGE, values="x.mean(axis=axes)"),
            "var": planted(
                PLAIN_AVERAGE, values="((x - mean.reshape(shape)) ** 2).mean(axis=axes)"
            ),
        },
        "without weighting them by their counts",
    ),
    ({"var": "all_reduce(x.var(axis=axes) * n_local) / count"}, "mean of the ranks' own"),
    ({"var": "all_reduce((x ** 2).sum(axis=axes)) / count - mean ** 2"}, "sum(x**2) / n"),
    ({"var": planted(MOMENTS_GOOD["var"], ("/ count", "/ (count - 1)", 1))}, "unbiased"),
    ({"mean": "all_reduce(x).sum(axis=axes) / count"}, "different shapes"),
    ({"extra": "_ = all_reduce(np.zeros(1)) if len(x) == 1 else None"}, SAME_CALLS),
    ({"count": "all_reduce(np.ones(1))[0] * n_local"}, "world_size times this rank's count"),
    ({"mean": "all_reduce(x.sum(axis=axes).astype(np.float32)) / count"}, "float32 array"),
]


def test_moments_template_with_no_bug_keeps_the_points(nb):
    assert nb.score(MOMENTS, code=planted(MOMENTS_TEMPLATE)) == 2


@pytest.mark.parametrize("bug, hint", MOMENTS_BUGS, ids=[h for _, h in MOMENTS_BUGS])
def test_moments_bugs_lose_the_points_and_are_named(nb, bug, hint):
    code = planted(MOMENTS_TEMPLATE, **bug)
    nb.assert_loses_points(MOMENTS, code, hint)


# --- sync_batchnorm_forward -------------------------------------------------------------------

_FORWARD_SOURCE = """
def sync_batchnorm_forward(x, gamma, beta, all_reduce, eps=1e-5):
    axes, shape = (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
    n_local = float(x.size // x.shape[1])
    count = all_reduce(np.array(n_local))
    mean = {mean}
    var = {var}
    x_hat = (x - mean.reshape(shape)) / {denominator}
    out = {affine}
    return out, {{"x_hat": x_hat, "gamma": gamma, "inv_std": 1 / np.sqrt(var + eps),
                 "count": count}}
"""
FORWARD_GOOD = dict(
    mean=MOMENTS_GOOD["mean"],
    var=MOMENTS_GOOD["var"],
    denominator="np.sqrt(var + eps).reshape(shape)",
    affine="gamma.reshape(shape) * x_hat + beta.reshape(shape)",
)
FORWARD_TEMPLATE = Template(_FORWARD_SOURCE, FORWARD_GOOD)
FORWARD_BUGS = [
    ({"mean": "x.mean(axis=axes)", "var": "x.var(axis=axes)"}, "its own shard only"),
    (
        {"mean": planted(PLAIN_AVERAGE, values="x.mean(axis=axes)")},
        "without weighting them by their counts",
    ),
    (
        {
            "mean": planted(PLAIN_AVERAGE, values="x.mean(axis=axes)"),
            "var": planted(PLAIN_AVERAGE, values="x.var(axis=axes)"),
        },
        "plain average of the ranks' variances",
    ),
    ({"var": "all_reduce(x.var(axis=axes) * n_local) / count"}, "mean of the ranks' own"),
    ({"var": "all_reduce((x ** 2).sum(axis=axes)) / count - mean ** 2"}, "sum(x**2) / n"),
    ({"var": planted(MOMENTS_GOOD["var"], ("/ count", "/ (count - 1)", 1))}, "unbiased"),
    ({"denominator": "(np.sqrt(var) + eps).reshape(shape)"}, "outside the square root"),
    ({"denominator": "np.sqrt(var + 1e-5).reshape(shape)"}, "eps argument"),
    ({"affine": "beta.reshape(shape) * x_hat + gamma.reshape(shape)"}, "swapped"),
    ({"denominator": "np.sqrt(var).reshape(shape)"}, "eps is missing"),
]


def test_forward_template_with_no_bug_keeps_the_points(nb):
    assert nb.score(FORWARD, code=planted(FORWARD_TEMPLATE)) == 2


@pytest.mark.parametrize("bug, hint", FORWARD_BUGS, ids=[h for _, h in FORWARD_BUGS])
def test_forward_bugs_lose_the_points_and_are_named(nb, bug, hint):
    code = planted(FORWARD_TEMPLATE, **bug)
    nb.assert_loses_points(FORWARD, code, hint)


# --- sync_batchnorm_backward ------------------------------------------------------------------

_BACKWARD_SOURCE = """
def sync_batchnorm_backward(dout, cache, all_reduce):
    axes, shape = (0, *range(2, dout.ndim)), (1, -1) + (1,) * (dout.ndim - 2)
    xh, n = cache["x_hat"], cache["count"]
    d = {dxh}
    s1 = {s1}
    s2 = {s2}
    dx = cache["inv_std"].reshape(shape) / {n} * ({n} * d - s1 - xh * s2)
    {extra}
    return dx, {dgamma}, {dbeta}
"""
BACKWARD_GOOD = dict(
    extra="",
    dxh="dout * cache['gamma'].reshape(shape)",
    s1="all_reduce(d.sum(axis=axes)).reshape(shape)",
    s2="all_reduce((d * xh).sum(axis=axes)).reshape(shape)",
    n="n",
    dgamma="(dout * xh).sum(axis=axes)",
    dbeta="dout.sum(axis=axes)",
)
BACKWARD_TEMPLATE = Template(_BACKWARD_SOURCE, BACKWARD_GOOD)
LOCAL_SUMS = {
    "s1": "d.sum(axis=axes, keepdims=True)",
    "s2": "(d * xh).sum(axis=axes, keepdims=True)",
}
BACKWARD_BUGS = [
    (LOCAL_SUMS, "this rank's own (no all_reduce)"),
    ({**LOCAL_SUMS, "n": "(dout.size // dout.shape[1])"}, "divided by its own count"),
    (
        {"dgamma": "all_reduce((dout * xh).sum(axis=axes))", "dbeta": "all_reduce(dout.sum(0))"},
        "GLOBAL sum",
    ),
    ({"s1": "0.0"}, "missing the mean term"),
    ({"s2": "0.0"}, "missing the variance term"),
    ({"dgamma": "dout.sum(axis=axes)", "dbeta": "(dout * xh).sum(axis=axes)"}, "swapped"),
    ({"extra": "_ = all_reduce(np.zeros(1)) if len(dout) == 1 else None"}, SAME_CALLS),
    ({"dxh": "dout"}, "forgets gamma"),
    (
        {
            "dgamma": "all_reduce((dout * xh).sum(axis=axes)) / all_reduce(np.ones(1))",
            "dbeta": "all_reduce(dout.sum(axis=axes)) / all_reduce(np.ones(1))",
        },
        "divided by the number of ranks",
    ),
]


def test_backward_template_with_no_bug_keeps_the_points(nb):
    assert nb.score(BACKWARD, code=planted(BACKWARD_TEMPLATE)) == 3


@pytest.mark.parametrize("bug, hint", BACKWARD_BUGS, ids=[h for _, h in BACKWARD_BUGS])
def test_backward_bugs_lose_the_points_and_are_named(nb, bug, hint):
    code = planted(BACKWARD_TEMPLATE, **bug)
    nb.assert_loses_points(BACKWARD, code, hint)


def test_a_wrong_default_eps_loses_the_points(nb):
    """The checks pass eps explicitly; a wrong default is caught by a call without it."""
    code = planted(FORWARD_TEMPLATE, ("eps=1e-5)", "eps=1e-3)", 1))
    nb.assert_loses_points(FORWARD, code, "the default must be eps=1e-05")


def test_a_wrong_forward_is_blamed_before_the_backward(nb):
    fixed_eps = {"denominator": "np.sqrt(var + 1e-5).reshape(shape)"}
    code = planted(FORWARD_TEMPLATE, **fixed_eps)
    nb.assert_loses_points(BACKWARD, code, "fix sync_batchnorm_forward first")


# --- independent correct code, and PyTorch ----------------------------------------------------

INDEPENDENT = """
def _channels_last(a):
    # every value of channel c in column c: (values, C)
    return np.moveaxis(np.asarray(a, dtype=float), 1, -1).reshape(-1, a.shape[1])


def global_moments(x, all_reduce):
    rows = _channels_last(x)
    n_r = rows.shape[0]
    head = all_reduce(np.concatenate([[n_r], rows.sum(axis=0)]))  # one call: count and sums
    n, mean = head[0], head[1:] / head[0]
    mean_r = rows.mean(axis=0)
    m2_r = ((rows - mean_r) ** 2).sum(axis=0)
    # Chan: M2 of the union = sum of the M2_r + sum of n_r * (mean_r - mean)**2
    m2 = all_reduce(m2_r + n_r * (mean_r - mean) ** 2)
    return n, mean, m2 / n


def sync_batchnorm_forward(x, gamma, beta, all_reduce, eps=1e-5):
    n, mean, var = global_moments(x, all_reduce)
    rows = _channels_last(x)
    std = np.sqrt(var + eps)
    out_rows = (rows - mean) / std * gamma + beta
    out = np.moveaxis(out_rows.reshape((x.shape[0], *x.shape[2:], x.shape[1])), -1, 1)
    return out, (rows, mean, std, gamma, n, x.shape)


def sync_batchnorm_backward(dout, cache, all_reduce):
    rows, mean, std, gamma, n, shape = cache
    g = _channels_last(dout)
    dxh = g * gamma
    centered = rows - mean
    # staged: through the variance, then the mean, each a global sum
    dvar = all_reduce(np.sum(dxh * centered, axis=0)) * -0.5 / std**3
    dmean = all_reduce(np.sum(-dxh / std, axis=0))
    dmean = dmean + dvar * all_reduce(np.sum(-2.0 * centered, axis=0)) / n
    dx_rows = dxh / std + dvar * 2.0 * centered / n + dmean / n
    dx = np.moveaxis(dx_rows.reshape((shape[0], *shape[2:], shape[1])), -1, 1)
    return dx, np.sum(g * centered / std, axis=0), g.sum(axis=0)
"""


def test_independent_chan_implementation_keeps_full_points(nb):
    assert nb.score(EXERCISES, code=INDEPENDENT) == 7


OTHER_CORRECT = {
    # one all_reduce of a stacked [count, sums] array, count a 0-d array, the backward's two
    # sums stacked along axis 1, tuple caches
    "stacked all_reduce, 0-d count": (
        EXERCISES,
        """
def global_moments(x, all_reduce):
    C = x.shape[1]
    ax = tuple(i for i in range(x.ndim) if i != 1)
    head = all_reduce(np.concatenate([[x.size / C], x.sum(axis=ax)]))
    count, mean = head[0], head[1:] / head[0]
    dev = x - mean.reshape((1, C) + (1,) * (x.ndim - 2))
    var = all_reduce((dev * dev).sum(axis=ax)) / count
    return np.array(count), mean, var

def sync_batchnorm_forward(x, gamma, beta, all_reduce, eps=1e-5):
    n, mu, var = global_moments(x, all_reduce)
    sh = (1, -1) + (1,) * (x.ndim - 2)
    xh = (x - mu.reshape(sh)) / np.sqrt(var + eps).reshape(sh)
    return gamma.reshape(sh) * xh + beta.reshape(sh), (xh, gamma, var, eps, n)

def sync_batchnorm_backward(dout, cache, all_reduce):
    xh, gamma, var, eps, n = cache
    sh = (1, -1) + (1,) * (dout.ndim - 2)
    ax = tuple(i for i in range(dout.ndim) if i != 1)
    d = dout * gamma.reshape(sh)
    s = all_reduce(np.stack([d.sum(axis=ax), (d * xh).sum(axis=ax)], axis=1))
    dx = (d - s[:, 0].reshape(sh) / n - xh * s[:, 1].reshape(sh) / n)
    dx = dx / np.sqrt(var + eps).reshape(sh)
    return dx, (dout * xh).sum(axis=ax), dout.sum(axis=ax)
""",
    ),
    # a common provisional shift (the ranks' mean first sample), sums of squares about it,
    # mean and var returned as (1, C), count an np.float64, a staged backward
    "shifted sums, (1, C) moments": (
        EXERCISES,
        """
def global_moments(x, all_reduce):
    ax = (0,) + tuple(range(2, x.ndim))
    world = all_reduce(np.ones(1))[0]
    K = all_reduce(x.reshape(x.shape[0], x.shape[1], -1)[0, :, 0]) / world  # common shift
    y = x - K.reshape((1, -1) + (1,) * (x.ndim - 2))
    counts = np.full(x.shape[1], x.size / x.shape[1])
    s = all_reduce(np.stack([counts, y.sum(axis=ax), (y * y).sum(axis=ax)]))
    n = np.float64(s[0, 0])
    my = s[1] / n
    var = s[2] / n - my ** 2
    return n, (K + my)[None, :], var[None, :]

def sync_batchnorm_forward(x, gamma, beta, all_reduce, eps=1e-5):
    n, mu, var = global_moments(x, all_reduce)
    sh = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1 / np.sqrt(var.reshape(sh) + eps)
    xh = (x - mu.reshape(sh)) * inv
    return xh * gamma.reshape(sh) + beta.reshape(sh), [xh, inv, gamma, n]

def sync_batchnorm_backward(dout, cache, all_reduce):
    xh, inv, gamma, n = cache
    sh = inv.shape
    ax = (0,) + tuple(range(2, dout.ndim))
    dxh = dout * gamma.reshape(sh)
    # staged graph: through var then mean
    xc = xh / inv
    dvar = all_reduce(np.sum(dxh * xc, axis=ax)).reshape(sh) * -0.5 * inv ** 3
    dmu = all_reduce(np.sum(-dxh * inv, axis=ax)).reshape(sh)
    dmu = dmu + dvar * all_reduce(np.sum(-2 * xc, axis=ax)).reshape(sh) / n
    dx = dxh * inv + dvar * 2 * xc / n + dmu / n
    return dx, np.sum(dout * xh, axis=ax), np.sum(dout, axis=ax)
""",
    ),
    # mean and var in the keepdims shape (1, C) or (1, C, 1, 1)
    "keepdims moments": (
        MOMENTS,
        """
def global_moments(x, all_reduce):
    ax = (0,) + tuple(range(2, x.ndim))
    count = all_reduce(np.array(float(x.size // x.shape[1])))
    mean = all_reduce(x.sum(axis=ax, keepdims=True)) / count
    var = all_reduce(((x - mean) ** 2).sum(axis=ax, keepdims=True)) / count
    return count, mean, var
""",
    ),
}
"""More correct implementations a learner may write: (grade cells, code) keeping the points."""


@pytest.mark.parametrize("label", list(OTHER_CORRECT))
def test_other_correct_implementations_keep_full_points(nb, label):
    nb.assert_keeps_points(*OTHER_CORRECT[label])


def test_calling_torch_loses_the_points_of_every_exercise(nb):
    code = """
    import importlib

    _solution_backward = sync_batchnorm_backward

    def _torch_sum(a, axes):
        torch = importlib.import_module("torch")
        return torch.tensor(np.array(a)).sum(dim=axes).numpy()

    def global_moments(x, all_reduce):
        axes = (0, *range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        count = all_reduce(np.array(float(x.size // x.shape[1])))
        mean = all_reduce(_torch_sum(x, axes)) / count
        var = all_reduce(_torch_sum((x - mean.reshape(shape)) ** 2, axes)) / count
        return count, mean, var

    def sync_batchnorm_forward(x, gamma, beta, all_reduce, eps=1e-5):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        _, mean, var = global_moments(x, all_reduce)  # the torch one above
        x_hat = (x - mean.reshape(shape)) / np.sqrt(var + eps).reshape(shape)
        return gamma.reshape(shape) * x_hat + beta.reshape(shape), {}

    def sync_batchnorm_backward(dout, cache, all_reduce):
        torch = importlib.import_module("torch")
        torch.zeros(1)
        return _solution_backward(dout, cache, all_reduce)
    """
    outcomes = nb.run_tests(EXERCISES[:2], code=code)
    # the backward's run keeps the solution's forward, so only the backward's torch call counts
    without_forward = planted(code, ("def sync_batchnorm_forward", "def _unused_forward", 1))
    outcomes += nb.run_tests(BACKWARD, code=without_forward)
    assert not any(o.passed for o in outcomes)
    assert all("PyTorch" in o.message for o in outcomes), [o.message for o in outcomes]


@pytest.mark.parametrize("question, key", [(1, "b"), (2, "b")])
def test_knowledge_check_needs_the_right_letter(nb, question, key):
    grade_id = f"test_kc_q{question}"
    scores = {
        letter: nb.score([grade_id], code=f"answer_q{question} = '{letter}'") for letter in "abcd"
    }
    assert scores == {letter: int(letter == key) for letter in "abcd"}
