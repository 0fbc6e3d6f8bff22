"""Shared fixtures: the real llama-server binary, generated models, stores, and running servers.

e2e tests never skip: if no llama-server can be found or built, they fail with the reason.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from supervisor.app import create_app
from supervisor.settings import Settings
from tests.models import write_model
from tests.processes import stop_process, wait_until_serving
from tests.projector_models import tiny_png
from tests.store_helpers import install_gguf

ROOT = Path(__file__).resolve().parent.parent
FAKE_LLAMA_SERVER = ROOT / "tests" / "fakes" / "fake_llama_server.py"


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The real llama-server: LLAMASUP_LLAMA_SERVER (set by `make test`) or build_runner.sh's cache."""
    env_path = os.environ.get("LLAMASUP_LLAMA_SERVER")
    if env_path:
        path = Path(env_path)
    else:
        out = subprocess.run([str(ROOT / "build_runner.sh")], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            pytest.fail(f"build_runner.sh failed:\n{out.stderr[-3000:]}")
        path = Path(out.stdout.strip().splitlines()[-1])
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"llama-server not found at {path}; run ./build_runner.sh")
    return path


@pytest.fixture(scope="session")
def fake_llama_server_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable wrapper that runs the fake llama-server with this interpreter."""
    wrapper = tmp_path_factory.mktemp("fake-bin") / "llama-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_LLAMA_SERVER}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf", preset="tiny")


@pytest.fixture
def models_dir(tmp_path: Path, tiny_gguf: Path) -> Path:
    """A fresh Ollama-layout store holding the tiny model as ``tiny`` (``tiny:latest``)."""
    root = tmp_path / "models"
    install_gguf(root, "tiny", tiny_gguf)
    return root


def make_settings(tmp_path: Path, models_dir: Path, binary: Path, **overrides: object) -> Settings:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        models_dir=models_dir,
        llama_server=binary,
        cache_dir=tmp_path / "cache",
        cache_ram_mib=0,
        runner_threads=1,
        stop_grace=5.0,
        log_format="console",
        # never the user's own logins or signing key
        credentials_file=tmp_path / "credentials.json",
        docker_config=None,
        key_dir=tmp_path / "ollama-key",
    )
    return replace(settings, **overrides)  # type: ignore[arg-type]


ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_server(tmp_path: Path, models_dir: Path) -> AsyncIterator[ServerFactory]:
    """Start llamasup in this process (``await start_server(binary, **settings)``); stopped at teardown."""
    servers: list[TestServer] = []

    async def start(binary: Path, **overrides: object) -> TestServer:
        store = overrides.pop("models_dir", models_dir)
        settings = make_settings(tmp_path, store, binary, **overrides)  # type: ignore[arg-type]
        app = create_app(settings)
        server = TestServer(app, host="127.0.0.1", port=0, handler_cancellation=True)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def real_server(start_server: ServerFactory, llama_server_bin: Path) -> TestServer:
    """llamasup with the real llama-server."""
    return await start_server(llama_server_bin)


@pytest.fixture
async def fake_server(start_server: ServerFactory, fake_llama_server_bin: Path) -> TestServer:
    """llamasup with the fake llama-server (fast lifecycle tests)."""
    return await start_server(fake_llama_server_bin)


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def app_of(server: TestServer) -> web.Application:
    return server.app


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll a condition on the event loop until it holds (a wait on state, not a timed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def serve_process(models_dir: Path, binary: Path, work: Path, **env_overrides: str) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m supervisor serve`` as a real process on a free port, up and answering; its log is
    ``work/server-<port>.log``. The caller stops it (``stop_process``)."""
    from tests.net import free_port

    port = free_port()
    env = dict(os.environ)
    env.update(
        OLLAMA_HOST=f"127.0.0.1:{port}",
        OLLAMA_MODELS=str(models_dir),
        LLAMASUP_LLAMA_SERVER=str(binary),
        LLAMASUP_CACHE_DIR=str(work / "cache"),
        LLAMASUP_CACHE_RAM_MIB="0",
        LLAMASUP_THREADS="1",
        LLAMASUP_LOG_FORMAT="json",
    )
    env.update(env_overrides)
    log = work / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, url + "/", log, timeout=60)
    except BaseException:
        stop_process(proc)
        raise
    return proc, url


@pytest.fixture
def subprocess_server(tmp_path: Path, models_dir: Path, llama_server_bin: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """Run ``python -m supervisor serve`` as a real process on a free port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env_overrides: str) -> tuple[subprocess.Popen[bytes], str]:
        proc, url = serve_process(models_dir, llama_server_bin, tmp_path, **env_overrides)
        procs.append(proc)
        return proc, url

    yield start
    for proc in procs:
        stop_process(proc)


@pytest.fixture
async def image_url() -> AsyncIterator[str]:
    """A PNG served on 127.0.0.1 (for the routes that fetch image URLs)."""

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=tiny_png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", image)
    served = TestServer(app, host="127.0.0.1", port=0)
    await served.start_server()
    yield base_url(served) + "/cat.png"
    await served.close()


@pytest.fixture(scope="session")
def chat_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The scripted chat models of tests/chat_models.py, written once per session."""
    from tests.chat_models import write_chat_ggufs

    return write_chat_ggufs(tmp_path_factory.mktemp("chat-models"))


@pytest.fixture
async def chat_server(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, chat_ggufs: dict[str, Path]) -> TestServer:
    """llamasup with the real llama-server and the chat models installed (``tiny`` too)."""
    from tests.chat_models import install_chat_models

    return await start_server(llama_server_bin, models_dir=install_chat_models(models_dir, chat_ggufs))


# Real registries (docker-registry on 127.0.0.1: open, basic auth, token auth); see tests/registry_fixtures.py.
from tests.registry_fixtures import registry_any, registry_basic, registry_open, registry_token, token_server  # noqa: E402,F401
