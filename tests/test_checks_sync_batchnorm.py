"""utils.checks.sync_batchnorm: references, cases, known-wrong variants and the checks themselves.

The lesson's planted bugs run through the notebook in tests/test_lesson_10_sync_batchnorm.py;
here the checks are called directly with small implementations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.test_sync import two_round_sync_batchnorm
from utils import reference
from utils.checks import sync_batchnorm as checks
from utils.checks.hidden import sync_batchnorm as hidden_sync
from utils.diagnose import CheckFailure
from utils.guard import TorchUsedError
from utils.sync import split_batch


def two_round_backward(dout, cache, all_reduce):
    axes, shape = (0, *range(2, dout.ndim)), (1, -1) + (1,) * (dout.ndim - 2)
    x_hat, n = cache["x_hat"], cache["count"]
    d = dout * cache["gamma"].reshape(shape)
    s1 = all_reduce(d.sum(axis=axes)).reshape(shape)
    s2 = all_reduce((d * x_hat).sum(axis=axes)).reshape(shape)
    dx = cache["inv_std"] / n * (n * d - s1 - x_hat * s2)
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def test_the_cases_cover_what_the_brief_promises():
    cases = hidden_sync.hidden_cases()
    assert {len(sc.sizes) for sc in cases} == {2, 3, 4}
    assert any(1 in sc.sizes and len(set(sc.sizes)) > 1 for sc in cases)
    assert any(sc.case.x.shape[1] == 1 for sc in cases)
    assert any(sc.case.x.ndim == 4 for sc in cases)
    assert any(np.abs(sc.case.x).min() > 5e3 for sc in cases)
    assert any(np.abs(sc.case.gamma).min() > 2.5 for sc in cases)
    non_contiguous = [
        sc for sc in cases if not any(s.flags.c_contiguous for s in sc.shards(sc.case.x))
    ]
    assert len(non_contiguous) >= 2
    for sc in cases:
        assert sum(sc.sizes) == sc.case.x.shape[0]
        assert not np.any(sc.case.gamma == 1) and not np.any(sc.case.beta == 0)


@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4))
def test_the_ranks_contributions_add_up_to_autograd(seed, sizes):
    case = checks.make_case((sum(sizes), 2), seed, "random")
    sc = checks.SyncCase(case, tuple(sizes))
    _, dgamma, dbeta = reference.batchnorm_gradients_reference(
        case.x, case.gamma, case.beta, case.dout
    )
    parts = checks.contributions_reference(sc)
    np.testing.assert_allclose(sum(g for g, _ in parts), dgamma, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum(b for _, b in parts), dbeta, rtol=1e-12, atol=1e-12)
    x_hat = (case.x - case.x.mean(0)) / np.sqrt(case.x.var(0) + case.eps)
    own = (case.dout[: sizes[0]] * x_hat[: sizes[0]]).sum(0)  # numpy, independently
    np.testing.assert_allclose(parts[0][0], own, rtol=1e-10, atol=1e-12)


def test_the_moments_reference_is_the_statistics_of_the_concatenated_batch():
    x = np.random.default_rng(3).normal(size=(4, 3, 2, 2))
    count, mean, var = reference.moments_reference(x)
    assert count == 16
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-13)


def test_wrong_moments_all_differ_from_the_truth_on_unequal_shards():
    sc = checks.visible_case()
    _, mean, var = reference.moments_reference(sc.case.x)
    for description, per_rank in checks.wrong_moments(sc).items():
        assert len(per_rank) == 2
        assert any(
            not (np.allclose(m, mean, rtol=1e-9) and np.allclose(v, var, rtol=1e-9))
            for m, v in per_rank
        ), description


def test_with_equal_shards_the_unweighted_average_is_not_named():
    case = checks.make_case((6, 2), 5, "equal shards")
    wrong = checks.forward_mistakes(checks.SyncCase(case, (3, 3)))
    assert checks.UNWEIGHTED not in wrong
    assert checks.LOCAL in wrong


def test_a_correct_implementation_passes_every_check(capsys):
    checks.check_sync_forward(two_round_sync_batchnorm)
    hidden_sync.check_sync_forward_hidden(two_round_sync_batchnorm)
    checks.check_sync_backward(two_round_backward, two_round_sync_batchnorm)
    hidden_sync.check_sync_backward_hidden(two_round_backward, two_round_sync_batchnorm)
    assert capsys.readouterr().out.count("— correct") == 6


def local_batchnorm(x, gamma, beta, all_reduce, eps=1e-5):
    return two_round_sync_batchnorm(x, gamma, beta, lambda a: np.array(a), eps)


def one_round_sum_of_squares(x, gamma, beta, all_reduce, eps=1e-5):
    axes, shape = (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
    totals = all_reduce(np.stack([x.sum(axis=axes), (x**2).sum(axis=axes)]))
    n = all_reduce(np.array(float(x.size // x.shape[1])))
    mean, var = totals[0] / n, totals[1] / n - (totals[0] / n) ** 2
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var + eps).reshape(shape)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), {}


@pytest.mark.parametrize(
    "check, forward, hint",
    [
        (checks.check_sync_forward, local_batchnorm, "its own shard only"),
        # only the hidden large-offset case exposes the cancellation
        (
            hidden_sync.check_sync_forward_hidden,
            one_round_sum_of_squares,
            "sum(x**2) / n - mean**2",
        ),
    ],
)
def test_wrong_forwards_fail_with_the_hint(check, forward, hint):
    with pytest.raises(CheckFailure, match="ranks holding") as info:
        check(forward)
    assert hint in str(info.value)


def test_all_reduced_parameter_gradients_are_named():
    def reduced_backward(dout, cache, all_reduce):
        dx, dgamma, dbeta = two_round_backward(dout, cache, all_reduce)
        return dx, all_reduce(dgamma), all_reduce(dbeta)

    with pytest.raises(CheckFailure, match="GLOBAL sum"):
        checks.check_sync_backward(reduced_backward, two_round_sync_batchnorm)


def forward_frozen_in(argument: str):
    """A forward right at the visible case, whose output stays put when ``argument`` ("x",
    "gamma" or "beta") moves (x: the statistics are the case's, not the input's): the
    backward agrees with autograd, but not with centered differences of this forward."""
    c = checks.visible_case().case
    mean, var = c.x.mean(axis=0), c.x.var(axis=0)

    def forward(x, gamma, beta, all_reduce, eps=1e-5):
        out, cache = two_round_sync_batchnorm(x, gamma, beta, all_reduce, eps)
        frozen = {
            "x": gamma * (x - mean) / np.sqrt(var + eps) + beta,
            "gamma": out - (gamma - c.gamma) * cache["x_hat"],
            "beta": out - (beta - c.beta),
        }
        return frozen[argument], cache

    return forward


@pytest.mark.parametrize("argument", ["x", "gamma", "beta"])
def test_a_backward_that_disagrees_with_differences_of_the_forward_is_named(argument):
    with pytest.raises(CheckFailure, match="ranks holding") as info:
        checks.check_sync_backward(two_round_backward, forward_frozen_in(argument))
    message = str(info.value)
    assert f"d{argument} along random directions" in message
    assert "centered differences of your forward" in message


def test_the_differences_cost_a_few_forwards_whatever_the_size_of_x():
    calls = []

    def counted(x, gamma, beta, all_reduce, eps=1e-5):
        calls.append(x.shape)
        return two_round_sync_batchnorm(x, gamma, beta, all_reduce, eps)

    checks.check_sync_backward(two_round_backward, counted)
    world = len(checks.VISIBLE_SIZES)
    # one checked forward, then two per direction of each of x, gamma and beta, on every rank
    assert len(calls) == world * (1 + 2 * 3 * checks.DIRECTIONS)


def test_torch_inside_a_rank_is_caught():
    def torch_forward(x, gamma, beta, all_reduce, eps=1e-5):
        torch.zeros(1)
        return two_round_sync_batchnorm(x, gamma, beta, all_reduce, eps)

    with pytest.raises(TorchUsedError):
        checks.check_sync_forward(torch_forward)


def test_a_collective_mismatch_becomes_a_check_failure():
    def skips_on_one_sample(x, gamma, beta, all_reduce, eps=1e-5):
        if len(x) == 1:
            return gamma * x + beta, {}
        return two_round_sync_batchnorm(x, gamma, beta, all_reduce, eps)

    with pytest.raises(CheckFailure, match="same number of times"):
        hidden_sync.check_sync_forward_hidden(skips_on_one_sample)


def test_shards_are_fresh_copies():
    sc = checks.visible_case()
    shards = sc.shards(sc.case.x)
    shards[0][...] = 0.0
    assert np.array_equal(np.concatenate(split_batch(sc.case.x, sc.sizes)), sc.case.x)
    assert not np.any(sc.case.x == 0.0)
