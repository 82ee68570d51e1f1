"""The checker's channel: plain data only, hostile bytes refused, and the checker driving a
kernel-side server (here in a thread of the test process) exactly as a test cell would."""

from __future__ import annotations

import json
import socket
import struct
import threading

import nbformat
import numpy as np
import pytest
from fixtures.toy import grade_id
from harness import kernel_server, solution_path

from grader import checker
from grader.channel import (
    MAX_DEPTH,
    ChannelError,
    Decoder,
    Encoder,
    Endpoint,
    with_layout,
)


def round_trip(value):
    """``value`` sent through a real socket pair and decoded on the other side."""
    ours, theirs = socket.socketpair()
    encoder = Encoder()
    Endpoint(ours).send({"value": encoder.encode(value)}, encoder)
    header, arrays = Endpoint(theirs).receive()
    return Decoder(arrays).decode(header["value"])


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        -2.5,
        "text",
        [1, "a", None],
        (1, (2.0, "b")),
        {"key": 1, 2: "int key", (1, 2): [3]},
        {"$tuple": "a dict whose key looks like a tag"},
    ],
)
def test_plain_values_cross_unchanged(value):
    assert round_trip(value) == value


@pytest.mark.parametrize("dtype", ["bool", "int8", "int64", "uint16", "float32", "float64"])
def test_arrays_cross_with_their_dtype_and_shape(dtype):
    array = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    got = round_trip({"x": array})["x"]
    assert got.dtype == array.dtype and got.shape == (3, 4)
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable and got.flags.owndata


def test_numpy_scalars_and_generators_keep_their_type_and_state():
    rng = np.random.default_rng(7)
    got_scalar, got_rng = round_trip((np.float64(1.5), rng))
    assert type(got_scalar) is np.float64 and got_scalar == 1.5
    assert got_rng.normal() == np.random.default_rng(7).normal()


def test_object_arrays_and_arbitrary_objects_are_refused():
    with pytest.raises(ChannelError, match="dtype object"):
        Encoder().encode(np.array([object()]))
    with pytest.raises(ChannelError, match="cannot cross"):
        Encoder().encode(object())


def test_nesting_beyond_the_limit_is_refused_both_ways():
    deep = []
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ChannelError, match="nested"):
        Encoder().encode(deep)
    with pytest.raises(ChannelError, match="nested"):
        Decoder([]).decode(deep)


def test_non_contiguous_layouts_are_rebuilt_for_the_learner():
    base = np.arange(12.0).reshape(3, 4)
    assert with_layout(np.ascontiguousarray(base.T), "F").flags.f_contiguous
    strided = with_layout(base, "strided")
    assert not strided.flags.c_contiguous and not strided.flags.f_contiguous
    np.testing.assert_array_equal(strided, base)


def raw_message(header: dict | bytes, payload: bytes = b"") -> Endpoint:
    """An endpoint whose other side sent exactly these bytes."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    ours, theirs = socket.socketpair()
    ours.sendall(struct.pack("!IQ", len(body), len(payload)) + body + payload)
    ours.close()
    return Endpoint(theirs)


@pytest.mark.parametrize(
    ("header", "payload", "why"),
    [
        (b"not json", b"", "not JSON"),
        (b"[1, 2]", b"", "not an object"),
        ({"arrays": [{"dtype": "object", "shape": [1]}]}, b"\0" * 8, "dtype"),
        ({"arrays": [{"dtype": "float64", "shape": [1000]}]}, b"\0" * 8, "larger than"),
        ({"arrays": [{"dtype": "float64", "shape": [-1]}]}, b"", "malformed shape"),
        ({"arrays": []}, b"\0" * 8, "belong to no array"),
    ],
)
def test_malformed_messages_are_refused(header, payload, why):
    with pytest.raises(ChannelError, match=why):
        raw_message(header, payload).receive()


def test_a_message_over_the_size_limits_is_refused_before_it_is_read():
    ours, theirs = socket.socketpair()
    ours.sendall(struct.pack("!IQ", 2**31, 0))
    with pytest.raises(ChannelError, match="size limits"):
        Endpoint(theirs).receive()


@pytest.mark.parametrize(
    "value",
    [
        {"$array": 5},
        {"$ref": {"number": 1, "kind": "weird", "name": "", "type": ""}},
        {"$rng": {"bit_generator": "Evil"}},
        {"$dict": [[[1], 2]]},
        {"a": 1, "b": 2, "c": 3},
    ],
)
def test_malformed_values_are_refused(value):
    with pytest.raises(ChannelError):
        Decoder([], ref=lambda r: r).decode(value)


# ---- the checker against a kernel-side server ---------------------------------------------


@pytest.fixture
def kernel(monkeypatch):
    """A kernel-side server in a thread, its namespace a dict; yields (link, namespace)."""
    namespace: dict = {}
    with kernel_server(monkeypatch, namespace) as link:
        yield link, namespace


def run(link, source: str, timeout: float = 5.0, **trusted) -> checker.Verdict:
    return checker.run_cell(link, source, {"np": np, **trusted}, timeout)


def test_a_test_cell_calls_the_learners_function_with_plain_data(kernel):
    link, namespace = kernel
    namespace["double"] = lambda x: 2 * x
    namespace["answer"] = "b"
    verdict = run(link, "assert np.allclose(double(np.arange(3.0)), [0, 2, 4])\nprint(answer)")
    assert verdict.passed and verdict.printed == "b\n"


def test_a_wrong_answer_fails_with_the_assertion(kernel):
    link, namespace = kernel
    namespace["answer"] = "a"
    verdict = run(link, 'assert answer == "b", "not the expected answer"')
    assert not verdict.passed
    assert verdict.message == "AssertionError: not the expected answer"


def test_an_undefined_name_fails_as_in_a_notebook(kernel):
    link, _ = kernel
    verdict = run(link, "answer_q1")
    assert (verdict.ename, verdict.evalue) == ("NameError", "name 'answer_q1' is not defined")


def test_in_place_changes_to_arguments_are_written_back(kernel):
    link, namespace = kernel

    def scale(x, rng):
        x *= 2
        rng.normal()

    namespace["scale"] = scale
    source = (
        "x = np.ones(3)\nrng = np.random.default_rng(1)\nscale(x, rng)\n"
        "assert x.tolist() == [2, 2, 2]\n"
        "reference = np.random.default_rng(1)\nreference.normal()\n"
        "assert rng.normal() == reference.normal()"
    )
    assert run(link, source).passed


def test_learner_exceptions_arrive_as_the_builtin_class(kernel):
    link, namespace = kernel

    def refuses(x):
        raise ValueError("a batch of one")

    namespace["refuses"] = refuses
    source = "try:\n    refuses(1)\nexcept ValueError as e:\n    print('raised', e)"
    assert run(link, source).printed == "raised a batch of one\n"


def test_callbacks_run_in_the_checker_with_plain_data(kernel):
    link, namespace = kernel
    namespace["apply_twice"] = lambda f, x: f(f(x))
    calls = []

    def f(x):
        calls.append(type(x))
        return x + 1

    assert run(link, "assert apply_twice(f, np.zeros(2)).tolist() == [2, 2]", f=f).passed
    assert calls == [np.ndarray, np.ndarray]


def test_objects_stay_in_the_kernel_behind_a_proxy(kernel):
    link, namespace = kernel

    class Counter:
        def __init__(self, start):
            self.value = start

        def add(self, n):
            self.value += n
            return self.value

    namespace["Counter"] = Counter
    source = "c = Counter(2)\nassert c.add(3) == 5\nc.value = 10\nassert c.value == 10"
    assert run(link, source).passed


def test_concurrent_calls_from_checker_threads_each_get_their_answer(kernel):
    link, namespace = kernel
    barrier = threading.Barrier(3, timeout=5)

    def rank(r):
        barrier.wait()  # all three calls must be running in the kernel at once
        return r * 10

    namespace["rank"] = rank
    source = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(3) as pool:\n"
        "    assert list(pool.map(rank, range(3))) == [0, 10, 20]"
    )
    assert run(link, source).passed


def test_a_learner_function_that_never_returns_fails_at_the_deadline(kernel):
    link, namespace = kernel
    release = threading.Event()
    namespace["hangs"] = lambda: release.wait(30)
    verdict = run(link, "hangs()", timeout=0.5)
    release.set()
    assert verdict.ename == "CellTimeoutError" and "0.5 s limit" in verdict.evalue


def test_nothing_but_plain_data_reaches_the_kernel(kernel):
    link, namespace = kernel
    namespace["keep"] = lambda value: value
    verdict = run(link, "keep(object())")
    assert verdict.ename == "ChannelError" and "cannot be sent" in verdict.evalue


# ---- lesson 09's course calls: the learner's torch code behind plain data ---------------------


def _solution_function():
    """Lesson 09's BatchNormFunction as its solution writes it: a learner's torch code."""
    import torch

    nb = nbformat.read(solution_path("09_batchnorm_in_pytorch"), as_version=4)
    source = next(c.source for c in nb.cells if grade_id(c) == "batchnorm_function")
    namespace = {"torch": torch}
    exec(compile(source, "<batchnorm_function>", "exec"), namespace)
    return namespace["BatchNormFunction"]


def test_a_course_call_runs_the_learners_function_in_the_kernel(kernel):
    pytest.importorskip("torch")
    from utils.checks import torch_module

    link, namespace = kernel
    namespace["Normalize"] = _solution_function()
    trusted = {
        "check_function_forward": torch_module.check_function_forward,
        "check_function_backward": torch_module.check_function_backward,
    }
    verdict = run(
        link, "check_function_forward(Normalize)\ncheck_function_backward(Normalize)", 30, **trusted
    )
    assert verdict.passed, verdict.message
    assert "correct" in verdict.printed


def test_only_the_course_calls_table_is_answered(kernel):
    link, namespace = kernel
    namespace["f"] = lambda: None
    for name in ("system", "__import__", "CALLS"):
        verdict = run(
            link, f"call_in_kernel({name!r}, (f,))", call_in_kernel=checker.call_in_kernel
        )
        assert (verdict.ename, verdict.evalue) == ("ValueError", f"unknown course call {name!r}")


def test_in_place_changes_to_tensor_arguments_are_written_back(kernel):
    torch = pytest.importorskip("torch")
    link, namespace = kernel

    def scale(t):
        t.mul_(2)

    namespace["scale"] = scale
    source = "t = torch.ones(3)\nscale(t)\nassert t.tolist() == [2, 2, 2]"
    assert run(link, source, torch=torch).passed


def test_a_check_finds_the_kernel_a_proxy_lives_in_and_nothing_else():
    from grader.channel import Ref
    from utils.guard import _checker_session

    session = checker.Session.__new__(checker.Session)
    proxy = checker.Remote(session, Ref(1, "callable", "build_mlp", "function"))
    assert _checker_session(proxy) is session
    assert _checker_session(len) is None
    assert _checker_session(np.zeros(2)) is None
