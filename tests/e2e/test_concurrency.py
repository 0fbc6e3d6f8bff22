"""OLLAMA_NUM_PARALLEL with the real llama-server: slots serve streams at once; one slot serves them in turn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import ServerFactory, base_url


async def _stream(server: TestServer, log: list[tuple[int, bool]], n: int) -> None:
    """Stream a generate, appending (n, done) to ``log`` for each line as it arrives."""
    body = {"model": "tiny", "prompt": f"Story {n}:", "options": {"num_predict": 150, "temperature": 0}}
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/api/generate", json=body) as r:
            assert r.status == 200
            async for line in r.content:
                if line.strip():
                    log.append((n, json.loads(line)["done"]))


@pytest.mark.parametrize("parallel", [1, 2])
async def test_parallel_slots(start_server: ServerFactory, llama_server_bin: Path, parallel: int) -> None:
    """Two slots interleave two streams; with one slot the second stream starts after the first ends."""
    server = await start_server(llama_server_bin, num_parallel=parallel)
    async with aiohttp.ClientSession() as session:  # load first, so both requests find it ready
        async with session.post(base_url(server) + "/api/generate", json={"model": "tiny"}) as r:
            assert r.status == 200
    log: list[tuple[int, bool]] = []
    await asyncio.gather(_stream(server, log, 0), _stream(server, log, 1))
    order = [n for n, _ in log]
    first_done = min(i for i, (_, done) in enumerate(log) if done)
    other = 1 - log[first_done][0]
    others_before_first_done = sum(1 for n in order[:first_done] if n == other)
    if parallel == 2:
        assert others_before_first_done > 10  # the other stream ran alongside
    else:
        assert others_before_first_done == 0  # the other stream waited for the slot
