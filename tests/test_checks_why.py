"""utils.checks.why: the references agree with the closed forms, the laws of scale invariance
hold, every named mistake differs from the right answer, and the checks fail when they should.

The lesson's own grade cells against planted bugs are in
tests/test_lesson_08_why_batchnorm_works.py and, for the covariate-shift exercises,
tests/test_lesson_08_why_batchnorm_works_covariate_shift.py.
"""

from __future__ import annotations

import warnings

import nbformat
import numpy as np
import pytest
import torch
from harness import kernel_server, solution_path
from hypothesis import given
from hypothesis import strategies as st

from grader import checker
from utils import landscape
from utils.checks import why
from utils.checks.hidden import why as hidden
from utils.checks.hidden.why import (
    HIDDEN_ICS_CASES,
    HIDDEN_LANDSCAPE_CASES,
    HIDDEN_SCALE_CASES,
    HIDDEN_SHIFT_CASES,
)
from utils.checks.why import (
    VISIBLE_ICS_CASES,
    VISIBLE_LANDSCAPE_CASES,
    VISIBLE_SCALE_CASES,
    VISIBLE_SHIFT_CASES,
    IcsCase,
    LandscapeCase,
    ScaleCase,
    ShiftCase,
    along_gradient_reference,
    assert_close_scaled,
    gradient_ics_reference,
    input_shift_reference,
    merge_equal,
    output_changes_reference,
    weight_gradient_norms_reference,
)
from utils.diagnose import CheckFailure
from utils.landscape import linear_bn, linear_only

SCALE_CASES = VISIBLE_SCALE_CASES + HIDDEN_SCALE_CASES
LANDSCAPE_CASES = VISIBLE_LANDSCAPE_CASES + HIDDEN_LANDSCAPE_CASES
SHIFT_CASES = VISIBLE_SHIFT_CASES + HIDDEN_SHIFT_CASES
ICS_CASES = VISIBLE_ICS_CASES + HIDDEN_ICS_CASES


# --- the laws the lesson teaches, on the references ---------------------------------------------


@given(
    n=st.integers(2, 12),
    d_in=st.integers(1, 6),
    d_out=st.integers(1, 5),
    alphas=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
)
def test_batchnorm_without_eps_is_invariant_and_its_gradient_follows_one_over_alpha(
    n, d_in, d_out, alphas, seed
):
    weight, x, upstream = ScaleCase(
        "Linear -> BatchNorm (eps=0)", n, d_in, d_out, (), seed
    ).inputs()
    changes = output_changes_reference(linear_bn, weight, x, alphas)
    assert np.all(changes < 1e-9)
    norms = weight_gradient_norms_reference(linear_bn, weight, x, alphas, upstream)
    at_one = weight_gradient_norms_reference(linear_bn, weight, x, [1.0], upstream)[0]
    # atol: with N=2 the normalized outputs are +-1 whatever the weight, so the gradient is
    # zero and only round-off (~1e-12) is left to compare
    np.testing.assert_allclose(norms * np.array(alphas), at_one, rtol=1e-9, atol=1e-10)


@given(alphas=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_without_batchnorm_both_laws_fail(alphas, seed):
    weight, x, upstream = ScaleCase("Linear without BatchNorm", 7, 4, 3, (), seed).inputs()
    changes = output_changes_reference(linear_only, weight, x, alphas)
    np.testing.assert_allclose(changes, np.abs(np.array(alphas) - 1), rtol=1e-12, atol=1e-14)
    norms = weight_gradient_norms_reference(linear_only, weight, x, alphas, upstream)
    expected = np.linalg.norm(upstream.numpy().T @ x.numpy())
    np.testing.assert_allclose(norms, expected, rtol=1e-12)


def test_eps_breaks_the_invariance_only_for_small_weights():
    weight, x, _ = ScaleCase("Linear -> BatchNorm (eps=1e-5)", 32, 8, 6, (), 2).inputs()
    layer = why.LAYERS["Linear -> BatchNorm (eps=1e-5)"]
    small, large = output_changes_reference(layer, weight, x, [1e-3, 10.0])
    assert small > 0.1 and large < 1e-4


# --- two routes to the same numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    "case", [c for c in LANDSCAPE_CASES if c.closed_form() is not None], ids=str
)
def test_landscape_closed_forms_match_autograd(case):
    losses, changes = case.closed_form()
    ref = along_gradient_reference(case)
    np.testing.assert_allclose(ref["losses"], losses, rtol=1e-12)
    np.testing.assert_allclose(ref["changes"], changes, rtol=1e-10)


def test_every_landscape_kind_is_covered():
    kinds = {c.kind for c in LANDSCAPE_CASES}
    assert kinds == {"quadratic", "saddle", "least squares", "mlp", "mlp with BatchNorm"}


@pytest.mark.parametrize("case", [c for c in ICS_CASES if c.kind == "deep linear"], ids=str)
def test_deep_linear_closed_form_matches_autograd(case):
    difference, cosine, norm = case.closed_form()
    ref = gradient_ics_reference(case)
    assert ref[0] == pytest.approx(difference, rel=1e-10, abs=1e-14 * norm)
    assert ref[1] == pytest.approx(cosine, rel=1e-12)
    assert ref[2] == pytest.approx(norm, rel=1e-12)


def test_the_first_layer_has_no_covariate_shift():
    difference, cosine, _ = IcsCase("deep linear", 0, 0.3, 2).closed_form()
    assert difference == 0.0 and cosine == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("case", [c for c in SHIFT_CASES if c.kind == "additive"], ids=str)
def test_additive_shift_closed_form_matches_the_hooks(case):
    np.testing.assert_allclose(input_shift_reference(case)[:2], case.closed_form(), atol=1e-14)


def test_cases_rebuild_identically():
    for case in (LANDSCAPE_CASES[1], SHIFT_CASES[1], ICS_CASES[1]):
        first, second = case.build()[0], case.build()[0]
        for p, q in zip(first.parameters(), second.parameters(), strict=True):
            assert torch.equal(p, q)


# --- every named mistake is detectable ----------------------------------------------------------


def _far(a, b) -> bool:
    return not np.allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)


def test_each_landscape_mistake_differs_from_the_answer_on_some_case():
    for what in ("losses", "changes"):
        hints = why._variants(LANDSCAPE_CASES[0], what)
        for hint in hints:
            assert any(
                _far(why._variants(c, what)[hint], why._expected(c, what)) for c in LANDSCAPE_CASES
            ), hint


def test_each_ics_mistake_differs_from_the_answer_on_some_case():
    for options in ({"updated": "through"}, {"updated": "all"}, {"sign": 1.0}):
        assert any(
            _far(gradient_ics_reference(c, **options)[:2], gradient_ics_reference(c)[:2])
            for c in ICS_CASES
        ), options
    # "only the previous module" differs from "every earlier module" once two modules precede
    case = IcsCase("deep linear", 2, 0.3, 0)
    assert _far(
        gradient_ics_reference(case, updated="previous")[:2], gradient_ics_reference(case)[:2]
    )


def test_each_shift_mistake_differs_from_the_answer_on_some_case():
    ref = {c: input_shift_reference(c) for c in SHIFT_CASES}
    assert any(_far(input_shift_reference(c, where="output")[:2], ref[c][:2]) for c in SHIFT_CASES)
    assert any(_far(input_shift_reference(c, eval_mode=True)[:2], ref[c][:2]) for c in SHIFT_CASES)
    in_eval = [c for c in SHIFT_CASES if c.eval_mode]
    assert any(_far(input_shift_reference(c, train_mode=True)[:2], ref[c][:2]) for c in in_eval)
    assert any(_far(ref[c][3], ref[c][1]) for c in SHIFT_CASES)  # unbiased std
    assert any(_far(ref[c][2], ref[c][0]) for c in SHIFT_CASES)  # elementwise


def test_the_scale_cases_cover_both_laws_and_their_failure():
    names = {c.layer_name for c in SCALE_CASES}
    assert {"Linear -> BatchNorm (eps=0)", "Linear without BatchNorm"} <= names
    assert any(c.n == 2 for c in SCALE_CASES) and any(c.d_out == 1 for c in SCALE_CASES)


# --- the comparison helpers ---------------------------------------------------------------------


def test_assert_close_scaled_accepts_rounding_around_zero():
    assert assert_close_scaled("x", [1e-16, -2e-16], [0.0, 0.0], 1.0) < 1e-15


def test_assert_close_scaled_names_the_matching_mistake_or_falls_back():
    with pytest.raises(CheckFailure, match="it looks like doubled"):
        assert_close_scaled("x", [2.0, 4.0], [1.0, 2.0], 2.0, {"doubled": np.array([2.0, 4.0])})
    with pytest.raises(CheckFailure, match="no known mistake matches; try again"):
        assert_close_scaled("x", [3.0, 4.0], [1.0, 2.0], 2.0, {}, "try again")


def test_assert_close_scaled_accepts_tensors_and_rejects_wrong_shapes():
    assert assert_close_scaled("x", torch.tensor([1.0, 2.0]), [1.0, 2.0], 1.0) == 0.0
    with pytest.raises(CheckFailure, match="shape"):
        assert_close_scaled("x", [1.0], [1.0, 2.0], 1.0)


def test_merge_equal_joins_the_hints_of_equal_values():
    merged = merge_equal({"a": np.array([1.0]), "b": np.array([2.0]), "c": np.array([1.0])})
    assert set(merged) == {"a; or c", "b"}


# --- the checks themselves, on implementations written here -------------------------------------


def _output_changes(layer, weight, x, alphas):
    f0 = layer(x, weight)
    return [float((layer(x, a * weight) - f0).norm() / f0.norm()) for a in alphas]


def _losses_without_restoring(model, loss_fn, step_sizes):
    params = list(model.parameters())
    grads = torch.autograd.grad(loss_fn(), params)
    start = [p.detach().clone() for p in params]
    out = []
    with torch.no_grad():
        for eta in step_sizes:
            for p, w, g in zip(params, start, grads, strict=True):
                p.copy_(w - eta * g)
            out.append(float(loss_fn()))
    return out


def test_check_output_changes_passes_a_correct_implementation(capsys):
    why.check_output_changes(_output_changes)
    hidden.check_output_changes_hidden(_output_changes)
    assert "correct" in capsys.readouterr().out


def test_a_measurement_that_leaves_the_weights_moved_fails():
    with pytest.raises(CheckFailure, match="left the parameters moved"):
        why.check_losses_along_gradient(_losses_without_restoring)


def test_a_shift_with_a_leftover_hook_fails():
    def input_shift(model, layer, x, update):
        layer.register_forward_pre_hook(lambda m, i: None)
        update()
        return 0.0, 0.0

    with pytest.raises(CheckFailure, match="left a hook registered"):
        why.check_input_shift(input_shift)


def _shift_recorded_in(forced_mode: bool | None, restore: bool):
    """input_shift that records with the model forced into ``forced_mode`` (None: left in its
    own mode); with ``restore``, the model's own mode is put back after each recording."""

    def input_shift(model, layer, x, update):
        def record():
            seen, was = [], model.training
            handle = layer.register_forward_pre_hook(lambda m, i: seen.append(i[0].clone()))
            with torch.no_grad():
                (model if forced_mode is None else model.train(forced_mode))(x)
            handle.remove()
            if restore:
                model.train(was)
            return seen[0]

        before = record()
        update()
        after = record()
        return (
            float((after.mean(0) - before.mean(0)).abs().mean()),
            float((after.std(0, correction=0) - before.std(0, correction=0)).abs().mean()),
        )

    return input_shift


def test_the_hidden_shift_cases_hand_over_a_batchnorm_model_in_eval_mode():
    (case,) = [c for c in HIDDEN_SHIFT_CASES if c.eval_mode]
    model, *_ = case.build()
    assert not model.training
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model[: case.layer])
    assert "eval mode" in case.label


@pytest.mark.parametrize("restore", [True, False])
def test_recording_in_forced_training_mode_fails_the_eval_case_and_is_named(restore):
    forced = _shift_recorded_in(True, restore)
    why.check_input_shift(forced)  # every visible case starts in training mode: no difference
    with pytest.raises(CheckFailure, match="switched to training mode while recording") as info:
        hidden.check_input_shift_hidden(forced)
    assert "model in eval mode" in str(info.value)


def test_recording_in_the_models_own_mode_passes_every_case():
    hidden.check_input_shift_hidden(_shift_recorded_in(None, False))


def test_case_labels_name_the_case():
    assert "quadratic" in LandscapeCase("quadratic", 4, (0.1,), 0).label
    assert "module 2" in ShiftCase("additive", 2, 0).label
    assert "lr=0.3" in IcsCase("deep linear", 2, 0.3, 0).label


def test_a_harmless_warning_of_the_learner_never_reaches_the_test_cell():
    # A Python warning, not torch's "float() of a tensor that requires grad": torch warns that
    # one once per process, so whether it fires here would depend on the tests run before.
    def noisy_output_changes(layer, weight, x, alphas):
        warnings.warn("a harmless warning of the learner's code", UserWarning, stacklevel=1)
        f0 = layer(x, weight)
        return [float((layer(x, a * weight) - f0).norm() / f0.norm()) for a in alphas]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        noisy_output_changes(linear_only, torch.ones(2, 2), torch.eye(2), [2.0])
        assert caught, "the planted warning must be real for this test to mean anything"
        caught.clear()
        why.check_output_changes(noisy_output_changes)
    assert not caught


# --- graded: the checks in the checker, the learner's functions in a kernel ---------------------

EXERCISES = {
    "output_changes": ("check_output_changes", "check_output_changes_hidden"),
    "weight_gradient_norms": ("check_weight_gradient_norms", "check_weight_gradient_norms_hidden"),
    "losses_along_gradient": ("check_losses_along_gradient", "check_losses_along_gradient_hidden"),
    "gradient_changes": ("check_gradient_changes", "check_gradient_changes_hidden"),
    "input_shift": ("check_input_shift", "check_input_shift_hidden"),
    "gradient_ics": ("check_gradient_ics", "check_gradient_ics_hidden"),
}


def _solutions() -> dict:
    """The solution notebook's six measurements, defined in a namespace of their own."""
    namespace = {"np": np, "torch": torch}
    for cell in nbformat.read(solution_path("08_why_batchnorm_works"), as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in EXERCISES:
            exec(cell.source, namespace)
    return {name: namespace[name] for name in EXERCISES}


@pytest.fixture
def kernel(monkeypatch):
    """A kernel-side server in a thread whose namespace (a dict) holds what the lesson's set-up
    cell gives every kernel, ``run_on_case``; yields (run a test cell's source, namespace)."""
    namespace: dict = {"run_on_case": landscape.run_on_case}
    trusted = {**vars(why), **vars(hidden)}
    with kernel_server(monkeypatch, namespace) as link:
        yield (lambda source: checker.run_cell(link, source, trusted, 60.0)), namespace


@pytest.mark.parametrize("name", list(EXERCISES))
def test_the_solution_passes_every_check_with_its_function_in_the_kernel(kernel, name):
    run, namespace = kernel
    namespace[name] = _solutions()[name]
    verdict = run("\n".join(f"{check}({name})" for check in EXERCISES[name]))
    assert verdict.passed, verdict.message
    assert verdict.printed.count("correct") == 2


def test_a_measurement_in_the_kernel_that_leaves_the_weights_moved_fails(kernel):
    run, namespace = kernel
    namespace["losses_along_gradient"] = _losses_without_restoring
    verdict = run("check_losses_along_gradient(losses_along_gradient)")
    assert not verdict.passed and "left the parameters moved" in verdict.message


def test_a_kernel_change_of_the_weight_in_place_and_a_leftover_hook_are_seen(kernel):
    def output_changes(layer, weight, x, alphas):
        weight.mul_(2.0)
        return [0.0] * len(alphas)

    def input_shift(model, layer, x, update):
        layer.register_forward_pre_hook(lambda m, i: None)
        update()
        return 0.0, 0.0

    run, namespace = kernel
    namespace.update(output_changes=output_changes, input_shift=input_shift)
    assert "changed weight in place" in run("check_output_changes(output_changes)").message
    assert "left a hook registered" in run("check_input_shift(input_shift)").message


@pytest.mark.parametrize(
    "report",
    [
        "a string",
        {"result": [0.0] * 5, "training": True, "ids_before": [1], "ids_after": [1]},
        {"result": [0.0] * 5, "training": "yes"},
    ],  # fmt: skip
    ids=["not a dict", "no parameters", "a mode that is not a bool"],
)
def test_a_malformed_report_from_the_kernel_fails_the_check(kernel, report):
    run, namespace = kernel
    namespace["run_on_case"] = lambda fn, problem, case: report
    namespace["losses_along_gradient"] = _solutions()["losses_along_gradient"]
    verdict = run("check_losses_along_gradient(losses_along_gradient)")
    assert not verdict.passed and "malformed" in verdict.message, verdict.message
