"""Lesson 06's hidden cases and checks (the visible ones: ``utils.checks.spatial``)."""

from __future__ import annotations

from collections.abc import Callable

from utils.cases import Case, make_case
from utils.checks.hidden import hidden_twin
from utils.checks.spatial import (
    ROUTE_1,
    ROUTE_2_RULE,
    ChannelsLastCase,
    _forward_error,
    _name,
    channels_last_view,
    check_channel_rows,
    check_spatial_backward,
    check_spatial_backward_direct,
)
from utils.checks.twins import On, counted
from utils.diagnose import on_cases
from utils.diagnose import report as report_line
from utils.guard import names_refused

HIDDEN_SHAPES = (
    (2, 3, 2, 3),  # W == C: gamma of shape (C,) broadcast along W runs without an error
    (3, 2, 3, 1),  # H != W, W = 1
    (1, 3, 2, 2),  # a batch of one: legal here, each channel still has H * W values
    (4, 1, 3, 2),  # a single channel
    (5, 3, 1, 1),  # 1 x 1 maps: the same as lesson 02's batch norm
)


SPECIAL_SHAPE = (2, 3, 3, 2)


def hidden_cases(seed: int = 60_606) -> list[Case]:
    """One random case per shape of HIDDEN_SHAPES, then on SPECIAL_SHAPE: gamma/beta far from
    1/0, a large offset, a near-constant channel, a channels-last view, an F-ordered and a
    strided x, and a non-default eps."""
    cases = [
        make_case(shape, seed + i, f"random x of shape {shape}")
        for i, shape in enumerate(HIDDEN_SHAPES)
    ]
    special = [
        ("gamma and beta far from 1 and 0", {"far_affine": True}),
        ("large mean offset (1e4)", {"offset": 1e4}),
        ("a near-constant channel (variance ~1e-7)", {"near_constant": True}),
        ("non-contiguous x (a transposed view)", {"layout": "transposed"}),
        ("non-contiguous x (every other column of a wider array)", {"layout": "strided"}),
        ("eps=1e-3 passed as an argument", {"eps": 1e-3}),
    ]
    for k, (label, options) in enumerate(special, start=len(cases)):
        cases.append(make_case(SPECIAL_SHAPE, seed + k, label, **options))
    nhwc = make_case(SPECIAL_SHAPE, seed + len(cases), "non-contiguous x (a channels-last view)")
    cases.append(ChannelsLastCase(**{**vars(nhwc), "x": channels_last_view(nhwc.x)}))
    return cases


def _hidden() -> On:
    return counted(hidden_cases(), " on {n} hidden cases")


check_channel_rows_hidden = hidden_twin(
    check_channel_rows, lambda: counted(hidden_cases(), " on {n} cases")
)
check_spatial_backward_hidden = hidden_twin(check_spatial_backward, _hidden)
check_spatial_backward_direct_hidden = hidden_twin(check_spatial_backward_direct, _hidden)


def check_spatial_forward_hidden(forward: Callable) -> None:
    """Hidden check of a spatial forward on every hidden case."""
    cases = hidden_cases()
    err = on_cases(cases, lambda c: _forward_error(forward, c))
    report_line(f"{_name(forward)} on {len(cases)} hidden cases", err)


def check_spatial_forward_direct_hidden(forward: Callable) -> None:
    """``check_spatial_forward_hidden`` for route 2, with the functions of ``ROUTE_1`` refused."""
    with names_refused((forward,), ROUTE_1, ROUTE_2_RULE):
        check_spatial_forward_hidden(forward)
