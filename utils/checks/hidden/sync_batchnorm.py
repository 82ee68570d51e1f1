"""Lesson 10's hidden cases and checks (the visible ones: ``utils.checks.sync_batchnorm``)."""

from __future__ import annotations

from utils.cases import LARGE_OFFSET, make_case
from utils.checks.hidden import hidden_twin
from utils.checks.sync_batchnorm import (
    CANCELLATION_HINT,
    SyncCase,
    check_global_moments,
    check_sync_backward,
    check_sync_forward,
)
from utils.checks.twins import On, counted

HIDDEN_SPLITS = (
    ((8, 4), (2, 2, 2, 2)),  # four ranks, equal shards
    ((9, 3), (4, 4, 1)),  # the last rank holds one sample
    ((6, 1), (1, 5)),  # a single channel, very unequal shards
    ((5, 3, 2, 2), (2, 3)),  # feature maps
    ((3, 2, 3, 2), (1, 1, 1)),  # feature maps, one image per rank
)


SPECIAL_SHAPE = (7, 3)


SPECIAL_SIZES = (1, 2, 4)


def hidden_cases(seed: int = 101_010) -> list[SyncCase]:
    """Two to four ranks, unequal shards and shards of one sample, C = 1, 4-D input; then on
    SPECIAL_SHAPE over three ranks (1, 2 and 4 samples): gamma/beta far from 1/0, a large mean
    offset (with and without a near-constant channel), a near-constant channel, non-contiguous
    shards (transposed and strided) and eps=1e-3."""
    cases = [
        SyncCase(make_case(shape, seed + i, f"random x of shape {shape}"), sizes)
        for i, (shape, sizes) in enumerate(HIDDEN_SPLITS)
    ]
    special = [
        ("gamma and beta far from 1 and 0", {"far_affine": True}, {}),
        (f"large mean offset ({LARGE_OFFSET:g})", {"offset": LARGE_OFFSET}, {}),
        (
            f"large mean offset ({LARGE_OFFSET:g}) and a near-constant channel",
            {"offset": LARGE_OFFSET, "near_constant": True},
            {"hint": CANCELLATION_HINT, "gradients": False},
        ),
        ("a near-constant channel (variance ~1e-7)", {"near_constant": True}, {}),
        ("non-contiguous shards (of a transposed x)", {"layout": "transposed"}, {}),
        ("non-contiguous shards (every other column)", {"layout": "strided"}, {}),
        ("eps=1e-3 passed as an argument", {"eps": 1e-3}, {}),
    ]
    for k, (label, options, extra) in enumerate(special, start=len(cases)):
        case = make_case(SPECIAL_SHAPE, seed + k, label, **options)
        cases.append(SyncCase(case, SPECIAL_SIZES, **extra))
    return cases


def _hidden(gradients: bool = False) -> On:
    """The hidden cases; for gradients, only those that check them."""
    cases = [sc for sc in hidden_cases() if sc.gradients or not gradients]
    return counted(cases, " on {n} hidden cases")


check_global_moments_hidden = hidden_twin(check_global_moments, _hidden)
check_sync_forward_hidden = hidden_twin(check_sync_forward, _hidden)
check_sync_backward_hidden = hidden_twin(check_sync_backward, lambda: _hidden(gradients=True))
