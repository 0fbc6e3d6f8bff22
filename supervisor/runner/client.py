"""HTTP calls to one llama-server: JSON requests and server-sent-event streams.

Closing a stream early (the generator is closed or cancelled) closes the connection, which is how
llama-server learns that the client went away and stops generating (reference/llama-server.md §0.8).

Streams are the hot path (one event per generated token), so they are read over a plain asyncio
connection to the runner's Unix socket with a small HTTP/1.1 reader (status line, headers, chunked
or length-delimited body) instead of aiohttp's client: one buffered read yields every complete
event in it, at a fraction of the general client's cost per token. Each stream has its own
connection, closed when the stream ends (llama-server closes streamed connections anyway).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ..errors import ContextOverflow, RunnerHTTPError

_JSON_HEADERS = {"Content-Type": "application/json"}
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


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


class RunnerClient:
    """Talks to one llama-server: JSON calls at ``base_url`` over a shared session, streams on
    ``socket_path``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, socket_path: Path) -> None:
        self.session = session
        self.base_url = base_url
        self.socket_path = socket_path

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            async with self.session.post(
                self.base_url + path, data=orjson.dumps(body), headers=_JSON_HEADERS, timeout=_NO_TIMEOUT
            ) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise _http_error(resp.status, raw)
                return orjson.loads(raw)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise RunnerConnectionLost(str(e)) from e

    def stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Each ``data:`` event of an SSE response; stops at ``[DONE]`` or the end of the body."""
        return _unix_stream(self.socket_path, path, orjson.dumps(body))


async def _sse(body: AsyncIterator[bytes]) -> AsyncGenerator[dict[str, Any], None]:
    """The ``data:`` events of an SSE body, until ``[DONE]``. Whatever has arrived is split at once:
    when tokens come faster than one wake-up per token, several events are handled per read."""
    pending = b""
    async for data in body:
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line.startswith(b"data: "):
                continue  # blank separators and ":" keep-alive comments
            payload = line[6:]
            if payload.startswith(b"[DONE]"):
                return
            event = orjson.loads(payload)
            if isinstance(event, dict) and "error" in event:
                raise _event_error(event["error"])
            yield event


async def _unix_stream(socket_path: Path, path: str, body: bytes) -> AsyncGenerator[dict[str, Any], None]:
    """``RunnerClient.stream`` over a plain connection to the runner's Unix socket."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=1 << 20)
    except OSError as e:
        raise RunnerConnectionLost(str(e)) from e
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: llama-server\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        try:
            raw_head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as e:
            raise RunnerConnectionLost("response headers too long") from e
        status, chunked, length = _parse_head(raw_head)
        async with aclosing(_chunks(reader) if chunked else _plain(reader, length)) as body_parts:
            if status != 200:
                raise _http_error(status, b"".join([part async for part in body_parts]))
            async for event in _sse(body_parts):
                yield event
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        raise RunnerConnectionLost(str(e) or "connection closed by llama-server") from e
    finally:
        writer.close()


def _parse_head(raw: bytes) -> tuple[int, bool, int | None]:
    """Status, whether the body is chunked, and its length when given."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise RunnerConnectionLost(f"bad status line from llama-server: {lines[0]!r}")
    chunked, length = False, None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif key == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    return int(parts[1]), chunked, length


async def _chunks(reader: asyncio.StreamReader) -> AsyncGenerator[bytes, None]:
    """The data of a chunked body, as it arrives (every complete chunk in the buffer at once)."""
    buf = b""
    while True:
        data = await reader.read(1 << 16)
        if not data:
            raise asyncio.IncompleteReadError(buf, None)
        buf += data
        out: list[bytes] = []
        while True:
            end = buf.find(b"\r\n")
            if end < 0:
                break
            size = int(buf[:end].split(b";", 1)[0], 16)
            if size == 0:
                if out:
                    yield b"".join(out)
                return
            if len(buf) < end + 2 + size + 2:
                break
            out.append(buf[end + 2 : end + 2 + size])
            buf = buf[end + 2 + size + 2 :]
        if out:
            yield b"".join(out)


async def _plain(reader: asyncio.StreamReader, length: int | None) -> AsyncGenerator[bytes, None]:
    """A body delimited by Content-Length (or by the end of the connection)."""
    left = length
    while left is None or left > 0:
        data = await reader.read(1 << 16 if left is None else min(left, 1 << 16))
        if not data:
            if left:
                raise asyncio.IncompleteReadError(b"", left)
            return
        if left is not None:
            left -= len(data)
        yield data
