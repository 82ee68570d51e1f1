"""A data-parallel world for lesson 10: ranks that share a batch and sum arrays with all-reduce.

``simulate`` runs one function per rank, each in its own thread, with an ``all_reduce`` that
returns the elementwise sum over the ranks (added in rank order, so the result is the same on
every run). Collective mistakes become clear errors instead of deadlocks: a rank that calls
``all_reduce`` fewer times than another, arrays of different shapes on different ranks, a rank
that never answers (timeout). Threads, not processes: the grading sandbox forbids fork.

``run_distributed`` is the real thing: one process per rank (fork), ``torch.distributed`` with
the gloo backend on the loopback interface, and an ``all_reduce`` wrapping ``dist.all_reduce``.
"""

from __future__ import annotations

import multiprocessing
import queue
import socket
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta

import numpy as np

TIMEOUT = 5.0
"""Seconds a rank waits for the others inside all_reduce before giving up."""


class CollectiveError(RuntimeError):
    """The ranks did not take part in all_reduce consistently (count, shapes or time)."""


class _RankLeft(Exception):
    """Internal: the rank waited in all_reduce for a rank that had already returned."""


class _World:
    """The shared state of one simulated run: what each rank handed to each all_reduce."""

    def __init__(self, size: int, timeout: float):
        self.size = size
        self.timeout = timeout
        self.cond = threading.Condition()
        self.deposits: dict[int, list] = {}  # call index -> one array per rank
        self.calls = [0] * size
        self.finished = [False] * size

    def all_reduce_for(self, rank: int) -> Callable[[np.ndarray], np.ndarray]:
        def all_reduce(array):
            """The elementwise sum of ``array`` over all ranks (a new array)."""
            return self._all_reduce(rank, array)

        return all_reduce

    def _all_reduce(self, rank: int, array) -> np.ndarray:
        given = np.array(array)  # a private copy: the caller may change its array afterwards
        if given.dtype.kind == "f" and given.dtype.itemsize < 8:
            raise CollectiveError(
                f"all_reduce on rank {rank} got a {given.dtype} array; its sums keep only about "
                "7 significant digits. Reduce float64 arrays (leave out astype(np.float32))."
            )
        with self.cond:
            k = self.calls[rank]
            self.calls[rank] += 1
            slots = self.deposits.setdefault(k, [None] * self.size)
            slots[rank] = given
            self.cond.notify_all()
            complete = self.cond.wait_for(
                lambda: all(s is not None for s in slots) or self._someone_left(k), self.timeout
            )
            if not all(s is not None for s in slots):
                if complete:
                    raise _RankLeft()
                raise CollectiveError(
                    f"all_reduce call {k + 1} on rank {rank} waited {self.timeout:g} s for "
                    f"rank(s) {[r for r, s in enumerate(slots) if s is None]}, which neither "
                    "called all_reduce nor returned (an endless loop?)."
                )
        shapes = [s.shape for s in slots]
        if len(set(shapes)) > 1:
            listed = ", ".join(f"rank {r} {shape}" for r, shape in enumerate(shapes))
            raise CollectiveError(
                f"all_reduce call {k + 1} got arrays of different shapes: {listed}. Every rank "
                "must reduce an array of the same shape (e.g. one value per channel)."
            )
        total = slots[0].copy()
        for s in slots[1:]:
            total = total + s
        return np.asarray(total)

    def _someone_left(self, k: int) -> bool:
        return any(
            done and calls <= k for done, calls in zip(self.finished, self.calls, strict=True)
        )

    def leave(self, rank: int) -> None:
        with self.cond:
            self.finished[rank] = True
            self.cond.notify_all()


def _count_mismatch(calls: Sequence[int]) -> CollectiveError:
    counts = ", ".join(
        f"rank {r} called it {c} time{'s' if c != 1 else ''}" for r, c in enumerate(calls)
    )
    return CollectiveError(
        f"all_reduce must be called the same number of times on every rank: {counts}. In "
        "a real job the ranks that call it more often would wait forever; check for a branch "
        "that depends on the local shard (its size, say)."
    )


def run_ranks(fn: Callable, rank_args: Sequence[tuple], timeout: float = TIMEOUT, **kwargs):
    """Run ``fn(*rank_args[r], all_reduce=..., **kwargs)`` for every rank r, one thread each.

    rank_args: one tuple of positional arguments per rank (the world size is its length).
    Returns the list of the ranks' results, in rank order. Raises the exception of the lowest
    rank that raised one (a CollectiveError for an inconsistent all_reduce), a CollectiveError
    when the ranks called all_reduce different numbers of times, or when a rank did not
    finish within ``timeout`` seconds of the others.
    """
    size = len(rank_args)
    world = _World(size, timeout)
    results: list = [None] * size
    errors: list = [None] * size

    def body(rank: int) -> None:
        try:
            results[rank] = fn(*rank_args[rank], all_reduce=world.all_reduce_for(rank), **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors[rank] = exc
        finally:
            world.leave(rank)

    threads = [
        threading.Thread(target=body, args=(r,), name=f"rank {r}", daemon=True) for r in range(size)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    stuck = [r for r, t in enumerate(threads) if t.is_alive()]
    if stuck:
        raise CollectiveError(f"rank(s) {stuck} did not finish within {timeout:g} s.")
    real = [e for e in errors if e is not None and not isinstance(e, _RankLeft)]
    if real:
        raise real[0]
    if len(set(world.calls)) > 1:
        raise _count_mismatch(world.calls)
    return results


def simulate(fn: Callable, shards: Sequence, *args, timeout: float = TIMEOUT, **kwargs) -> list:
    """Run ``fn(shards[r], *args, all_reduce=..., **kwargs)`` on every rank r (see run_ranks).

    shards: one array per rank (its part of the global batch). Returns the results in rank
    order.
    """
    return run_ranks(fn, [(s, *args) for s in shards], timeout=timeout, **kwargs)


def split_batch(x: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """x split along axis 0 into consecutive shards of the given sizes (views of x)."""
    if sum(sizes) != x.shape[0]:
        raise ValueError(f"shard sizes {list(sizes)} do not add up to the batch {x.shape[0]}")
    return np.split(x, np.cumsum(sizes)[:-1], axis=0)


# --- the real thing: torch.distributed with gloo, one process per rank -------------------------


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_all_reduce(array) -> np.ndarray:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(np.array(array, dtype=np.float64))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.numpy()


def _rank_main(rank, world_size, port, fn, rank_args, kwargs, results, timeout):
    """One process of run_distributed: join the group, run fn, send back its result."""
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout),
        )
        try:
            value = fn(*rank_args[rank], all_reduce=_dist_all_reduce, **kwargs)
        finally:
            dist.destroy_process_group()
        results.put((rank, value, None))
    except BaseException:  # the parent shows it; a child must not die silently
        results.put((rank, None, traceback.format_exc()))


def gloo_available() -> bool:
    """Whether torch.distributed with the gloo backend can be used here."""
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_gloo_available()


def run_distributed(
    fn: Callable, rank_args: Sequence[tuple], timeout: float = 60.0, **kwargs
) -> list:
    """Like ``run_ranks``, but each rank is a real process in a gloo process group.

    fn may be defined in a notebook: the processes are forked, so nothing is pickled on the
    way in; the results travel back pickled (numpy arrays, dicts of them). Returns the ranks'
    results in rank order. Raises RuntimeError with a rank's traceback when one failed or
    did not answer within ``timeout`` seconds, PermissionError where fork is forbidden (the
    grading sandbox), and RuntimeError when gloo is not available.
    """
    if not gloo_available():
        raise RuntimeError("torch.distributed with the gloo backend is not available here")
    world_size = len(rank_args)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    port = free_port()
    processes = [
        context.Process(
            target=_rank_main,
            args=(r, world_size, port, fn, rank_args, kwargs, results, timeout),
            daemon=True,
        )
        for r in range(world_size)
    ]
    try:
        for p in processes:
            p.start()
        values: list = [None] * world_size
        for _ in range(world_size):
            try:
                rank, value, error = results.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError(f"no answer from the ranks within {timeout:g} s") from None
            if error is not None:
                raise RuntimeError(f"rank {rank} failed:\n{error}")
            values[rank] = value
        return values
    finally:
        for p in processes:
            if p.pid is not None:  # started
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)
        results.close()
