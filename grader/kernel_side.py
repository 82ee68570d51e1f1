"""Inside a grading kernel: the lesson's import policy, and the server the checker calls into.

``install(policy, assignment)`` runs in the kernel before any submitted code (``grader.launcher``
calls it) and puts an import hook first on ``sys.meta_path``:

* in a lesson whose tests run in the checker, ``utils.checks`` and its modules are stubs: the
  locked set-up cell still imports its check functions, but no check's code or hidden case is
  in this process (the operating system also refuses to read those files);
* a package or course module the lesson's policy leaves out (torch in a numpy lesson, a course
  module that answers the exercise) raises ModuleNotFoundError saying why.

The hook only explains refusals: ``grader.confine`` enforces them below Python.

``serve()`` is what the grader executes in the kernel while the checker runs a test cell: it
answers the checker's requests (look up a name, call a function or method, read or set an
attribute) with plain data or a reference to a kernel object, calls the checker's functions
(callbacks) for the learner's code, and returns when the checker says ``done``. Nothing here is
trusted: it runs in the learner's process, and the checker treats every answer as hostile.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import os
import queue
import socket
import sys
import threading
import types

CHANNEL_ENV = "NORMLAB_CHANNEL_FD"
"""The environment variable that holds the number of the kernel's end of the channel."""
CHECK_PACKAGE = "utils.checks"
TORCH_PACKAGES = frozenset({"torch", "functorch", "torchgen", "triton"})
KERNEL_MODULES = ("utils", "utils.guard")
"""Course modules the kernel's own machinery imports, whatever the lesson allows."""

_policy: dict = {}


def install(policy: dict, assignment: str) -> None:
    """Put the import hook for ``policy`` (``grader.policy.LessonPolicy.as_dict()``) first."""
    _policy.update(policy, assignment=assignment)
    sys.meta_path.insert(0, PolicyFinder(dict(policy), assignment))


class PolicyFinder(importlib.abc.MetaPathFinder):
    """Stubs for the checks, clear refusals for what the lesson's kernel may not import."""

    def __init__(self, policy: dict, assignment: str):
        self.policy, self.assignment = policy, assignment

    def find_spec(self, fullname, path=None, target=None):
        if self.policy.get("checker") and _within(fullname, CHECK_PACKAGE):
            return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=True)
        if not self.policy.get("torch") and fullname.split(".")[0] in TORCH_PACKAGES:
            raise ModuleNotFoundError(
                f"import of {fullname} refused: this code called PyTorch, but the exercises of "
                f"{self.assignment} are numpy only, so PyTorch is not available while they are "
                "graded. Use numpy.",
                name=fullname,
            )
        if _within(fullname, "utils") and not self._allowed(fullname):
            raise ModuleNotFoundError(
                f"import of {fullname} refused: {self.assignment} is graded without that course "
                "module (it holds answers or checks); write the code yourself.",
                name=fullname,
            )
        return None

    def _allowed(self, fullname: str) -> bool:
        modules = tuple(self.policy.get("modules") or ())
        if "*" in modules or fullname in KERNEL_MODULES:
            return True
        if _within(fullname, CHECK_PACKAGE):
            return False
        return any(_within(fullname, m) for m in modules)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _stub_attribute
        return module

    def exec_module(self, module):
        pass


def _stub_attribute(name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    def stub(*args, **kwargs):
        print(f"({name} runs in the grader's checker while this notebook is graded)")

    stub.__name__ = name
    return stub


# ---- the server ----------------------------------------------------------------------------

_server = None


def serve() -> None:
    """Answer the checker until it says done. The grader runs this; a learner has no use for it."""
    global _server
    if _server is None:
        fd = os.environ.get(CHANNEL_ENV)
        if not fd:
            raise RuntimeError("no checker channel: this kernel is not being graded")
        _server = Server(socket.socket(fileno=int(fd)))
    _server.serve_until_done()


class Server:
    """The kernel's end: kernel objects by number, requests answered in the main thread (or a
    thread of their own when the checker calls from several threads at once)."""

    def __init__(self, sock: socket.socket):
        from grader.channel import Endpoint
        from grader.rpc import Peer

        self.objects: dict[int, object] = {}
        self.numbers: dict[int, int] = {}
        self.main: queue.Queue = queue.Queue()
        self.peer = Peer(Endpoint(sock), self._on_request, "k").start()

    def serve_until_done(self) -> None:
        while True:
            try:
                item = self.main.get()
            except KeyboardInterrupt:
                continue  # the grader interrupts a call that ran too long, then says done
            if item is None:
                return
            self._answer(*item)

    def _on_request(self, header: dict, arrays) -> None:
        if header.get("op") == "done":
            self.main.put(None)
        elif header.get("thread"):
            threading.Thread(target=self._answer, args=(header, arrays), daemon=True).start()
        else:
            self.main.put((header, arrays))

    def _answer(self, header: dict, arrays) -> None:
        number = header.get("id")
        try:
            value, written = self._perform(header, arrays)
            encoder, fields = self._encoded(value, written)
            self.peer.reply_ok(number, fields, encoder)
        except BaseException as exc:  # the checker gets every failure, KeyboardInterrupt too
            self.peer.reply_error(number, exc)

    def _perform(self, header: dict, arrays):
        from grader.channel import Decoder, layouts

        decoder = Decoder(_laid_out(arrays, layouts(header)), self._object, self._callback)
        op = header.get("op")
        if op == "resolve":
            return _lookup(str(header.get("name"))), None
        if op == "course":
            return _course_call(str(header.get("name")), decoder.decode(header.get("args"))), None
        target = self._object_of(header.get("ref"))
        if op == "getattr":
            return getattr(target, str(header.get("name"))), None
        if op == "setattr":
            setattr(target, str(header.get("name")), decoder.decode(header.get("value")))
            return None, None
        if op == "call":
            if header.get("attr"):
                target = getattr(target, str(header["attr"]))
            args = decoder.decode(header.get("args") or [])
            kwargs = decoder.decode(header.get("kwargs") or {"$dict": []})
            result = _guarded(target, args, kwargs)
            return result, (args, kwargs) if header.get("writeback") else None
        raise ValueError(f"unknown request {op!r}")

    def _encoded(self, value, written):
        from grader.channel import Encoder

        encoder = Encoder(self._reference)
        fields = {"value": encoder.encode(value)}
        if written is not None:
            fields["written"] = encoder.encode(written)
        return encoder, fields

    def _object_of(self, ref):
        if type(ref) is not int or ref not in self.objects:
            raise ValueError("no such kernel object")
        return self.objects[ref]

    def _object(self, ref):
        return self._object_of(ref.number)

    def _reference(self, value) -> dict:
        number = self.numbers.get(id(value))
        if number is None or self.objects.get(number) is not value:
            number = len(self.objects) + 1
            self.objects[number] = value
            self.numbers[id(value)] = number
        kind = "class" if isinstance(value, type) else "callable" if callable(value) else "object"
        name = getattr(value, "__name__", "") if kind != "object" else ""
        spec = {"number": number, "kind": kind, "name": name if type(name) is str else ""}
        spec["type"] = type(value).__qualname__
        return {"$ref": spec}

    def _callback(self, callback):
        peer, reference = self.peer, self._reference

        def call_checker(*args, **kwargs):
            from grader.channel import Decoder, Encoder

            encoder = Encoder(reference)
            header = {
                "op": "callback",
                "callback": callback.number,
                "args": encoder.encode(list(args)),
                "kwargs": encoder.encode(kwargs),
            }
            reply, arrays = peer.request(header, encoder, None)
            if reply.get("ok"):
                return Decoder(arrays, self._object, self._callback).decode(reply.get("value"))
            raise rebuilt_error(reply.get("error"))

        return call_checker


def _laid_out(arrays, kinds) -> list:
    from grader.channel import with_layout

    kinds = list(kinds) + [None] * len(arrays)
    return [with_layout(a, k) for a, k in zip(arrays, kinds[: len(arrays)], strict=True)]


KERNEL_CALLS = "utils.autograd_call"
"""The course module whose ``CALLS`` table a checker may ask for (a lesson's policy must let
the kernel import it): narrow calls that take ndarrays and the learner's objects, build torch
tensors here and answer with plain data (lessons 09 and 11: autograd, modules, Triton
launchers)."""


def _course_call(name: str, args):
    import importlib

    calls = getattr(importlib.import_module(KERNEL_CALLS), "CALLS", {})
    if type(args) is not list or name not in calls:
        raise ValueError(f"unknown course call {name!r}")
    return calls[name](*args)


def _lookup(name: str):
    from IPython import get_ipython

    shell = get_ipython()
    namespace = shell.user_ns if shell is not None else {}
    if name not in namespace:
        raise NameError(f"name {name!r} is not defined")
    return namespace[name]


def _guarded(target, args, kwargs):
    """``target(*args, **kwargs)``; in a numpy lesson whose kernel can import torch, through the
    in-process torch guard (flagged, not trusted: the checker treats its verdict as a failure)."""
    if _policy.get("numpy_only") and _policy.get("torch"):
        from utils.guard import call_without_torch

        return call_without_torch(target, *args, **kwargs)
    return target(*args, **kwargs)


def rebuilt_error(described) -> BaseException:
    """An exception like the one the other end described: a builtin of that name, or a new
    class with the same name and module (so a third party can still recognise it)."""
    if type(described) is not dict:
        return RuntimeError("the other end failed without saying why")
    name, module = str(described.get("type", "Error")), str(described.get("module", ""))
    message = str(described.get("message", ""))
    kind = getattr(builtins, name, None)
    if module == "builtins" and isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # an exception class with other constructor arguments
            pass
    return type(name, (Exception,), {"__module__": module})(message)
