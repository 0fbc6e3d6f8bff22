"""Streamed replies relayed from the runner connection's read callback (service.relay, api.streaming).

The route ``respond``s with chunks made by ``pump`` from a hand-written runner stream (the one-shot
Unix-socket server of test_runner_client). Once the first chunk is out, the rest must reach the
client without passing through the generators above ``pump``, byte for byte what those generators
would have written; a client on HTTP/1.0 (no chunked framing) gets everything through them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from supervisor.api.streaming import respond
from supervisor.runner.client import EventStream
from supervisor.service.output import collect
from supervisor.service.relay import pump

from .test_runner_client import OK_CHUNKED, OneShot, chunk, events_body

N = 300


def handle(event: dict[str, Any]) -> dict[str, Any] | None:
    return {"model": "m", "response": event["content"], "done": False} if "content" in event else None


async def serve(tmp_path: Path, runner: OneShot, seen: list[dict[str, Any]]) -> TestServer:
    sock = tmp_path / "runner.sock"
    await asyncio.start_unix_server(runner.handle, path=str(sock))

    async def chunks() -> AsyncGenerator[dict[str, Any], None]:
        async for c in pump(EventStream(sock, "/completion", b"{}"), handle):
            seen.append(c)  # what passes through the generators above pump
            yield c
        yield {"model": "m", "response": "", "done": True}

    async def route(request: web.Request) -> web.StreamResponse:
        return await respond(request, chunks(), stream=True, collect=collect)

    app = web.Application()
    app.router.add_post("/api/generate", route)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def runner_reply() -> list[bytes]:
    body = events_body(N)
    return [OK_CHUNKED, *(chunk(body[i : i + 500]) for i in range(0, len(body), 500)), b"0\r\n\r\n"]


async def test_after_the_first_chunk_the_rest_is_relayed_past_the_generators(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    server = await serve(tmp_path, OneShot(runner_reply()), seen)
    try:
        async with aiohttp.ClientSession() as session, session.post(server.make_url("/api/generate")) as resp:
            assert resp.headers["Transfer-Encoding"] == "chunked"
            lines = [orjson.loads(line) async for line in resp.content]
    finally:
        await server.close()
    assert [line["response"] for line in lines[:-1]] == [str(i) for i in range(N)]
    assert lines[-1] == {"model": "m", "response": "", "done": True}
    assert seen == [{"model": "m", "response": "0", "done": False}]  # only the first went through them


async def test_an_http_1_0_client_is_served_through_the_generators(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    server = await serve(tmp_path, OneShot(runner_reply()), seen)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /api/generate HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        raw = await reader.read()  # HTTP/1.0: the body ends with the connection
        writer.close()
    finally:
        await server.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert [line["response"] for line in lines[:-1]] == [str(i) for i in range(N)]
    assert len(seen) == N


async def test_a_client_gone_mid_relay_closes_the_runner_connection(tmp_path: Path) -> None:
    """How llama-server learns to stop generating when the relay's write finds the client gone."""
    runner = OneShot([OK_CHUNKED, chunk(b'data: {"content":"a"}\n\n'), chunk(b'data: {"content":"b"}\n\n')], close=False, hold=2)
    seen: list[dict[str, Any]] = []
    server = await serve(tmp_path, runner, seen)
    try:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(server.make_url("/api/generate"))
            assert orjson.loads(await resp.content.readline())["response"] == "a"
            resp.close()  # the client goes away; the next event finds it gone
            runner.go.set()
            await asyncio.wait_for(runner.client_closed.wait(), 10)
    finally:
        await server.close()
