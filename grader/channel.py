"""The wire between the trusted checker and a grading kernel: plain data only, sizes capped.

Both ends import this module; the kernel's end is untrusted, so everything here is written for
the checker's safety: a message decodes into ``None``, booleans, numbers, strings, lists,
tuples and dicts of those, numpy arrays and scalars of numeric dtypes (read from raw bytes, never
unpickled), numpy random generators (by their bit generator's state), torch tensors (as arrays)
and *references*: ``Ref`` for an object that lives in the kernel (a learner's function, class or
instance: the checker can only call it, read or set its attributes, by asking the kernel) and
``Callback`` for a function that lives in the checker (an ``all_reduce``, the ``f`` of a
finite difference: the kernel can only call it with plain data).

A message on the socket is ``!IQ`` (header length, payload length), a JSON header, then the
payload: the raw bytes of every array the header names, back to back. Nothing else is read;
anything malformed raises ``ChannelError``.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
from dataclasses import dataclass

import numpy as np

MAX_HEADER = 16 * 2**20
"""Bytes of JSON a message may carry (numbers, strings, structure)."""
MAX_PAYLOAD = 512 * 2**20
"""Bytes of array data a message may carry."""
MAX_DEPTH = 24
"""Nesting of lists, tuples and dicts a value may have."""
MAX_STRING = 2**20
"""Characters a string may have."""

DTYPES = frozenset(
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 "
    "complex64 complex128".split()
)
"""The dtypes an array may have on the wire (no objects, no structured or void dtypes)."""
BIT_GENERATORS = frozenset({"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"})

_PREFIX = struct.Struct("!IQ")


class ChannelError(RuntimeError):
    """The other end sent something that is not a well-formed message, or went away."""


@dataclass(frozen=True)
class Ref:
    """An object that lives in the kernel, known to the checker by number and description."""

    number: int
    kind: str  # "class", "callable" or "object"
    name: str
    type_name: str


@dataclass(frozen=True)
class Callback:
    """A function that lives in the checker, known to the kernel by number."""

    number: int


# ---- values <-> JSON + payload -----------------------------------------------------------


class Encoder:
    """Turns a value into JSON-ready structure plus a list of array buffers.

    ``other(value) -> dict`` encodes anything that is not plain data (the kernel makes a Ref of
    it, the checker a Callback of a callable); by default such a value is refused.
    """

    def __init__(self, other=None):
        self.specs: list[dict] = []
        self.buffers: list[bytes] = []
        self.size = 0
        self.other = other

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ChannelError(f"a value nested more than {MAX_DEPTH} levels deep")
        if value is None or type(value) in (bool, int, float, str):
            if type(value) is str and len(value) > MAX_STRING:
                raise ChannelError(f"a string of {len(value)} characters (limit {MAX_STRING})")
            return value
        if isinstance(value, np.ndarray):
            return {"$array": self._array(value)}
        if isinstance(value, np.generic):
            return {"$scalar": self._array(np.asarray(value))}
        if isinstance(value, np.random.Generator):
            return {"$rng": _plain_state(value.bit_generator.state)}
        if type(value) is list:
            return [self.encode(v, depth + 1) for v in value]
        if type(value) is tuple:
            return {"$tuple": [self.encode(v, depth + 1) for v in value]}
        if type(value) is dict:
            return {"$dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in
                              value.items()]}  # fmt: skip
        tensor = _tensor_array(value)
        if tensor is not None:
            return {"$tensor": self._array(tensor), "grad": bool(value.requires_grad)}
        if self.other is None:
            raise ChannelError(f"a {type(value).__name__} cannot cross the channel")
        return self.other(value)

    def _array(self, array: np.ndarray) -> int:
        """Queue ``array``'s bytes; returns its index in the message."""
        name = array.dtype.name
        if name not in DTYPES:
            raise ChannelError(f"an array of dtype {array.dtype} cannot cross the channel")
        self.size += array.nbytes
        if self.size > MAX_PAYLOAD:
            raise ChannelError(f"more than {MAX_PAYLOAD >> 20} MiB of arrays in one message")
        self.buffers.append(np.ascontiguousarray(array).tobytes())
        self.specs.append({"dtype": name, "shape": list(array.shape), "layout": _layout(array)})
        return len(self.buffers) - 1


def _layout(array: np.ndarray) -> str:
    """How ``array`` lies in memory: "C", "F" (a transposed view) or "strided" (anything else,
    rebuilt on the other side as every other entry of a wider array: the tests' non-contiguous
    inputs stay non-contiguous in the learner's function)."""
    if array.ndim == 0 or array.flags.c_contiguous:
        return "C"
    return "F" if array.flags.f_contiguous else "strided"


def with_layout(array: np.ndarray, layout) -> np.ndarray:
    """``array`` (C-ordered) laid out as ``layout`` says; the kernel's end uses this."""
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided" and array.ndim:
        base = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
        view = base[..., ::2]
        view[...] = array
        return view
    return array


def _tensor_array(value) -> np.ndarray | None:
    """The data of a torch tensor as a numpy array (None for anything else), without importing
    torch (a kernel may not be allowed to)."""
    torch = __import__("sys").modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return None
    return value.detach().cpu().resolve_conj().resolve_neg().numpy()


def _plain_state(state) -> dict:
    if not isinstance(state, dict) or state.get("bit_generator") not in BIT_GENERATORS:
        raise ChannelError("a random generator whose state cannot cross the channel")
    return json.loads(json.dumps(state, default=int))


class Decoder:
    """Rebuilds a value from the JSON structure and the payload; ``ref(d)``/``callback(d)``
    turn a reference into the local object (a proxy, or the object itself)."""

    def __init__(self, arrays: list[np.ndarray], ref=None, callback=None):
        self.arrays, self.ref, self.callback = arrays, ref, callback

    def decode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ChannelError(f"a value nested more than {MAX_DEPTH} levels deep")
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) is list:
            return [self.decode(v, depth + 1) for v in value]
        if type(value) is not dict or len(value) > 2:
            raise ChannelError("a malformed value")
        if "$array" in value:
            return self._array(value["$array"])
        if "$scalar" in value:
            return self._array(value["$scalar"])[()]
        if "$tuple" in value:
            return tuple(self.decode(_listed(value["$tuple"]), depth))
        if "$dict" in value:
            pairs = _listed(value["$dict"])
            if not all(type(p) is list and len(p) == 2 for p in pairs):
                raise ChannelError("a malformed dict")
            return {_hashable(self.decode(k, depth + 1)): self.decode(v, depth + 1)
                    for k, v in pairs}  # fmt: skip
        if "$rng" in value:
            return _generator(value["$rng"])
        if "$tensor" in value:
            return _tensor(self._array(value["$tensor"]), value.get("grad") is True)
        if "$ref" in value and self.ref is not None:
            return self.ref(_ref(value["$ref"]))
        if "$callback" in value and self.callback is not None:
            return self.callback(Callback(_number(value["$callback"])))
        raise ChannelError("a malformed value")

    def _array(self, index) -> np.ndarray:
        if type(index) is not int or not 0 <= index < len(self.arrays):
            raise ChannelError("an array that is not in the message")
        return self.arrays[index]


def _listed(value) -> list:
    if type(value) is not list:
        raise ChannelError("a malformed value")
    return value


def _hashable(key):
    if isinstance(key, list | dict | np.ndarray):
        raise ChannelError("a dict key that is not hashable")
    return key


def _number(value) -> int:
    if type(value) is not int or value < 0:
        raise ChannelError("a malformed reference")
    return value


def _ref(spec) -> Ref:
    if type(spec) is not dict:
        raise ChannelError("a malformed reference")
    kind, name, type_name = spec.get("kind"), spec.get("name"), spec.get("type")
    if kind not in ("class", "callable", "object"):
        raise ChannelError("a malformed reference")
    if not (type(name) is str and type(type_name) is str):
        raise ChannelError("a malformed reference")
    return Ref(_number(spec.get("number")), kind, name[:200], type_name[:200])


def _generator(state) -> np.random.Generator:
    if type(state) is not dict or state.get("bit_generator") not in BIT_GENERATORS:
        raise ChannelError("a malformed random generator")
    bit_generator = getattr(np.random, state["bit_generator"])()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ChannelError(f"a malformed random generator state: {exc}") from None
    return np.random.Generator(bit_generator)


def _tensor(array: np.ndarray, requires_grad: bool):
    import torch

    tensor = torch.from_numpy(array)
    return tensor.requires_grad_(requires_grad and tensor.is_floating_point())


# ---- messages on a socket ----------------------------------------------------------------


class Endpoint:
    """One end of the channel: whole messages (header dict, arrays) in and out.

    ``send`` may be called from several threads; ``receive`` from one.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, header: dict, encoder: Encoder | None = None) -> None:
        """Send ``header`` (JSON-ready) with the arrays ``encoder`` collected for it."""
        if encoder is not None and encoder.specs:
            header = {**header, "arrays": encoder.specs}
        body = json.dumps(header, allow_nan=True).encode()
        payload = b"".join(encoder.buffers) if encoder is not None else b""
        if len(body) > MAX_HEADER or len(payload) > MAX_PAYLOAD:
            raise ChannelError("a message over the channel's size limits")
        with self._send_lock:
            self.sock.sendall(_PREFIX.pack(len(body), len(payload)) + body + payload)

    def readable(self, timeout: float) -> bool:
        """Whether a message (or the end of the stream) waits to be read, within ``timeout`` s."""
        return bool(select.select([self.sock], [], [], timeout)[0])

    def receive(self) -> tuple[dict, list[np.ndarray]]:
        """The next message: its header and its arrays (each a private, writeable, C-ordered
        copy; ``layouts(header)`` tells how the sender's arrays lay in memory).

        Raises ChannelError for a closed socket or anything malformed."""
        header_size, payload_size = _PREFIX.unpack(self._exactly(_PREFIX.size))
        if header_size > MAX_HEADER or payload_size > MAX_PAYLOAD:
            raise ChannelError("a message over the channel's size limits")
        try:
            header = json.loads(self._exactly(header_size))
        except (ValueError, RecursionError) as exc:
            raise ChannelError(f"a message whose header is not JSON: {exc}") from None
        if type(header) is not dict:
            raise ChannelError("a message whose header is not an object")
        payload = self._exactly(payload_size)
        return header, _arrays(header.get("arrays"), payload)

    def _exactly(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise ChannelError("the other end closed the channel")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


def _arrays(specs, payload: bytes) -> list[np.ndarray]:
    """The arrays a header lists (dtype, shape) cut from ``payload``, in order, C-ordered."""
    if specs is None:
        specs = []
    if type(specs) is not list:
        raise ChannelError("a malformed array list")
    arrays, offset = [], 0
    for spec in specs:
        if type(spec) is not dict or spec.get("dtype") not in DTYPES:
            raise ChannelError("an array of a dtype that cannot cross the channel")
        shape = spec.get("shape")
        if type(shape) is not list or not all(type(n) is int and 0 <= n for n in shape):
            raise ChannelError("an array with a malformed shape")
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        size = count * dtype.itemsize
        if count < 0 or offset + size > len(payload):
            raise ChannelError("an array larger than the message")
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        arrays.append(array.reshape(shape).copy())
        offset += size
    if offset != len(payload):
        raise ChannelError("a message with bytes that belong to no array")
    return arrays


def layouts(header: dict) -> list:
    """The memory layout the sender's arrays had, one per array of the message."""
    specs = header.get("arrays") or []
    return [spec.get("layout") for spec in specs]
