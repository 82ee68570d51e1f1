"""utils.checks.normalization_variants: references, cases, known-wrong variants and the
lesson-07 checks.

The references are checked against plain loops over the sets (and finite differences); the
checks against learner-style implementations written here, correct and with one mistake each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.checking import fails as _fails
from utils import reference
from utils.checks import normalization_variants as variants
from utils.checks.hidden import normalization_variants as hidden_variants
from utils.checks.normalization_variants import (
    DX_MISTAKES,
    FORWARD_MISTAKES,
    GROUPNORM,
    INSTANCENORM,
    LAYERNORM,
    RMSNORM,
)
from utils.gradcheck import numerical_gradient, relative_error
from utils.guard import TorchUsedError

ALL = (LAYERNORM, INSTANCENORM, GROUPNORM, RMSNORM)


def _loop_normalize(values: np.ndarray, eps: float, center: bool = True) -> np.ndarray:
    """One set, the slow way."""
    flat = [float(v) for v in values.ravel()]
    mean = sum(flat) / len(flat) if center else 0.0
    second = sum((v - mean) ** 2 for v in flat) / len(flat)
    return (values - mean) / (second + eps) ** 0.5


# --- the references ----------------------------------------------------------------------------


@given(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    size=st.integers(1, 2),
    hw=st.sampled_from([(1, 2), (2, 2), (3, 1)]),
    seed=st.integers(0, 2**16),
)
def test_group_and_instance_references_normalize_each_set(n, groups, size, hw, seed):
    rng = np.random.default_rng(seed)
    c = groups * size
    x = rng.normal(size=(n, c, *hw)) * 3 + rng.normal(size=(1, c, 1, 1))
    gamma, beta = rng.uniform(0.5, 2, c), rng.normal(size=c)
    expected_gn, expected_in = np.empty(x.shape), np.empty(x.shape)
    for i in range(n):
        for g in range(groups):
            part = slice(g * size, (g + 1) * size)
            expected_gn[i, part] = _loop_normalize(x[i, part], 1e-5)
        for k in range(c):
            expected_in[i, k] = _loop_normalize(x[i, k], 1e-5)
    affine = (gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1))
    got_gn = reference.groupnorm_reference(x, gamma, beta, groups)
    assert relative_error(got_gn, affine[0] * expected_gn + affine[1]) < 1e-12
    got_in = reference.instancenorm_reference(x, gamma, beta)
    assert relative_error(got_in, affine[0] * expected_in + affine[1]) < 1e-12


@given(shape=st.sampled_from([(3, 4), (1, 5), (2, 3, 4)]), seed=st.integers(0, 2**16))
def test_layer_and_rms_references_normalize_each_row(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 2, shape[-1]), rng.normal(size=shape[-1])
    rows = x.reshape(-1, shape[-1])
    layer = np.stack([_loop_normalize(r, 1e-5) for r in rows]).reshape(shape)
    rms = np.stack([_loop_normalize(r, 1e-6, center=False) for r in rows]).reshape(shape)
    assert (
        relative_error(reference.layernorm_reference(x, gamma, beta), gamma * layer + beta) < 1e-12
    )
    assert relative_error(reference.rmsnorm_reference(x, gamma), gamma * rms) < 1e-12


@pytest.mark.parametrize("variant", ALL, ids=lambda v: v.prefix)
def test_gradient_references_match_finite_differences(variant):
    case = variants.visible_case(variant)

    def out(x, gamma, beta):
        return variants.forward_reference(variant, variants.VariantCase(
            x, gamma, beta, case.dout, case.eps, "", case.num_groups
        ))  # fmt: skip

    numeric = [
        numerical_gradient(lambda x_: out(x_, case.gamma, case.beta), case.x.copy(), case.dout),
        numerical_gradient(lambda g_: out(case.x, g_, case.beta), case.gamma.copy(), case.dout),
        numerical_gradient(lambda b_: out(case.x, case.gamma, b_), case.beta.copy(), case.dout),
    ]
    analytic = variants.gradients_reference(variant, case)
    assert len(analytic) == (3 if variant.has_beta else 2)
    for a, b in zip(analytic, numeric, strict=False):
        assert relative_error(a, b) < 1e-7


# --- the cases ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL, ids=lambda v: v.prefix)
def test_hidden_cases_cover_what_the_lesson_promises(variant):
    cases = hidden_variants.hidden_cases(variant)
    assert any(c.x.shape[0] == 1 for c in cases)
    assert not all(c.x.flags.c_contiguous for c in cases)
    assert any(c.eps == 1e-3 for c in cases) and any(np.abs(c.x).max() > 1e3 for c in cases)
    for case in [variants.visible_case(variant), *cases]:
        assert not np.any(np.abs(case.gamma) == 1) and np.all(case.beta != 0)
    (quiet,) = [c for c in cases if "near-" in c.label]
    view, axes = variant.view(quiet.x, quiet)
    spread = (view - view.mean(axis=axes, keepdims=True)) ** 2 if variant.center else view**2
    assert spread.mean(axis=axes).min() < 1e-6  # variance (RMSNorm: mean square) ~1e-7


def test_group_cases_include_layer_and_instance_norm_as_special_cases():
    groups = {(c.x.shape[1], c.num_groups) for c in hidden_variants.hidden_cases(GROUPNORM)}
    assert any(g == 1 for _, g in groups) and any(c == g for c, g in groups)
    assert any(c.x.shape[-1] == 1 for c in hidden_variants.hidden_cases(LAYERNORM))  # D = 1


@pytest.mark.parametrize("variant", ALL, ids=lambda v: v.prefix)
def test_every_known_mistake_differs_from_pytorch_on_some_hidden_case(variant):
    """A variant that equals the reference everywhere could never be told apart (or named)."""
    cases = hidden_variants.hidden_cases(variant)
    for description in FORWARD_MISTAKES[variant.prefix]:
        errors = []
        for case in cases:
            wrong = variants.forward_mistakes(variant, case).get(description)
            if wrong is not None:
                errors.append(relative_error(wrong, variants.forward_reference(variant, case)))
        assert max(errors) > 1e-6, description
    for description in DX_MISTAKES[variant.prefix]:
        errors = [
            relative_error(
                variants.backward_mistakes(variant, case)["dx"][description],
                variants.gradients_reference(variant, case)[0],
            )
            for case in cases
        ]
        assert max(errors) > 1e-6, description


# --- learner-style implementations -------------------------------------------------------------


def make_layernorm(axis=-1, ddof=0):
    def layernorm_forward(x, gamma, beta, eps=1e-5):
        mean, var = x.mean(axis, keepdims=True), x.var(axis, ddof=ddof, keepdims=True)
        inv = 1 / np.sqrt(var + eps)
        return gamma * (x - mean) * inv + beta, {"xh": (x - mean) * inv, "inv": inv, "g": gamma}

    return layernorm_forward


def make_layernorm_backward(mean_term=True, dgamma_axis=None):
    def layernorm_backward(dout, cache):
        xh, inv, d = cache["xh"], cache["inv"], dout * cache["g"]
        centred = d - d.mean(-1, keepdims=True) if mean_term else d
        dx = inv * (centred - xh * (d * xh).mean(-1, keepdims=True))
        axes = tuple(range(dout.ndim - 1)) if dgamma_axis is None else dgamma_axis
        return dx, (dout * xh).sum(axes), dout.sum(tuple(range(dout.ndim - 1)))

    return layernorm_backward


def make_groupnorm(guard=True):
    def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
        n, c = x.shape[:2]
        if guard and c % num_groups:
            raise ValueError("num_groups must divide C")
        v = x.reshape(n, num_groups, -1)
        inv = 1 / np.sqrt(v.var(2, keepdims=True) + eps)
        xh = ((v - v.mean(2, keepdims=True)) * inv).reshape(x.shape)
        out = gamma[:, None, None] * xh + beta[:, None, None]
        return out, {"xh": xh, "inv": inv, "g": gamma, "G": num_groups}

    return groupnorm_forward


groupnorm_forward = make_groupnorm()


def groupnorm_backward(dout, cache):
    n = dout.shape[0]
    d = (dout * cache["g"][:, None, None]).reshape(n, cache["G"], -1)
    xh = cache["xh"].reshape(d.shape)
    dx = cache["inv"] * (d - d.mean(2, keepdims=True) - xh * (d * xh).mean(2, keepdims=True))
    return dx.reshape(dout.shape), (dout * cache["xh"]).sum((0, 2, 3)), dout.sum((0, 2, 3))


def instancenorm_forward(x, gamma, beta, eps=1e-5):
    return groupnorm_forward(x, gamma, beta, x.shape[1], eps)


def rmsnorm_forward(x, gamma, eps=1e-6):
    inv = 1 / np.sqrt((x**2).mean(-1, keepdims=True) + eps)
    return gamma * x * inv, {"xh": x * inv, "inv": inv, "g": gamma}


def rmsnorm_backward(dout, cache):
    xh, d = cache["xh"], dout * cache["g"]
    dx = cache["inv"] * (d - xh * (d * xh).mean(-1, keepdims=True))
    return dx, (dout * xh).reshape(-1, dout.shape[-1]).sum(0)


CORRECT = {
    "layernorm": (make_layernorm(), make_layernorm_backward()),
    "instancenorm": (instancenorm_forward, groupnorm_backward),
    "groupnorm": (groupnorm_forward, groupnorm_backward),
    "rmsnorm": (rmsnorm_forward, rmsnorm_backward),
}


def _checks(prefix: str):
    return [getattr(variants, f"check_{prefix}_{part}") for part in ("forward", "backward")]


def test_correct_code_passes_all_sixteen_checks(capsys):
    for prefix, (forward, backward) in CORRECT.items():
        check_forward, check_backward = _checks(prefix)
        check_forward(forward)
        getattr(hidden_variants, f"check_{prefix}_forward_hidden")(forward)
        check_backward(backward, forward)
        getattr(hidden_variants, f"check_{prefix}_backward_hidden")(backward, forward)
    out = capsys.readouterr().out
    assert out.count("— correct") == 4 * (2 + 2 * 2)
    assert "centered differences" in out


@pytest.mark.parametrize(
    "forward, hint",
    [
        (make_layernorm(axis=0), "that is batch norm"),
        (make_layernorm(ddof=1), "unbiased"),
    ],
)
def test_layernorm_forward_mistakes_are_named(forward, hint):
    _fails(variants.check_layernorm_forward, forward, match=hint)
    _fails(hidden_variants.check_layernorm_forward_hidden, forward, match=hint)


@pytest.mark.parametrize(
    "backward, hint",
    [
        (make_layernorm_backward(mean_term=False), "missing the mean term"),
        (make_layernorm_backward(dgamma_axis=-1), "a sum over axis=1"),
    ],
)
def test_layernorm_backward_mistakes_are_named(backward, hint):
    _fails(variants.check_layernorm_backward, backward, make_layernorm(), match=hint)


def test_groupnorm_must_refuse_uneven_groups():
    def wrong_error(x, gamma, beta, num_groups, eps=1e-5):
        if x.shape[1] % num_groups:
            raise TypeError("bad groups")
        return groupnorm_forward(x, gamma, beta, num_groups, eps)

    no_guard = make_groupnorm(guard=False)
    _fails(variants.check_groupnorm_rejects_uneven_groups, no_guard, match="must raise ValueError")
    _fails(
        hidden_variants.check_groupnorm_rejects_uneven_groups_hidden,
        no_guard,
        match="must raise ValueError",
    )
    _fails(variants.check_groupnorm_rejects_uneven_groups, wrong_error, match="raised TypeError")


def test_more_groups_than_channels_must_be_refused_too():
    def refuses_only_a_remainder_below_c(x, gamma, beta, num_groups, eps=1e-5):
        if num_groups <= x.shape[1] and x.shape[1] % num_groups:
            raise ValueError("uneven groups")
        return groupnorm_forward(x, gamma, beta, min(num_groups, x.shape[1]), eps)

    variants.check_groupnorm_rejects_uneven_groups(refuses_only_a_remainder_below_c)
    _fails(
        hidden_variants.check_groupnorm_rejects_uneven_groups_hidden,
        refuses_only_a_remainder_below_c,
        match="must raise ValueError",
    )


def test_the_forward_check_leaves_the_value_error_to_its_own_check():
    """Granular credit: a right forward without the ValueError passes the forward checks."""
    no_guard = make_groupnorm(guard=False)
    variants.check_groupnorm_forward(no_guard)
    hidden_variants.check_groupnorm_forward_hidden(no_guard)


def test_a_wrong_forward_is_blamed_before_its_backward():
    message = _fails(
        variants.check_rmsnorm_backward,
        rmsnorm_backward,
        lambda x, gamma, eps=1e-6: make_layernorm()(x, gamma, np.zeros_like(gamma), eps),
        match="fix",
    )
    assert "the mean is subtracted" in message


def test_finite_differences_use_the_perturbed_argument_of_the_learners_forward():
    """A forward that ignores a perturbation of x has a zero numerical gradient: caught."""
    memo = {}

    def frozen(x, gamma, eps=1e-6):
        key = (x.shape, gamma.tobytes(), eps)
        if key not in memo:
            memo[key] = rmsnorm_forward(x.copy(), gamma, eps)
        return memo[key]

    _fails(variants.check_rmsnorm_backward, rmsnorm_backward, frozen, match="centered differences")


def test_using_torch_gets_no_points():
    def torch_forward(x, gamma, beta, eps=1e-5):
        t = torch.tensor(np.array(x))
        out = torch.nn.functional.layer_norm(t, t.shape[-1:], torch.tensor(gamma), None, eps)
        return out.numpy() + beta, {}

    with pytest.raises(TorchUsedError):
        variants.check_layernorm_forward(torch_forward)
