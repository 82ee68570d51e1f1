"""Lesson 06: the notebook's own grade cells (hidden tests included) against planted bugs.

Each exercise (the channel/row conversions, the forward and backward through the 2-D layer,
the direct forward and backward) gets planted bugs that must lose its points, an independently
written correct implementation that must keep them, and a PyTorch-using version that must lose
them.
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

ROWS = ["test_channel_rows"]
FORWARD = ["test_spatial_batchnorm_forward"]
BACKWARD = ["test_spatial_batchnorm_backward"]
FORWARD_DIRECT = ["test_spatial_batchnorm_forward_direct"]
BACKWARD_DIRECT = ["test_spatial_batchnorm_backward_direct"]
EXERCISES = ROWS + FORWARD + BACKWARD + FORWARD_DIRECT + BACKWARD_DIRECT


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    dict(zip(EXERCISES, [2, 3, 3, 2, 2], strict=True))
)


def test_the_2d_layer_is_provided_in_a_locked_cell_that_is_not_graded(nb):
    (cell,) = [c for c in nb.nb.cells if c.get("id") == "provided_2d"]
    meta = cell.metadata["nbgrader"]
    assert meta["locked"] and not meta["grade"] and not meta["solution"]
    assert "def batchnorm_forward" in cell.source and "def batchnorm_backward" in cell.source


def test_the_demo_trains_the_learners_layer_to_match_pytorch(nb):
    losses = nb.namespace["losses"]
    ours, theirs = losses["your spatial batch norm"], losses["PyTorch nn.BatchNorm2d"]
    assert len(ours) == len(theirs) > 10
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-9
    assert ours[-1] < ours[0] / 5


# --- channels_to_rows / rows_to_channels -------------------------------------------------------

ROWS_BUGS = {
    "without moving the channel axis last": """
        def channels_to_rows(x):
            return x.reshape(-1, x.shape[1])
    """,
    "order (n, w, h)": """
        def channels_to_rows(x):
            return x.swapaxes(1, 3).reshape(-1, x.shape[1])
    """,
    "put back with reshape alone": """
        def rows_to_channels(rows, shape):
            return rows.reshape(shape)
    """,
    "rows_to_channels(rows) has shape": """
        def rows_to_channels(rows, shape):
            n, c, h, w = shape
            return rows.reshape(n, h, w, c).transpose(0, 2, 3, 1)
    """,
}

INDEPENDENT_ROWS = """
    def channels_to_rows(x):
        return np.stack([x[:, c].ravel() for c in range(x.shape[1])], axis=1)

    def rows_to_channels(rows, shape):
        out = np.empty(shape)
        for c in range(shape[1]):
            out[:, c] = rows[:, c].reshape(shape[0], shape[2], shape[3])
        return out
    """


# --- spatial_batchnorm_forward (through the 2-D layer) ---------------------------------------

_FORWARD_SOURCE = """
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    rows = {to_rows}
    mu = rows.mean(axis=0)
    var = rows.var(axis=0, ddof={ddof})
    xh = (rows - mu) / ({denominator})
    out_rows = {affine}
    cache_2d = dict(x=rows, gamma=gamma, beta=beta, eps=eps, mean=mu, var=var, x_hat=xh,
                    inv_std=1 / np.sqrt(var + eps))
    return {back}, {{"shape": x.shape, "cache_2d": cache_2d}}
"""
FORWARD_GOOD = dict(
    to_rows="np.moveaxis(x, 1, -1).reshape(n * h * w, c)",
    ddof="0",
    denominator="np.sqrt(var + eps)",
    affine="gamma * xh + beta",
    back="np.moveaxis(out_rows.reshape(n, h, w, c), -1, 1)",
)
FORWARD_TEMPLATE = Template(_FORWARD_SOURCE, FORWARD_GOOD)
FORWARD_BUGS = [
    ({"to_rows": "x.reshape(-1, c)"}, "without moving the channel axis last"),
    ({"back": "out_rows.reshape(x.shape)"}, "put back with reshape alone"),
    ({"ddof": "1"}, "unbiased"),
    ({"denominator": "np.sqrt(var) + eps"}, "outside the square root"),
    ({"affine": "beta * xh + gamma"}, "swapped"),
    ({"denominator": "np.sqrt(var + 1e-5)"}, "eps argument"),
]

IN_PLACE_FORWARD = """
    def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
        x -= x.mean(axis=(0, 2, 3), keepdims=True)
        x /= np.sqrt((x**2).mean(axis=(0, 2, 3), keepdims=True) + eps)
        return gamma[:, None, None] * x + beta[:, None, None], {}
    """


# --- spatial_batchnorm_backward (through the 2-D layer) --------------------------------------

_BACKWARD_SOURCE = """
def spatial_batchnorm_backward(dout, cache):
    n, c, h, w = cache["shape"]
    drows = {to_rows}
    dx_rows, dgamma, dbeta = batchnorm_backward(drows, cache["cache_2d"])
    dx = {back}
    return dx, {grads}
"""
BACKWARD_GOOD = dict(
    to_rows="dout.transpose(0, 2, 3, 1).reshape(-1, c)",
    back="dx_rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)",
    grads="dgamma, dbeta",
)
BACKWARD_TEMPLATE = Template(_BACKWARD_SOURCE, BACKWARD_GOOD)
BACKWARD_BUGS = [
    ({"to_rows": "dout.reshape(-1, c)"}, "dout was reshaped to (-1, C)"),
    ({"back": "dx_rows.reshape(n, c, h, w)"}, "rows of dx were put back with reshape alone"),
    ({"grads": "dbeta, dgamma"}, "swapped"),
    ({"grads": "dgamma.reshape(1, c, 1, 1), dbeta"}, "keepdims"),
]


def test_a_wrong_forward_is_blamed_before_the_backward(nb):
    code = planted(FORWARD_TEMPLATE, ddof="1")
    nb.assert_loses_points(BACKWARD, code, "fix spatial_batchnorm_forward first")
    nb.assert_loses_points(BACKWARD, code, "unbiased")


# --- the direct forward, axis=(0, 2, 3) --------------------------------------------------------

_DIRECT_FORWARD_SOURCE = """
def spatial_batchnorm_forward_direct(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis={axes}, keepdims=True)
    var = {var}
    inv = 1 / np.sqrt(var + eps)
    xh = (x - mu) * inv
    return {g} * xh + {b}, {{"gamma": gamma, "x_hat": xh, "inv_std": inv}}
"""
DIRECT_FORWARD_GOOD = dict(
    axes="(0, 2, 3)",
    var="x.var(axis=(0, 2, 3), keepdims=True)",
    g="gamma[None, :, None, None]",
    b="beta[None, :, None, None]",
)
DIRECT_FORWARD_TEMPLATE = Template(_DIRECT_FORWARD_SOURCE, DIRECT_FORWARD_GOOD)
DIRECT_FORWARD_BUGS = [
    (
        {"axes": "0", "var": "x.var(axis=0, keepdims=True)"},
        "per position over the batch only (axis=0)",
    ),
    ({"axes": "(0, 1)", "var": "x.var(axis=(0, 1), keepdims=True)"}, "axis=(0, 1)"),
    ({"axes": "(2, 3)", "var": "x.var(axis=(2, 3), keepdims=True)"}, "instance norm"),
    ({"var": "x.var(axis=(0, 2, 3), ddof=1, keepdims=True)"}, "unbiased"),
    ({"g": "gamma", "b": "beta"}, "broadcast"),  # numpy refuses (3,) against W = 2
    (
        {"var": "((x - mu) ** 2).sum(axis=(0, 2, 3), keepdims=True) / x.shape[0]"},
        "divided by N instead of by N * H * W",
    ),
]


# --- the direct backward -----------------------------------------------------------------------

_DIRECT_BACKWARD_SOURCE = """
def spatial_batchnorm_backward_direct(dout, cache):
    xh, s, g = cache["x_hat"], cache["inv_std"], cache["gamma"].reshape(1, -1, 1, 1)
    m = {m}
    d = {dxh}
    dx = s / m * (m * d - {mean_term} - {var_term})
    return dx, {dgamma}, {dbeta}
"""
DIRECT_BACKWARD_GOOD = dict(
    m="dout.shape[0] * dout.shape[2] * dout.shape[3]",
    dxh="dout * g",
    mean_term="d.sum(axis=(0, 2, 3), keepdims=True)",
    var_term="xh * (d * xh).sum(axis=(0, 2, 3), keepdims=True)",
    dgamma="(dout * xh).sum(axis=(0, 2, 3))",
    dbeta="dout.sum(axis=(0, 2, 3))",
)
DIRECT_BACKWARD_TEMPLATE = Template(_DIRECT_BACKWARD_SOURCE, DIRECT_BACKWARD_GOOD)
DIRECT_BACKWARD_BUGS = [
    ({"m": "dout.shape[0]"}, "divided by N instead of by N * H * W"),
    (
        {
            "m": "dout.shape[0]",
            "mean_term": "d.sum(axis=0, keepdims=True)",
            "var_term": "xh * (d * xh).sum(axis=0, keepdims=True)",
        },
        "batch axis only",
    ),
    ({"mean_term": "0.0"}, "missing the mean term"),
    ({"var_term": "0.0"}, "missing the variance term"),
    ({"dxh": "dout"}, "forgets gamma"),
    ({"dgamma": "(dout * xh).sum(axis=0)"}, "sum over the positions too"),
    ({"dgamma": "(dout * xh).sum(axis=(2, 3))"}, "sum over the batch too"),
    ({"dgamma": "(dout * xh).reshape(-1, dout.shape[1]).sum(axis=0)"}, "reshape(-1, C)"),
    ({"dbeta": "dout.mean(axis=(0, 2, 3))"}, "averages dout"),
    ({"dgamma": "dout.sum(axis=(0, 2, 3))"}, "x_hat factor is missing"),
    ({"dbeta": "(dout * xh).sum(axis=(0, 2, 3))"}, "swapped"),
]


# --- independent correct code, and PyTorch -----------------------------------------------------

INDEPENDENT = """
def _forward_per_channel(x, gamma, beta, eps=1e-5):
    out = np.empty(x.shape)
    means, variances = [], []
    for c in range(x.shape[1]):
        values = np.array(x[:, c], dtype=float)
        mean = values.sum() / values.size
        variance = np.dot((values - mean).ravel(), (values - mean).ravel()) / values.size
        out[:, c] = gamma[c] * (values - mean) / np.sqrt(variance + eps) + beta[c]
        means.append(mean)
        variances.append(variance)
    return out, (np.array(x), gamma, eps)


def _backward_by_jacobian(dout, cache):
    x, gamma, eps = cache
    dx = np.empty(x.shape)
    dgamma, dbeta = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        v = x[:, c].ravel()
        m = v.size
        centered = v - v.mean()
        s = 1 / np.sqrt(centered @ centered / m + eps)
        jacobian = s * (np.eye(m) - 1 / m) - np.outer(centered, centered) * s**3 / m
        g = dout[:, c].ravel()
        dx[:, c] = (gamma[c] * jacobian.T @ g).reshape(dout[:, c].shape)
        dgamma[c] = g @ (centered * s)
        dbeta[c] = g.sum()
    return dx, dgamma, dbeta


spatial_batchnorm_forward = spatial_batchnorm_forward_direct = _forward_per_channel
spatial_batchnorm_backward = spatial_batchnorm_backward_direct = _backward_by_jacobian
"""

TORCH_EVERYWHERE = """
    import importlib

    def _torch_forward(x, gamma, beta, eps=1e-5):
        torch = importlib.import_module("torch")
        leaves = [torch.tensor(np.array(a), requires_grad=True) for a in (x, gamma, beta)]
        out = torch.nn.functional.batch_norm(
            leaves[0], None, None, leaves[1], leaves[2], training=True, eps=eps
        )
        return out.detach().numpy(), (out, leaves)

    def _torch_backward(dout, cache):
        torch = importlib.import_module("torch")
        out, leaves = cache
        return tuple(g.numpy() for g in torch.autograd.grad(out, leaves, torch.tensor(dout)))

    def channels_to_rows(x):
        torch = importlib.import_module("torch")
        return torch.tensor(x).permute(0, 2, 3, 1).reshape(-1, x.shape[1]).numpy()

    spatial_batchnorm_forward = spatial_batchnorm_forward_direct = _torch_forward
    spatial_batchnorm_backward = spatial_batchnorm_backward_direct = _torch_backward
    """

# the signature's default differs from the contract's eps=1e-5; every explicit call is right
WRONG_DEFAULT_EPS = """
_solution_spatial_batchnorm_forward = spatial_batchnorm_forward


def spatial_batchnorm_forward(x, gamma, beta, eps=1e-3):
    return _solution_spatial_batchnorm_forward(x, gamma, beta, eps)
"""
WRONG_DEFAULT_EPS_DIRECT = """
_solution_spatial_batchnorm_forward_direct = spatial_batchnorm_forward_direct


def spatial_batchnorm_forward_direct(x, gamma, beta, eps=1e-3):
    return _solution_spatial_batchnorm_forward_direct(x, gamma, beta, eps)
"""

# route 2 must not reuse route 1: each delegation loses the points of route 2's cells
ROUTE_1_REUSED = {
    "forward through route 1": """
        def spatial_batchnorm_forward_direct(x, gamma, beta, eps=1e-5):
            return spatial_batchnorm_forward(x, gamma, beta, eps)
    """,
    "forward through channels_to_rows and the 2-D layer": """
        def spatial_batchnorm_forward_direct(x, gamma, beta, eps=1e-5):
            out, cache = batchnorm_forward(channels_to_rows(x), gamma, beta, eps)
            return rows_to_channels(out, x.shape), cache
    """,
    "forward that swallows the refusal and falls back on reductions": """
        def spatial_batchnorm_forward_direct(x, gamma, beta, eps=1e-5):
            try:
                rows = channels_to_rows(x)
            except Exception:
                rows = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
            mean, var = rows.mean(axis=0), rows.var(axis=0)
            x_hat = ((rows - mean) / np.sqrt(var + eps)).reshape(
                x.shape[0], x.shape[2], x.shape[3], -1
            ).transpose(0, 3, 1, 2)
            out = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
            return out, {"gamma": gamma, "x_hat": x_hat, "inv_std": 1 / np.sqrt(var + eps)}
    """,
}
ROUTE_1_REUSED_BACKWARD = {
    "backward through route 1": """
        def spatial_batchnorm_forward_direct(x, gamma, beta, eps=1e-5):
            mean = x.mean(axis=(0, 2, 3), keepdims=True)
            var = x.var(axis=(0, 2, 3), keepdims=True)
            x_hat = (x - mean) / np.sqrt(var + eps)
            out = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
            return out, spatial_batchnorm_forward(x, gamma, beta, eps)[1]

        def spatial_batchnorm_backward_direct(dout, cache):
            return spatial_batchnorm_backward(dout, cache)
    """,
    "backward through the 2-D backward": """
        def spatial_batchnorm_backward_direct(dout, cache):
            c = dout.shape[1]
            n, _, h, w = dout.shape
            x_hat = cache["x_hat"]
            rows_cache = {
                "gamma": cache["gamma"],
                "x_hat": x_hat.transpose(0, 2, 3, 1).reshape(-1, c),
                "inv_std": cache["inv_std"].reshape(c),
            }
            dx, dgamma, dbeta = batchnorm_backward(
                dout.transpose(0, 2, 3, 1).reshape(-1, c), rows_cache
            )
            return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta
    """,
}
ROUTE_2_HINT = "route 2 is written without channels_to_rows"

PLANTED = [
    *planted_cases(
        FORWARD_DIRECT + BACKWARD_DIRECT,
        [(label, code, ROUTE_2_HINT) for label, code in ROUTE_1_REUSED.items()],
    ),
    *planted_cases(
        BACKWARD_DIRECT,
        [(label, code, ROUTE_2_HINT) for label, code in ROUTE_1_REUSED_BACKWARD.items()],
    ),
    *planted_cases(ROWS, [(hint, code, hint) for hint, code in ROWS_BUGS.items()]),
    *template_cases(FORWARD, FORWARD_TEMPLATE, FORWARD_BUGS),
    *planted_cases(FORWARD, [("in place", IN_PLACE_FORWARD, "in place")]),
    *template_cases(BACKWARD, BACKWARD_TEMPLATE, BACKWARD_BUGS),
    *template_cases(FORWARD_DIRECT, DIRECT_FORWARD_TEMPLATE, DIRECT_FORWARD_BUGS),
    *template_cases(BACKWARD_DIRECT, DIRECT_BACKWARD_TEMPLATE, DIRECT_BACKWARD_BUGS),
    *planted_cases(EXERCISES, [("calls torch", TORCH_EVERYWHERE, "PyTorch")]),
    *planted_cases(
        FORWARD, [("wrong default eps", WRONG_DEFAULT_EPS, "default must be eps=1e-05")]
    ),
    *planted_cases(
        FORWARD_DIRECT,
        [("wrong default eps, direct", WRONG_DEFAULT_EPS_DIRECT, "default must be eps=1e-05")],
    ),
]
# route 2 may use helpers of its own; only route 1's functions are refused
OWN_HELPER_DIRECT = """
def _channels_last(a):
    return a.transpose(0, 2, 3, 1)


def spatial_batchnorm_forward_direct(x, gamma, beta, eps=1e-5):
    last = _channels_last(x)
    mean, var = last.mean(axis=(0, 1, 2)), last.var(axis=(0, 1, 2))
    x_hat = ((last - mean) / np.sqrt(var + eps)).transpose(0, 3, 1, 2)
    out = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    inv_std = (1 / np.sqrt(var + eps)).reshape(1, -1, 1, 1)
    return out, {"gamma": gamma, "x_hat": x_hat, "inv_std": inv_std}
"""
CORRECT = {
    "independent conversions": (ROWS, INDEPENDENT_ROWS),
    "forward template with no bug": (FORWARD, planted(FORWARD_TEMPLATE)),
    "backward template with no bug": (BACKWARD, planted(BACKWARD_TEMPLATE)),
    "direct forward template with no bug": (
        FORWARD_DIRECT,
        planted(DIRECT_FORWARD_TEMPLATE),
    ),
    "direct backward template with no bug": (
        BACKWARD_DIRECT,
        planted(DIRECT_BACKWARD_TEMPLATE),
    ),
    "direct route with a conversion helper of its own": (
        FORWARD_DIRECT + BACKWARD_DIRECT,
        OWN_HELPER_DIRECT + planted(DIRECT_BACKWARD_TEMPLATE),
    ),
    "independent per-channel implementation": (
        FORWARD + BACKWARD + FORWARD_DIRECT + BACKWARD_DIRECT,
        INDEPENDENT,
    ),
}


test_planted_bugs_lose_the_points, test_correct_code_keeps_the_points = planted_and_correct_tests(
    PLANTED, CORRECT
)


@pytest.mark.parametrize("question, key", [(1, "c"), (2, "c")])
def test_knowledge_check_needs_the_right_letter(nb, question, key):
    nb.assert_only_the_key_passes(f"test_kc_q{question}", f"answer_q{question}", key)
