"""Building RunnerProcesses around the fake llama-server for lifecycle tests."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from supervisor.pool.pool import Spawner
from supervisor.runner.command import RunnerConfig, build_argv, child_env
from supervisor.runner.process import RunnerProcess

_counter = itertools.count(1)


def fake_env(**switches: str) -> dict[str, str]:
    env = child_env(os.environ, owner="0:0.000", config_home=Path("/nonexistent"), marker="<__test_media__>")
    env.update(switches)
    return env


def fake_process(
    binary: Path, run_dir: Path, *, load_timeout: float | None = 10.0, stop_grace: float = 2.0, **switches: str
) -> RunnerProcess:
    model = run_dir / "model.gguf"
    model.touch()
    config = RunnerConfig(model_path=model, alias="fake:latest", ctx_size=2048)
    sock = run_dir / f"r{next(_counter)}.sock"
    return RunnerProcess(
        build_argv(binary, config, sock), fake_env(**switches), name="fake:latest", socket_path=sock,
        load_timeout=load_timeout, stop_grace=stop_grace,
    )  # fmt: skip


class RecordingSpawner:
    """A spawner that makes fake runners and remembers them, in order."""

    def __init__(self, binary: Path, run_dir: Path, **switches: str) -> None:
        self.binary, self.run_dir, self.switches = binary, run_dir, switches
        self.spawned: list[tuple[RunnerConfig, RunnerProcess]] = []
        self.on_spawn: list[bool] = []  # for each spawn: had every earlier process exited?

    def __call__(self, config: RunnerConfig) -> RunnerProcess:
        sock = self.run_dir / f"r{next(_counter)}.sock"
        process = RunnerProcess(
            build_argv(self.binary, config, sock), fake_env(**self.switches), name=config.alias, socket_path=sock,
            load_timeout=10.0, stop_grace=2.0,
        )  # fmt: skip
        self.on_spawn.append(all(p.exited for _, p in self.spawned))
        self.spawned.append((config, process))
        return process


def as_spawner(s: RecordingSpawner) -> Spawner:
    return s
