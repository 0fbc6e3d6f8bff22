"""HTTP calls to one llama-server: JSON requests and server-sent-event streams.

Closing a stream early (``aclose``, or cancellation) closes the connection, which is how
llama-server learns that the client went away and stops generating (reference/llama-server.md §0.8).

Streams are the hot path (one event per generated token), so they are read by an asyncio protocol
on a plain connection to the runner's Unix socket with a small HTTP/1.1 reader (status line,
headers, chunked or length-delimited body) instead of aiohttp's client: each read is parsed in the
read callback, and a diverted stream (``EventStream.divert``) hands its events on right there. Each
stream has its own connection, closed when the stream ends (llama-server closes streamed
connections anyway).

JSON calls (tokenize, templates, embeddings) keep their connection open for the next one: a few
idle connections per runner (``IDLE_CONNECTIONS``; each holds one of llama-server's HTTP threads,
of which it has at least ``--parallel`` + 4). A connection llama-server closes while idle is
dropped, and one it closes just as it is reused is retried once on a fresh connection (nothing of
the reply had arrived, so llama-server never read the request).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from ..errors import ContextOverflow, RunnerHTTPError


class RunnerConnectionLost(Exception):
    """The connection to llama-server broke (usually because the process died)."""


def _http_error(status: int, body: bytes) -> RunnerHTTPError:
    """llama-server's error (``{"error":{"message":...}}``, or the raw body) with its status."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip() or f"llama-server returned status {status}"
        return RunnerHTTPError(text, status=status)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        if err.get("type") == "exceed_context_size_error":
            return ContextOverflow(
                str(err["message"]), n_prompt_tokens=int(err.get("n_prompt_tokens", 0)), n_ctx=int(err.get("n_ctx", 0))
            )
        return RunnerHTTPError(str(err["message"]), status=status)
    if isinstance(err, str):
        return RunnerHTTPError(err, status=status)
    return RunnerHTTPError(body.decode("utf-8", "replace").strip(), status=status)


def _event_error(err: Any) -> RunnerHTTPError:
    """An ``{"error": ...}`` event sent after the stream started."""
    if isinstance(err, dict):
        status = err.get("code", 500)
        return RunnerHTTPError(str(err.get("message", err)), status=status if isinstance(status, int) else 500)
    return RunnerHTTPError(str(err), status=500)


IDLE_CONNECTIONS = 2  # kept open per runner for the next JSON call


class RunnerClient:
    """Talks to one llama-server on its Unix socket ``socket_path``. Owned by the runner's process
    (``close`` when it stops): JSON calls reuse its idle connections, each stream has its own."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._idle: list[_EventProtocol] = []
        self._closed = False

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON reply; llama-server's error status and message as ``RunnerHTTPError``."""
        request = _request_bytes(path, orjson.dumps(body), keep_alive=True)
        while self._idle:
            protocol = self._idle.pop()
            if not protocol.reuse(request):
                continue
            try:
                return await self._reply(protocol)
            except RunnerConnectionLost:
                if protocol.answered:
                    raise
                # closed by llama-server as it was reused, before any reply: try the next one
        return await self._reply(await _connect(self.socket_path, request, sse=False))

    async def _reply(self, protocol: _EventProtocol) -> Any:
        assert protocol.transport is not None
        try:
            while not protocol.ended:
                await protocol.wait()
        finally:
            if protocol.error is None and protocol.ended and protocol.keep_alive and not self._closed \
                    and len(self._idle) < IDLE_CONNECTIONS:  # fmt: skip
                self._idle.append(protocol)
            else:
                protocol.transport.close()
        if protocol.error is not None:
            raise protocol.error
        return orjson.loads(b"".join(protocol.body))

    def close(self) -> None:
        """Close the idle connections; later JSON calls each close theirs."""
        self._closed = True
        while self._idle:
            transport = self._idle.pop().transport
            assert transport is not None
            transport.close()

    def stream(self, path: str, body: dict[str, Any]) -> EventStream:
        """Each ``data:`` event of an SSE response; stops at ``[DONE]`` or the end of the body."""
        return EventStream(self.socket_path, path, orjson.dumps(body))


class _EventProtocol(asyncio.Protocol):
    """Reads one streamed response as it arrives: status line and headers, a chunked or
    length-delimited (or close-delimited) body, and the body's SSE ``data:`` events.

    Events are queued for ``EventStream.__anext__``, or, once a sink is set, handed to it right here
    in the read callback. Whatever ends the stream (``[DONE]``, the end of the body, an error event,
    a broken connection, an exception from the sink) is recorded and wakes the reader.
    """

    def __init__(self, sse: bool = True) -> None:
        self.sse = sse  # False: the body is kept whole (``body``), for a JSON reply
        self.transport: asyncio.Transport | None = None
        self._start()

    def _start(self) -> None:
        """The state of a response not yet begun."""
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self.sink: Callable[[dict[str, Any]], bool] | None = None
        self.congested = False  # the sink asked for a pause: reading stops until it has drained
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self._raw = b""  # bytes not yet parsed as head or body framing
        self._status = 0  # 0 until the head has arrived
        self._chunked = False
        self._left: int | None = None  # Content-Length not yet received (None: until the close)
        self._lines = b""  # a partial SSE line
        self.body: list[bytes] = []  # an error reply's body, or the whole body when not ``sse``
        self.keep_alive = False  # the response leaves the connection open for another request

    @property
    def answered(self) -> bool:
        """Whether any of the response has arrived."""
        return bool(self._status or self._raw)

    def reuse(self, request: bytes) -> bool:
        """Send ``request`` on this (idle, finished) connection; False if it has been closed since."""
        if self.transport is None or self.transport.is_closing():
            return False
        self._start()
        self.transport.write(request)
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception as e:  # a bad response or a failing sink: the stream is over
            self.fail(e)
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost decides whether the body was complete

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended and self._status and not self._chunked and self._left is None:
            try:
                self._body_done()  # a close-delimited body ends with the connection
            except Exception as e:
                self.fail(e)
        if not self.ended:
            self.fail(RunnerConnectionLost(str(exc) if exc else "connection closed by llama-server"))
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self.error is None:  # the first failure is the one reported
            self.ended, self.error = True, error
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _received(self, data: bytes) -> None:
        if self.ended:
            return
        raw = self._raw + data
        if not self._status:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                if len(raw) > _HEAD_LIMIT:
                    raise RunnerConnectionLost("response headers too long")
                self._raw = raw
                return
            self._status, self._chunked, self._left, self.keep_alive = _parse_head(raw[: end + 4])
            raw = raw[end + 4 :]
        if not self._chunked:
            self._raw = b""
            if self._left is not None:
                raw = raw[: self._left]
                self._left -= len(raw)
            self._body(raw)
            if self._left == 0:
                self._body_done()
            return
        parts: list[bytes] = []
        while not self.ended:
            end = raw.find(b"\r\n")
            if end < 0:
                break
            size = int(raw[:end].split(b";", 1)[0], 16)
            if size == 0:
                self._body(b"".join(parts))
                self._body_done()
                return
            if len(raw) < end + 4 + size:
                break
            parts.append(raw[end + 2 : end + 2 + size])
            raw = raw[end + 4 + size :]
        self._raw = raw
        if parts:
            self._body(b"".join(parts))

    def _body(self, data: bytes) -> None:
        if self._status != 200 or not self.sse:
            self.body.append(data)
            return
        *lines, self._lines = (self._lines + data).split(b"\n")
        for line in lines:
            if not line.startswith(b"data: "):
                continue  # blank separators and ":" keep-alive comments
            payload = line[6:]
            if payload.startswith(b"[DONE]"):
                self.ended = True
                return
            event = orjson.loads(payload)
            if isinstance(event, dict) and "error" in event:
                raise _event_error(event["error"])
            if self.sink is None:
                self.events.append(event)
            else:
                self.deliver(self.sink, event)

    def deliver(self, sink: Callable[[dict[str, Any]], bool], event: dict[str, Any]) -> None:
        if sink(event) and not self.congested:
            self.congested = True
            assert self.transport is not None
            self.transport.pause_reading()

    def _body_done(self) -> None:
        if self._status != 200:
            raise _http_error(self._status, b"".join(self.body))
        self.ended = True

    async def wait(self) -> None:
        """Until something new has been read (or the connection is over)."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class EventStream:
    """The ``data:`` events of one streamed runner response, over its own connection to the
    runner's Unix socket. Iterate it (``async for``), and close it (``aclose``) when done early:
    closing the connection is what stops llama-server generating.

    ``divert(sink, drain)`` switches to push delivery: from then on every event goes to ``sink``
    as soon as it is read, in the connection's read callback, and iteration only waits for the
    end (or raises its error). No task wakes up per event, which is what a relayed token stream
    costs most. ``sink`` returns True when its own output is congested; reading then pauses until
    ``drain()`` has returned.
    """

    def __init__(self, socket_path: Path, path: str, body: bytes) -> None:
        self._socket_path, self._request = socket_path, _request_bytes(path, body)
        self._protocol: _EventProtocol | None = None
        self._drain: Callable[[], Awaitable[None]] | None = None
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        protocol = self._protocol or await self._open()
        while True:
            if protocol.events:
                return protocol.events.popleft()
            if protocol.error is not None:
                error, protocol.error = protocol.error, None
                await self.aclose()
                raise error
            if protocol.ended or self._closed:
                await self.aclose()
                raise StopAsyncIteration
            if protocol.congested and self._drain is not None:
                await self._drain()
                protocol.congested = False
                assert protocol.transport is not None
                protocol.transport.resume_reading()
                continue
            await protocol.wait()

    def divert(self, sink: Callable[[dict[str, Any]], bool], drain: Callable[[], Awaitable[None]]) -> None:
        """Hand the events still to come to ``sink`` (those already read first)."""
        assert self._protocol is not None, "divert after the first event"
        protocol = self._protocol
        self._drain, protocol.sink = drain, sink
        try:
            while protocol.events:
                protocol.deliver(sink, protocol.events.popleft())
        except Exception as e:  # as if it had failed in the read callback
            protocol.events.clear()
            protocol.fail(e)

    async def aclose(self) -> None:
        self._closed = True
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()

    async def _open(self) -> _EventProtocol:
        self._protocol = protocol = await _connect(self._socket_path, self._request, sse=True)
        if self._closed:  # closed while connecting
            await self.aclose()
        return protocol


async def _connect(socket_path: Path, request: bytes, *, sse: bool) -> _EventProtocol:
    """A new connection to the runner's socket with ``request`` sent on it."""
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_unix_connection(lambda: _EventProtocol(sse), str(socket_path))
    except OSError as e:
        raise RunnerConnectionLost(str(e)) from e
    transport.write(request)
    return protocol


_HEAD_LIMIT = 1 << 20


def _request_bytes(path: str, body: bytes, *, keep_alive: bool = False) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: llama-server\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


def _parse_head(raw: bytes) -> tuple[int, bool, int | None, bool]:
    """Status, whether the body is chunked, its length when given, and whether the connection stays
    open after it (HTTP/1.1, a delimited body, no ``Connection: close``)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise RunnerConnectionLost(f"bad status line from llama-server: {lines[0]!r}")
    chunked, length, close = False, None, parts[0] != "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif key == "content-length" and value.strip().isdigit():
            length = int(value.strip())
        elif key == "connection" and "close" in value.lower():
            close = True
    return int(parts[1]), chunked, length, not close and (chunked or length is not None)
