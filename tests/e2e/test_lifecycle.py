"""Runner lifecycle with the real llama-server: disconnects, crashes, unloads, reloads, a killed supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import orjson
import psutil
from aiohttp.test_utils import TestServer

from supervisor.api.keys import POOL
from supervisor.runner.command import OWNER_ENV
from supervisor.runner.process import RunnerProcess
from tests.conftest import base_url, wait_until


def _runner_pids(server: TestServer) -> list[int]:
    pool = server.app[POOL]
    return [e.process.pid for e in pool._entries.values() if e.process is not None and e.process.pid]  # noqa: SLF001


def _runner_process(server: TestServer) -> RunnerProcess:
    pool = server.app[POOL]
    (entry,) = pool._entries.values()  # noqa: SLF001
    assert entry.process is not None
    return entry.process


async def test_client_disconnect_stops_generation(real_server: TestServer) -> None:
    """Closing the connection mid-stream makes llama-server stop generating (its slot goes idle early)."""
    url = base_url(real_server)
    body = {"model": "tiny", "prompt": "Tell me everything", "options": {"num_predict": 100000, "temperature": 0}}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(url + "/api/generate", json=body)
        lines = 0
        async for _ in resp.content:
            lines += 1
            if lines == 5:
                break
        runner = _runner_process(real_server)
        resp.close()  # the client goes away

        async def slot() -> dict[str, object]:
            assert runner.session is not None
            async with runner.session.get(runner.base_url + "/slots") as r:
                return (await r.json())[0]  # type: ignore[no-any-return]

        deadline = time.monotonic() + 15
        state = await slot()
        while state["is_processing"] and time.monotonic() < deadline:
            state = await slot()
        assert not state["is_processing"], "llama-server kept generating after the client left"
        assert any("stop: cancel task" in line for line in runner.tail)  # llama-server's own word for it
        # And the runner is still healthy and reusable.
        async with session.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "stream": False, "options": {"num_predict": 3}}) as r:
            assert (await r.json())["eval_count"] == 3


async def test_runner_killed_mid_stream_ends_with_error_line_then_recovers(real_server: TestServer) -> None:
    """A runner that dies mid-stream ends the stream with an error line naming the cause; the next request starts a fresh runner."""
    url = base_url(real_server)
    body = {"model": "tiny", "prompt": "go", "options": {"num_predict": 100000}}
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/generate", json=body) as resp:
            assert resp.status == 200
            (pid,) = _runner_pids(real_server)
            lines = []
            async for raw in resp.content:
                lines.append(orjson.loads(raw))
                if len(lines) == 3:
                    os.kill(pid, signal.SIGKILL)
        last = lines[-1]
        assert set(last) == {"error"}, last
        assert "model runner has unexpectedly stopped" in last["error"]
        assert "signal: SIGKILL" in last["error"]
        async with session.post(url + "/api/generate", json={"model": "tiny", "prompt": "again", "stream": False, "options": {"num_predict": 4}}) as r:
            data = await r.json()
            assert r.status == 200 and data["eval_count"] == 4
        (new_pid,) = _runner_pids(real_server)
        assert new_pid != pid


async def test_keep_alive_zero_unloads(real_server: TestServer) -> None:
    """generate with an empty prompt and keep_alive 0 answers done_reason unload and stops the runner."""
    url = base_url(real_server)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/generate", json={"model": "tiny"}) as r:
            loaded = await r.json()
        assert loaded["done_reason"] == "load" and loaded["response"] == "" and "eval_count" not in loaded
        (pid,) = _runner_pids(real_server)
        async with session.post(url + "/api/generate", json={"model": "tiny", "keep_alive": 0}) as r:
            assert (await r.json())["done_reason"] == "unload"
    await wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, what="runner exit")
    assert _runner_pids(real_server) == []


async def test_keep_alive_expiry_unloads_idle_runner(real_server: TestServer) -> None:
    """A runner idle for its keep_alive is stopped; a leased one is not."""
    url = base_url(real_server)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/chat", json={"model": "tiny", "messages": [], "keep_alive": "300ms"}) as r:
            assert (await r.json())["done_reason"] == "load"
    await wait_until(lambda: _runner_pids(real_server) == [], what="keep-alive expiry")


async def test_num_ctx_change_reloads_runner(real_server: TestServer) -> None:
    """A request with another num_ctx restarts the runner with the new -c; temperature alone does not."""
    url = base_url(real_server)
    async with aiohttp.ClientSession() as session:
        async def gen(options: dict[str, object]) -> None:
            async with session.post(url + "/api/generate", json={"model": "tiny", "prompt": "x", "stream": False, "options": {"num_predict": 2, **options}}) as r:
                assert r.status == 200, await r.text()

        await gen({"num_ctx": 512})
        (first,) = _runner_pids(real_server)
        assert "512" in psutil.Process(first).cmdline()[psutil.Process(first).cmdline().index("--ctx-size") + 1]
        await gen({"num_ctx": 512, "temperature": 0.1})
        assert _runner_pids(real_server) == [first]
        await gen({"num_ctx": 1024})
        (second,) = _runner_pids(real_server)
        assert second != first
        cmd = psutil.Process(second).cmdline()
        assert cmd[cmd.index("--ctx-size") + 1] == "1024"
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE


async def test_runner_argv_and_environment(real_server: TestServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Runners get explicit -c/-np/-ngl/--cache-ram/--no-webui/-lv 4, on 127.0.0.1, with LLAMA_ARG_* scrubbed."""
    url = base_url(real_server)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/generate", json={"model": "tiny"}) as r:
            assert r.status == 200
    (pid,) = _runner_pids(real_server)
    proc = psutil.Process(pid)
    cmd = proc.cmdline()
    for flag in ("--ctx-size", "--parallel", "--n-gpu-layers", "--cache-ram", "--no-webui", "--log-verbosity"):
        assert flag in cmd, flag
    assert cmd[cmd.index("--host") + 1].endswith(".sock")  # a private Unix socket, no TCP port
    assert cmd[cmd.index("--log-verbosity") + 1] == "4"
    env = proc.environ()
    assert not any(k.startswith("LLAMA_ARG_") for k in env)
    assert OWNER_ENV in env
    assert os.getpgid(pid) == pid  # its own process group


def test_killed_supervisor_leaves_no_runner(subprocess_server) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL to llamasup takes its llama-server down with it."""
    import urllib.request

    proc, url = subprocess_server()
    req = urllib.request.Request(url + "/api/generate", data=b'{"model":"tiny"}', method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert orjson.loads(r.read())["done_reason"] == "load"
    runners = [c for c in psutil.Process(proc.pid).children(recursive=True) if "llama-server" in " ".join(c.cmdline())]
    assert len(runners) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(runners, timeout=10)
    assert not alive, f"llama-server outlived a SIGKILLed supervisor: {[p.pid for p in alive]}"


def test_strays_from_a_dead_supervisor_are_stopped_at_start(subprocess_server, llama_server_bin: Path, tiny_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    """A marked llama-server whose supervisor is gone is stopped when llamasup starts."""
    from tests.net import free_port

    env = dict(os.environ)
    env[OWNER_ENV] = "999999:12.000"  # a supervisor that no longer exists
    stray = subprocess.Popen(
        [str(llama_server_bin), "-m", str(tiny_gguf), "--host", "127.0.0.1", "--port", str(free_port()), "-c", "256", "--no-webui", "--cache-ram", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        subprocess_server()
        assert stray.wait(timeout=15) is not None
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
