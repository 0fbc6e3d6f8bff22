"""Writing a use case's result as one JSON object, or its chunks as a stream: Ollama NDJSON, or
server-sent events in OpenAI's or Anthropic's shape (a ``Framing`` turns chunks into bytes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

import structlog
from aiohttp import web

from ..errors import LlamasupError
from ..protocol.ollama import dumps
from ..service.relay import RELAY, Chunk

log = structlog.get_logger("supervisor.api")
_CONTROL = ("load", "unload")


def json_response(body: object, status: int = 200) -> web.Response:
    """One JSON object, encoded as Go encodes it."""
    return web.Response(status=status, body=dumps(body), content_type="application/json", charset="utf-8")


class Framing(Protocol):
    """How a stream's chunks are written: the bytes for each chunk (possibly none), the end of a
    complete stream, and an error once the stream has started."""

    content_type: str

    def chunk(self, chunk: Chunk) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, message: str, status: int) -> bytes: ...


class Ndjson:
    """Ollama's stream: one JSON object per line; an error is an ``{"error"}`` line."""

    content_type = "application/x-ndjson"

    def chunk(self, chunk: Chunk) -> bytes:
        return dumps(chunk) + b"\n"

    def end(self) -> bytes:
        return b""

    def error(self, message: str, status: int) -> bytes:
        return dumps({"error": message}) + b"\n"


async def respond(
    request: web.Request,
    chunks: AsyncGenerator[Chunk, None],
    *,
    stream: bool,
    collect: Callable[[list[Chunk]], Chunk],
    framing: Framing | None = None,
) -> web.StreamResponse:
    """Errors before the first chunk propagate (real status); later ones are written by the framing
    (Ollama's ``error`` line by default)."""
    framing = framing or Ndjson()
    try:
        first = await anext(chunks)
        if first.get("done_reason") in _CONTROL:  # load/unload replies are one JSON object, as in Ollama
            stream = False
        if not stream:
            collected = [first]
            async for chunk in chunks:
                collected.append(chunk)
            return json_response(collect(collected))
        response = web.StreamResponse(headers={"Content-Type": framing.content_type})
        await response.prepare(request)
        relay = RELAY.set(_Relay.of(request, response, framing))
        try:
            await _write(response, framing.chunk(first))
            async for chunk in chunks:
                await _write(response, framing.chunk(chunk))
            await _write(response, framing.end())
        except LlamasupError as e:
            await response.write(framing.error(e.message, e.status))
        except ConnectionResetError:  # the client went away; closing the chunks stops the runner
            return response
        except Exception as e:  # a bug must not cut the stream without a word: say it, log it
            log.exception("stream failed", path=request.path)
            await response.write(framing.error(f"internal error: {e}", 500))
        finally:
            RELAY.reset(relay)
        await response.write_eof()
        return response
    finally:
        await chunks.aclose()  # on disconnect or cancellation this closes the runner stream too


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if data:  # an empty write would end the chunked body
        await response.write(data)


class _Relay:
    """Token chunks written to the client's transport as they come (``service.relay``): the same
    bytes ``response.write`` would send, framed as HTTP chunks."""

    def __init__(self, request: web.Request, transport: asyncio.Transport, framing: Framing) -> None:
        self.transport = transport
        self.protocol = request.protocol
        self.drain = request.writer.drain
        self.framing = framing

    @classmethod
    def of(cls, request: web.Request, response: web.StreamResponse, framing: Framing) -> _Relay | None:
        """A relay when the body is plain chunked HTTP/1.1 (no compression), else None."""
        chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if not chunked or response.compression or request.transport is None:
            return None
        return cls(request, request.transport, framing)

    def send(self, chunk: Chunk) -> bool:
        if self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        data = self.framing.chunk(chunk)
        if data:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        return self.protocol.writing_paused
