"""utils.sync: the simulated data-parallel world (threads) and the real gloo launcher."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from utils.sync import (
    CollectiveError,
    gloo_available,
    run_distributed,
    run_ranks,
    simulate,
    split_batch,
)

SHORT = 0.3
"""A small all_reduce timeout: the error tests must finish quickly, never hang."""


def reduce_once(x, all_reduce):
    return all_reduce(x)


@given(
    world=st.integers(1, 4),
    shape=st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple),
    seed=st.integers(0, 2**16),
)
def test_all_reduce_returns_the_sum_over_ranks_on_every_rank(world, shape, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=shape) for _ in range(world)]
    results = simulate(reduce_once, arrays)
    expected = arrays[0].copy()
    for a in arrays[1:]:
        expected = expected + a  # rank order, as the simulator promises
    assert len(results) == world
    for r in results:
        assert r.shape == shape
        assert np.array_equal(r, expected)


def test_results_are_private_copies():
    def reduce_and_spoil(x, all_reduce):
        total = all_reduce(x)
        x[...] = -1.0  # changing the input after the call must not change anyone's sum
        total += 100.0  # nor may changing one rank's result change another's
        return total, all_reduce(np.ones(1))

    results = simulate(reduce_and_spoil, [np.ones(2), 2 * np.ones(2)])
    assert [r[0].tolist() for r in results] == [[103.0, 103.0], [103.0, 103.0]]
    assert [r[1].tolist() for r in results] == [[2.0], [2.0]]


def test_rank_arguments_and_keywords_are_passed():
    def scaled(x, factor, all_reduce, offset=0.0):
        return all_reduce(x * factor) + offset

    results = run_ranks(scaled, [(np.ones(1), 2.0), (np.ones(1), 3.0)], offset=0.5)
    assert [float(r[0]) for r in results] == [5.5, 5.5]


def test_different_shapes_on_different_ranks_are_a_clear_error():
    with pytest.raises(CollectiveError, match=r"different shapes: rank 0 \(3,\), rank 1 \(2,\)"):
        simulate(reduce_once, [np.ones(3), np.ones(2)], timeout=SHORT)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_low_precision_floats_are_a_clear_error(dtype):
    with pytest.raises(CollectiveError, match=f"{np.dtype(dtype).name} array"):
        simulate(reduce_once, [np.ones(3, dtype=dtype), np.ones(3, dtype=dtype)], timeout=SHORT)


def test_integers_and_python_lists_are_reduced():
    results = simulate(reduce_once, [[1, 2], np.array([3, 4])], timeout=SHORT)
    assert [r.tolist() for r in results] == [[4, 6], [4, 6]]


def test_a_different_number_of_calls_is_an_error_not_a_hang():
    def one_call_per_sample(x, all_reduce):
        for _ in range(len(x)):
            all_reduce(np.ones(2))

    start = time.perf_counter()
    with pytest.raises(CollectiveError) as info:
        simulate(one_call_per_sample, [np.ones((2, 1)), np.ones((1, 1))], timeout=5.0)
    assert time.perf_counter() - start < 2.0  # detected when rank 1 returns, not by timeout
    assert "rank 0 called it 2 times, rank 1 called it 1 time" in str(info.value)


def test_a_rank_that_never_calls_times_out():
    def slow_rank(x, all_reduce):
        if len(x) == 1:
            time.sleep(3 * SHORT)
            return None
        return all_reduce(x.sum(0))

    start = time.perf_counter()
    with pytest.raises(CollectiveError):
        simulate(slow_rank, [np.ones((2, 1)), np.ones((1, 1))], timeout=SHORT)
    assert time.perf_counter() - start < 10 * SHORT


def test_an_exception_on_one_rank_reaches_the_caller():
    def fails_on_small_shards(x, all_reduce):
        if len(x) == 1:
            raise ValueError("shard too small")
        return all_reduce(x.sum(0))

    with pytest.raises(ValueError, match="shard too small"):
        simulate(fails_on_small_shards, [np.ones((2, 1)), np.ones((1, 1))], timeout=SHORT)


def test_split_batch_makes_consecutive_shards_of_the_given_sizes():
    x = np.arange(12.0).reshape(6, 2)
    shards = split_batch(x, [1, 2, 3])
    assert [s.shape[0] for s in shards] == [1, 2, 3]
    assert np.array_equal(np.concatenate(shards), x)
    with pytest.raises(ValueError, match="do not add up"):
        split_batch(x, [2, 2])


# --- the real processes --------------------------------------------------------------------------


def two_round_sync_batchnorm(x, gamma, beta, all_reduce, eps=1e-5):
    """A plain synchronized forward (used here and by tests/test_checks_sync_batchnorm.py)."""
    axes, shape = (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
    count = all_reduce(np.array(float(x.size // x.shape[1])))
    mean = (all_reduce(x.sum(axis=axes)) / count).reshape(shape)
    var = (all_reduce(((x - mean) ** 2).sum(axis=axes)) / count).reshape(shape)
    x_hat = (x - mean) / np.sqrt(var + eps)
    cache = {"x_hat": x_hat, "inv_std": 1 / np.sqrt(var + eps), "gamma": gamma, "count": count}
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), cache


@pytest.mark.slow
def test_gloo_processes_compute_the_global_batch_norm():
    if not gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, size=(5, 3, 2, 2))
    gamma, beta = rng.uniform(0.5, 2.0, 3), rng.uniform(-1.0, 1.0, 3)
    rank_args = [(s, gamma, beta) for s in split_batch(x, [3, 2])]
    results = run_distributed(two_round_sync_batchnorm, rank_args, timeout=60)
    out = np.concatenate([o for o, _ in results])
    expected = F.batch_norm(
        torch.tensor(x), None, None, torch.tensor(gamma), torch.tensor(beta), training=True
    ).numpy()
    assert np.abs(out - expected).max() < 1e-12
    assert [float(cache["count"]) for _, cache in results] == [20.0, 20.0]
