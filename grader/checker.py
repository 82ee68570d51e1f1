"""The trusted checker: runs a notebook's test cells in the grader's process, never the kernel's.

A test cell's source comes from the gradebook (hidden tests included) and is executed here, in
a namespace that holds what the locked cells import (numpy, the course's check functions, ...).
A name the cell uses that is not there — the learner's ``batchnorm_forward``, ``answer_q1`` —
is looked up in the kernel over the channel (``grader.channel``): plain data comes back as
itself, a function, class or object as a ``Remote`` proxy. Calling a proxy sends the arguments
to the kernel as plain data, runs the learner's code there and brings the result back as plain
data; arrays the learner changed in place are written back, so checks that an input was left
alone still see what happened. Functions a check hands to the learner's code (the ``f`` of a
finite difference, an ``all_reduce``) stay here and are called back from the kernel.

References, cases, comparisons and mistake names all run here; the kernel sees the inputs it
is given and nothing else. ``run_cell`` returns the verdict the grader records: a test cell
scores only with a passing verdict recorded while the grader was executing it.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from grader.channel import Callback, ChannelError, Decoder, Encoder, Endpoint, Ref
from grader.rpc import Peer

PRINTED_LIMIT = 20_000
"""Characters of a check's printed lines kept for the notebook and feedback (as they are
printed: a check that prints what the learner's code returned must not fill the grader's
memory with it); a check's own lines take a few hundred."""
CUT_NOTE = "\n[... output cut]\n"


TIMED_OUT = "CellTimeoutError"
"""The verdict's error name when the code under test ran past the cell's time limit."""


class CheckTimeout(TimeoutError):
    """The learner's code did not answer within the cell's time limit."""


class KernelGone(RuntimeError):
    """The kernel closed the channel or answered with something that is not a message."""


@dataclass(frozen=True)
class Verdict:
    """The checker's record of one test cell."""

    passed: bool
    printed: str = ""
    ename: str = ""
    evalue: str = ""

    @property
    def message(self) -> str:
        return f"{self.ename}: {self.evalue}".strip().rstrip(":") if self.ename else ""


class KernelLink:
    """The checker's end of one kernel's channel, for the life of that kernel."""

    def __init__(self, sock):
        self.peer = Peer(Endpoint(sock), self._on_request, "c")
        self.session: Session | None = None

    def _on_request(self, header: dict, arrays) -> None:
        session = self.session
        if header.get("op") != "callback" or session is None:
            self.peer.reply_error(header.get("id"), RuntimeError("no such request"))
            return
        threading.Thread(target=session.answer_callback, args=(header, arrays), daemon=True).start()

    def close(self) -> None:
        self.peer.stop()
        self.peer.close()
        self.peer.endpoint.close()


class Session:
    """What one test cell's checks ask of the kernel, until a deadline."""

    def __init__(self, link: KernelLink, deadline: float):
        self.link, self.deadline = link, deadline
        self.callbacks: dict[int, object] = {}
        self.proxies: dict[int, Remote] = {}
        self.owner = threading.get_ident()

    # -- requests to the kernel

    def resolve(self, name: str):
        return self._request({"op": "resolve", "name": name}, None)

    def getattr(self, ref: Ref, name: str):
        return self._request({"op": "getattr", "ref": ref.number, "name": name}, None)

    def setattr(self, ref: Ref, name: str, value) -> None:
        encoder = Encoder(self._outgoing)
        header = {"op": "setattr", "ref": ref.number, "name": name}
        header["value"] = encoder.encode(value)
        self._request(header, encoder)

    def call(self, ref: Ref, attr: str | None, args: tuple, kwargs: dict):
        encoder = Encoder(self._outgoing)
        header = {"op": "call", "ref": ref.number, "attr": attr}
        header["args"] = encoder.encode(list(args))
        header["kwargs"] = encoder.encode(dict(kwargs))
        header["writeback"] = bool(encoder.specs) or _has_generator((args, kwargs))
        header["thread"] = threading.get_ident() != self.owner
        value, written = self._request(header, encoder, with_written=True)
        if written is not None:
            _write_back((list(args), dict(kwargs)), written)
        return value

    def course_call(self, name: str, args: tuple):
        """One of the course's kernel calls (``utils.autograd_call.CALLS``) on ``args``: plain
        data, proxies of kernel objects and checker functions only; the answer as plain data
        (or proxies), converted by the channel's decoder like every other answer."""
        encoder = Encoder(self._outgoing)
        header = {"op": "course", "name": str(name), "args": encoder.encode(list(args))}
        header["thread"] = threading.get_ident() != self.owner
        return self._request(header, encoder)

    def _request(self, header: dict, encoder, with_written: bool = False):
        try:
            reply, arrays = self.link.peer.request(header, encoder, self.deadline)
        except TimeoutError:
            raise CheckTimeout("the code under test never returned: an endless loop?") from None
        except ChannelError as exc:
            raise KernelGone(f"the kernel stopped answering ({exc})") from None
        decoder = Decoder(arrays, self._proxy, self._callback_of)
        if not reply.get("ok"):
            raise _rebuilt(reply.get("error"))
        value = decoder.decode(reply.get("value"))
        if not with_written:
            return value
        written = reply.get("written")
        return value, None if written is None else decoder.decode(written)

    # -- the kernel's requests to us

    def answer_callback(self, header: dict, arrays) -> None:
        number, peer = header.get("id"), self.link.peer
        try:
            function = self.callbacks[header.get("callback")]
            decoder = Decoder(arrays, self._proxy, self._callback_of)
            args = decoder.decode(header.get("args") or [])
            kwargs = decoder.decode(header.get("kwargs") or {"$dict": []})
            if type(args) is not list or type(kwargs) is not dict:
                raise ChannelError("malformed callback arguments")
            encoder = Encoder(self._outgoing)
            value = function(*args, **{str(k): v for k, v in kwargs.items()})
            peer.reply_ok(number, {"value": encoder.encode(value)}, encoder)
        except BaseException as exc:  # the learner's code gets the checker's exception
            peer.reply_error(number, exc)

    # -- references

    def _outgoing(self, value) -> dict:
        """A non-plain value the checker sends: a proxy goes back as its kernel object, a
        checker function as a callback; anything else is refused."""
        if isinstance(value, Remote) and object.__getattribute__(value, "_session") is self:
            ref = object.__getattribute__(value, "_ref")
            spec = {"number": ref.number, "kind": ref.kind, "name": ref.name}
            return {"$ref": {**spec, "type": ref.type_name}}
        if callable(value):
            number = len(self.callbacks) + 1
            self.callbacks[number] = value
            return {"$callback": number}
        raise ChannelError(f"a {type(value).__name__} cannot be sent to the kernel")

    def _proxy(self, ref: Ref) -> Remote:
        proxy = self.proxies.get(ref.number)
        if proxy is None:
            proxy = self.proxies[ref.number] = Remote(self, ref)
        return proxy

    def _callback_of(self, callback: Callback):
        function = self.callbacks.get(callback.number)
        if function is None:
            raise ChannelError("a callback the checker never sent")
        return function


class Remote:
    """A kernel object: calling it, reading or setting its attributes asks the kernel."""

    def __init__(self, session: Session, ref: Ref):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_ref", ref)
        if ref.kind != "object":
            object.__setattr__(self, "__name__", ref.name or "your function")
            object.__setattr__(self, "__qualname__", ref.name or "your function")

    def __call__(self, *args, **kwargs):
        return object.__getattribute__(self, "_session").call(self._ref, None, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # Python's own protocol lookups stay here
        return object.__getattribute__(self, "_session").getattr(self._ref, name)

    def __setattr__(self, name: str, value) -> None:
        object.__getattribute__(self, "_session").setattr(self._ref, name, value)

    def __repr__(self) -> str:
        ref = object.__getattribute__(self, "_ref")
        return f"<{ref.type_name} {ref.name} in the graded kernel>".replace("  ", " ")


def call_in_kernel(name: str, args: tuple):
    """``utils.autograd_call``'s call ``name`` run in the kernel that holds the proxies among
    ``args`` (the seam's grading side)."""
    for arg in args:
        if isinstance(arg, Remote):
            return object.__getattribute__(arg, "_session").course_call(name, args)
    raise ValueError("no kernel object among the arguments")


def _has_generator(value) -> bool:
    if isinstance(value, np.random.Generator):
        return True
    if isinstance(value, list | tuple):
        return any(_has_generator(v) for v in value)
    if isinstance(value, dict):
        return any(_has_generator(v) for v in value.values())
    return False


def _write_back(original, written) -> None:
    """Copy what the kernel's code left in its copies of the arguments into the checker's own
    arrays and generators (same structure only), so in-place changes are seen as they were."""
    if isinstance(original, np.ndarray) and isinstance(written, np.ndarray):
        if original.shape == written.shape and original.flags.writeable:
            if not np.array_equal(original, written, equal_nan=True):
                original[...] = written.astype(original.dtype, copy=False)
    elif isinstance(original, np.random.Generator) and isinstance(written, np.random.Generator):
        original.bit_generator.state = written.bit_generator.state
    elif _is_tensor(original) and _is_tensor(written):
        if tuple(original.shape) == tuple(written.shape) and original.is_leaf:
            with sys.modules["torch"].no_grad():
                original.copy_(written.to(original.dtype))
    elif isinstance(original, list | tuple) and isinstance(written, list | tuple):
        if len(original) == len(written):
            for a, b in zip(original, written, strict=True):
                _write_back(a, b)
    elif isinstance(original, dict) and isinstance(written, dict):
        for key, value in original.items():
            if key in written:
                _write_back(value, written[key])


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _rebuilt(described) -> BaseException:
    """The exception the kernel's code raised, as a class the checks know: a builtin exception,
    or one of the course's already loaded ``utils`` modules; else a new class of that name."""
    if type(described) is not dict:
        return KernelGone("the kernel failed without saying why")
    name, module = str(described.get("type", "Error"))[:200], str(described.get("module", ""))
    message = str(described.get("message", ""))
    if name == "KeyboardInterrupt":
        return CheckTimeout("the code under test was interrupted at the cell's time limit")
    kind = None
    if module == "builtins":
        kind = getattr(builtins, name, None)
    elif module == "utils" or module.startswith("utils."):
        kind = getattr(sys.modules.get(module), name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # a class whose constructor wants other arguments
            pass
    return type(name, (Exception,), {"__module__": module})(message)


# ---- running a test cell --------------------------------------------------------------------


class KernelScope(dict):
    """The local namespace of a test cell run here: names the trusted namespace or builtins
    do not have are the learner's, looked up in the kernel once per cell."""

    def __init__(self, session: Session, trusted: dict):
        super().__init__()
        self.session, self.trusted = session, trusted

    def __missing__(self, name: str):
        if name in self.trusted or hasattr(builtins, name):
            raise KeyError(name)
        try:
            value = self.session.resolve(name)
        except NameError:
            raise KeyError(name) from None
        self[name] = value
        return value


def trusted_namespace(import_statements: str) -> dict:
    """A namespace with what ``import_statements`` (the locked cells' imports) bind, imported
    here in the checker; a statement that fails here fails for every student alike."""
    namespace: dict = {"__name__": "__normlab_test_cell__"}
    for statement in import_statements.splitlines():
        with contextlib.suppress(Exception):
            exec(statement, namespace)
    return namespace


def run_cell(link: KernelLink, source: str, trusted: dict, timeout: float) -> Verdict:
    """Execute the test cell ``source`` here against the kernel behind ``link``; the verdict."""
    session = Session(link, time.monotonic() + timeout)
    link.session = session
    printed = CappedText(PRINTED_LIMIT)
    link.peer.start()
    try:
        code = compile(source, "<test cell>", "exec")
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, dict(trusted), KernelScope(session, trusted))
        return Verdict(True, printed.getvalue())
    except CheckTimeout as exc:
        limit = f"the cell ran longer than the {timeout:g} s limit ({exc})"
        return Verdict(False, printed.getvalue(), TIMED_OUT, limit)
    except Exception as exc:  # every failure of a check, the learner's or the kernel's
        return Verdict(False, printed.getvalue(), type(exc).__name__, _text(exc))
    finally:
        link.session = None
        with contextlib.suppress(OSError, ChannelError):
            link.peer.endpoint.send({"op": "done"})
        link.peer.stop()


class CappedText(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters written to it, and says when it
    dropped the rest."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.size, self.cut = limit, [], 0, False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        kept = text[: max(self.limit - self.size, 0)]
        self.cut = self.cut or len(kept) < len(text)
        if kept:
            self.parts.append(kept)
            self.size += len(kept)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts) + (CUT_NOTE if self.cut else "")


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:PRINTED_LIMIT]
    except Exception:
        return "(an error whose message could not be read)"
