"""Lesson 07: the notebook's own grade cells (hidden tests included) against planted bugs.

Each of the eight contract functions gets planted bugs (classic mistakes) that must lose its
points with a hint naming the mistake; the solution, its points, its experiments and the
knowledge check are tested here too. Correct code written differently from the solution, and
a PyTorch-using version, are in tests/test_lesson_07_normalization_variants_independent.py.
"""

from __future__ import annotations

import pytest

from tests.harness import Template, planted, solution_tests

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


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    dict(zip(EXERCISES, [2, 3, 2, 1, 3, 1, 1, 2, 3], strict=True))
)


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

_LN_FORWARD_SOURCE = """
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
LN_FORWARD_TEMPLATE = Template(_LN_FORWARD_SOURCE, LN_FORWARD_GOOD)
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

_LN_BACKWARD_SOURCE = """
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
LN_BACKWARD_TEMPLATE = Template(_LN_BACKWARD_SOURCE, LN_BACKWARD_GOOD)
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

_GN_FORWARD_SOURCE = """
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
GN_FORWARD_TEMPLATE = Template(_GN_FORWARD_SOURCE, GN_FORWARD_GOOD)
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

_GN_BACKWARD_SOURCE = """
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
GN_BACKWARD_TEMPLATE = Template(_GN_BACKWARD_SOURCE, GN_BACKWARD_GOOD)
GN_BACKWARD_BUGS = [
    ({"mean_term": "0"}, "missing the mean term"),
    ({"dxh": "dout"}, "forgets gamma"),
    ({"dgamma": "dout.sum((0, 2, 3))"}, "x_hat factor is missing"),
    ({"dgamma": '(dout * cache["xh"]).sum((2, 3))'}, "a sum over axis=(2, 3)"),
    ({"dgamma": '(dout * cache["xh"]).reshape(n, g, -1).sum((0, 2))'}, "shape"),
]

_IN_FORWARD_SOURCE = """
def instancenorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis={axes}, keepdims=True)
    xh = (x - mu) / {denominator}
    return {affine}, {{"xh": xh}}
"""
IN_FORWARD_GOOD = dict(
    axes="(2, 3)", denominator="np.sqrt(x.var(axis=(2, 3), keepdims=True) + eps)",
    affine="gamma.reshape(1, -1, 1, 1) * xh + beta.reshape(1, -1, 1, 1)",
)  # fmt: skip
IN_FORWARD_TEMPLATE = Template(_IN_FORWARD_SOURCE, IN_FORWARD_GOOD)
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

_IN_BACKWARD_SOURCE = """
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
IN_BACKWARD_TEMPLATE = Template(_IN_BACKWARD_SOURCE, IN_BACKWARD_GOOD)
IN_BACKWARD_BUGS = [
    ({"var_term": "0"}, "missing the variance term"),
    ({"dgamma": "(dout * xh).sum((2, 3))"}, "a sum over axis=(2, 3)"),
    ({"dbeta": "(dout * xh).sum((0, 2, 3))"}, "swapped"),
    ({"dgamma": "(dout * xh).sum(0)"}, "a sum over axis=0"),
]

_RMS_FORWARD_SOURCE = """
def rmsnorm_forward(x, gamma, eps=1e-6):
    z = {z}
    ms = (z**2).{reduce}(axis={axes}, keepdims=True)
    xh = z / {denominator}
    return {out}, {{"xh": xh}}
"""
RMS_FORWARD_GOOD = dict(
    z="x", reduce="mean", axes="-1", denominator="np.sqrt(ms + eps)", out="gamma * xh",
)  # fmt: skip
RMS_FORWARD_TEMPLATE = Template(_RMS_FORWARD_SOURCE, RMS_FORWARD_GOOD)
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

_RMS_BACKWARD_SOURCE = """
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
RMS_BACKWARD_TEMPLATE = Template(_RMS_BACKWARD_SOURCE, RMS_BACKWARD_GOOD)
RMS_BACKWARD_BUGS = [
    ({"mean_term": "d.mean(-1, keepdims=True)"}, "dx has a mean term"),
    ({"dxh": "dout"}, "forgets gamma"),
    ({"axes": "0"}, "over the batch axis (axis=0)"),
    ({"dgamma": "dout.reshape(-1, dout.shape[-1]).sum(0)"}, "x_hat factor is missing"),
    ({"dgamma": "(dout * xh).sum(-1)"}, "a sum over axis=1"),
]

EXERCISE_BUGS = {
    "layernorm_forward": (LN_FORWARD, LN_FORWARD_TEMPLATE, LN_FORWARD_BUGS),
    "layernorm_backward": (LN_BACKWARD, LN_BACKWARD_TEMPLATE, LN_BACKWARD_BUGS),
    "groupnorm_forward": (GN_FORWARD, GN_FORWARD_TEMPLATE, GN_FORWARD_BUGS),
    "groupnorm_forward's ValueError": (
        GN_UNEVEN, GN_FORWARD_TEMPLATE, GN_UNEVEN_BUGS,
    ),
    "groupnorm_backward": (GN_BACKWARD, GN_BACKWARD_TEMPLATE, GN_BACKWARD_BUGS),
    "instancenorm_forward": (IN_FORWARD, IN_FORWARD_TEMPLATE, IN_FORWARD_BUGS),
    "instancenorm_backward": (
        IN_BACKWARD, IN_BACKWARD_TEMPLATE, IN_BACKWARD_BUGS,
    ),
    "rmsnorm_forward": (RMS_FORWARD, RMS_FORWARD_TEMPLATE, RMS_FORWARD_BUGS),
    "rmsnorm_backward": (
        RMS_BACKWARD, RMS_BACKWARD_TEMPLATE, RMS_BACKWARD_BUGS,
    ),
}  # fmt: skip
"""exercise -> (its grade cells, its Template, [(bug, hint)])."""

PLANTED = [
    pytest.param(exercise, bug, hint, id=f"{exercise}: {hint}")
    for exercise, (_, _, bugs) in EXERCISE_BUGS.items()
    for bug, hint in bugs
]


@pytest.mark.parametrize("exercise", list(EXERCISE_BUGS))
def test_each_template_without_a_bug_keeps_the_points(nb, exercise):
    grade_ids, template, _ = EXERCISE_BUGS[exercise]
    nb.assert_keeps_points(grade_ids, planted(template))


@pytest.mark.parametrize("exercise, bug, hint", PLANTED)
def test_planted_bugs_lose_the_points_and_are_named(nb, exercise, bug, hint):
    grade_ids, template, _ = EXERCISE_BUGS[exercise]
    nb.assert_loses_points(grade_ids, planted(template, **bug), hint)


DEFAULT_EPS_BUGS = [
    ("layernorm_forward", "eps=1e-3"),
    ("groupnorm_forward", "eps=1e-6"),
    ("instancenorm_forward", "eps=1e-3"),
    ("rmsnorm_forward", "eps=1e-5"),  # layer norm's default, not RMSNorm's 1e-6
]


@pytest.mark.parametrize("exercise, default", DEFAULT_EPS_BUGS)
def test_a_wrong_default_eps_loses_the_points(nb, exercise, default):
    """Every check passes eps explicitly; a wrong default is caught by a call without it."""
    grade_ids, template, _ = EXERCISE_BUGS[exercise]
    code = planted(template)
    signature = code[code.index(f"def {exercise}(") :].split("\n", 1)[0]
    wrong = planted(
        signature, (signature[signature.index("eps=") : signature.index(")")], default, 1)
    )
    nb.assert_loses_points(
        grade_ids, planted(code, (signature, wrong, 1)), "the default must be eps="
    )


@pytest.mark.parametrize("bug, _", GN_UNEVEN_BUGS)
def test_a_right_groupnorm_without_its_value_error_keeps_the_forward_points(nb, bug, _):
    """Granular credit: the ValueError is its own requirement, graded in its own cell."""
    code = planted(GN_FORWARD_TEMPLATE, **bug)
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
    code = planted(
        LN_BACKWARD_TEMPLATE, ("x.var(-1, keepdims=True)", "x.var(-1, ddof=1, keepdims=True)")
    )
    nb.assert_loses_points(LN_BACKWARD, code, "fix layernorm_forward first")


# --- knowledge check -----------------------------------------------------------------------------


@pytest.mark.parametrize("question, key", [(1, "c"), (2, "a")])
def test_knowledge_check_needs_the_right_letter(nb, question, key):
    grade_id = f"test_kc_q{question}"
    scores = {
        letter: nb.score([grade_id], code=f"answer_q{question} = '{letter}'") for letter in "abcd"
    }
    assert scores == {letter: int(letter == key) for letter in "abcd"}
