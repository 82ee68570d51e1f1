"""utils.checks.activations: references, known-wrong variants, cases and the checks themselves.

The checks must pass a correct implementation, fail every known mistake with its hint, and
rest on references that agree with an independent computation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from utils.checks import activations as A
from utils.checks.hidden import activations as hidden_activations
from utils.diagnose import TIGHT, CheckFailure, name_mistake
from utils.gradcheck import relative_error
from utils.guard import TorchUsedError

# --- independent numpy implementations (not the notebook's solution code) ----------------------


def forward(x, weights, activation):
    out, a = [], x
    for w in weights:
        z = a @ w
        a = np.tanh(z) if activation == "tanh" else np.where(z > 0, z, 0.0)
        out.append(a)
    return out


def statistics(activations):
    return {
        "mean": np.array([np.mean(a) for a in activations]),
        "std": np.array([np.sqrt(np.var(a)) for a in activations]),
        "saturated": np.array([np.count_nonzero(np.abs(a) > 0.99) / a.size for a in activations]),
        "zero": np.array([np.count_nonzero(a == 0) / a.size for a in activations]),
        "dead": np.array([np.mean(~np.any(a != 0, axis=0)) for a in activations]),
    }


def init(dims, scale, rng):
    return [
        rng.normal(0.0, scale / math.sqrt(i), (i, o))
        for i, o in zip(dims[:-1], dims[1:], strict=True)
    ]


ALL_MLP_CASES = A.visible_mlp_cases() + hidden_activations.hidden_mlp_cases()
ALL_STATISTICS_CASES = A.visible_statistics_cases() + hidden_activations.hidden_statistics_cases()


# --- references ------------------------------------------------------------------------------


@given(
    n=st.integers(1, 6),
    dims=st.lists(st.integers(1, 7), min_size=2, max_size=5),
    activation=st.sampled_from(A.ACTIVATIONS),
    seed=st.integers(0, 2**16),
)
def test_mlp_reference_matches_numpy(n, dims, activation, seed):
    case = A.make_mlp_case(dims, n, activation, 1.3, seed)
    got = A.mlp_activations_reference(case.x, case.weights, activation)
    expected = forward(case.x, case.weights, activation)
    assert [g.shape for g in got] == [(n, d) for d in dims[1:]]
    for g, e in zip(got, expected, strict=True):
        assert relative_error(g, e) < 1e-13


@pytest.mark.parametrize(("activations", "label"), ALL_STATISTICS_CASES)
def test_statistics_reference_matches_numpy(activations, label):
    got = A.layer_statistics_reference(activations)
    expected = statistics(activations)
    assert set(got) == set(A.STATISTICS)
    for key in A.STATISTICS:
        assert got[key].shape == (len(activations),)
        assert relative_error(got[key], expected[key]) < 1e-13, (key, label)


def test_statistics_reference_on_a_hand_computed_layer():
    a = np.array([[0.0, 0.995, -1.0], [0.0, 0.5, 0.99], [0.0, -0.5, 2.0], [0.0, 0.25, 0.0]])
    stats = A.layer_statistics_reference([a])
    assert stats["mean"][0] == pytest.approx(a.sum() / 12)
    assert stats["std"][0] == pytest.approx(math.sqrt(np.mean((a - a.sum() / 12) ** 2)))
    assert stats["saturated"][0] == pytest.approx(3 / 12)  # 0.995, -1 and 2; not 0.99
    assert stats["zero"][0] == pytest.approx(5 / 12)
    assert stats["dead"][0] == pytest.approx(1 / 3)


@pytest.mark.parametrize(("nonlinearity", "d_in"), [("relu", 300), ("linear", 500)])
def test_init_std_is_pytorchs_fan_in_rule(nonlinearity, d_in):
    torch.manual_seed(0)
    w = torch.empty(200, d_in, dtype=torch.float64)  # PyTorch stores (fan_out, fan_in)
    torch.nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity=nonlinearity)
    expected = A.init_std(d_in, torch.nn.init.calculate_gain(nonlinearity))
    assert abs(A._z_std(w.numpy(), expected)) < A.SIGMAS


# --- known-wrong variants --------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_MLP_CASES, ids=lambda c: c.label)
def test_each_mlp_mistake_is_named_where_it_first_fails(case):
    expected = A.mlp_activations_reference(case.x, case.weights, case.activation)
    mistakes = A.mlp_mistakes(case.x, case.weights, case.activation)
    last = len(expected) - 1
    for description, wrong in mistakes.items():
        errors = [relative_error(w, e) for w, e in zip(wrong, expected, strict=True)]
        if max(errors) <= 1e3 * TIGHT:
            continue  # coincides with the truth on this case (e.g. positive ReLU outputs)
        first = next(i for i, err in enumerate(errors) if err > 1e3 * TIGHT)
        named = {
            d: v[first]
            for d, v in mistakes.items()
            if not (d == A.PRE_ACTIVATIONS and first == last)
        }
        # On the last layer, pre-activations and a missing last activation are the same array.
        same = description == A.PRE_ACTIVATIONS and first == last
        assert name_mistake(wrong[first], named) == (A.NO_LAST_ACTIVATION if same else description)


@pytest.mark.parametrize("case", A.visible_mlp_cases(), ids=lambda c: c.label)
def test_every_mlp_mistake_is_caught_by_the_visible_cases(case):
    expected = A.mlp_activations_reference(case.x, case.weights, case.activation)
    for description, wrong in A.mlp_mistakes(case.x, case.weights, case.activation).items():
        worst = max(relative_error(w, e) for w, e in zip(wrong, expected, strict=True))
        assert worst > 1e3 * TIGHT, description


def test_every_statistics_mistake_is_caught_and_named_by_the_visible_cases():
    for key in A.STATISTICS:
        for description in A.statistics_mistakes(A.visible_statistics_cases()[0][0])[key]:
            caught = False
            for activations, _ in A.visible_statistics_cases():
                wrong = A.statistics_mistakes(activations)[key]
                expected = A.layer_statistics_reference(activations)[key]
                if relative_error(wrong[description], expected) > 1e3 * TIGHT:
                    caught = True
                    assert name_mistake(wrong[description], wrong) == description
            assert caught, (key, description)


@pytest.mark.parametrize("case", (A.VISIBLE_INIT, *hidden_activations.HIDDEN_INIT), ids=str)
def test_init_mistakes_are_far_outside_the_tolerance(case):
    for d_in, d_out in zip(case.dims[:-1], case.dims[1:], strict=True):
        n = d_in * d_out
        right = A.init_std(d_in, case.scale)
        for description, wrong in A.init_std_mistakes(d_in, d_out, case.scale).items():
            if math.isclose(wrong, right):
                assert d_in == d_out, description  # fan-in and fan-out rules coincide only here
                continue
            separation = abs(wrong / right - 1) * math.sqrt(2 * n)
            assert separation > 3 * A.SIGMAS, (case, description)


def test_the_visible_init_case_separates_every_mistake():
    dims = A.VISIBLE_INIT.dims
    assert all(a != b for a, b in zip(dims[:-1], dims[1:], strict=True))
    assert A.VISIBLE_INIT.scale not in (1.0, math.sqrt(2))


# --- cases -----------------------------------------------------------------------------------


def test_hidden_cases_cover_the_edge_cases():
    cases = hidden_activations.hidden_mlp_cases()
    assert {c.x.shape[0] for c in cases} >= {1, 2}
    assert min(len(c.weights) for c in cases) == 1
    assert any(not c.x.flags.c_contiguous for c in cases)
    assert {c.activation for c in cases} == set(A.ACTIVATIONS)
    dead = [
        A.layer_statistics_reference(a)["dead"].max()
        for a, _ in hidden_activations.hidden_statistics_cases()
    ]
    assert max(dead) > 0


def test_planted_values_show_every_boundary():
    acts = A.with_planted_values(
        [np.full((4, 3), 0.5), np.full((5, 2), -0.5)],
        seed=0,
    )
    for a in acts:
        for value in (A.SATURATION, -A.SATURATION, -0.995, 0.0):
            assert np.any(a == value), value
    assert np.all(acts[0] == 0, axis=0).any()
    assert np.all(acts[-1] == 0, axis=1).any()


def test_planted_values_leave_the_input_alone():
    a = np.full((4, 3), 0.5)
    A.with_planted_values([a], seed=0)
    assert np.all(a == 0.5)


# --- the checks ------------------------------------------------------------------------------


def test_checks_pass_correct_code_and_print_one_line_each(capsys):
    A.check_mlp_activations(forward)
    hidden_activations.check_mlp_activations_hidden(forward)
    A.check_layer_statistics(statistics)
    hidden_activations.check_layer_statistics_hidden(statistics)
    A.check_init_weights(init)
    hidden_activations.check_init_weights_hidden(init)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    assert all(line.endswith("— correct") for line in lines)


@pytest.mark.parametrize("seed_offset", range(12))
def test_init_check_passes_a_correct_implementation_for_any_draw(seed_offset):
    def shifted(dims, scale, rng):  # another stream for every seed offset
        rng = np.random.default_rng(rng.integers(2**32) + seed_offset)
        return init(dims, scale, rng)

    hidden_activations.check_init_weights_hidden(shifted)


def test_init_check_names_each_std_mistake():
    for description in A.init_std_mistakes(300, 200, 1.7):

        def wrong(dims, scale, rng, description=description):
            return [
                A.init_std_mistakes(i, o, scale)[description] * rng.standard_normal((i, o))
                for i, o in zip(dims[:-1], dims[1:], strict=True)
            ]

        with pytest.raises(CheckFailure, match="Likely mistake: it looks like") as info:
            A.check_init_weights(wrong)
        assert description in str(info.value)


def test_checks_refuse_torch():
    def with_torch(x, weights, activation):
        out, a = [], torch.tensor(np.array(x))
        for w in weights:
            a = torch.tanh(a @ torch.tensor(np.array(w)))
            out.append(a.numpy())
        return out

    with pytest.raises(TorchUsedError):
        A.check_mlp_activations(with_torch)


def test_statistics_check_names_a_ragged_answer():
    def ragged(activations):
        stats = statistics(activations)
        stats["mean"] = [a.mean(axis=0) for a in activations]
        return stats

    with pytest.raises(CheckFailure, match="one number per layer"):
        A.check_layer_statistics(ragged)
