"""Lesson 11: the notebook's own grade cells (hidden tests included) against planted bugs.

Every kernel gets its classic mistakes planted into the instructor's solution cell (by text
edits, like the sample students): each must lose the points of the grade cells that cover it,
with a message naming the mistake. Independently written correct kernels (Welford/Chan merging
instead of two passes, a per-channel normalize, other algebra in the backward) keep every point.
The kernels run in Triton's interpreter on the CPU (the notebook's setup cell switches it on).

Planted bugs only ever read past the end of a tensor (into the checks' NaN guard band), never
write past it: a write past the end of a tensor the kernel allocated corrupts the process (the
grading kernel of such a submission dies, costing its own points only; here it would abort the
test session).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.harness import ROOT, solution_tests

# The harness executes cells without registering their source, which compiled Triton needs:
# the lesson's tests always run the interpreter (the GPU test below compiles, through the bench).
os.environ.setdefault("TRITON_INTERPRET", "1")

pytestmark = pytest.mark.slow

STATS = "test_channel_statistics"
NORMALIZE = "test_normalize_affine"
REDUCTIONS = "test_backward_reductions"
ELEMENTWISE = "test_backward_elementwise"
FORWARD = "test_function_forward"
BACKWARD = "test_function_backward"
POINTS = {STATS: 3, NORMALIZE: 2, REDUCTIONS: 3, ELEMENTWISE: 2, FORWARD: 2, BACKWARD: 3}

NCHW_OFFSETS = "(i // HW) * C * HW + c * HW + i % HW"


test_the_solution_passes_every_grade_cell, test_points_are_as_announced = solution_tests(
    POINTS, written={"written_fusion": 2}
)


def test_the_demos_run_and_agree_with_pytorch(nb):
    assert nb.namespace["forward_gap"] < 1e-4
    assert torch.equal(nb.namespace["copy"](nb.namespace["x_demo"]), nb.namespace["x_demo"])


def test_only_the_keys_pass_the_knowledge_check(nb):
    nb.assert_only_the_key_passes("test_kc_q1", "answer_q1", "c")
    nb.assert_only_the_key_passes("test_kc_q2", "answer_q2", "b")


def with_function(nb, code: str) -> str:
    """``code`` followed by the notebook's TritonBatchNorm cell: the Function must call the
    launchers ``code`` redefines (it looks them up in the namespace the test runs in)."""
    return code + "\n" + nb.cell_source("triton_batchnorm")


STATISTICS_BUGS = {
    "unbiased variance": (
        [("var = tl.sum(squares, axis=0) / m", "var = tl.sum(squares, axis=0) / (m - 1)")],
        "unbiased",
    ),
    "eps outside the square root": (
        [("1.0 / tl.sqrt(var + eps)", "1.0 / (tl.sqrt(var) + eps)")],
        "outside the square root",
    ),
    "eps fixed": ([("1.0 / tl.sqrt(var + eps)", "1.0 / tl.sqrt(var + 1e-5)")], None),
    "the channel read as one contiguous block": (
        [(NCHW_OFFSETS, "c * m + i")],
        "contiguous block",
    ),
    "a mask that lets the last block read past the end": (
        [("mask=i < m,", "mask=i < m + BLOCK,")],
        "read past the end",
    ),
    "masked lanes in the second pass": (
        [("tl.where(i < m, x.to(ACC) - mean, 0.0)", "x.to(ACC) - mean")],
        "masked lanes",
    ),
    "the one-pass E[x^2] - E[x]^2": (
        [
            (
                "total = tl.zeros([BLOCK], dtype=ACC)",
                "total = tl.zeros([BLOCK], dtype=ACC)\n    sq = tl.zeros([BLOCK], dtype=ACC)",
            ),
            ("total += x.to(ACC)", "total += x.to(ACC)\n        sq += x.to(ACC) * x.to(ACC)"),
            ("var = tl.sum(squares, axis=0) / m", "var = tl.sum(sq, axis=0) / m - mean * mean"),
        ],
        "E[x^2] - E[x]^2",
    ),
    "a torch reduction instead of the kernel": (
        [
            (
                "statistics_kernel[(c,)](x, mean, inv_std, n, c, hw, eps, BLOCK=block, "
                "ACC=accumulator(x))",
                "mean.copy_(x.transpose(0, 1).reshape(c, -1).mean(1))\n"
                "    inv_std.copy_(1 / (x.transpose(0, 1).reshape(c, -1).var(1, correction=0)"
                " + eps).sqrt())",
            )
        ],
        "calls torch's",
    ),
}

NORMALIZE_BUGS = {
    "gamma and beta swapped": (
        [("y = (x - mean) * inv_std * gamma + beta", "y = (x - mean) * inv_std * beta + gamma")],
        "gamma and beta are swapped",
    ),
    "channel index of channels-last": ([("c = (i // HW) % C", "c = i % C")], "i % C"),
    "channel index without % C": ([("c = (i // HW) % C", "c = i // HW")], "read past the end"),
    "no beta": ([("* inv_std * gamma + beta", "* inv_std * gamma")], "beta is not added"),
}

REDUCTIONS_BUGS = {
    "the two sums swapped": (
        [
            ("sum_dy_ptr + c, tl.sum(sum_dy,", "sum_dy_ptr + c, tl.sum(SWAP,"),
            ("sum_dy_xhat_ptr + c, tl.sum(sum_dy_xhat,", "sum_dy_xhat_ptr + c, tl.sum(sum_dy,"),
            ("tl.sum(SWAP,", "tl.sum(sum_dy_xhat,"),
        ],
        "swapped",
    ),
    "dgamma from x instead of x_hat": (
        [("sum_dy_xhat += dy * (x - mean) * inv_std", "sum_dy_xhat += dy * x")],
        "uses x instead",
    ),
    "the channel read as one contiguous block": (
        [(NCHW_OFFSETS, "c * m + i")],
        "contiguous block",
    ),
    "a mask one past the end": ([("mask=i < m,", "mask=i <= m,")], "read past the end"),
}

ELEMENTWISE_BUGS = {
    "no mean term": (
        [("dy - sum_dy / M - x_hat", "dy - x_hat")],
        "missing the mean term",
    ),
    "no variance term": (
        [("dy - sum_dy / M - x_hat * sum_dy_xhat / M", "dy - sum_dy / M")],
        "missing the variance term",
    ),
    "no gamma": ([("dx = gamma * inv_std * (", "dx = inv_std * (")], "forgets gamma"),
    "M - 1": ([("        n * hw,\n", "        n * hw - 1,\n")], "M - 1"),
    "channel index of channels-last": ([("c = (i // HW) % C", "c = i % C")], "i % C"),
}


def _cases(cell: str, grade_ids: list[str], bugs: dict) -> list:
    return [
        pytest.param(cell, grade_ids, edits, hint, id=f"{cell}: {label}")
        for label, (edits, hint) in bugs.items()
    ]


KERNEL_BUGS = [
    *_cases("channel_statistics", [STATS], STATISTICS_BUGS),
    *_cases("normalize_affine", [NORMALIZE], NORMALIZE_BUGS),
    *_cases("backward_reductions", [REDUCTIONS], REDUCTIONS_BUGS),
    *_cases("backward_elementwise", [ELEMENTWISE], ELEMENTWISE_BUGS),
]


@pytest.mark.parametrize("cell, grade_ids, edits, hint", KERNEL_BUGS)
def test_kernel_bugs_lose_their_points_and_are_named(nb, cell, grade_ids, edits, hint):
    nb.assert_loses_points(grade_ids, nb.planted(cell, *edits), hint)


@pytest.mark.parametrize(
    "bug, grade_id",
    [(KERNEL_BUGS[0], FORWARD), (KERNEL_BUGS[-1], BACKWARD)],
    ids=["statistics bug -> forward", "dx bug -> backward"],
)
def test_a_broken_kernel_also_fails_the_function_that_uses_it(nb, bug, grade_id):
    cell, _, edits, _ = bug.values
    nb.assert_loses_points([grade_id], with_function(nb, nb.planted(cell, *edits)))


FUNCTION_BUGS = {
    "forgets .contiguous() (channels-last input)": (
        [("x = x.contiguous()\n        ", "")],
        [FORWARD],
        None,
    ),
    "dgamma and dbeta swapped": (
        [
            (
                "dgamma, dbeta = sum_dy_xhat.to(gamma.dtype), sum_dy.to(gamma.dtype)",
                "dgamma, dbeta = sum_dy.to(gamma.dtype), sum_dy_xhat.to(gamma.dtype)",
            )
        ],
        [BACKWARD],
        "swapped",
    ),
    "F.batch_norm in forward": (
        [
            (
                "y = normalize_affine(x, mean, inv_std, gamma, beta)",
                "y = F.batch_norm(x, None, None, gamma, beta, True, 0.0, eps)",
            )
        ],
        [FORWARD, BACKWARD],
        "calls torch's batch_norm",
    ),
    "autograd in backward": (
        [
            (
                "dx = backward_elementwise(dy, x, mean, inv_std, gamma, sum_dy, sum_dy_xhat)",
                "with torch.enable_grad():\n"
                "            xg = x.detach().requires_grad_()\n"
                "            y = normalize_affine(xg, mean, inv_std, gamma, gamma)\n"
                "            (dx,) = torch.autograd.grad(y, xg, dy)",
            )
        ],
        [BACKWARD],
        None,
    ),
}


@pytest.mark.parametrize("label", list(FUNCTION_BUGS))
def test_function_bugs_lose_their_points(nb, label):
    edits, grade_ids, hint = FUNCTION_BUGS[label]
    nb.assert_loses_points(grade_ids, nb.planted("triton_batchnorm", *edits), hint)


# --- independent correct implementations -----------------------------------------------------

WELFORD_STATISTICS = """
@triton.jit
def statistics_kernel(
    x_ptr, mean_ptr, inv_std_ptr, N, C, HW, eps, BLOCK: tl.constexpr, ACC: tl.constexpr
):
    # One read of x: each block's own (count, mean, M2), merged into the running totals by
    # Chan, Golub and LeVeque's formula.
    c = tl.program_id(0)
    m = N * HW
    count = tl.zeros([1], dtype=ACC).sum(0)
    mean = tl.zeros([1], dtype=ACC).sum(0)
    m2 = tl.zeros([1], dtype=ACC).sum(0)
    for start in range(0, m, BLOCK):
        i = start + tl.arange(0, BLOCK)
        inside = i < m
        offsets = (i // HW) * C * HW + c * HW + i % HW
        x = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(ACC)
        n_b = tl.sum(inside.to(ACC), axis=0)
        mean_b = tl.sum(x, axis=0) / n_b
        d = tl.where(inside, x - mean_b, 0.0)
        n = count + n_b
        delta = mean_b - mean
        mean = mean + delta * n_b / n
        m2 = m2 + tl.sum(d * d, axis=0) + delta * delta * count * n_b / n
        count = n
    tl.store(mean_ptr + c, mean)
    tl.store(inv_std_ptr + c, 1.0 / tl.sqrt(m2 / m + eps))


def channel_statistics(x, eps=1e-5, block=1024):
    n, c, hw = layout(x)
    mean = torch.empty(c, dtype=statistics_dtype(x), device=x.device)
    inv_std = torch.empty_like(mean)
    statistics_kernel[(c,)](x, mean, inv_std, n, c, hw, eps, BLOCK=block, ACC=accumulator(x))
    return mean, inv_std
"""

PER_CHANNEL_NORMALIZE = """
@triton.jit
def normalize_by_channel(
    x_ptr, y_ptr, mean_ptr, inv_std_ptr, gamma_ptr, beta_ptr, N, C, HW,
    BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    # One program per (sample, channel) run of HW values: scale and shift are scalars.
    row = tl.program_id(0)
    c = row % C
    scale = tl.load(gamma_ptr + c).to(ACC) * tl.load(inv_std_ptr + c).to(ACC)
    shift = tl.load(beta_ptr + c).to(ACC) - tl.load(mean_ptr + c).to(ACC) * scale
    for start in range(0, HW, BLOCK):
        s = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * HW + s, mask=s < HW, other=0.0).to(ACC)
        y = (x * scale + shift).to(y_ptr.dtype.element_ty)
        tl.store(y_ptr + row * HW + s, y, mask=s < HW)


def normalize_affine(x, mean, inv_std, gamma, beta, block=1024):
    n, c, hw = layout(x)
    y = torch.empty_like(x)
    normalize_by_channel[(n * c,)](
        x, y, mean, inv_std, gamma, beta, n, c, hw, BLOCK=block, ACC=accumulator(x)
    )
    return y
"""

OTHER_ALGEBRA_BACKWARD = """
@triton.jit
def sums_kernel(
    dy_ptr, x_ptr, mean_ptr, inv_std_ptr, sum_dy_ptr, sum_dy_xhat_ptr, N, C, HW,
    BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    # sum(dy * x_hat) = inv_std * (sum(dy * x) - mean * sum(dy)): x_hat never formed.
    c = tl.program_id(0)
    m = N * HW
    s_dy = tl.zeros([BLOCK], dtype=ACC)
    s_dyx = tl.zeros([BLOCK], dtype=ACC)
    for start in range(0, m, BLOCK):
        i = start + tl.arange(0, BLOCK)
        n = i // HW
        offsets = n * C * HW + c * HW + (i - n * HW)
        dy = tl.load(dy_ptr + offsets, mask=i < m, other=0.0).to(ACC)
        s_dy += dy
        s_dyx += dy * tl.load(x_ptr + offsets, mask=i < m, other=0.0).to(ACC)
    total_dy = tl.sum(s_dy, axis=0)
    mean = tl.load(mean_ptr + c).to(ACC)
    tl.store(sum_dy_ptr + c, total_dy)
    inv_std = tl.load(inv_std_ptr + c).to(ACC)
    tl.store(sum_dy_xhat_ptr + c, inv_std * (tl.sum(s_dyx, axis=0) - mean * total_dy))


def backward_reductions(dy, x, mean, inv_std, block=1024):
    n, c, hw = layout(x)
    sums = torch.empty(2, c, dtype=statistics_dtype(x), device=x.device)
    sums_kernel[(c,)](
        dy, x, mean, inv_std, sums[0], sums[1], n, c, hw, BLOCK=block, ACC=accumulator(x)
    )
    return sums[0], sums[1]


@triton.jit
def dx_by_coefficients(
    dy_ptr, x_ptr, a_ptr, b_ptr, k_ptr, dx_ptr, total, C, HW, BLOCK: tl.constexpr, ACC: tl.constexpr
):
    # dx = a * dy + b * x + k per channel, with a, b, k precomputed on the host from (C,) vectors.
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = i < total
    c = (i // HW) % C
    dy = tl.load(dy_ptr + i, mask=inside, other=0.0).to(ACC)
    x = tl.load(x_ptr + i, mask=inside, other=0.0).to(ACC)
    a = tl.load(a_ptr + c, mask=inside, other=0.0)
    b = tl.load(b_ptr + c, mask=inside, other=0.0)
    k = tl.load(k_ptr + c, mask=inside, other=0.0)
    tl.store(dx_ptr + i, (a * dy + b * x + k).to(dx_ptr.dtype.element_ty), mask=inside)


def backward_elementwise(dy, x, mean, inv_std, gamma, sum_dy, sum_dy_xhat, block=1024):
    n, c, hw = layout(x)
    m = n * hw
    a = gamma * inv_std
    b = -a * inv_std * sum_dy_xhat / m
    k = -a * sum_dy / m - b * mean
    dx = torch.empty_like(x)
    grid = (triton.cdiv(x.numel(), block),)
    dx_by_coefficients[grid](
        dy, x, a, b, k, dx, x.numel(), c, hw, BLOCK=block, ACC=accumulator(x)
    )
    return dx
"""


@pytest.mark.parametrize(
    "label, code, grade_ids",
    [
        ("Welford/Chan statistics", WELFORD_STATISTICS, [STATS]),
        ("per-channel normalize", PER_CHANNEL_NORMALIZE, [NORMALIZE]),
        ("other algebra in the backward", OTHER_ALGEBRA_BACKWARD, [REDUCTIONS, ELEMENTWISE]),
    ],
)
def test_independent_kernels_keep_full_points(nb, label, code, grade_ids):
    nb.assert_keeps_points(grade_ids, code)


def test_a_function_built_on_the_independent_kernels_keeps_full_points(nb):
    code = WELFORD_STATISTICS + PER_CHANNEL_NORMALIZE + OTHER_ALGEBRA_BACKWARD
    nb.assert_keeps_points(list(POINTS), with_function(nb, code))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_kernels_on_cuda_match_cpu_float64_and_the_bench_runs():
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/bench_triton.py"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GB/s" in done.stdout
