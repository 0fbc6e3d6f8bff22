"""OLLAMA_MAX_LOADED_MODELS with fake runners: idle runners make room; busy ones make a load wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

from supervisor.pool.pool import RunnerPool
from supervisor.runner.command import RunnerConfig
from supervisor.runner.process import RunnerProcess
from tests.conftest import wait_until
from tests.integration.runner_helpers import RecordingSpawner
from tests.integration.test_pool import _hold, spec
from tests.integration.test_pool_queue import Holders


async def test_idle_runner_unloaded_to_make_room(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """With two allowed, a third model unloads the runner idle longest, and only it."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir)
    first_exited_at_spawn: list[bool] = []

    def spawn(config: RunnerConfig) -> RunnerProcess:
        first_exited_at_spawn.append(bool(spawner.spawned) and spawner.spawned[0][1].exited)
        return spawner(config)

    pool = RunnerPool(spawn=spawn, default_keep_alive=None, max_loaded=2)
    try:
        for key in ("a", "b", "c"):
            await _hold(pool, spec(run_dir, key=key))
        (_, a), (_, b), (_, c) = spawner.spawned
        assert a.exited and not b.exited and not c.exited
        assert [loaded.spec.model_key for loaded in pool.loaded()] == ["b", "c"]
        assert first_exited_at_spawn == [False, False, True]  # "c" started only once "a" had stopped
    finally:
        await pool.close()


async def test_load_waits_while_every_runner_is_busy(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A leased runner is never evicted: the new model loads when a lease ends, replacing that runner."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir)
    pool = RunnerPool(spawn=spawner, default_keep_alive=None, max_loaded=1)
    holders = Holders(pool, spec(run_dir, key="a"))
    try:
        holders.start(0)
        await wait_until(lambda: holders.inside == {0}, what="a to be leased")
        waiting = asyncio.create_task(_hold(pool, spec(run_dir, key="b")))
        await wait_until(lambda: pool.waiting == 1, what="b to wait for room")
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(spawner.spawned) == 1  # nothing evicted, nothing started
        holders.release[0].set()
        await waiting
        (_, a), (_, b) = spawner.spawned
        assert a.exited and not b.exited
    finally:
        for event in holders.release.values():
            event.set()
        await asyncio.gather(*holders.tasks.values(), return_exceptions=True)
        await pool.close()
