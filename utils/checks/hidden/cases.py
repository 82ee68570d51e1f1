"""The hidden BatchNorm cases that lessons 02, 03 and later share (``hidden_cases``)."""

from __future__ import annotations

from utils.cases import LARGE_OFFSET, Case, make_case


def hidden_cases(
    shapes: tuple[tuple[int, ...], ...] = ((6, 4), (2, 3), (7, 1)),
    param_axis: int = 1,
    seed: int = 31_415,
) -> list[Case]:
    """The hidden cases: one random case per shape (include a batch of 2 and a single
    feature), then on the first shape: far gamma/beta, a large mean offset, a near-constant
    feature, a transposed and a strided x, and a non-default eps."""
    first = shapes[0]
    cases = [
        make_case(s, seed + i, f"random x of shape {s}", param_axis=param_axis)
        for i, s in enumerate(shapes)
    ]
    special = [
        ("gamma and beta far from 1 and 0", {"far_affine": True}),
        (f"large mean offset ({LARGE_OFFSET:g})", {"offset": LARGE_OFFSET}),
        ("a near-constant feature (variance ~1e-7)", {"near_constant": True}),
        ("non-contiguous x (a transposed view)", {"layout": "transposed"}),
        ("non-contiguous x (every other column of a wider array)", {"layout": "strided"}),
        ("eps=1e-3 passed as an argument", {"eps": 1e-3}),
    ]
    for k, (label, options) in enumerate(special, start=len(shapes)):
        cases.append(make_case(first, seed + k, label, param_axis=param_axis, **options))
    return cases
