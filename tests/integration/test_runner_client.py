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
from supervisor.runner.client import IDLE_CONNECTIONS, RunnerClient, RunnerConnectionLost

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


class KeepAlive:
    """A keep-alive JSON server: answers each request on a connection with ``{"n": <request number>}``
    (length-delimited). ``close_after``: the connection is closed once it has answered that many;
    ``close_header``: its replies say ``Connection: close`` (and it closes after one)."""

    def __init__(self, close_after: int | None = None, close_header: bool = False) -> None:
        self.close_after, self.close_header = close_after, close_header
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = 0
        self._closes = asyncio.Condition()

    async def wait_closed_by_client(self, count: int) -> None:
        async with self._closes:
            await asyncio.wait_for(self._closes.wait_for(lambda: self.closed_by_client >= count), 10)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed its end
                async with self._closes:
                    self.closed_by_client += 1
                    self._closes.notify_all()
                break
            length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            self.requests.append(head)
            if self.close_after is not None and answered == self.close_after:
                break  # closes as the next request arrives, without answering it
            body = b'{"n":%d}' % len(self.requests)
            connection = b"Connection: close\r\n" if self.close_header else b""
            writer.write(b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (connection, len(body), body))
            await writer.drain()
            answered += 1
            if self.close_header:
                break
        writer.close()


@asynccontextmanager
async def keep_alive_client(tmp_path: Path, server: KeepAlive) -> AsyncIterator[RunnerClient]:
    sock = tmp_path / "k.sock"
    srv = await asyncio.start_unix_server(server.handle, path=str(sock))
    client = RunnerClient(sock)
    try:
        yield client
    finally:
        client.close()
        srv.close()


async def test_json_calls_reuse_an_idle_connection(tmp_path: Path) -> None:
    server = KeepAlive()
    async with keep_alive_client(tmp_path, server) as client:
        assert [await client.post_json("/tokenize", {"content": str(i)}) for i in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert server.connections == 1
    assert all(b"Connection: keep-alive\r\n" in head for head in server.requests)


async def test_concurrent_json_calls_keep_at_most_the_idle_limit_open(tmp_path: Path) -> None:
    server = KeepAlive()
    async with keep_alive_client(tmp_path, server) as client:
        await asyncio.gather(*(client.post_json("/tokenize", {}) for _ in range(IDLE_CONNECTIONS + 2)))
        assert server.connections == IDLE_CONNECTIONS + 2
        await server.wait_closed_by_client(2)  # the two connections beyond the limit
        await asyncio.gather(*(client.post_json("/tokenize", {}) for _ in range(IDLE_CONNECTIONS)))
        assert server.connections == IDLE_CONNECTIONS + 2  # the idle ones were reused


async def test_a_reply_saying_connection_close_is_not_reused(tmp_path: Path) -> None:
    server = KeepAlive(close_header=True)
    async with keep_alive_client(tmp_path, server) as client:
        assert await client.post_json("/x", {}) == {"n": 1}
        assert await client.post_json("/x", {}) == {"n": 2}
    assert server.connections == 2


async def test_a_connection_closed_as_it_is_reused_is_retried_on_a_fresh_one(tmp_path: Path) -> None:
    """llama-server closing an idle connection just as the next request goes out: that request was
    never read (no reply byte came back), so it is sent again on a new connection."""
    server = KeepAlive(close_after=1)
    async with keep_alive_client(tmp_path, server) as client:
        assert await client.post_json("/x", {}) == {"n": 1}
        assert await client.post_json("/x", {}) == {"n": 3}  # request 2 went unanswered
    assert server.connections == 2


async def test_a_reply_cut_short_on_a_reused_connection_is_not_retried(tmp_path: Path) -> None:
    body = b'{"n":1}'
    first = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"partial"
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for reply in (first, cut):
            await reader.readuntil(b"\r\n\r\n")
            await reader.readuntil(b"}")
            writer.write(reply)
            await writer.drain()
        writer.close()

    sock = tmp_path / "c.sock"
    srv = await asyncio.start_unix_server(handle, path=str(sock))
    client = RunnerClient(sock)
    try:
        assert await client.post_json("/x", {}) == {"n": 1}
        with pytest.raises(RunnerConnectionLost):
            await client.post_json("/x", {})
    finally:
        client.close()
        srv.close()
    assert connections == 1


async def test_close_closes_the_idle_connections(tmp_path: Path) -> None:
    server = KeepAlive()
    async with keep_alive_client(tmp_path, server) as client:
        await client.post_json("/x", {})
        client.close()
        await server.wait_closed_by_client(1)
        assert await client.post_json("/x", {}) == {"n": 2}  # still works, on a connection of its own
        await server.wait_closed_by_client(2)
    assert server.connections == 2
