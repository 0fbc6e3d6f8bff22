"""RunnerPool with fake runners: shared loads, leases, keep-alive, reloads, crashes, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from supervisor.errors import RunnerStartError
from supervisor.pool.pool import PoolClosed, RunnerPool, RunnerSpec
from supervisor.runner.command import RunnerConfig
from tests.conftest import wait_until
from tests.integration.runner_helpers import RecordingSpawner


def spec(run_dir: Path, ctx: int = 2048, key: str = "m") -> RunnerSpec:
    model = run_dir / f"{key}.gguf"
    model.touch()
    return RunnerSpec(model_key=key, name=f"{key}:latest", config=RunnerConfig(model_path=model, alias=f"{key}:latest", ctx_size=ctx))


async def _hold(pool: RunnerPool, s: RunnerSpec) -> int | None:
    async with pool.lease(s) as runner:
        return runner.process.pid


async def test_concurrent_leases_share_one_load(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """Requests for a loading model wait for the same load; one process is started."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir, FAKE_LLAMA_LOAD_SECONDS="0.3")
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    s = spec(run_dir)
    try:
        pids = await asyncio.gather(*(_hold(pool, s) for _ in range(5)))
        assert len(spawner.spawned) == 1 and len(set(pids)) == 1
    finally:
        await pool.close()


async def test_cancelled_waiter_does_not_cancel_the_load(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A client that gives up while a model loads does not cancel the load others wait for."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir, FAKE_LLAMA_LOAD_SECONDS="0.5")
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    s = spec(run_dir)
    try:
        first = asyncio.create_task(_hold(pool, s))
        await wait_until(lambda: len(spawner.spawned) == 1, what="the load to start")
        second = asyncio.create_task(_hold(pool, s))
        await asyncio.sleep(0)  # let the second request join the load
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert len(spawner.spawned) == 1
        (_, process) = spawner.spawned[0]
        assert not process.exited
    finally:
        await pool.close()


async def test_keep_alive_expiry_and_leases(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """No keep-alive timer runs while a lease is held; once idle, the runner stops after keep_alive."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir)
    pool = RunnerPool(spawn=spawner, default_keep_alive=300.0)
    s = spec(run_dir)
    try:
        async with pool.lease(s, keep_alive=0.2) as runner:
            process = runner.process
            (entry,) = pool._entries.values()  # noqa: SLF001
            assert entry.expiry is None and entry.expires_at is None
        assert entry.expires_at is not None  # the timer started at release
        await wait_until(lambda: process.exited, what="keep-alive expiry")
        assert pool.loaded() == []
    finally:
        await pool.close()


async def test_keep_alive_is_sticky(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A request without keep_alive keeps the runner's current value; one with it replaces it."""
    pool = RunnerPool(spawn=RecordingSpawner(fake_llama_server_bin, run_dir), default_keep_alive=300.0)
    s = spec(run_dir)
    try:
        async with pool.lease(s, keep_alive=None):  # forever
            pass
        (entry,) = pool._entries.values()  # noqa: SLF001
        assert entry.keep_alive is None and entry.expiry is None
        async with pool.lease(s):  # unset: stays forever
            pass
        assert entry.keep_alive is None
        async with pool.lease(s, keep_alive=60.0):
            pass
        assert entry.keep_alive == 60.0 and entry.expiry is not None
    finally:
        await pool.close()


async def test_changed_parameters_reload_after_old_runner_stops(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A new num_ctx retires the runner; the replacement starts only after the old one (still leased) stopped."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir)
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    try:
        async with pool.lease(spec(run_dir, ctx=2048)) as old:
            replacement = asyncio.create_task(_hold(pool, spec(run_dir, ctx=4096)))
            for _ in range(20):  # let the replacement's load run as far as it can without the old runner stopping
                await asyncio.sleep(0)
            assert len(spawner.spawned) == 1 and not old.process.exited
        new_pid = await replacement
        assert len(spawner.spawned) == 2 and spawner.on_spawn == [True, True]
        assert spawner.spawned[1][0].ctx_size == 4096 and new_pid != spawner.spawned[0][1].pid
    finally:
        await pool.close()


async def test_crashed_runner_is_replaced(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A runner that dies on its own leaves the pool; the next lease starts a fresh one."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir)
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    s = spec(run_dir)
    try:
        first = await _hold(pool, s)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: pool.loaded() == [], what="the crash to be noticed")
        second = await _hold(pool, s)
        assert second != first and len(spawner.spawned) == 2
    finally:
        await pool.close()


async def test_load_failure_reaches_every_waiter_and_is_retried(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A failed load raises in every waiting request, leaves nothing behind, and the next request tries again."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir, FAKE_LLAMA_EXIT_ON_LOAD="2")
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    s = spec(run_dir)
    try:
        results = await asyncio.gather(_hold(pool, s), _hold(pool, s), return_exceptions=True)
        assert all(isinstance(r, RunnerStartError) and "exit status 2" in str(r) for r in results)
        assert len(spawner.spawned) == 1 and pool._entries == {}  # noqa: SLF001
        with pytest.raises(RunnerStartError):
            await _hold(pool, s)
        assert len(spawner.spawned) == 2
    finally:
        await pool.close()


async def test_close_stops_loading_and_loaded_runners(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """close() stops every runner, including one still loading, and refuses new leases."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir, FAKE_LLAMA_LOAD_SECONDS="30")
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    waiting = asyncio.create_task(_hold(pool, spec(run_dir)))
    await wait_until(lambda: len(spawner.spawned) == 1 and spawner.spawned[0][1].pid is not None, what="spawn")
    await pool.close()
    assert spawner.spawned[0][1].exited
    with pytest.raises((asyncio.CancelledError, RunnerStartError)):
        await waiting
    with pytest.raises(PoolClosed):
        await _hold(pool, spec(run_dir))


async def test_expire_unloads_idle_runner_now(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """expire() (keep_alive 0) stops an idle runner at once; a leased one when its lease ends."""
    pool = RunnerPool(spawn=RecordingSpawner(fake_llama_server_bin, run_dir), default_keep_alive=None)
    s = spec(run_dir)
    try:
        async with pool.lease(s) as runner:
            (entry,) = pool._entries.values()  # noqa: SLF001
            assert pool.expire("m")
            assert entry.stop_task is None and not runner.process.stopping  # leased: not stopped
        await wait_until(lambda: runner.process.exited, what="unload after the lease")
        assert not pool.expire("m")
    finally:
        await pool.close()


async def test_close_stops_a_retired_runner_that_is_still_leased(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A runner retired for a reload but still leased is stopped by close() too, not left behind."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir)
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    release = asyncio.Event()

    async def hold_until_released() -> None:
        async with pool.lease(spec(run_dir, ctx=2048)):
            await release.wait()

    holder = asyncio.create_task(hold_until_released())
    await wait_until(lambda: pool.loaded() != [], what="the first runner")
    reload = asyncio.create_task(_hold(pool, spec(run_dir, ctx=4096)))
    for _ in range(20):
        await asyncio.sleep(0)
    await pool.close()
    assert spawner.spawned[0][1].exited
    release.set()
    await holder
    with pytest.raises((asyncio.CancelledError, RunnerStartError, PoolClosed)):
        await reload
    assert all(p.exited or p.pid is None for _, p in spawner.spawned)
