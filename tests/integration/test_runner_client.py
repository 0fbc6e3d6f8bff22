"""RunnerClient.stream over a Unix socket: the small HTTP/1.1 reader against hand-written responses.

A one-shot server on a Unix socket answers each request with the given byte fragments (written one
by one, so events, chunk headers and chunk bodies arrive split at awkward places), then records
whether the client closed its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from supervisor.errors import ContextOverflow, RunnerHTTPError
from supervisor.runner.client import RunnerClient, RunnerConnectionLost

OK_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class OneShot:
    def __init__(self, fragments: Sequence[bytes], close: bool = True) -> None:
        self.fragments, self.close = fragments, close
        self.request = b""
        self.client_closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.request = await reader.readuntil(b"\r\n\r\n")
        for fragment in self.fragments:
            writer.write(fragment)
            await writer.drain()
        if self.close:
            writer.close()
            return
        await reader.read()  # until the client closes its end
        self.client_closed.set()
        writer.close()


@asynccontextmanager
async def client_for(tmp_path: Path, server: OneShot) -> AsyncIterator[RunnerClient]:
    sock = tmp_path / "r.sock"
    srv = await asyncio.start_unix_server(server.handle, path=str(sock))
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)))
    try:
        yield RunnerClient(session, "http://llama-server", sock)
    finally:
        await session.close()
        srv.close()


async def collect(client: RunnerClient) -> list[dict[str, Any]]:
    return [event async for event in client.stream("/completion", {"prompt": "x"})]


async def test_events_split_across_chunks_and_reads(tmp_path: Path) -> None:
    body = b"data: {\"content\":\"a\"}\n\ndata: {\"content\":\"b\"}\n\n: keep-alive\n\ndata: {\"stop\":true}\n\ndata: [DONE]\n\n"
    framed = chunk(body[:13]) + chunk(body[13:40]) + chunk(body[40:]) + b"0\r\n\r\n"
    fragments = [OK_CHUNKED[:20], OK_CHUNKED[20:] + framed[:3], *(framed[i : i + 7] for i in range(3, len(framed), 7))]
    server = OneShot(fragments)
    async with client_for(tmp_path, server) as client:
        assert await collect(client) == [{"content": "a"}, {"content": "b"}, {"stop": True}]
    assert server.request.startswith(b"POST /completion HTTP/1.1\r\n") and b"Content-Length: 14\r\n" in server.request


async def test_error_status_with_a_length_delimited_body(tmp_path: Path) -> None:
    body = b'{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":4096}}'
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    async with client_for(tmp_path, OneShot([head, body[:30], body[30:]])) as client:
        with pytest.raises(ContextOverflow) as info:
            await collect(client)
    assert (info.value.n_prompt_tokens, info.value.n_ctx) == (9000, 4096)


async def test_an_error_event_after_the_stream_started(tmp_path: Path) -> None:
    body = b'data: {"content":"a"}\n\ndata: {"error":{"code":500,"message":"boom"}}\n\n'
    async with client_for(tmp_path, OneShot([OK_CHUNKED, chunk(body), b"0\r\n\r\n"])) as client:
        seen = []
        with pytest.raises(RunnerHTTPError, match="boom"):
            async for event in client.stream("/completion", {}):
                seen.append(event)
    assert seen == [{"content": "a"}]


async def test_a_connection_cut_mid_chunk_is_a_lost_connection(tmp_path: Path) -> None:
    async with client_for(tmp_path, OneShot([OK_CHUNKED, b"40\r\ndata: {\"con"])) as client:
        with pytest.raises(RunnerConnectionLost):
            await collect(client)


async def test_closing_the_stream_closes_the_connection(tmp_path: Path) -> None:
    """How llama-server learns the client went away (it then stops generating)."""
    body = b'data: {"content":"a"}\n\n'
    server = OneShot([OK_CHUNKED, chunk(body)], close=False)
    async with client_for(tmp_path, server) as client:
        stream = client.stream("/completion", {})
        assert await anext(stream) == {"content": "a"}
        await stream.aclose()
        await asyncio.wait_for(server.client_closed.wait(), 10)
