"""Checks for lesson 10: synchronized batch normalization across simulated data-parallel ranks.

One global batch x (N, C) or (N, C, H, W) is split along the batch axis into shards of
possibly different sizes, one per rank. The learner's functions run on every rank at once
(``utils.sync.run_ranks``, all of them inside ``call_without_torch``) with an ``all_reduce``
that sums over the ranks. The results must equal the oracle (``utils.reference``) on the
concatenated batch:
``torch.var_mean`` for the moments, ``F.batch_norm(training=True)`` for the forward, autograd
for dx and for the sum of the ranks' dgamma and dbeta, and autograd with dout zeroed outside
a rank's shard for that rank's own contribution. Gradients are also compared with centered
differences of the learner's own (simulated, global) forward along a few seeded random
directions (``DIRECTIONS``). Failures name the case, and where they can, the mistake.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from utils import reference
from utils.cases import Case, copy_with_layout, make_case
from utils.checks.batchnorm import DEFAULT_EPS, STEP_PER_SPREAD
from utils.checks.twins import On, paired
from utils.diagnose import (
    MATCH,
    CheckFailure,
    as_float_array,
    assert_close,
    assert_default_eps,
    assert_unchanged,
    check_backward_on,
    compare_gradients,
    compare_with_differences,
    forward_first,
    on_cases,
)
from utils.diagnose import report as report_line
from utils.gradcheck import directional_differences, relative_error
from utils.guard import call_without_torch
from utils.mistakes import catalogue, describe
from utils.mistakes.catalogue import batch_sets, quietly
from utils.sync import CollectiveError, run_ranks, split_batch

GRADIENTS = ("dx", "dgamma", "dbeta")


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", "your function")


def channel_axes(x: np.ndarray) -> tuple[int, ...]:
    """Every axis but the channel axis 1: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return reference.statistic_axes(x.ndim)


def _per_channel_shape(x: np.ndarray) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


# --- cases -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SyncCase:
    """A global batch (``case``) and how it is split: ``sizes[r]`` samples on rank r.

    hint: advice added to an unexplained failure on this case. gradients: whether the
    backward is checked on it (a case built to expose round-off is checked forward only).
    """

    case: Case
    sizes: tuple[int, ...]
    hint: str = ""
    gradients: bool = True

    @property
    def label(self) -> str:
        held = ", ".join(map(str, self.sizes))
        return f"{self.case.label}, on {len(self.sizes)} ranks holding {held} samples"

    def shards(self, array: np.ndarray) -> list[np.ndarray]:
        """Fresh copies of the ranks' parts of ``array`` (x keeps its memory layout)."""
        return [copy_with_layout(s) for s in split_batch(array, self.sizes)]


CANCELLATION_HINT = (
    "with a mean of 1e4, sum(x**2) / n - mean**2 subtracts two numbers near 1e8 and keeps "
    "only a few correct digits of a small variance. Get the global mean first, then reduce "
    "the sums of squared deviations from it (a second all_reduce), or combine the ranks' "
    "(count, mean, sum of squared deviations) with Chan's formula."
)

VISIBLE_SHAPE, VISIBLE_SIZES = (7, 3), (3, 4)


def visible_case() -> SyncCase:
    """x of shape (7, 3) on two ranks holding 3 and 4 samples."""
    case = make_case(VISIBLE_SHAPE, 2018, f"visible case, x of shape {VISIBLE_SHAPE}")
    return SyncCase(case, VISIBLE_SIZES)


def contributions_reference(sc: SyncCase) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each rank's (dgamma, dbeta): the part of the parameter gradient its own shard produces."""
    c = sc.case
    return reference.shard_parameter_gradients_reference(
        c.x, c.gamma, c.beta, c.dout, sc.sizes, c.eps
    )


# --- known-wrong variants (numpy), keyed by a description completing "it looks like ..." -----

LOCAL = describe("sync local statistics")
UNWEIGHTED = describe("sync unweighted")
MEAN_OF_VARIANCES = describe("sync mean of variances")
UNBIASED = describe("unbiased variance, count")
SYNC = {"m": "count", "mean": "mean", "variance": "variance"}
"""The words of lesson 10 for ``utils.mistakes.describe``."""


def _rank_moments(shards: list[np.ndarray]) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(count, mean, biased var) of each shard on its own."""
    return [
        (s.size / s.shape[1], s.mean(axis=channel_axes(s)), s.var(axis=channel_axes(s)))
        for s in shards
    ]


def wrong_moments(sc: SyncCase) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """description -> one wrong (mean, var) per rank."""
    shards = split_batch(sc.case.x, sc.sizes)
    local = _rank_moments(shards)
    counts = np.array([n for n, _, _ in local])
    total, world = counts.sum(), len(shards)
    mean = sum(n * m for n, m, _ in local) / total
    plain_mean = sum(m for _, m, _ in local) / world
    around_plain = sum(((s - plain_mean.reshape(_per_channel_shape(s))) ** 2).mean(
        axis=channel_axes(s)) for s in shards) / world  # fmt: skip
    x = sc.case.x
    var = np.var(x, axis=channel_axes(x))
    same = {
        UNWEIGHTED: (plain_mean, around_plain),
        describe("sync unweighted", here=" (here: the plain average of the ranks' variances)"): (
            plain_mean,
            sum(v for _, _, v in local) / world,
        ),
        describe("sync unweighted", here=" (here: the mean)"): (
            plain_mean,
            np.mean((x - plain_mean.reshape(_per_channel_shape(x))) ** 2, axis=channel_axes(x)),
        ),
        MEAN_OF_VARIANCES: (mean, sum(n * v for n, _, v in local) / total),
        UNBIASED: (mean, var * total / (total - 1)),
    }
    wrong = {d: [pair] * world for d, pair in same.items()}
    wrong[LOCAL] = [(m, v) for _, m, v in local]
    return wrong


GLOBAL_MISTAKES = {
    describe("eps outside sqrt"): {"spread": "sqrt(v) + eps"},
    describe("eps missing"): {"eps": 0.0},
    describe("eps fixed"): {"eps": 1e-5},
    describe("gamma beta swapped"): {"affine": "beta * x_hat + gamma"},
}
"""Mistakes of the normalization itself, made on the whole batch: description -> the switches
of ``utils.mistakes.catalogue.wrong_forward``."""


def forward_mistakes(sc: SyncCase) -> dict[str, np.ndarray]:
    """description -> the wrong global output (the ranks' outputs concatenated)."""
    c = sc.case
    shards = split_batch(c.x, sc.sizes)
    with quietly():
        wrong = {
            d: np.concatenate(
                [
                    reference.batchnorm_eval_reference(s, m, v, c.gamma, c.beta, c.eps)
                    for s, (m, v) in zip(shards, per_rank, strict=True)
                ]
            )
            for d, per_rank in wrong_moments(sc).items()
        }
    sets = batch_sets(c.x.ndim)
    wrong |= catalogue.forward_mistakes(sets, c.x, c.gamma, c.beta, c.eps, GLOBAL_MISTAKES)
    return _distinct(wrong, reference.batchnorm_forward_reference(c.x, c.gamma, c.beta, c.eps))


def _distinct(wrong: dict[str, np.ndarray], expected: np.ndarray) -> dict[str, np.ndarray]:
    """The variants that differ from ``expected`` on this case (with equal shards the
    unweighted average is right, and must not name a mistake)."""
    return {d: a for d, a in wrong.items() if not relative_error(a, expected) <= MATCH}


def _dx(sc: SyncCase, local_count: bool = False, local_sums: bool = True):
    """Closed-form dx of the global batch norm with the two sums over each rank's shard only
    (local_sums), divided by the shard's count (local_count)."""
    c = sc.case
    axes, shape = channel_axes(c.x), _per_channel_shape(c.x)
    _, mean, var = reference.moments_reference(c.x)
    inv_std = (1 / np.sqrt(var + c.eps)).reshape(shape)
    x_hat = (c.x - mean.reshape(shape)) * inv_std
    dx_hat = c.dout * c.gamma.reshape(shape)
    parts = []
    for xh, d in zip(split_batch(x_hat, sc.sizes), split_batch(dx_hat, sc.sizes), strict=True):
        source_xh, source_d = (xh, d) if local_sums else (x_hat, dx_hat)
        m = (d.size if local_count else dx_hat.size) / c.x.shape[1]
        mean_term = source_d.sum(axis=axes, keepdims=True)
        var_term = xh * (source_d * source_xh).sum(axis=axes, keepdims=True)
        parts.append(inv_std / m * (m * d - mean_term - var_term))
    return np.concatenate(parts)


GLOBAL_DX_MISTAKES = {
    describe("dx without mean term", **SYNC): {"mean_term": 0},
    describe("dx without variance term", **SYNC): {"variance_term": 0},
    describe("dx without gamma"): {"with_gamma": False},
    describe("dx without eps"): {"eps_in_scale": False},
}
"""Mistakes of the closed form itself, made on the whole batch: description -> the switches
of ``utils.mistakes.catalogue.wrong_dx``."""


def backward_mistakes(sc: SyncCase, expected: tuple) -> dict[str, dict[str, np.ndarray]]:
    """Known-wrong global dx, and the known-wrong sum over ranks of dgamma and dbeta."""
    dx, dgamma, dbeta = expected
    c, world = sc.case, len(sc.sizes)
    reduced, swapped = describe("sync parameters all-reduced"), describe("dgamma dbeta swapped")
    wrong_dx = {
        describe("sync dx local sums"): _dx(sc),
        describe("sync dx local sums and count"): _dx(sc, local_count=True),
        describe("sync dx local count"): _dx(sc, local_count=True, local_sums=False),
        **catalogue.dx_mistakes(
            batch_sets(c.x.ndim), c.x, c.gamma, c.dout, c.eps, GLOBAL_DX_MISTAKES
        ),
    }
    return {
        "dx": _distinct(wrong_dx, dx),
        "dgamma": _distinct({reduced: world * dgamma, swapped: dbeta}, dgamma),
        "dbeta": _distinct({reduced: world * dbeta, swapped: dgamma}, dbeta),
    }


# --- running the learner's functions on every rank ---------------------------------------------


def run_on_ranks(fn: Callable, rank_args: list[tuple], **kwargs) -> list:
    """``fn`` on every rank through ``run_ranks``, with PyTorch forbidden; collective
    mistakes become a CheckFailure."""
    try:
        return call_without_torch(run_ranks, fn, rank_args, name=_name(fn), **kwargs)
    except CollectiveError as error:
        raise CheckFailure(f"{_name(fn)}: {error}") from None


def _with_case_hint(sc: SyncCase, check_one: Callable) -> float:
    try:
        return check_one(sc)
    except CheckFailure as failure:
        if sc.hint and "it looks like" not in str(failure):
            raise CheckFailure(f"{failure} On this case: {sc.hint}") from None
        raise


def _on_cases(cases: list[SyncCase], check_one: Callable) -> float:
    return on_cases(cases, lambda sc: _with_case_hint(sc, check_one))


def _tuple_of(result, size: int, what: str, names: str) -> tuple:
    if not (isinstance(result, tuple) and len(result) == size):
        raise CheckFailure(f"{what} must return a tuple {names}.")
    return result


# --- global_moments ----------------------------------------------------------------------------


def _moments_error(global_moments: Callable, sc: SyncCase) -> float:
    shards = sc.shards(sc.case.x)
    results = run_on_ranks(global_moments, [(s,) for s in shards])
    for s, before in zip(shards, split_batch(sc.case.x, sc.sizes), strict=True):
        assert_unchanged(before, s, _name(global_moments), "x")
    count, mean, var = reference.moments_reference(sc.case.x)
    wrong = wrong_moments(sc)
    errors = []
    for rank, result in enumerate(results):
        got = _tuple_of(result, 3, _name(global_moments), "(count, mean, var)")
        n_local = sc.sizes[rank] * int(np.prod(sc.case.x.shape[2:]))
        wrong_count = {
            describe("sync local count"): np.array(float(n_local)),
            describe("sync count of samples"): np.array(float(sum(sc.sizes))),
            describe("sync count times world"): np.array(float(n_local * len(sc.sizes))),
        }
        got_count = as_float_array(got[0], f"rank {rank}: count").reshape(-1)
        if got_count.shape != (1,):
            raise CheckFailure(f"rank {rank}: count must be one number, got shape {got[0]!r}.")
        got_mean = _per_channel(got[1], f"rank {rank}: mean", sc.case.x)
        got_var = _per_channel(got[2], f"rank {rank}: var", sc.case.x)
        mistakes_m = {d: per_rank[rank][0] for d, per_rank in wrong.items()}
        mistakes_v = {d: per_rank[rank][1] for d, per_rank in wrong.items()}
        errors += [
            assert_close(
                f"rank {rank}: count",
                got_count[0],
                np.array(count),
                _distinct(wrong_count, np.array(count)),
            ),
            assert_close(f"rank {rank}: mean", got_mean, mean, _distinct(mistakes_m, mean)),
            assert_close(f"rank {rank}: var", got_var, var, _distinct(mistakes_v, var)),
            _channelwise_error(f"rank {rank}: var + eps", got_var + sc.case.eps, var + sc.case.eps),
        ]
    return max(errors)


def _per_channel(value, what: str, x: np.ndarray) -> np.ndarray:
    """``value`` as a float64 array of shape (C,); a shape with the same C numbers along one
    axis and 1 elsewhere ((1, C) or the keepdims (1, C, 1, 1), say) is accepted too."""
    arr = as_float_array(value, what)
    if arr.size == x.shape[1] and sum(n > 1 for n in arr.shape) <= 1:
        arr = arr.reshape(-1)
    return as_float_array(arr, what, (x.shape[1],))


def _channelwise_error(name: str, got: np.ndarray, expected: np.ndarray) -> float:
    """assert_close channel by channel: a normwise error would hide a wrong small variance
    next to a large one (what the normalization divides by is each channel's own)."""
    return max(
        assert_close(f"{name} of channel {c}", got[c], expected[c]) for c in range(len(expected))
    )


@paired(lambda: On([visible_case()], " on 2 ranks vs torch.var_mean of the whole batch"))
def check_global_moments(on: On, global_moments: Callable) -> None:
    """Visible check of ``global_moments(x, all_reduce) -> (count, mean, var)`` on two ranks."""
    err = _on_cases(on.cases, lambda sc: _moments_error(global_moments, sc))
    report_line(f"{_name(global_moments)}{on.label}", err)


# --- forward -----------------------------------------------------------------------------------


def run_forward(forward: Callable, sc: SyncCase) -> tuple[np.ndarray, list]:
    """The learner's forward on every rank: (the outputs concatenated, the ranks' caches)."""
    c = sc.case
    shards = sc.shards(c.x)
    rank_args = [(s, c.gamma.copy(), c.beta.copy()) for s in shards]
    results = run_on_ranks(forward, rank_args, eps=c.eps)
    for s, before in zip(shards, split_batch(c.x, sc.sizes), strict=True):
        assert_unchanged(before, s, _name(forward), "x")
    outs, caches = [], []
    for rank, (result, s) in enumerate(zip(results, shards, strict=True)):
        out, cache = _tuple_of(result, 2, _name(forward), "(out, cache)")
        outs.append(as_float_array(out, f"rank {rank}: out", s.shape))
        caches.append(cache)
    return np.concatenate(outs), caches


def _checked_forward(forward: Callable, sc: SyncCase) -> tuple[float, list]:
    out, caches = run_forward(forward, sc)
    c = sc.case
    expected = reference.batchnorm_forward_reference(c.x, c.gamma, c.beta, c.eps)
    return assert_close("out", out, expected, mistakes=forward_mistakes(sc)), caches


def _check_default_eps(forward: Callable) -> None:
    """Called without eps, the forward must use the default 1e-5 (PyTorch's): every other
    call passes eps, so a wrong default would go unnoticed."""
    sc = visible_case()
    c = sc.case
    rank_args = [(s, c.gamma.copy(), c.beta.copy()) for s in sc.shards(c.x)]
    results = run_on_ranks(forward, rank_args)
    outs = [_tuple_of(r, 2, _name(forward), "(out, cache)")[0] for r in results]
    out = np.concatenate([as_float_array(o, f"out of {_name(forward)} without eps") for o in outs])
    expected = reference.batchnorm_forward_reference(c.x, c.gamma, c.beta, DEFAULT_EPS)
    assert_default_eps(_name(forward), out, expected, DEFAULT_EPS)


@paired(lambda: On([visible_case()], " on 2 ranks vs F.batch_norm of the whole batch"))
def check_sync_forward(on: On, forward: Callable) -> None:
    """Visible check of a synchronized forward on two ranks against F.batch_norm of the
    concatenated batch."""
    err = _on_cases(on.cases, lambda sc: _checked_forward(forward, sc)[0])
    _check_default_eps(forward)
    report_line(f"{_name(forward)}{on.label}", err)


# --- backward ----------------------------------------------------------------------------------


def _run_backward(backward: Callable, sc: SyncCase, caches: list) -> list[tuple]:
    """Each rank's (dx, dgamma, dbeta), checked for shapes."""
    douts = [d.copy() for d in split_batch(sc.case.dout, sc.sizes)]
    results = run_on_ranks(backward, [(d, cache) for d, cache in zip(douts, caches, strict=True)])
    for d, before in zip(douts, split_batch(sc.case.dout, sc.sizes), strict=True):
        assert_unchanged(before, d, _name(backward), "dout")
    c = sc.case.x.shape[1]
    grads = []
    for rank, (result, d) in enumerate(zip(results, douts, strict=True)):
        dx, dgamma, dbeta = _tuple_of(result, 3, _name(backward), "(dx, dgamma, dbeta)")
        grads.append(
            (
                as_float_array(dx, f"rank {rank}: dx", d.shape),
                as_float_array(dgamma, f"rank {rank}: dgamma", (c,)),
                as_float_array(dbeta, f"rank {rank}: dbeta", (c,)),
            )
        )
    return grads


def _simulated_forward(forward: Callable, sc: SyncCase) -> Callable:
    """x, gamma, beta -> the learner's global output, every rank run on its part of x."""

    def global_out(x, gamma, beta):
        results = run_ranks(forward, [(s, gamma, beta) for s in split_batch(x, sc.sizes)],
                            eps=sc.case.eps)  # fmt: skip
        return np.concatenate([np.asarray(out, dtype=np.float64) for out, _ in results])

    return global_out


DIRECTIONS = 3
"""Random directions per argument (x, gamma, beta) along which the backward is compared with
centered differences of the learner's forward. Each difference costs two global forwards,
every rank's forward with its all_reduce calls, which graded is a round trip per call: entry
by entry that was 2 * (x.size + 2C) forwards per case, along directions it is 2 * 3 * 3."""

DIRECTION_SEED = 10
"""Seeds the directions, so that grading is deterministic."""

ALONG_DIRECTIONS = tuple(f"{g} along random directions" for g in GRADIENTS)
"""The gradients' names in a failure of the comparison with centered differences."""


def _directions(sc: SyncCase) -> tuple[list[np.ndarray], ...]:
    """DIRECTIONS standard normal arrays shaped like x, like gamma and like beta."""
    rng = np.random.default_rng(DIRECTION_SEED)
    c = sc.case
    return tuple(
        [rng.standard_normal(a.shape) for _ in range(DIRECTIONS)] for a in (c.x, c.gamma, c.beta)
    )


def _slopes(grads: tuple[np.ndarray, ...], directions: tuple[list[np.ndarray], ...]) -> tuple:
    """<gradient, u> for each gradient and each of its directions u: one (k,) array each.
    They are compared normwise over the k slopes, so a wrong gradient shows about its own
    relative error, as entry by entry; one slope alone could be near zero by chance."""
    return tuple(
        np.array([np.vdot(g, u) for u in us]) for g, us in zip(grads, directions, strict=True)
    )


def _finite_differences(
    forward: Callable, sc: SyncCase, directions: tuple[list[np.ndarray], ...]
) -> tuple[np.ndarray, ...]:
    """Centered differences of ``sum(global forward * dout)`` along ``directions`` (those of
    x, of gamma, of beta): one (k,) array each. Each lambda moves its own argument."""
    c = sc.case
    f = _simulated_forward(forward, sc)
    x, gamma, beta = c.fresh().x, c.gamma.copy(), c.beta.copy()
    spread = np.sqrt(np.min(c.x.var(axis=channel_axes(c.x))) + c.eps)
    h_x = STEP_PER_SPREAD * min(1.0, spread)
    u_x, u_gamma, u_beta = directions
    return (
        directional_differences(lambda x_: f(x_, gamma, beta), x, u_x, c.dout, h_x),
        directional_differences(lambda g_: f(x, g_, beta), gamma, u_gamma, c.dout),
        directional_differences(lambda b_: f(x, gamma, b_), beta, u_beta, c.dout),
    )


def _backward_errors(backward: Callable, forward: Callable, sc: SyncCase) -> tuple[float, float]:
    """(error against autograd, error against finite differences) on ``sc``; a wrong forward
    is blamed first, since the backward runs on the caches it makes."""
    _, caches = forward_first(_name(forward), lambda: _checked_forward(forward, sc), "the caches")
    grads = _run_backward(backward, sc, caches)
    c = sc.case
    expected = reference.batchnorm_gradients_reference(c.x, c.gamma, c.beta, c.dout, c.eps)
    wrong = backward_mistakes(sc, expected)
    world = len(sc.sizes)
    errors = []
    for rank, ((_, dgamma, dbeta), (own_g, own_b)) in enumerate(
        zip(grads, contributions_reference(sc), strict=True)
    ):
        hints_g = _contribution_hints(expected[1], own_b, world)
        hints_b = _contribution_hints(expected[2], own_g, world)
        errors += [
            assert_close(f"rank {rank}: dgamma", dgamma, own_g, hints_g),
            assert_close(f"rank {rank}: dbeta", dbeta, own_b, hints_b),
        ]
    total = (
        np.concatenate([g[0] for g in grads]),
        sum(g[1] for g in grads),
        sum(g[2] for g in grads),
    )
    errors.append(compare_gradients(GRADIENTS, total, expected, wrong))
    directions = _directions(sc)
    numeric = call_without_torch(_finite_differences, forward, sc, directions, name=_name(forward))
    err_fd = compare_with_differences(
        ALONG_DIRECTIONS, _slopes(total, directions), numeric, f"your {_name(forward)}"
    )
    return max(errors), err_fd


def _contribution_hints(
    global_value: np.ndarray, other: np.ndarray, world: int
) -> dict[str, np.ndarray]:
    """Wrong values of one rank's dgamma (or dbeta): the global sum, its average over the
    ``world`` ranks, or the other parameter's contribution (``other``)."""
    return {
        describe("sync rank returns the global sum"): global_value,
        describe("sync rank parameters swapped"): other,
        describe("sync rank returns the average"): global_value / world,
    }


def _check_backward_on(backward: Callable, forward: Callable, cases: list, label: str) -> None:
    check_backward_on(
        cases,
        lambda sc: _backward_errors(backward, forward, sc),
        f"{_name(backward)}{label}",
        "dx, each rank's dgamma and dbeta, their sums",
        _name(forward),
        run=_on_cases,
    )


@paired(lambda: On([visible_case()], " on 2 ranks"))
def check_sync_backward(on: On, backward: Callable, forward: Callable) -> None:
    """Visible check of a synchronized backward on two ranks, on the caches of ``forward``."""
    _check_backward_on(backward, forward, on.cases, on.label)
