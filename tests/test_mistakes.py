"""utils.mistakes: every known-wrong variant really is wrong, and by enough to be caught."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from utils import mistakes
from utils.cases import make_case, visible_case
from utils.checks.hidden.cases import hidden_cases
from utils.diagnose import TIGHT
from utils.gradcheck import relative_error
from utils.mistakes import catalogue
from utils.mistakes.catalogue import batch_sets, wrong_forward
from utils.reference import (
    batchnorm_forward_reference,
    batchnorm_gradients_reference,
    batchnorm_statistics_reference,
    normalize_gradients_reference,
    normalize_reference,
)

ALL_CASES = [visible_case(), *hidden_cases()]


def _forward_errors(description):
    errors = {}
    for case in ALL_CASES:
        expected = batchnorm_forward_reference(case.x, case.gamma, case.beta, case.eps)
        wrong = mistakes.forward_mistakes(case)[description]
        errors[case.label] = relative_error(wrong, expected) if wrong.shape == expected.shape else 1
    return errors


@pytest.mark.parametrize("description", list(mistakes.FORWARD_MISTAKES))
def test_each_forward_mistake_is_caught_on_some_hidden_case(description):
    hidden = {c.label for c in hidden_cases()}
    errors = _forward_errors(description)
    assert max(e for label, e in errors.items() if label in hidden) > 100 * TIGHT


@pytest.mark.parametrize("word", ["unbiased", "outside the square root"])
def test_classic_forward_mistakes_fail_on_every_visible_and_hidden_case(word):
    (description,) = [d for d in mistakes.FORWARD_MISTAKES if word in d]
    errors = _forward_errors(description)
    assert min(errors.values()) > 10 * TIGHT, errors


def _eps_outside_sqrt(x, gamma, beta, eps):
    return wrong_forward(batch_sets(2), x, gamma, beta, eps, spread="sqrt(v) + eps")


def test_eps_outside_the_sqrt_is_small_on_unit_variance_and_huge_on_a_near_constant_feature():
    wrong = _eps_outside_sqrt
    unit = make_case((64, 3), 0, "t")
    unit.x[...] = (unit.x - unit.x.mean(0)) / unit.x.std(0)  # exactly unit variance
    expected = batchnorm_forward_reference(unit.x, 2.0 * np.ones(3), 0.5 * np.ones(3))
    err = relative_error(wrong(unit.x, 2.0 * np.ones(3), 0.5 * np.ones(3), 1e-5), expected)
    assert 1e-6 < err < 1e-4  # about eps / 2
    (near,) = [c for c in hidden_cases() if "near-constant" in c.label]
    expected = batchnorm_forward_reference(near.x, near.gamma, near.beta, near.eps)
    assert relative_error(wrong(near.x, near.gamma, near.beta, near.eps), expected) > 0.1


@pytest.mark.parametrize("description", list(mistakes.DX_MISTAKES))
def test_each_dx_mistake_differs_from_autograd(description):
    worst = 0.0
    for case in hidden_cases():
        dx, _, _ = batchnorm_gradients_reference(case.x, case.gamma, case.beta, case.dout, case.eps)
        worst = max(worst, relative_error(mistakes.backward_mistakes(case)["dx"][description], dx))
    assert worst > 100 * TIGHT


@pytest.mark.parametrize("which", ["dgamma", "dbeta"])
def test_each_parameter_gradient_mistake_differs_from_autograd_on_every_case(which):
    for case in ALL_CASES:
        grads = batchnorm_gradients_reference(case.x, case.gamma, case.beta, case.dout, case.eps)
        expected = dict(zip(("dx", "dgamma", "dbeta"), grads, strict=True))[which]
        for description, wrong in mistakes.backward_mistakes(case)[which].items():
            assert relative_error(wrong, expected) > 100 * TIGHT, (case.label, description)


def test_statistics_mistakes_differ_from_the_reference_on_every_case():
    eps_placement = ("has no eps", "eps outside")  # visible only when var is not >> eps
    for case in ALL_CASES:
        expected = batchnorm_statistics_reference(case.x, case.eps)
        near_constant = "near-constant" in case.label
        for key, variants in mistakes.statistics_mistakes(case).items():
            if key == "x_hat":  # eps-sized on most cases: see the test below
                continue
            for description, wrong in variants.items():
                if any(w in description for w in eps_placement) and not near_constant:
                    continue
                assert relative_error(wrong, expected[key]) > 100 * TIGHT, (case.label, description)


def test_each_x_hat_mistake_differs_from_the_reference_on_some_hidden_case():
    worst = {}
    for case in hidden_cases():
        expected = batchnorm_statistics_reference(case.x, case.eps)["x_hat"]
        for description, wrong in mistakes.statistics_mistakes(case)["x_hat"].items():
            err = relative_error(wrong, expected)
            worst[description] = max(worst.get(description, 0.0), err)
    assert worst and min(worst.values()) > 100 * TIGHT, worst


def test_wrong_variants_stay_silent_on_an_exactly_constant_feature():
    case = make_case((5, 3), 0, "t")
    case.x[:, 1] = 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mistakes.forward_mistakes(case)
        mistakes.statistics_mistakes(case)
        mistakes.backward_mistakes(case)


def test_backward_mistake_mapping_is_keyed_by_gradient_with_matching_shapes():
    case = visible_case()
    mapping = mistakes.backward_mistakes(case)
    assert set(mapping) == {"dx", "dgamma", "dbeta"}
    shapes = {"dx": case.x.shape, "dgamma": case.gamma.shape, "dbeta": case.beta.shape}
    for which, variants in mapping.items():
        assert variants
        assert all(np.shape(v) == shapes[which] for v in variants.values())


# --- the one table of descriptions ------------------------------------------------------------


@pytest.mark.parametrize("key", list(mistakes.DESCRIPTIONS))
def test_every_description_fills_with_the_batchnorm_words(key):
    text = mistakes.describe(key)
    assert "{" not in text and "}" not in text, text
    assert text == text.strip() and not text.endswith(".")  # it completes "it looks like ..."


def test_lessons_fill_the_same_entry_with_their_own_words():
    assert mistakes.describe("eps outside sqrt") == (
        "eps is added outside the square root: use sqrt(var + eps), not sqrt(var) + eps"
    )
    assert mistakes.describe("eps outside sqrt", v="mean square") == (
        "eps is added outside the square root: use sqrt(mean square + eps), not "
        "sqrt(mean square) + eps"
    )
    assert mistakes.describe("dx without gamma", dout="dy") == (
        "dx forgets gamma: dx_hat = dy * gamma, not dy"
    )


def test_unknown_mistake_key_is_a_key_error():
    with pytest.raises(KeyError):
        mistakes.describe("eps inside out")


@pytest.mark.parametrize("axes", [(0,), (1,), None, (0, 2)])
def test_standardize_has_zero_mean_and_unit_mean_square_over_its_axes(axes):
    x = np.random.default_rng(2).normal(size=(4, 3, 5)) * 3 + 2
    out = mistakes.standardize(x, axes, 0.0)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose((out**2).mean(axis=axes), 1, rtol=1e-12)


# --- the catalogue: without a switch, every form is the right normalization -------------------

FORMS = [
    ("batch", (6, 3), batch_sets(2), 0),
    ("batch", (3, 2, 4, 5), batch_sets(4), 0),
    ("batch", (4, 3, 5), batch_sets(3), 0),
    ("layer", (5, 7), catalogue.LAYER, 0),
    ("layer", (2, 3, 6), catalogue.LAYER, 0),
    ("instance", (2, 3, 4, 5), catalogue.INSTANCE, 0),
    ("group", (2, 6, 3, 2), catalogue.group_sets(3), 3),
    ("rms", (4, 6), catalogue.RMS, 0),
]


def _form_case(form, shape, seed=5):
    param_axis = -1 if form in ("layer", "rms") else 1
    return make_case(shape, seed, f"{form} {shape}", param_axis=param_axis, eps=1e-3)


@pytest.mark.parametrize(("form", "shape", "sets", "groups"), FORMS)
def test_without_a_switch_the_wrong_forward_is_pytorchs_normalization(form, shape, sets, groups):
    case = _form_case(form, shape)
    beta = None if form == "rms" else case.beta
    expected = normalize_reference(form, case.x, case.gamma, beta, case.eps, groups)
    got = wrong_forward(sets, case.x, case.gamma, beta, case.eps)
    assert relative_error(got, expected) < 1e-13


@pytest.mark.parametrize(("form", "shape", "sets", "groups"), FORMS)
def test_without_a_switch_the_gradients_are_pytorchs(form, shape, sets, groups):
    case = _form_case(form, shape)
    grads = normalize_gradients_reference(
        form, case.x, case.gamma, case.beta, case.dout, case.eps, groups
    )
    dx = catalogue.wrong_dx(sets, case.x, case.gamma, case.dout, case.eps)
    right = {"dgamma": "sum(dout * x_hat)", "dbeta": "sum(dout)"}
    params = catalogue.parameter_mistakes(sets, case.x, case.dout, case.eps, right)
    assert relative_error(dx, grads[0]) < 1e-12
    assert relative_error(params["dgamma"], grads[1]) < 1e-12
    if form != "rms":
        assert relative_error(params["dbeta"], grads[2]) < 1e-12


@pytest.mark.parametrize(("form", "shape", "sets", "groups"), FORMS)
def test_each_forward_switch_changes_the_output(form, shape, sets, groups):
    case = _form_case(form, shape)
    right = wrong_forward(sets, case.x, case.gamma, case.beta, case.eps)
    switches = [
        {"ddof": 1},
        {"spread": "sqrt(v) + eps"},
        {"spread": "v + eps"},
        {"spread": "1 / sqrt(v + eps)"},
        {"center": not sets.center},
        {"average": False},
        {"over": catalogue.WHOLE},
        {"affine": "beta * x_hat + gamma"},
        {"affine": "x_hat"},
    ]
    for s in switches:
        wrong = wrong_forward(sets, case.x, case.gamma, case.beta, case.eps, **s)
        assert relative_error(wrong, right) > 1e-4, s


def test_dx_switches_match_the_staged_graph_they_describe():
    """ddof=1 is the staged backward with d var / d x = 2 (x - mean) / (N - 1); wrong_power is
    the one with d inv_std / d var = -1/2 (var + eps)^(-1/2)."""
    case = make_case((7, 3), 3, "t")
    x, gamma, dout, eps = case.x, case.gamma, case.dout, case.eps
    n, centered = len(x), x - x.mean(axis=0)
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
    dx_hat = dout * gamma

    def staged(dvar, divisor):
        dcentered = dx_hat * inv_std + dvar * 2 * centered / divisor
        return dcentered - dcentered.mean(axis=0)

    unbiased = staged(-0.5 * (dx_hat * centered).sum(0) * inv_std**3, n - 1)
    power = staged(-0.5 * (dx_hat * centered).sum(0) * inv_std, n)
    sets = batch_sets(2)
    got_unbiased = catalogue.wrong_dx(sets, x, gamma, dout, eps, ddof=1)
    got_power = catalogue.wrong_dx(sets, x, gamma, dout, eps, wrong_power=True)
    assert relative_error(got_unbiased, unbiased) < 1e-12
    assert relative_error(got_power, power) < 1e-12


def test_a_pick_may_be_a_lessons_own_function_with_the_catalogues_signature():
    case = make_case((4, 2), 1, "t")
    seen = []

    def own(sets, x, gamma, beta, eps):
        seen.append(sets)
        return None if eps > 1 else x * 0

    picks = {"own": own, "cannot run": lambda *args: None, "eps": {"eps": 0.0}}
    wrong = catalogue.forward_mistakes(batch_sets(2), case.x, case.gamma, case.beta, 1e-5, picks)
    assert list(wrong) == ["own", "eps"] and seen == [batch_sets(2)]
