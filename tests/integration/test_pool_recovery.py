"""RunnerPool with fake runners: hung runners, out-of-memory loads, load reasons, measured memory."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.errors import RunnerStartError
from supervisor.pool.pool import RunnerPool, RunnerSpec
from supervisor.runner.command import RunnerConfig, build_argv
from supervisor.runner.memlog import MIB
from supervisor.runner.process import RunnerProcess
from tests.conftest import wait_until
from tests.integration.runner_helpers import RecordingSpawner, fake_env


def spec(run_dir: Path, ctx: int = 2048, key: str = "m", *, auto_ctx: bool = False) -> RunnerSpec:
    model = run_dir / f"{key}.gguf"
    model.touch()
    config = RunnerConfig(model_path=model, alias=f"{key}:latest", ctx_size=ctx)
    return RunnerSpec(model_key=key, name=f"{key}:latest", config=config, auto_ctx=auto_ctx)


class PerModelSpawner(RecordingSpawner):
    """Fake runners whose switches depend on the model (its alias)."""

    def __init__(self, binary: Path, run_dir: Path, switches: dict[str, dict[str, str]]) -> None:
        super().__init__(binary, run_dir)
        self.per_model = switches

    def __call__(self, config: RunnerConfig) -> RunnerProcess:
        sock = self.run_dir / f"p{len(self.spawned)}.sock"
        env = fake_env(**self.per_model.get(config.alias, {}))
        process = RunnerProcess(build_argv(self.binary, config, sock), env, name=config.alias, socket_path=sock,
                                load_timeout=10.0, stop_grace=2.0)  # fmt: skip
        self.spawned.append((config, process))
        return process


async def test_a_runner_that_stops_answering_is_replaced(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A runner that misses two /health checks (here: SIGSTOPped) is killed; the next lease loads anew."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir)
    pool = RunnerPool(spawn=spawner, default_keep_alive=None, health_interval=0.05, health_timeout=0.2)
    s = spec(run_dir)
    try:
        async with pool.lease(s) as runner:
            hung = runner.process
        assert hung.pid is not None
        os.kill(hung.pid, signal.SIGSTOP)
        await wait_until(lambda: hung.exited, what="the hung runner to be killed")
        assert pool.loaded() == []
        (event,) = [e for e in pool.events() if e.action == "unload"]
        assert "stopped answering /health" in event.reason
        async with pool.lease(s) as runner:
            assert runner.process is not hung and not runner.process.exited
        assert len(spawner.spawned) == 2
        assert pool.loaded()[0].reason.startswith("requested again after: runner stopped answering /health")
    finally:
        await pool.close()


async def test_out_of_memory_at_load_unloads_idle_runners_and_retries(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A load that fails for memory while another runner is idle retries once with it unloaded."""
    pidfile = run_dir / "a.pid"
    spawner = PerModelSpawner(fake_llama_server_bin, run_dir, {
        "a:latest": {"FAKE_LLAMA_PIDFILE": str(pidfile)},
        "b:latest": {"FAKE_LLAMA_OOM_WHILE_RUNNING": str(pidfile)},
    })  # fmt: skip
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    try:
        async with pool.lease(spec(run_dir, key="a")) as runner:
            first = runner.process
        async with pool.lease(spec(run_dir, key="b")) as runner:
            assert not runner.process.exited
        assert first.exited
        assert [c.alias for c, _ in spawner.spawned] == ["a:latest", "b:latest", "b:latest"]
        assert [e.reason for e in pool.events() if e.action == "unload"] == ["out of memory loading b:latest"]
    finally:
        await pool.close()


async def test_out_of_memory_shrinks_an_automatic_context(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """With nothing to unload, an automatic context is retried smaller (32768, then 4096)."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir, FAKE_LLAMA_OOM_ABOVE_CTX="8192")
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    s = spec(run_dir, ctx=65536, auto_ctx=True)
    try:
        async with pool.lease(s) as runner:
            pid = runner.process.pid
        assert [c.ctx_size for c, _ in spawner.spawned] == [65536, 32768, 4096]
        (loaded,) = pool.loaded()
        assert loaded.config.ctx_per_slot == 4096
        async with pool.lease(s) as runner:  # the same request does not reload
            assert runner.process.pid == pid
    finally:
        await pool.close()


async def test_out_of_memory_with_a_chosen_context_fails_clearly(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A context the user chose is never shrunk: the load fails with llama-server's own reason."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir, FAKE_LLAMA_OOM_ABOVE_CTX="8192")
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    try:
        with pytest.raises(RunnerStartError) as info:
            async with pool.lease(spec(run_dir, ctx=65536)):
                pass
        message = str(info.value)
        assert message.startswith("llama-server reported out-of-memory during startup: exit status 1")
        assert "failed to allocate buffer for kv cache" in message
        assert len(spawner.spawned) == 1 and pool.loaded() == []
    finally:
        await pool.close()


async def test_reload_reason_and_measured_memory(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """The reason for a reload names the option that changed; the runner's buffers are measured."""
    spawner = RecordingSpawner(fake_llama_server_bin, run_dir, FAKE_LLAMA_MODEL_MIB="3.00", FAKE_LLAMA_KV_MIB="8.00",
                               FAKE_LLAMA_COMPUTE_MIB="2.50")  # fmt: skip
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)
    s = spec(run_dir, ctx=2048)
    try:
        async with pool.lease(s):
            pass
        assert pool.loaded()[0].reason == "requested"
        async with pool.lease(replace(s, config=replace(s.config, ctx_size=4096))):
            pass
        (loaded,) = pool.loaded()
        assert loaded.reason == "reload: num_ctx 2048 -> 4096"
        assert [(e.action, e.reason) for e in pool.events()] == [
            ("load", "requested"), ("unload", "reload: num_ctx 2048 -> 4096"), ("load", "reload: num_ctx 2048 -> 4096"),
        ]  # fmt: skip
        assert loaded.measured is not None
        cpu = loaded.measured.devices["CPU"]
        assert (cpu.model, cpu.kv, cpu.compute) == (3 * MIB, 8 * MIB, round(2.5 * MIB))
        assert loaded.measured.gpu == 0
    finally:
        await pool.close()


async def test_loads_run_one_at_a_time(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """Two models requested together load one after the other: the second starts once the first is ready."""

    class Watching(RecordingSpawner):
        def __init__(self) -> None:
            super().__init__(fake_llama_server_bin, run_dir, FAKE_LLAMA_LOAD_SECONDS="0.3")
            self.earlier_ready: list[bool] = []

        def __call__(self, config: RunnerConfig) -> RunnerProcess:
            self.earlier_ready.append(all(p.ready for _, p in self.spawned))
            return super().__call__(config)

    spawner = Watching()
    pool = RunnerPool(spawn=spawner, default_keep_alive=None)

    async def use(key: str) -> None:
        async with pool.lease(spec(run_dir, key=key)):
            pass

    try:
        await asyncio.gather(use("a"), use("b"), use("c"))
        assert len(spawner.spawned) == 3 and spawner.earlier_ready == [True, True, True]
    finally:
        await pool.close()
