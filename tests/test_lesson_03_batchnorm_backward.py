"""Lesson 03: the notebook's own grade cells (hidden tests included) against planted bugs.

Both backward exercises get planted bugs that must lose their points, an independently written
correct implementation that must keep them, and a PyTorch-using version that must lose them.
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

STAGED = ["test_batchnorm_backward_staged"]
CLOSED = ["test_batchnorm_backward"]
CLOSED_FORM = ["test_batchnorm_backward_closed_form"]


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    {**dict.fromkeys(STAGED, 3), **dict.fromkeys(CLOSED, 2), **dict.fromkeys(CLOSED_FORM, 1)}
)


def test_the_forward_is_provided_in_a_locked_cell_that_is_not_graded(nb):
    meta = nb.nb.cells[[c.get("id") for c in nb.nb.cells].index("provided_forward")].metadata
    assert meta["nbgrader"]["locked"] and not meta["nbgrader"]["grade"]
    assert not meta["nbgrader"]["solution"]


_STAGED_SOURCE = """
def batchnorm_backward_staged(dout, cache):
    x, gamma, eps = cache["x"], cache["gamma"], cache["eps"]
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc**2).mean(axis=0)
    istd = 1.0 / np.sqrt(var + {eps})
    xh = xc * istd
    dbeta = {dbeta}
    dgamma = {dgamma}
    dxh = {dxh}
    distd = np.sum(dxh * xc, axis=0)
    dxc = dxh * istd
    dvar = distd * {dvar_factor}
    dxc = dxc + {var_path}
    dmu = -np.sum(dxc, axis=0)
    dx = dxc + {mean_path}
    return dx, dgamma, dbeta
"""
STAGED_GOOD = dict(
    eps="eps",
    dbeta="dout.sum(axis=0)",
    dgamma="np.sum(dout * xh, axis=0)",
    dxh="dout * gamma",
    dvar_factor="(-0.5) * istd**3",
    var_path="2.0 * xc * dvar / n",
    mean_path="dmu / n",
)
STAGED_TEMPLATE = Template(_STAGED_SOURCE, STAGED_GOOD)
STAGED_BUGS = [
    ({"mean_path": "0.0"}, "missing the mean term"),
    ({"var_path": "0.0"}, "missing the variance term"),
    ({"var_path": "2.0 * xc * dvar / (n - 1)"}, "unbiased variance"),
    ({"dvar_factor": "(-0.5) * istd"}, "wrong power"),
    ({"dxh": "dout"}, "forgets gamma"),
    ({"dgamma": "dout.sum(axis=0)", "dbeta": "np.sum(dout * xh, axis=0)"}, "swapped"),
    ({"dgamma": "dout.sum(axis=0)"}, "x_hat factor is missing"),
    ({"dgamma": "np.sum(dout * x, axis=0)"}, "uses x instead of x_hat"),
    ({"dbeta": "dout.mean(axis=0)"}, "averages dout"),
    ({"eps": "0.0"}, "dx"),
]


_CLOSED_SOURCE = """
def batchnorm_backward(dout, cache):
    xh, s, g = cache["x_hat"], cache["inv_std"], cache["gamma"]
    n = dout.shape[0]
    g_xh = {dxh}
    dx = s / n * (n * g_xh - {mean_term} - {var_term})
    return dx, {dgamma}, {dbeta}
"""
CLOSED_GOOD = dict(
    dxh="dout * g",
    mean_term="g_xh.sum(axis=0)",
    var_term="xh * (g_xh * xh).sum(axis=0)",
    dgamma="(dout * xh).sum(axis=0)",
    dbeta="dout.sum(axis=0)",
)
CLOSED_TEMPLATE = Template(_CLOSED_SOURCE, CLOSED_GOOD)
CLOSED_BUGS = [
    ({"mean_term": "0.0"}, "missing the mean term"),
    ({"var_term": "0.0"}, "missing the variance term"),
    (
        {
            "mean_term": "g_xh.sum(axis=1, keepdims=True)",
            "var_term": "xh * (g_xh * xh).sum(axis=1, keepdims=True)",
        },
        "over the features",
    ),
    ({"dxh": "dout"}, "forgets gamma"),
    ({"dgamma": "dout.sum(axis=0)", "dbeta": "(dout * xh).sum(axis=0)"}, "swapped"),
    ({"dgamma": "(dout * xh).sum(axis=1)"}, "shape"),
    ({"dxh": "-dout * g"}, "dx"),
]

NO_EPS_BACKWARD = """
    def batchnorm_backward(dout, cache):
        xh, g = cache["x_hat"], cache["gamma"]
        s = 1 / np.sqrt(cache["var"])
        n = len(dout)
        d = dout * g
        return s / n * (n * d - d.sum(0) - xh * (d * xh).sum(0)), (dout * xh).sum(0), dout.sum(0)
    """

INDEPENDENT = """
    def _jacobian_backward(dout, cache):
        x, gamma, eps = cache["x"], cache["gamma"], cache["eps"]
        n, d = x.shape
        dx, dgamma, dbeta = np.zeros((n, d)), np.zeros(d), np.zeros(d)
        for j in range(d):
            c = x[:, j] - x[:, j].mean()
            s = 1.0 / np.sqrt(c @ c / n + eps)
            jac = s * (np.eye(n) - 1.0 / n) - np.outer(c, c) * s**3 / n
            dx[:, j] = gamma[j] * (jac.T @ dout[:, j])
            dgamma[j] = dout[:, j] @ (c * s)
            dbeta[j] = dout[:, j].sum()
        return dx, dgamma, dbeta

    batchnorm_backward_staged = _jacobian_backward
    batchnorm_backward = _jacobian_backward
    """

TORCH_BACKWARD = """
    import importlib

    def _autograd_backward(dout, cache):
        torch = importlib.import_module("torch")
        x = torch.tensor(cache["x"], requires_grad=True)
        g = torch.tensor(cache["gamma"], requires_grad=True)
        b = torch.tensor(cache["beta"], requires_grad=True)
        out = torch.nn.functional.batch_norm(x, None, None, g, b, training=True, eps=cache["eps"])
        out.backward(torch.tensor(dout))
        return x.grad.numpy(), g.grad.numpy(), b.grad.numpy()

    batchnorm_backward_staged = _autograd_backward
    batchnorm_backward = _autograd_backward
    """

# what the text asks of each form, enforced by behaviour: the closed form works from gamma,
# x_hat and inv_std alone, and neither exercise hands its work to the other
CLOSED_FROM_X = """
    def batchnorm_backward(dout, cache):
        x, g, eps, n = cache["x"], cache["gamma"], cache["eps"], len(dout)
        s = 1 / np.sqrt(x.var(0) + eps)
        xh = (x - x.mean(0)) * s
        d = dout * g
        return s / n * (n * d - d.sum(0) - xh * (d * xh).sum(0)), (dout * xh).sum(0), dout.sum(0)
    """
CLOSED_THROUGH_STAGED = """
    def batchnorm_backward(dout, cache):
        return batchnorm_backward_staged(dout, cache)
    """
STAGED_THROUGH_CLOSED = """
    def batchnorm_backward_staged(dout, cache):
        return batchnorm_backward(dout, cache)
    """

PLANTED = [
    *template_cases(STAGED, STAGED_TEMPLATE, STAGED_BUGS),
    *template_cases(CLOSED + CLOSED_FORM, CLOSED_TEMPLATE, CLOSED_BUGS),
    *planted_cases(CLOSED, [("inv_std without eps", NO_EPS_BACKWARD, "drops eps")]),
    *planted_cases(CLOSED_FORM, [("inv_std without eps", NO_EPS_BACKWARD, "needs only")]),
    *planted_cases(STAGED + CLOSED, [("calls torch", TORCH_BACKWARD, "PyTorch")]),
    *planted_cases(CLOSED_FORM, [("recomputed from x", CLOSED_FROM_X, "needs only gamma")]),
    *planted_cases(
        CLOSED_FORM, [("through the staged backward", CLOSED_THROUGH_STAGED, "not the staged")]
    ),
    *planted_cases(
        STAGED, [("through the closed form", STAGED_THROUGH_CLOSED, "may not call the closed")]
    ),
]
CORRECT = {
    "staged template with no bug": (STAGED, planted(STAGED_TEMPLATE)),
    "closed template with no bug": (CLOSED + CLOSED_FORM, planted(CLOSED_TEMPLATE)),
    "independent Jacobian backward": (STAGED + CLOSED, INDEPENDENT),
    # granular credit: right numbers from x keep the 2 points of the values
    "closed form recomputed from x": (CLOSED, CLOSED_FROM_X),
}


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, CORRECT
)


def test_a_wrong_forward_is_blamed_before_a_backward_that_depends_on_it(nb):
    code = """
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        mean, var = x.mean(0), x.var(0, ddof=1)
        centered = x - mean
        x_hat = centered / np.sqrt(var + eps)
        cache = dict(x=x, gamma=gamma, beta=beta, eps=eps, mean=mean, var=var, x_hat=x_hat,
                     inv_std=1 / np.sqrt(var + eps), centered=centered)
        return gamma * x_hat + beta, cache

    def batchnorm_backward(dout, cache):
        xh, s, g, n = cache["x_hat"], cache["inv_std"], cache["gamma"], len(dout)
        d = dout * g
        dx = s / n * (n * d - d.sum(0) - cache["centered"] * s * (d * xh).sum(0))
        return dx, (dout * xh).sum(0), dout.sum(0)
    """
    nb.assert_loses_points(CLOSED, code, "fix batchnorm_forward first")
    nb.assert_loses_points(CLOSED, code, "unbiased")


@pytest.mark.parametrize("question, key", [(1, "c"), (2, "a")])
def test_knowledge_check_needs_the_right_letter(nb, question, key):
    nb.assert_only_the_key_passes(f"test_kc_q{question}", f"answer_q{question}", key)
