"""grader.zygote: warm kernels forked per notebook start clean, work, and end with their worker.

Kernels start as grading starts them (``tests/test_grader_confine.py``'s ``Kernel``: the
sandbox's kernel manager, a lesson's policy, no inline figures), so they are forked by this test
process's zygote; every refusal of the confinement is observed on these kernels there.
"""

from __future__ import annotations

import time

import pytest
from test_grader_confine import Kernel, needs_landlock

from grader import zygote

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not zygote.wanted(), reason="no warm kernels on this system"),
]

MESS = """
    import os, random, statistics, sys, warnings
    import numpy as np, torch, matplotlib
    np.seterr(all="raise")
    np.set_printoptions(precision=1)
    np.random.seed(0)
    np.pi = 3
    statistics.mean = None
    sys.modules["numpy"].MESSED = True
    sys.path.insert(0, "/messed")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(2)
    matplotlib.rcParams["lines.linewidth"] = 7.0
    os.environ["NORMLAB_MESSED"] = "1"
    warnings.filterwarnings("error", message="normlab-messed")
    open(os.path.expanduser("~/messed.txt"), "w").write("x")
    open(os.path.join(os.environ["TMPDIR"], "messed.txt"), "w").write("x")
    import builtins
    builtins.MESSED = True
    print("messed", os.getpid())
"""
LOOK = """
    import builtins, os, statistics, sys, warnings
    import numpy as np, torch, matplotlib
    seen = {
        "seterr": np.geterr()["divide"] == "raise",
        "printoptions": np.get_printoptions()["precision"] == 1,
        "pi": np.pi == 3,
        "statistics": statistics.mean is None,
        "module attribute": hasattr(np, "MESSED"),
        "sys.path": "/messed" in sys.path,
        "default dtype": torch.get_default_dtype() == torch.float64,
        "threads": torch.get_num_threads() != 1,
        "rcParams": matplotlib.rcParams["lines.linewidth"] == 7.0,
        "environment": "NORMLAB_MESSED" in os.environ,
        "warnings": any("normlab-messed" in str(f[1]) for f in warnings.filters),
        "home file": os.path.exists(os.path.expanduser("~/messed.txt")),
        "tmp file": os.path.exists(os.path.join(os.environ["TMPDIR"], "messed.txt")),
        "builtins": hasattr(builtins, "MESSED"),
        "numpy seed": (np.random.get_state()[1] == np.random.RandomState(0).get_state()[1]).all(),
        "torch seed": torch.initial_seed() == 0,
    }
    print(",".join(sorted(k for k, v in seen.items() if v)) or "-", os.getpid())
"""
EVERYTHING = (
    "builtins,default dtype,environment,home file,module attribute,numpy seed,pi,"
    "printoptions,rcParams,seterr,statistics,sys.path,threads,tmp file,torch seed,warnings"
)


def _forked(kernel: Kernel) -> zygote.ForkedKernel:
    process = kernel.km.provisioner.process
    assert isinstance(process, zygote.ForkedKernel), type(process)
    return process


@needs_landlock
def test_nothing_one_notebook_does_is_seen_by_the_next_from_the_same_zygote():
    first = Kernel("09_batchnorm_in_pytorch")
    try:
        out = first.run(MESS)
        assert out["status"] == "ok", out
        assert first.run(LOOK)["stdout"].rsplit(" ", 1)[0] == EVERYTHING  # every change took
        first_pid = _forked(first).pid
    finally:
        first.close()
    second = Kernel("09_batchnorm_in_pytorch")
    try:
        seen, pid = second.run(LOOK)["stdout"].rsplit(" ", 1)
        assert seen == "-"
        assert int(pid) != first_pid and _forked(second).zygote_threads == 1
    finally:
        second.close()


@needs_landlock
def test_a_forked_kernel_runs_torch_and_blas_work_on_one_thread_each():
    kernel = Kernel("09_batchnorm_in_pytorch")
    try:
        cell = """
            import concurrent.futures, os, tempfile, threadpoolctl
            import numpy as np, torch
            def work(i):
                a = torch.randn(96, 96, dtype=torch.float64, requires_grad=True)
                (a @ a).sum().backward()
                b = np.random.default_rng(i).normal(size=(128, 128))
                return bool(a.grad.shape == (96, 96)) + bool(np.linalg.inv(b @ b.T).any())
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                total = sum(pool.map(work, range(8)))
            pools = {p["num_threads"] for p in threadpoolctl.threadpool_info()}
            with tempfile.NamedTemporaryFile() as scratch:  # in the kernel's own TMPDIR
                mine = scratch.name.startswith(os.getcwd() + "/")
            print(total, torch.get_num_threads(), sorted(pools), mine)
        """
        out = kernel.run(cell)
        assert out["status"] == "ok", out
        assert out["stdout"].split() == ["16", "1", "[1]", "True"]
        assert _forked(kernel).zygote_threads == 1
    finally:
        kernel.close()


@needs_landlock
def test_a_numpy_lesson_forks_from_a_zygote_that_never_imported_torch():
    kernel = Kernel("02_batchnorm_forward")
    try:
        out = kernel.run("import sys; print('torch' in sys.modules, 'numpy' in sys.modules)")
        assert out["stdout"].split() == ["False", "True"]
        _forked(kernel)
    finally:
        kernel.close()


@needs_landlock
def test_a_kernel_dies_with_its_zygote():
    kernel = Kernel("02_batchnorm_forward")
    try:
        assert kernel.run("print(2 + 2)")["stdout"] == "4\n"
        zygote.close_all()  # what happens when the worker ends: its zygotes close
        deadline = time.monotonic() + 10
        while kernel.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not kernel.alive()
    finally:
        kernel.close()
    again = Kernel("02_batchnorm_forward")  # a new zygote for the next notebook
    try:
        assert again.run("print(3 + 3)")["stdout"] == "6\n"
        _forked(again)
    finally:
        again.close()


def test_commands_the_zygote_cannot_start_fall_back_to_a_new_process():
    rules = '{"figures": true, "policy": {"torch": false}}'
    grading = ["python", "-I", "-m", "grader.launcher", "0", rules, "--", "python", "-m", "x"]
    assert zygote.launch_request(grading, {}) is None  # inline figures
    assert zygote.launch_request(["python", "-m", "ipykernel_launcher"], {}) is None
    no_figures = grading.copy()
    no_figures[5] = '{"figures": false, "policy": {"torch": false}}'
    request, flavour = zygote.launch_request(no_figures, {"cwd": "/tmp", "env": {"A": "1"}})
    assert flavour == "numpy" and request["cwd"] == "/tmp" and request["env"]["A"] == "1"
    assert request["argv"] == no_figures[4:]
