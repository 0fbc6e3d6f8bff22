"""RunnerProcess against the fake llama-server: readiness, failures, stalls, and stops."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest

from supervisor.errors import RunnerStartError
from tests.integration.runner_helpers import fake_process


async def test_slow_health_is_waited_for(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A runner that answers 503 while loading is ready only once /health says 200."""
    p = fake_process(fake_llama_server_bin, run_dir, FAKE_LLAMA_LOAD_SECONDS="0.4")
    await p.start()
    try:
        await p.wait_ready()
        assert p.session is not None
        async with p.session.get(p.base_url + "/health") as r:
            assert r.status == 200
        assert any("model loaded" in line for line in p.tail)
    finally:
        await p.stop()


async def test_exit_during_load_reports_status_and_output(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A runner that exits while loading fails with its exit status and the tail of its output."""
    p = fake_process(fake_llama_server_bin, run_dir, FAKE_LLAMA_EXIT_ON_LOAD="3")
    await p.start()
    with pytest.raises(RunnerStartError) as e:
        await p.wait_ready()
    message = str(e.value)
    assert message.startswith("llama-server process has terminated: exit status 3")
    assert "error loading model: fake failure" in message
    await p.stop()  # a no-op on an exited runner
    assert p.returncode == 3


async def test_stalled_load_times_out_and_is_stopped(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A load that shows no progress for load_timeout fails, and the process is reaped."""
    p = fake_process(fake_llama_server_bin, run_dir, load_timeout=0.5, FAKE_LLAMA_LOAD_FOREVER="1")
    await p.start()
    with pytest.raises(RunnerStartError, match=r"timed out waiting for llama-server to start after 0.5s without progress"):
        await p.wait_ready()
    assert p.exited and p.returncode is not None


async def test_sigterm_ignored_escalates_to_sigkill(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A runner that ignores SIGTERM is SIGKILLed after the grace period and reaped."""
    p = fake_process(fake_llama_server_bin, run_dir, stop_grace=0.3, FAKE_LLAMA_IGNORE_SIGTERM="1")
    await p.start()
    await p.wait_ready()
    await p.stop()
    assert p.returncode == -9
    assert any("ignoring SIGTERM" in line for line in p.tail)
    await p.stop()  # stopping a stopped runner is a no-op
    assert p.returncode == -9


async def test_stop_is_group_wide(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """Stopping a runner also stops what it started in its process group."""
    p = fake_process(fake_llama_server_bin, run_dir, FAKE_LLAMA_CHILD="1")
    await p.start()
    await p.wait_ready()
    (child,) = [int(m.group(1)) for line in p.tail if (m := re.search(r"fake: child pid (\d+)", line))]
    assert psutil.pid_exists(child)
    grandchild = psutil.Process(child)
    await p.stop()
    assert p.returncode == 0  # a clean SIGTERM exit
    gone, alive = psutil.wait_procs([grandchild], timeout=5)
    assert not alive


async def test_graceful_stop_and_socket_cleanup(fake_llama_server_bin: Path, run_dir: Path) -> None:
    """A normal stop is a clean SIGTERM exit; the socket file and the HTTP session are cleaned up."""
    p = fake_process(fake_llama_server_bin, run_dir)
    await p.start()
    await p.wait_ready()
    assert p.socket_path.exists()
    await p.stop()
    assert p.returncode == 0 and not p.socket_path.exists()
    assert p.session is not None and p.session.closed


async def test_missing_binary_is_a_start_error(run_dir: Path) -> None:
    """A binary that cannot be executed fails with a clear start error."""
    p = fake_process(Path("/nonexistent/llama-server"), run_dir)
    with pytest.raises(RunnerStartError, match="could not start llama-server /nonexistent/llama-server"):
        await p.start()
