"""Time lesson 09's BatchNorm2d (the instructor's solution) against torch.nn.BatchNorm2d.

    python bench/bench_batchnorm_module.py [--shape 32 64 32 32] [--repeat 5] [--number 10]

The solution's BatchNormFunction and BatchNorm2d are taken from the solution notebook (its
set-up cell and the two exercise cells, executed here), so the bench times exactly what the
lesson teaches. For every device (the CPU, and CUDA when torch.cuda.is_available()) it prints
the best time of one forward + backward pass over ``repeat`` timeit repeats of ``number`` calls,
for: a chain of plain autograd operations, the solution's module, nn.BatchNorm2d; then the
ratio solution / nn.BatchNorm2d. Eval-mode forward passes are timed too.
"""

from __future__ import annotations

import argparse
import timeit
from pathlib import Path

import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions/09_batchnorm_in_pytorch/09_batchnorm_in_pytorch.ipynb"
CELLS = ("setup", "batchnorm_function", "batchnorm2d_module")


def solution_classes() -> tuple[type, type]:
    """(BatchNormFunction, BatchNorm2d) as defined by the solution notebook."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in CELLS:
            exec(compile(cell.source, cell.metadata["nbgrader"]["grade_id"], "exec"), namespace)
    return namespace["BatchNormFunction"], namespace["BatchNorm2d"]


class PlainBatchNorm2d(torch.nn.Module):
    """The same normalization as a chain of autograd operations."""

    def __init__(self, c: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(c))
        self.bias = torch.nn.Parameter(torch.zeros(c))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
        x_hat = (x - mean) / torch.sqrt(var + 1e-5)
        return x_hat * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def best_ms(step, device: str, number: int, repeat: int) -> float:
    """Best time of one call of ``step`` in ms (timeit repeats; CUDA synchronized)."""

    def synced():
        step()
        if device == "cuda":
            torch.cuda.synchronize()

    synced()  # warm-up
    return min(timeit.repeat(synced, number=number, repeat=repeat)) / number * 1e3


def bench_device(module_cls, device: str, shape, number: int, repeat: int) -> dict:
    x = torch.randn(*shape, device=device, requires_grad=True)
    dy = torch.randn_like(x)
    layers = {
        "plain autograd ops": PlainBatchNorm2d(shape[1]),
        "solution BatchNorm2d": module_cls(shape[1]),
        "nn.BatchNorm2d": torch.nn.BatchNorm2d(shape[1]),
    }
    times = {}
    for name, layer in layers.items():
        layer.to(device).train()
        times["train fwd+bwd", name] = best_ms(
            lambda m=layer: m(x).backward(dy), device, number, repeat
        )
        layer.eval()
        with torch.no_grad():
            times["eval fwd", name] = best_ms(lambda m=layer: m(x), device, number, repeat)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[32, 64, 32, 32])
    parser.add_argument("--number", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    _, module_cls = solution_classes()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"x of shape {tuple(args.shape)}, float32, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads; best of {args.repeat} x {args.number} calls"
    )
    for device in devices:
        times = bench_device(module_cls, device, args.shape, args.number, args.repeat)
        for (what, name), ms in times.items():
            print(f"{device:>4} {what:>14} {name:>22}: {ms:8.3f} ms")
        for what in ("train fwd+bwd", "eval fwd"):
            ratio = times[what, "solution BatchNorm2d"] / times[what, "nn.BatchNorm2d"]
            print(f"{device:>4} {what:>14}: solution / nn.BatchNorm2d = {ratio:.2f}x")
    if "cuda" not in devices:
        print("CUDA skipped: torch.cuda.is_available() is False")


if __name__ == "__main__":
    main()
