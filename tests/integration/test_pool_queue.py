"""Slots and the queue: -np leases at once per runner, OLLAMA_MAX_QUEUE waiters, 503 beyond, 499 on cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from supervisor.api.keys import POOL
from supervisor.errors import ServerBusy
from supervisor.pool.pool import RunnerPool, RunnerSpec
from supervisor.runner.command import RunnerConfig
from tests.conftest import ServerFactory, app_of, base_url, wait_until
from tests.integration.runner_helpers import RecordingSpawner


def _spec(run_dir: Path, parallel: int) -> RunnerSpec:
    model = run_dir / "m.gguf"
    model.touch()
    config = RunnerConfig(model_path=model, alias="m:latest", ctx_size=2048 * parallel, parallel=parallel)
    return RunnerSpec(model_key="m", name="m:latest", config=config)


class Holders:
    """Tasks that each take a lease and keep it until told to let go."""

    def __init__(self, pool: RunnerPool, spec: RunnerSpec) -> None:
        self.pool, self.spec = pool, spec
        self.inside: set[int] = set()
        self.release: dict[int, asyncio.Event] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def start(self, n: int) -> None:
        self.release[n] = asyncio.Event()
        self.tasks[n] = asyncio.create_task(self._hold(n))

    async def _hold(self, n: int) -> None:
        async with self.pool.lease(self.spec):
            self.inside.add(n)
            await self.release[n].wait()
            self.inside.discard(n)


async def test_slots_bound_concurrent_leases(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A runner with two slots serves two leases at once; the third waits until one ends."""
    pool = RunnerPool(spawn=RecordingSpawner(fake_llama_server_bin, run_dir), default_keep_alive=None)
    holders = Holders(pool, _spec(run_dir, parallel=2))
    try:
        for n in range(3):
            holders.start(n)
        await wait_until(lambda: len(holders.inside) == 2 and pool.waiting == 1, what="two leases in, one waiting")
        waiting = ({0, 1, 2} - holders.inside).pop()
        first = next(iter(holders.inside))
        holders.release[first].set()
        await wait_until(lambda: waiting in holders.inside and pool.waiting == 0, what="the waiter to get the slot")
    finally:
        for event in holders.release.values():
            event.set()
        await asyncio.gather(*holders.tasks.values(), return_exceptions=True)
        await pool.close()


async def test_queue_full_then_cancel_frees_a_place(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """Beyond max_queue waiters a lease is refused with Ollama's 503 text; a cancelled waiter frees its place."""
    pool = RunnerPool(spawn=RecordingSpawner(fake_llama_server_bin, run_dir), default_keep_alive=None, max_queue=2)
    spec = _spec(run_dir, parallel=1)
    holders = Holders(pool, spec)
    try:
        holders.start(0)
        await wait_until(lambda: holders.inside == {0}, what="the first lease")
        holders.start(1)
        holders.start(2)
        await wait_until(lambda: pool.waiting == 2, what="two waiters")
        with pytest.raises(ServerBusy) as e:
            async with pool.lease(spec):
                pass
        assert str(e.value) == "server busy, please try again.  maximum pending requests exceeded" and e.value.status == 503
        with capture_logs() as logs:
            holders.tasks[1].cancel()
            await asyncio.gather(holders.tasks[1], return_exceptions=True)
        assert pool.waiting == 1
        assert any(entry["event"] == "request canceled while queued" and entry["status"] == 499 for entry in logs)
        holders.start(3)  # admitted now
        await wait_until(lambda: pool.waiting == 2, what="the new waiter")
        holders.release[0].set()
        await wait_until(lambda: holders.inside == {2}, what="the next waiter in line")
    finally:
        for event in holders.release.values():
            event.set()
        await asyncio.gather(*holders.tasks.values(), return_exceptions=True)
        await pool.close()


async def test_http_503_when_the_queue_is_full(start_server: ServerFactory, fake_llama_server_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With OLLAMA_MAX_QUEUE=1, a second request while the first waits for its model gets Ollama's 503 body."""
    monkeypatch.setenv("FAKE_LLAMA_LOAD_SECONDS", "1")
    server = await start_server(fake_llama_server_bin, max_queue=1)
    pool = app_of(server)[POOL]
    async with aiohttp.ClientSession() as session:
        first = asyncio.create_task(session.post(base_url(server) + "/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}))
        await wait_until(lambda: pool.waiting == 1, what="the first request to wait for the load")
        async with session.post(base_url(server) + "/api/generate", json={"model": "tiny", "prompt": "hi"}) as r:
            assert r.status == 503
            assert await r.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
        async with await first as r:
            assert r.status == 200
