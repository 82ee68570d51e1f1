"""Requests and replies over a ``grader.channel.Endpoint``, in both directions at once.

Each end runs a reader thread. A message is either a request (``op`` other than ``reply``) or
the reply to one (matched by ``id``). Requests go to the end's ``on_request(header, arrays)``,
which answers with ``reply_ok``/``reply_error``; a caller waiting in ``request`` gets the reply
or, when the other end goes away or the deadline passes, an exception. Replies to unknown ids
are dropped (a hostile kernel may send anything at any time).
"""

from __future__ import annotations

import itertools
import threading
import time

from grader.channel import ChannelError, Encoder, Endpoint

POLL_SECONDS = 0.1
"""How often a reader with nothing to read looks whether it should stop."""
ERROR_MESSAGE_LIMIT = 4000
"""Characters of an exception's message carried in a reply."""


class RemoteError(Exception):
    """The other end raised an exception of a type this end cannot rebuild."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name, self.message = type_name, message


class Peer:
    """One end's requests, replies and reader thread."""

    def __init__(self, endpoint: Endpoint, on_request, prefix: str):
        self.endpoint = endpoint
        self.on_request = on_request
        self._ids = (f"{prefix}{n}" for n in itertools.count(1))
        self._id_lock = threading.Lock()
        self._pending: dict[str, list] = {}
        self._lock = threading.Lock()
        self.closed: str | None = None
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> Peer:
        """Start reading (a new reader thread)."""
        self._stop.clear()
        self._reader = threading.Thread(target=self._read, daemon=True, name="normlab-channel")
        self._reader.start()
        return self

    def stop(self) -> None:
        """Stop reading between two messages: what the other end sends stays unread (and its
        sends block once the socket's buffer is full) until ``start`` again."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join()
            self._reader = None

    def request(self, header: dict, encoder: Encoder | None, deadline: float | None):
        """Send a request; returns the reply (header, arrays) or raises TimeoutError (past
        ``deadline``, a time.monotonic() value) or ChannelError (the other end went away)."""
        with self._id_lock:
            number = next(self._ids)
        slot = [threading.Event(), None]
        with self._lock:
            if self.closed:
                raise ChannelError(self.closed)
            self._pending[number] = slot
        try:
            self.endpoint.send({**header, "id": number}, encoder)
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not slot[0].wait(wait):
                raise TimeoutError("no answer before the time limit")
        finally:
            with self._lock:
                self._pending.pop(number, None)
        if slot[1] is None:
            raise ChannelError(self.closed or "the channel closed")
        return slot[1]

    def reply_ok(self, number: str, fields: dict, encoder: Encoder | None = None) -> None:
        self._send({"op": "reply", "id": number, "ok": True, **fields}, encoder)

    def reply_error(self, number: str, error: BaseException) -> None:
        kind = type(error)
        described = {
            "type": kind.__name__[:200],
            "module": str(getattr(kind, "__module__", ""))[:200],
            "message": _message(error),
        }
        self._send({"op": "reply", "id": number, "ok": False, "error": described})

    def _send(self, header: dict, encoder: Encoder | None = None) -> None:
        try:
            self.endpoint.send(header, encoder)
        except (OSError, ChannelError):
            pass  # the requester is gone; nobody waits for this reply

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.endpoint.readable(POLL_SECONDS):
                    continue
                header, arrays = self.endpoint.receive()
                if header.get("op") == "reply":
                    self._deliver(header, arrays)
                else:
                    self.on_request(header, arrays)
        except (OSError, ChannelError, ValueError) as exc:
            self._close(f"the channel closed: {exc}")

    def _deliver(self, header: dict, arrays) -> None:
        with self._lock:
            slot = self._pending.get(header.get("id"))
        if slot is not None and not slot[0].is_set():
            slot[1] = (header, arrays)
            slot[0].set()

    def _close(self, why: str) -> None:
        with self._lock:
            self.closed = why
            slots = list(self._pending.values())
        for slot in slots:
            slot[0].set()

    def close(self) -> None:
        self._close("the channel was closed")


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # a hostile __str__ says nothing
        text = "(an exception whose message could not be read)"
    return text[:ERROR_MESSAGE_LIMIT]
