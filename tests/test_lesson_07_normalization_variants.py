"""Lesson 07: the notebook's own grade cells (hidden tests included) against planted bugs.

Each of the eight contract functions gets planted bugs (classic mistakes) that must lose its
points with a hint naming the mistake; one independently written correct implementation of
all eight (explicit loops over the sets and a Jacobian per set, nothing shared with the
solution) must keep full points; a PyTorch-using version must lose them all.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

LN_FORWARD = ["test_layernorm_forward"]
LN_BACKWARD = ["test_layernorm_backward"]
GN_FORWARD = ["test_groupnorm_forward"]
GN_UNEVEN = ["test_groupnorm_rejects_uneven_groups"]
GN_BACKWARD = ["test_groupnorm_backward"]
IN_FORWARD = ["test_instancenorm_forward"]
IN_BACKWARD = ["test_instancenorm_backward"]
RMS_FORWARD = ["test_rmsnorm_forward"]
RMS_BACKWARD = ["test_rmsnorm_backward"]
EXERCISES = (
    LN_FORWARD + LN_BACKWARD + GN_FORWARD + GN_UNEVEN + GN_BACKWARD
    + IN_FORWARD + IN_BACKWARD + RMS_FORWARD + RMS_BACKWARD
)  # fmt: skip


def test_the_solution_passes_every_grade_cell(nb):
    grade_ids = nb.assert_passes_everything()
    assert set(grade_ids) == {*EXERCISES, "test_kc_q1", "test_kc_q2"}


def test_points_are_as_announced(nb):
    assert [nb.points(g) for g in EXERCISES] == [2, 3, 2, 1, 3, 1, 1, 2, 3]


def test_the_experiment_shows_only_batch_norm_depends_on_the_batch(nb):
    dependence, sizes = nb.namespace["dependence"], nb.namespace["batch_sizes"]
    batch = dependence["batch norm"]
    assert list(sizes) == sorted(sizes, reverse=True)
    assert all(a < b for a, b in zip(batch, batch[1:], strict=False)) and batch[-1] > 0.5
    for name, values in dependence.items():
        if name != "batch norm":
            assert max(values) < 1e-12, name


def test_small_batches_hurt_batch_norm_in_training_and_not_group_or_layer_norm(nb):
    # 6.1, seeds 0-2, 150 steps at lr 0.1; measured at B=2: BN 0.28-0.43, GN 0.80-0.88,
    # LN 0.80-0.89; at B=8 and above all three 0.93-0.96
    sizes, accuracy = nb.namespace["train_batch_sizes"], nb.namespace["trained_accuracy"]
    assert sizes[0] == 128 and sizes[-1] == 2
    batch, group, layer = (
        accuracy[k] for k in ("batch norm", "group norm (4 groups)", "layer norm")
    )
    assert batch.shape == (len(sizes), 3)
    assert batch[-1].max() < 0.6 and min(group[-1].min(), layer[-1].min()) > 0.7
    assert min(group[-1].min(), layer[-1].min()) - batch[-1].max() > 0.2
    for values in (batch, group, layer):
        assert values[: sizes.index(8) + 1].min() > 0.88  # large batches: all train well


# --- planted bugs, one parametrized test per exercise --------------------------------------

LN_FORWARD_TEMPLATE = """
def layernorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis={axes}, keepdims=True)
    var = x.var(axis={axes}, ddof={ddof}, keepdims=True)
    xh = ({centered}) / {denominator}
    return {affine}, {{"gamma": gamma, "x_hat": xh}}
"""
LN_FORWARD_GOOD = dict(
    axes="-1", ddof="0", centered="x - mu", denominator="np.sqrt(var + eps)",
    affine="gamma * xh + beta",
)  # fmt: skip
LN_FORWARD_BUGS = [
    ({"axes": "0"}, "batch axis (axis=0): that is batch norm"),
    ({"ddof": "1"}, "unbiased"),
    ({"denominator": "(np.sqrt(var) + eps)"}, "outside the square root"),
    ({"denominator": "np.sqrt(var + 1e-5)"}, "eps argument"),
    ({"affine": "beta * xh + gamma"}, "swapped"),
    ({"centered": "x", "denominator": "np.sqrt((x**2).mean(-1, keepdims=True) + eps)"}, "RMSNorm"),
    ({"axes": "tuple(range(1, x.ndim))"}, "all its axes"),
    ({"axes": "1"}, "taken over axis=1"),  # right for (N, D), wrong for (B, T, D)
]

LN_BACKWARD_TEMPLATE = """
def layernorm_backward(dout, cache):
    xh = cache["x_hat"]
    s = 1 / np.sqrt(((cache["x"] - cache["x"].mean(-1, keepdims=True)) ** 2).mean(
        -1, keepdims=True) + cache["eps"])
    d = {dxh}
    m = {m}
    dx = s * (d - {mean_term} - xh * (d * xh).sum({sum_axis}, keepdims=True) / {var_count})
    rows = tuple(range(dout.ndim - 1))
    return dx, {dgamma}, {dbeta}


def layernorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    xh = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return gamma * xh + beta, {{"x": x, "x_hat": xh, "gamma": gamma, "eps": eps}}
"""
LN_BACKWARD_GOOD = dict(
    dxh='dout * cache["gamma"]', m="dout.shape[-1]", mean_term="d.sum(-1, keepdims=True) / m",
    sum_axis="-1", var_count="m", dgamma="(dout * xh).sum(rows)", dbeta="dout.sum(rows)",
)  # fmt: skip
LN_BACKWARD_BUGS = [
    ({"mean_term": "0"}, "missing the mean term"),
    ({"var_count": "(m - 1)"}, "unbiased variance (m - 1)"),
    ({"dxh": "dout"}, "forgets gamma"),
    (
        {"m": "dout.shape[0]", "mean_term": "d.sum(0, keepdims=True) / m", "sum_axis": "0"},
        "batch axis (axis=0), as in batch norm",
    ),
    ({"dgamma": "(dout * xh).sum(-1)"}, "a sum over axis=1"),
    ({"dgamma": "(dout * xh).sum(0, keepdims=True)"}, "keepdims"),
    ({"dgamma": "dout.sum(rows)"}, "x_hat factor is missing"),
    ({"dbeta": "dout.mean(rows)"}, "averages dout"),
]

GN_FORWARD_TEMPLATE = """
def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    n, c, h, w = x.shape
    {guard}
    g = {groups}
    v = {view}
    xh = ((v - v.mean(axis={axes}, keepdims=True))
          / np.sqrt(v.var(axis={axes}, ddof={ddof}, keepdims=True) + eps)).reshape(x.shape)
    gm, bt = {params}
    return gm.reshape(1, -1, 1, 1) * xh + bt.reshape(1, -1, 1, 1), {{"xh": xh}}
"""
GN_FORWARD_GOOD = dict(
    guard="if c % num_groups: raise ValueError('C must be divisible by num_groups')",
    groups="num_groups", view="x.reshape(n, g, -1)", axes="2", ddof="0", params="gamma, beta",
)  # fmt: skip
GN_FORWARD_BUGS = [
    ({"view": "x.reshape(n, c // g, g, h, w)", "axes": "(1, 3, 4)"}, "interleaved"),
    (
        {"params": "np.repeat(gamma[:g], c // g), np.repeat(beta[:g], c // g)"},
        "the affine is per group",
    ),
    ({"groups": "x.shape[1] // num_groups"}, "number of channels per group"),
    ({"groups": "1"}, "as if it were 1"),
    ({"view": "x.reshape(n, g, c // g, h, w)"}, "leave out the positions"),
    ({"axes": "(0, 2)"}, "include the batch axis"),
    ({"ddof": "1"}, "unbiased"),
]
GN_UNEVEN_BUGS = [
    ({"guard": "pass"}, "must raise ValueError"),
    ({"guard": "assert c % num_groups == 0"}, "must raise ValueError"),
    ({"guard": "if num_groups > c: raise ValueError('too many groups')"}, "must raise ValueError"),
]

GN_BACKWARD_TEMPLATE = """
def groupnorm_backward(dout, cache):
    n, c, h, w = dout.shape
    g = cache["g"]
    xh = cache["xh"].reshape(n, g, -1)
    s = cache["s"]
    d = {dxh}.reshape(n, g, -1)
    m = xh.shape[2]
    dx = s * (d - {mean_term} - xh * (d * xh).sum({axes}, keepdims=True) / m)
    return dx.reshape(dout.shape), {dgamma}, dout.sum((0, 2, 3))


def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError("C must be divisible by num_groups")
    v = x.reshape(n, num_groups, -1)
    s = 1 / np.sqrt(v.var(2, keepdims=True) + eps)
    xh = ((v - v.mean(2, keepdims=True)) * s).reshape(x.shape)
    out = gamma[None, :, None, None] * xh + beta[None, :, None, None]
    return out, {{"xh": xh, "s": s, "g": num_groups, "gamma": gamma}}
"""
GN_BACKWARD_GOOD = dict(
    dxh='(dout * cache["gamma"][:, None, None])', mean_term="d.mean(2, keepdims=True)",
    axes="2", dgamma='(dout * cache["xh"]).sum((0, 2, 3))',
)  # fmt: skip
GN_BACKWARD_BUGS = [
    ({"mean_term": "0"}, "missing the mean term"),
    ({"dxh": "dout"}, "forgets gamma"),
    ({"dgamma": "dout.sum((0, 2, 3))"}, "x_hat factor is missing"),
    ({"dgamma": '(dout * cache["xh"]).sum((2, 3))'}, "a sum over axis=(2, 3)"),
    ({"dgamma": '(dout * cache["xh"]).reshape(n, g, -1).sum((0, 2))'}, "shape"),
]

IN_FORWARD_TEMPLATE = """
def instancenorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis={axes}, keepdims=True)
    xh = (x - mu) / {denominator}
    return {affine}, {{"xh": xh}}
"""
IN_FORWARD_GOOD = dict(
    axes="(2, 3)", denominator="np.sqrt(x.var(axis=(2, 3), keepdims=True) + eps)",
    affine="gamma.reshape(1, -1, 1, 1) * xh + beta.reshape(1, -1, 1, 1)",
)  # fmt: skip
IN_FORWARD_BUGS = [
    (
        {"axes": "(0, 2, 3)", "denominator": "np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + eps)"},
        "that is batch norm",
    ),
    (
        {"axes": "(1, 2, 3)", "denominator": "np.sqrt(x.var(axis=(1, 2, 3), keepdims=True) + eps)"},
        "that is layer norm",
    ),
    ({"denominator": "np.sqrt(x.var(axis=(2, 3), ddof=1, keepdims=True) + eps)"}, "unbiased"),
    ({"denominator": "(x.std(axis=(2, 3), keepdims=True) + eps)"}, "outside the square root"),
    ({"affine": "gamma * xh + beta"}, "broadcast"),
]

IN_BACKWARD_TEMPLATE = """
def instancenorm_backward(dout, cache):
    xh, s, g = cache["xh"], cache["s"], cache["gamma"].reshape(1, -1, 1, 1)
    d = dout * g
    dx = s * (d - d.mean({axes}, keepdims=True) - {var_term})
    return dx, {dgamma}, {dbeta}


def instancenorm_forward(x, gamma, beta, eps=1e-5):
    s = 1 / np.sqrt(x.var((2, 3), keepdims=True) + eps)
    xh = (x - x.mean((2, 3), keepdims=True)) * s
    out = gamma.reshape(1, -1, 1, 1) * xh + beta.reshape(1, -1, 1, 1)
    return out, {{"xh": xh, "s": s, "gamma": gamma}}
"""
IN_BACKWARD_GOOD = dict(
    axes="(2, 3)", var_term="xh * (d * xh).mean((2, 3), keepdims=True)",
    dgamma="(dout * xh).sum((0, 2, 3))", dbeta="dout.sum((0, 2, 3))",
)  # fmt: skip
IN_BACKWARD_BUGS = [
    ({"var_term": "0"}, "missing the variance term"),
    ({"dgamma": "(dout * xh).sum((2, 3))"}, "a sum over axis=(2, 3)"),
    ({"dbeta": "(dout * xh).sum((0, 2, 3))"}, "swapped"),
    ({"dgamma": "(dout * xh).sum(0)"}, "a sum over axis=0"),
]

RMS_FORWARD_TEMPLATE = """
def rmsnorm_forward(x, gamma, eps=1e-6):
    z = {z}
    ms = (z**2).{reduce}(axis={axes}, keepdims=True)
    xh = z / {denominator}
    return {out}, {{"xh": xh}}
"""
RMS_FORWARD_GOOD = dict(
    z="x", reduce="mean", axes="-1", denominator="np.sqrt(ms + eps)", out="gamma * xh",
)  # fmt: skip
RMS_FORWARD_BUGS = [
    ({"z": "x - x.mean(-1, keepdims=True)"}, "the mean is subtracted (that is layer norm)"),
    ({"denominator": "(np.sqrt(ms) + eps)"}, "outside the square root"),
    ({"reduce": "sum"}, "summed instead of averaged"),
    ({"axes": "0"}, "over the batch axis"),
    ({"denominator": "np.sqrt(ms + 1e-6)"}, "eps argument"),
    ({"out": "xh"}, "gamma is not applied"),
    ({"axes": "None"}, "over the whole array"),
    ({"out": "(gamma * xh).astype(np.float32)"}, "dtype float32"),
]

RMS_BACKWARD_TEMPLATE = """
def rmsnorm_backward(dout, cache):
    xh, r = cache["xh"], cache["r"]
    d = {dxh}
    dx = r * (d - {mean_term} - xh * (d * xh).mean({axes}, keepdims=True))
    return dx, {dgamma}


def rmsnorm_forward(x, gamma, eps=1e-6):
    r = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return gamma * x * r, {{"xh": x * r, "r": r, "gamma": gamma}}
"""
RMS_BACKWARD_GOOD = dict(
    dxh='dout * cache["gamma"]', mean_term="0", axes="-1",
    dgamma="(dout * xh).reshape(-1, dout.shape[-1]).sum(0)",
)  # fmt: skip
RMS_BACKWARD_BUGS = [
    ({"mean_term": "d.mean(-1, keepdims=True)"}, "dx has a mean term"),
    ({"dxh": "dout"}, "forgets gamma"),
    ({"axes": "0"}, "over the batch axis (axis=0)"),
    ({"dgamma": "dout.reshape(-1, dout.shape[-1]).sum(0)"}, "x_hat factor is missing"),
    ({"dgamma": "(dout * xh).sum(-1)"}, "a sum over axis=1"),
]

EXERCISE_BUGS = {
    "layernorm_forward": (LN_FORWARD, LN_FORWARD_TEMPLATE, LN_FORWARD_GOOD, LN_FORWARD_BUGS),
    "layernorm_backward": (LN_BACKWARD, LN_BACKWARD_TEMPLATE, LN_BACKWARD_GOOD, LN_BACKWARD_BUGS),
    "groupnorm_forward": (GN_FORWARD, GN_FORWARD_TEMPLATE, GN_FORWARD_GOOD, GN_FORWARD_BUGS),
    "groupnorm_forward's ValueError": (
        GN_UNEVEN, GN_FORWARD_TEMPLATE, GN_FORWARD_GOOD, GN_UNEVEN_BUGS,
    ),
    "groupnorm_backward": (GN_BACKWARD, GN_BACKWARD_TEMPLATE, GN_BACKWARD_GOOD, GN_BACKWARD_BUGS),
    "instancenorm_forward": (IN_FORWARD, IN_FORWARD_TEMPLATE, IN_FORWARD_GOOD, IN_FORWARD_BUGS),
    "instancenorm_backward": (
        IN_BACKWARD, IN_BACKWARD_TEMPLATE, IN_BACKWARD_GOOD, IN_BACKWARD_BUGS,
    ),
    "rmsnorm_forward": (RMS_FORWARD, RMS_FORWARD_TEMPLATE, RMS_FORWARD_GOOD, RMS_FORWARD_BUGS),
    "rmsnorm_backward": (
        RMS_BACKWARD, RMS_BACKWARD_TEMPLATE, RMS_BACKWARD_GOOD, RMS_BACKWARD_BUGS,
    ),
}  # fmt: skip
"""exercise -> (its grade cells, a template, the template's correct filling, [(bug, hint)])."""

PLANTED = [
    pytest.param(exercise, bug, hint, id=f"{exercise}: {hint}")
    for exercise, (_, _, _, bugs) in EXERCISE_BUGS.items()
    for bug, hint in bugs
]


@pytest.mark.parametrize("exercise", list(EXERCISE_BUGS))
def test_each_template_without_a_bug_keeps_the_points(nb, exercise):
    grade_ids, template, good, _ = EXERCISE_BUGS[exercise]
    nb.assert_keeps_points(grade_ids, template.format(**good))


@pytest.mark.parametrize("exercise, bug, hint", PLANTED)
def test_planted_bugs_lose_the_points_and_are_named(nb, exercise, bug, hint):
    grade_ids, template, good, _ = EXERCISE_BUGS[exercise]
    nb.assert_loses_points(grade_ids, template.format(**{**good, **bug}), hint)


DEFAULT_EPS_BUGS = [
    ("layernorm_forward", "eps=1e-3"),
    ("groupnorm_forward", "eps=1e-6"),
    ("instancenorm_forward", "eps=1e-3"),
    ("rmsnorm_forward", "eps=1e-5"),  # layer norm's default, not RMSNorm's 1e-6
]


@pytest.mark.parametrize("exercise, default", DEFAULT_EPS_BUGS)
def test_a_wrong_default_eps_loses_the_points(nb, exercise, default):
    """Every check passes eps explicitly; a wrong default is caught by a call without it."""
    grade_ids, template, good, _ = EXERCISE_BUGS[exercise]
    code = template.format(**good)
    signature = code[code.index(f"def {exercise}(") :].split("\n", 1)[0]
    wrong = signature.replace(signature[signature.index("eps=") : signature.index(")")], default)
    nb.assert_loses_points(grade_ids, code.replace(signature, wrong), "the default must be eps=")


@pytest.mark.parametrize("bug, _", GN_UNEVEN_BUGS)
def test_a_right_groupnorm_without_its_value_error_keeps_the_forward_points(nb, bug, _):
    """Granular credit: the ValueError is its own requirement, graded in its own cell."""
    code = GN_FORWARD_TEMPLATE.format(**{**GN_FORWARD_GOOD, **bug})
    nb.assert_keeps_points(GN_FORWARD, code)
    nb.assert_loses_points(GN_UNEVEN, code, "must raise ValueError")


def test_a_forward_that_modifies_x_in_place_loses_the_points(nb):
    code = """
    def layernorm_forward(x, gamma, beta, eps=1e-5):
        x -= x.mean(axis=-1, keepdims=True)
        x /= np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps)
        return gamma * x + beta, {}
    """
    nb.assert_loses_points(LN_FORWARD, code, "in place")


def test_a_wrong_forward_is_blamed_before_the_backward(nb):
    code = LN_BACKWARD_TEMPLATE.format(**LN_BACKWARD_GOOD).replace(
        "x.var(-1, keepdims=True)", "x.var(-1, ddof=1, keepdims=True)"
    )
    nb.assert_loses_points(LN_BACKWARD, code, "fix layernorm_forward first")


# --- independent correct code, and PyTorch -----------------------------------------------------

INDEPENDENT = """
def _normalize_sets(sets, eps, center):
    '''sets (S, M): each row normalized by explicit loops; returns (x_hat, jacobians).'''
    x_hat = np.empty(sets.shape)
    jacobians = []
    for i, row in enumerate(sets):
        m = row.size
        shifted = row - (sum(row) / m if center else 0.0)
        scale = (float(np.dot(shifted, shifted)) / m + eps) ** -0.5
        x_hat[i] = shifted * scale
        projector = np.eye(m) - (1.0 / m if center else 0.0)
        jacobians.append(scale * projector - np.outer(shifted, shifted) @ projector * scale**3 / m)
    return x_hat, jacobians


def _pull_back(jacobians, dsets):
    return np.stack([j.T @ d for j, d in zip(jacobians, dsets)])


def layernorm_forward(x, gamma, beta, eps=1e-5):
    rows = np.array(x).reshape(-1, x.shape[-1])
    x_hat, jac = _normalize_sets(rows, eps, center=True)
    x_hat = x_hat.reshape(x.shape)
    return np.einsum("...d,d->...d", x_hat, gamma) + beta, (x_hat, gamma, jac)


def layernorm_backward(dout, cache):
    x_hat, gamma, jac = cache
    d = dout.shape[-1]
    dx = _pull_back(jac, (dout * gamma).reshape(-1, d)).reshape(dout.shape)
    flat = dout.reshape(-1, d)
    return dx, np.einsum("id,id->d", flat, x_hat.reshape(-1, d)), np.einsum("id->d", flat)


def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    n, c, h, w = x.shape
    if c % num_groups:
        raise ValueError(f"num_groups={num_groups} does not divide C={c}")
    size = c // num_groups
    sets = np.stack([x[i, g * size:(g + 1) * size].ravel()
                     for i in range(n) for g in range(num_groups)])
    x_hat, jac = _normalize_sets(sets, eps, center=True)
    x_hat = x_hat.reshape(x.shape)
    out = np.einsum("nchw,c->nchw", x_hat, gamma) + beta[:, None, None]
    return out, (x_hat, gamma, jac, num_groups)


def groupnorm_backward(dout, cache):
    x_hat, gamma, jac, groups = cache
    n = dout.shape[0]
    dsets = np.einsum("nchw,c->nchw", dout, gamma).reshape(n * groups, -1)
    dx = _pull_back(jac, dsets).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, x_hat), np.einsum("nchw->c", dout)


def instancenorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    x_hat, jac = _normalize_sets(np.array(x).reshape(n * c, h * w), eps, center=True)
    x_hat = x_hat.reshape(x.shape)
    return np.einsum("nchw,c->nchw", x_hat, gamma) + beta[:, None, None], (x_hat, gamma, jac)


def instancenorm_backward(dout, cache):
    x_hat, gamma, jac = cache
    n, c = dout.shape[:2]
    dsets = np.einsum("nchw,c->nchw", dout, gamma).reshape(n * c, -1)
    dx = _pull_back(jac, dsets).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, x_hat), np.einsum("nchw->c", dout)


def rmsnorm_forward(x, gamma, eps=1e-6):
    rows = np.array(x).reshape(-1, x.shape[-1])
    x_hat, jac = _normalize_sets(rows, eps, center=False)
    x_hat = x_hat.reshape(x.shape)
    return np.einsum("...d,d->...d", x_hat, gamma), (x_hat, gamma, jac)


def rmsnorm_backward(dout, cache):
    x_hat, gamma, jac = cache
    dx = _pull_back(jac, (dout * gamma).reshape(-1, dout.shape[-1])).reshape(dout.shape)
    d = dout.shape[-1]
    return dx, np.einsum("id,id->d", dout.reshape(-1, d), x_hat.reshape(-1, d))
"""


def test_independent_implementation_keeps_full_points(nb):
    assert nb.score(EXERCISES, code=INDEPENDENT) == 18


OTHER_CORRECT = {
    # the staged graph (dvar, dmean) backward, einsum, GroupNorm through transposes to
    # channels-last, list and dict caches
    "staged backward, einsum, transposes": """
def _fwd_rows(v, eps):
    mu = v.mean(-1, keepdims=True)
    xc = v - mu
    var = (xc * xc).mean(-1, keepdims=True)
    ivar = 1.0 / np.sqrt(var + eps)
    return xc * ivar, (xc, var, ivar)

def _bwd_rows(dxh, st, eps):
    xc, var, ivar = st
    m = xc.shape[-1]
    dvar = np.sum(dxh * xc, axis=-1, keepdims=True) * -0.5 * (var + eps) ** -1.5
    dmu = np.sum(-dxh * ivar, axis=-1, keepdims=True)
    dmu = dmu + dvar * np.mean(-2.0 * xc, axis=-1, keepdims=True)
    return dxh * ivar + dvar * 2.0 * xc / m + dmu / m

def layernorm_forward(x, gamma, beta, eps=1e-5):
    xh, st = _fwd_rows(x, eps)
    out = np.einsum("...d,d->...d", xh, gamma) + beta
    return out, {"st": st, "xh": xh, "g": gamma, "e": eps}

def layernorm_backward(dout, cache):
    dx = _bwd_rows(dout * cache["g"], cache["st"], cache["e"])
    lead = "abcdefg"[: dout.ndim - 1]
    dgamma = np.einsum(f"{lead}z,{lead}z->z", dout, cache["xh"])
    return dx, dgamma, np.einsum(f"{lead}z->z", dout)

def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    N, C, H, W = x.shape
    if C % num_groups != 0:
        raise ValueError("C must be a multiple of num_groups")
    # channels-last then split groups: (N, H, W, G, C/G) -> (N, G, H, W, C/G)
    t = np.transpose(x, (0, 2, 3, 1)).reshape(N, H, W, num_groups, C // num_groups)
    t = np.transpose(t, (0, 3, 1, 2, 4)).reshape(N, num_groups, -1)
    xh_t, st = _fwd_rows(t, eps)
    xh = xh_t.reshape(N, num_groups, H, W, C // num_groups)
    xh = np.transpose(xh, (0, 1, 4, 2, 3)).reshape(x.shape)
    out = np.einsum("nchw,c->nchw", xh, gamma) + beta.reshape(1, C, 1, 1)
    return out, {"st": st, "xh": xh, "g": gamma, "G": num_groups, "e": eps}

def groupnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    G = cache["G"]
    d = dout * cache["g"].reshape(1, C, 1, 1)
    t = np.transpose(d, (0, 2, 3, 1)).reshape(N, H, W, G, C // G)
    t = np.transpose(t, (0, 3, 1, 2, 4)).reshape(N, G, -1)
    dx_t = _bwd_rows(t, cache["st"], cache["e"])
    dx = np.transpose(dx_t.reshape(N, G, H, W, C // G), (0, 1, 4, 2, 3)).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, cache["xh"]), np.einsum("nchw->c", dout)

def instancenorm_forward(x, gamma, beta, eps=1e-5):
    N, C, H, W = x.shape
    xh, st = _fwd_rows(x.reshape(N, C, H * W), eps)
    xh = xh.reshape(x.shape)
    out = np.einsum("nchw,c->nchw", xh, gamma) + beta[None, :, None, None]
    return out, [st, xh, gamma, eps]

def instancenorm_backward(dout, cache):
    st, xh, gamma, eps = cache
    N, C, H, W = dout.shape
    dxh = (dout * gamma[None, :, None, None]).reshape(N, C, -1)
    dx = _bwd_rows(dxh, st, eps).reshape(dout.shape)
    return dx, np.einsum("nchw,nchw->c", dout, xh), dout.sum(axis=(0, 2, 3))

def rmsnorm_forward(x, gamma, eps=1e-6):
    ms = np.einsum("...d,...d->...", x, x)[..., None] / x.shape[-1]
    inv = (ms + eps) ** -0.5
    return x * inv * gamma, {"x": x, "inv": inv, "g": gamma}

def rmsnorm_backward(dout, cache):
    x, inv, g = cache["x"], cache["inv"], cache["g"]
    D = x.shape[-1]
    dxh = dout * g
    # staged: xh = x * inv, inv = (ms + eps)^-1/2, ms = sum(x^2)/D
    dinv = np.sum(dxh * x, axis=-1, keepdims=True)
    dms = dinv * -0.5 * inv ** 3
    dx = dxh * inv + dms * 2 * x / D
    return dx, (dout * x * inv).reshape(-1, D).sum(0)
""",
    # GroupNorm as a 5-D view with statistics over axis=(2, 3, 4), instance norm as G = C,
    # means and variances via np.add.reduce and np.square, tuple caches
    "5-D group view, add.reduce": """
def layernorm_forward(x, gamma, beta, eps=1e-5):
    D = x.shape[-1]
    s = np.add.reduce(x, axis=-1) / D
    xc = x - s[..., None]
    v = np.add.reduce(xc * xc, axis=-1) / D
    std = np.sqrt(v + eps)[..., None]
    xh = xc / std
    return xh * gamma + beta, (xh, std, gamma)

def layernorm_backward(dout, cache):
    xh, std, gamma = cache
    D = dout.shape[-1]
    g = dout * gamma
    dx = (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True)) / std
    axes = tuple(range(dout.ndim - 1))
    return dx, np.sum(dout * xh, axis=axes), np.sum(dout, axis=axes)

def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    N, C, H, W = x.shape
    if C % num_groups:
        raise ValueError("num_groups does not divide C")
    v = x.reshape(N, num_groups, C // num_groups, H, W)
    mu = v.mean(axis=(2, 3, 4), keepdims=True)
    std = np.sqrt(((v - mu) ** 2).mean(axis=(2, 3, 4), keepdims=True) + eps)
    xh = ((v - mu) / std).reshape(N, C, H, W)
    return xh * gamma.reshape(-1, 1, 1) + beta.reshape(-1, 1, 1), (xh, std, gamma, num_groups)

def groupnorm_backward(dout, cache):
    xh, std, gamma, G = cache
    N, C, H, W = dout.shape
    g = (dout * gamma.reshape(-1, 1, 1)).reshape(N, G, C // G, H, W)
    x5 = xh.reshape(N, G, C // G, H, W)
    ax = (2, 3, 4)
    dx = (g - g.mean(axis=ax, keepdims=True) - x5 * (g * x5).mean(axis=ax, keepdims=True)) / std
    dgamma, dbeta = np.sum(dout * xh, axis=(0, 2, 3)), np.sum(dout, axis=(0, 2, 3))
    return dx.reshape(dout.shape), dgamma, dbeta

def instancenorm_forward(x, gamma, beta, eps=1e-5):
    N, C, H, W = x.shape
    return groupnorm_forward(x, gamma, beta, C, eps=eps)

def instancenorm_backward(dout, cache):
    return groupnorm_backward(dout, cache)

def rmsnorm_forward(x, gamma, eps=1e-6):
    r = np.sqrt(np.square(x).sum(axis=-1, keepdims=True) / x.shape[-1] + eps)
    xh = x / r
    return xh * gamma, (xh, r, gamma)

def rmsnorm_backward(dout, cache):
    xh, r, gamma = cache
    g = dout * gamma
    dx = (g - xh * (g * xh).mean(axis=-1, keepdims=True)) / r
    return dx, (dout * xh).reshape(-1, dout.shape[-1]).sum(axis=0)
""",
}
"""More correct implementations a learner may write; each must keep full points."""


@pytest.mark.parametrize("label", list(OTHER_CORRECT))
def test_other_correct_implementations_keep_full_points(nb, label):
    nb.assert_keeps_points(EXERCISES, OTHER_CORRECT[label])


def test_calling_torch_loses_the_points_of_every_exercise(nb):
    code = """
    import importlib

    def _via_torch(fn):
        def forward(x, gamma, *rest):
            torch = importlib.import_module("torch")
            t = torch.tensor(np.array(x))
            return fn(torch, t, gamma, *rest).numpy(), None
        return forward

    def _backward(dout, cache):
        importlib.import_module("torch").zeros(1)
        return (np.zeros(dout.shape), np.zeros(dout.shape[1]), np.zeros(dout.shape[1]))

    layernorm_forward = _via_torch(
        lambda torch, t, g, b, eps=1e-5: torch.nn.functional.layer_norm(
            t, t.shape[-1:], torch.tensor(g), torch.tensor(b), eps))
    groupnorm_forward = _via_torch(
        lambda torch, t, g, b, groups, eps=1e-5: torch.nn.functional.group_norm(
            t, groups, torch.tensor(g), torch.tensor(b), eps))
    instancenorm_forward = _via_torch(
        lambda torch, t, g, b, eps=1e-5: torch.nn.functional.instance_norm(
            t, weight=torch.tensor(g), bias=torch.tensor(b), eps=eps))
    rmsnorm_forward = _via_torch(
        lambda torch, t, g, eps=1e-6: torch.nn.functional.rms_norm(
            t, t.shape[-1:], torch.tensor(g), eps))
    layernorm_backward = groupnorm_backward = instancenorm_backward = _backward
    rmsnorm_backward = _backward
    """
    outcomes = nb.run_tests(EXERCISES, code=code)
    assert not any(o.passed for o in outcomes)
    assert all("PyTorch" in o.message for o in outcomes), [o.message for o in outcomes]


@pytest.mark.parametrize("question, key", [(1, "c"), (2, "a")])
def test_knowledge_check_needs_the_right_letter(nb, question, key):
    grade_id = f"test_kc_q{question}"
    scores = {
        letter: nb.score([grade_id], code=f"answer_q{question} = '{letter}'") for letter in "abcd"
    }
    assert scores == {letter: int(letter == key) for letter in "abcd"}
