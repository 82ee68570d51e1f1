"""Lesson 11's Triton kernels on a GPU: achieved GB/s against F.batch_norm and a copy.

    python bench/bench_triton.py            # the lesson's table (section 6), on CUDA
    python bench/bench_triton.py --check    # the kernels on CUDA against CPU float64 first

The kernels, the autograd Function and the timing code are the solution notebook's own cells
(executed here with their source registered, as Triton's compiler reads a kernel's source), so
the bench measures exactly what the lesson teaches and prints the table its section 6 prints:
for each shape, float32 and bfloat16, NCHW and channels-last, the GB/s of one forward +
backward of TritonBatchNorm and of F.batch_norm (counted at the minimal 8 tensor passes), and
of a copy. Without a CUDA device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import linecache
import os
import sys
from pathlib import Path

import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions/11_fused_batchnorm_kernel/11_fused_batchnorm_kernel.ipynb"
KERNEL_CELLS = (
    "setup",
    "copy_kernel",
    "helpers",
    "channel_statistics",
    "normalize_affine",
    "backward_reductions",
    "backward_elementwise",
    "triton_batchnorm",
)


def run_cells(names, namespace: dict) -> dict:
    """Execute the notebook cells ``names`` (by cell id) in ``namespace``, each with its source
    in ``linecache`` under ``<lesson11:ID>`` so that ``inspect.getsource`` finds the kernels."""
    cells = {cell.id: cell for cell in nbformat.read(NOTEBOOK, as_version=4).cells}
    for name in names:
        source = cells[name].source
        filename = f"<lesson11:{name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)
    return namespace


def check_on_cuda(ns: dict) -> float:
    """Largest relative error of TritonBatchNorm's y, dx, dgamma, dbeta on CUDA (float64 and
    float32) against F.batch_norm with autograd on the CPU in float64."""
    torch.manual_seed(0)
    worst = 0.0
    for dtype, shape in ((torch.float64, (4, 3, 7, 5)), (torch.float32, (16, 8, 33, 31))):
        x = torch.randn(shape, dtype=torch.float64) * 3 + 5
        gamma = torch.rand(shape[1], dtype=torch.float64) + 0.5
        beta = torch.randn(shape[1], dtype=torch.float64)
        dy = torch.randn(shape, dtype=torch.float64)
        leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]
        y_ref = torch.nn.functional.batch_norm(leaves[0], None, None, *leaves[1:], training=True)
        y_ref.backward(dy)
        gpu = [t.to("cuda", dtype).requires_grad_() for t in (x, gamma, beta)]
        y = ns["TritonBatchNorm"].apply(*gpu, 1e-5)
        y.backward(dy.to("cuda", dtype))
        pairs = [(y, y_ref)] + [(g.grad, r.grad) for g, r in zip(gpu, leaves, strict=True)]
        err = max(
            ((got.double().cpu() - ref).abs().max() / ref.abs().max()).item() for got, ref in pairs
        )
        print(f"{dtype}: largest relative error of y, dx, dgamma, dbeta vs CPU float64: {err:.1e}")
        worst = max(worst, err)
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with CPU float64 first")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: the bench needs a GPU (the interpreter times Python, not memory)")
        return 0
    os.environ["TRITON_INTERPRET"] = "0"  # compiled kernels, before the notebook imports triton
    ns = run_cells(KERNEL_CELLS, {"__name__": "__main__"})
    if args.check and check_on_cuda(ns) > 1e-4:
        return 1
    print(f"{torch.cuda.get_device_name()}, Triton kernels vs F.batch_norm vs a copy:")
    run_cells(("gpu_timing",), ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
