"""The aiohttp application: routes, the error middleware, and ordered lifetimes (``cleanup_ctx``).

Start-up: stop strays from an earlier crash, find the llama-server binary, open the HTTP session to
runners, create the pool and services. Shutdown runs in reverse: the pool stops every runner (SIGTERM,
grace, SIGKILL), then the session closes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from .api.errors import error_middleware
from .api.keys import CATALOG, INFERENCE, POOL, SETTINGS
from .api.ollama_routes import add_routes
from .pool.pool import RunnerPool, Spawner
from .runner.binary import find_llama_server
from .runner.command import RunnerConfig, build_argv, child_env
from .runner.process import RunnerProcess
from .runner.strays import owner_token, stop_strays
from .service.catalog import CatalogService
from .service.inference import InferenceService
from .settings import Settings
from .store import ModelStore, StoreLayout
from .runner.ports import free_port

log = structlog.get_logger("supervisor.app")
RUNNER_HOST = "127.0.0.1"
_SYSTEM_LLAMA_CONFIG = Path("/etc/llama.cpp/config.ini")


def make_spawner(settings: Settings, binary: Path) -> Spawner:
    owner = owner_token()
    env = child_env(os.environ, owner=owner, config_home=settings.cache_dir / "runner-config")

    def spawn(config: RunnerConfig) -> RunnerProcess:
        port = free_port(RUNNER_HOST)
        return RunnerProcess(
            build_argv(binary, config, RUNNER_HOST, port),
            env,
            name=config.alias,
            base_url=f"http://{RUNNER_HOST}:{port}",
            load_timeout=settings.load_timeout,
            stop_grace=settings.stop_grace,
        )

    return spawn


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    stopped = stop_strays()
    if stopped:
        log.warning("stopped stray runners", pids=stopped)
    if _SYSTEM_LLAMA_CONFIG.exists():
        log.warning("llama.cpp system config applies to every runner", path=str(_SYSTEM_LLAMA_CONFIG))
    binary = find_llama_server(settings)
    log.info("llama-server", path=str(binary))
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        pool = RunnerPool(spawn=make_spawner(settings, binary), session=session, default_keep_alive=settings.keep_alive)
        store = ModelStore(StoreLayout(settings.models_dir))
        app[POOL] = pool
        app[INFERENCE] = InferenceService(settings, store, pool)
        app[CATALOG] = CatalogService(store)
        try:
            yield
        finally:
            await pool.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=1 << 30)
    app[SETTINGS] = settings
    add_routes(app)
    app.cleanup_ctx.append(_lifetime)
    return app
