"""Writing a use case's result as one JSON object, or its chunks as Ollama NDJSON (streamed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

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


async def respond(
    request: web.Request,
    chunks: AsyncGenerator[Chunk, None],
    *,
    stream: bool,
    collect: Callable[[list[Chunk]], Chunk],
) -> web.StreamResponse:
    """Errors before the first chunk propagate (real status); later ones become an ``error`` line."""
    try:
        first = await anext(chunks)
        if first.get("done_reason") in _CONTROL:  # load/unload replies are one JSON object, as in Ollama
            stream = False
        if not stream:
            collected = [first]
            async for chunk in chunks:
                collected.append(chunk)
            return json_response(collect(collected))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        relay = RELAY.set(_NdjsonRelay.of(request, response))
        try:
            await response.write(dumps(first) + b"\n")
            async for chunk in chunks:
                await response.write(dumps(chunk) + b"\n")
        except LlamasupError as e:
            await response.write(dumps({"error": e.message}) + b"\n")
        except ConnectionResetError:  # the client went away; closing the chunks stops the runner
            return response
        except Exception as e:  # a bug must not cut the stream without a word: say it, log it
            log.exception("stream failed", path=request.path)
            await response.write(dumps({"error": f"internal error: {e}"}) + b"\n")
        finally:
            RELAY.reset(relay)
        await response.write_eof()
        return response
    finally:
        await chunks.aclose()  # on disconnect or cancellation this closes the runner stream too


class _NdjsonRelay:
    """Token chunks written to the client's transport as they come (``service.relay``): the same
    bytes ``response.write`` would send, framed as HTTP chunks."""

    def __init__(self, request: web.Request, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.protocol = request.protocol
        self.drain = request.writer.drain

    @classmethod
    def of(cls, request: web.Request, response: web.StreamResponse) -> _NdjsonRelay | None:
        """A relay when the body is plain chunked HTTP/1.1 (no compression), else None."""
        chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if not chunked or response.compression or request.transport is None:
            return None
        return cls(request, request.transport)

    def send(self, chunk: Chunk) -> bool:
        if self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        data = dumps(chunk) + b"\n"
        self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        return self.protocol.writing_paused
