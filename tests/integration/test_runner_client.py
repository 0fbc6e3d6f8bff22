"""RunnerClient over a Unix socket: the small HTTP/1.1 reader against hand-written responses.

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

import pytest

from supervisor.errors import ContextOverflow, RunnerHTTPError
from supervisor.runner.client import RunnerClient, RunnerConnectionLost

OK_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class OneShot:
    """``hold``: the fragments from that index on are written once ``go`` is set."""

    def __init__(self, fragments: Sequence[bytes], close: bool = True, hold: int | None = None) -> None:
        self.fragments, self.close, self.hold = fragments, close, hold
        self.request = b""
        self.client_closed = asyncio.Event()
        self.go = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.request = await reader.readuntil(b"\r\n\r\n")
        for i, fragment in enumerate(self.fragments):
            if i == self.hold:
                await self.go.wait()
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
    try:
        yield RunnerClient(sock)
    finally:
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


def events_body(n: int) -> bytes:
    return b"".join(b'data: {"content":"%d"}\n\n' % i for i in range(n)) + b"data: [DONE]\n\n"


async def test_a_diverted_stream_hands_events_to_the_sink_and_iteration_only_ends(tmp_path: Path) -> None:
    """After ``divert`` the events go to the sink as they are read; ``async for`` sees none of them."""
    body = events_body(50)
    fragments = [OK_CHUNKED + chunk(b'data: {"content":"first"}\n\n'), *(chunk(body[i : i + 40]) for i in range(0, len(body), 40)), b"0\r\n\r\n"]  # fmt: skip
    async with client_for(tmp_path, OneShot(fragments)) as client:
        stream = client.stream("/completion", {})
        assert await anext(stream) == {"content": "first"}
        sunk: list[dict[str, Any]] = []

        async def drain() -> None:
            raise AssertionError("never congested")

        stream.divert(lambda event: sunk.append(event) is not None, drain)
        assert [event async for event in stream] == []
    assert sunk == [{"content": str(i)} for i in range(50)]


async def test_events_read_before_divert_go_to_the_sink_first(tmp_path: Path) -> None:
    body = b'data: {"content":"a"}\n\ndata: {"content":"b"}\n\ndata: {"content":"c"}\n\n'
    server = OneShot([OK_CHUNKED + chunk(body)], close=False)
    async with client_for(tmp_path, server) as client:
        stream = client.stream("/completion", {})
        assert await anext(stream) == {"content": "a"}  # b and c came in the same read
        sunk: list[dict[str, Any]] = []

        async def drain() -> None:
            return None

        stream.divert(lambda event: sunk.append(event) is not None, drain)
        assert sunk == [{"content": "b"}, {"content": "c"}]
        await stream.aclose()


async def test_a_congested_sink_pauses_reading_until_drained(tmp_path: Path) -> None:
    """The sink says its client is congested: the runner connection stops being read until
    ``drain`` returns, then every event still arrives, in order."""
    body = events_body(200)
    fragments = [OK_CHUNKED + chunk(b'data: {"content":"first"}\n\n'), chunk(body[:100]), chunk(body[100:]), b"0\r\n\r\n"]
    server = OneShot(fragments, hold=2)  # the rest only once reading was seen paused
    async with client_for(tmp_path, server) as client:
        stream = client.stream("/completion", {})
        assert await anext(stream) == {"content": "first"}
        sunk: list[dict[str, Any]] = []
        drained = asyncio.Event()
        reading: list[bool] = []

        async def drain() -> None:
            reading.append(stream._protocol.transport.is_reading())  # type: ignore[union-attr]  # noqa: SLF001
            server.go.set()
            await drained.wait()

        stream.divert(lambda event: sunk.append(event) is None and len(sunk) == 3, drain)
        ending = asyncio.ensure_future(stream.__anext__())
        await server.go.wait()
        assert reading == [False] and len(sunk) < 200  # paused while the sink's side drains
        drained.set()
        with pytest.raises(StopAsyncIteration):
            await ending
    assert sunk == [{"content": str(i)} for i in range(200)]


async def test_a_failing_sink_ends_the_stream_with_its_error_and_closes_the_connection(tmp_path: Path) -> None:
    """A client gone mid-stream (its write fails in the sink) must stop the runner: the runner
    connection is closed and the error reaches whoever iterates the stream."""
    body = b'data: {"content":"a"}\n\n'
    server = OneShot([OK_CHUNKED + chunk(body), chunk(b'data: {"content":"b"}\n\n')], close=False)
    async with client_for(tmp_path, server) as client:
        stream = client.stream("/completion", {})
        assert await anext(stream) == {"content": "a"}

        def sink(event: dict[str, Any]) -> bool:
            raise ConnectionResetError("the client closed the connection")

        async def drain() -> None:
            return None

        stream.divert(sink, drain)
        with pytest.raises(ConnectionResetError):
            await anext(stream)
        await asyncio.wait_for(server.client_closed.wait(), 10)


async def test_an_error_event_after_divert_is_raised_to_the_iterator(tmp_path: Path) -> None:
    body = b'data: {"content":"b"}\n\ndata: {"error":{"code":500,"message":"boom"}}\n\n'
    server = OneShot([OK_CHUNKED + chunk(b'data: {"content":"a"}\n\n'), chunk(body), b"0\r\n\r\n"])
    async with client_for(tmp_path, server) as client:
        stream = client.stream("/completion", {})
        assert await anext(stream) == {"content": "a"}
        sunk: list[dict[str, Any]] = []

        async def drain() -> None:
            return None

        stream.divert(lambda event: sunk.append(event) is not None, drain)
        with pytest.raises(RunnerHTTPError, match="boom"):
            await anext(stream)
    assert sunk == [{"content": "b"}]


async def test_a_close_delimited_body_ends_with_the_connection(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    async with client_for(tmp_path, OneShot([head, b'data: {"content":"a"}\n\n', b'data: {"content":"b"}\n\n'])) as client:
        assert await collect(client) == [{"content": "a"}, {"content": "b"}]


async def test_post_json_returns_the_body_of_a_length_delimited_reply(tmp_path: Path) -> None:
    body = b'{"tokens":[1,2,3]}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    server = OneShot([head + body[:5], body[5:]])
    async with client_for(tmp_path, server) as client:
        assert await client.post_json("/tokenize", {"content": "x"}) == {"tokens": [1, 2, 3]}
    assert server.request.startswith(b"POST /tokenize HTTP/1.1\r\n")


async def test_post_json_reads_a_chunked_reply_and_raises_runner_errors(tmp_path: Path) -> None:
    chunked = [OK_CHUNKED.replace(b"text/event-stream", b"application/json"), chunk(b'{"a":'), chunk(b"1}"), b"0\r\n\r\n"]
    async with client_for(tmp_path, OneShot(chunked)) as client:
        assert await client.post_json("/x", {}) == {"a": 1}
    error = b'{"error":{"code":501,"message":"This server does not support embeddings. Start it with `--embeddings`"}}'
    head = b"HTTP/1.1 501 Not Implemented\r\nContent-Length: %d\r\n\r\n" % len(error)
    async with client_for(tmp_path, OneShot([head, error])) as client:
        with pytest.raises(RunnerHTTPError, match="does not support embeddings") as info:
            await client.post_json("/embeddings", {})
    assert info.value.status == 501
    async with client_for(tmp_path, OneShot([b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"partial"])) as client:
        with pytest.raises(RunnerConnectionLost):
            await client.post_json("/x", {})
