"""The aiohttp application: routes, the error middleware, and ordered lifetimes (``cleanup_ctx``).

Start-up: stop strays from an earlier crash, find the llama-server binary, make a private directory
for the runners' Unix sockets, prune the store (unless ``OLLAMA_NOPRUNE``), create the pool and
services. Shutdown runs in reverse: the pool stops every runner (SIGTERM, grace, SIGKILL), then the
socket directory is removed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from .api.errors import error_middleware
from .api.keys import BUILD, CATALOG, EMBED, FETCH, INFERENCE, PLAN, POOL, SETTINGS
from .api import anthropic_routes, openai_routes
from .api.ollama_routes import add_routes
from .api import responses_routes
from .api.keys import RESPONSES, TRANSFER
from .api.ollama_routes import OLLAMA_VERSION
from .pool.hardware import Inventory, probe_inventory, refresh
from .pool.inventory_file import inventory_from_file
from .pool.placement import Limits, default_num_ctx, max_loaded_models
from .pool.pool import InventorySource, RunnerPool, Spawner
from .runner.binary import find_llama_server, runner_architectures
from .runner.command import RunnerConfig, build_argv, child_env, media_marker
from .runner.process import RunnerProcess
from .runner.strays import owner_token, stop_strays
from .modelfile.build import BuildContext
from .service.catalog import CatalogService
from .service.embedding import EmbedService
from .service.fetch import ImageFetcher
from .service.inference import InferenceService
from .service.planning import PlanService
from .service.responses import ResponseStore
from .service.transfer import TransferService
from .registry.client import RegistryClient, Repository
from .registry.credentials import CredentialStore
from .registry.ollama_key import KeyOnFirstUse
from .settings import Settings
from .store import ModelStore, StoreLayout
from .store.guard import StoreGuard
from .store.index import ModelIndex
from .store.prune import prune_store

log = structlog.get_logger("supervisor.app")
_SYSTEM_LLAMA_CONFIG = Path("/etc/llama.cpp/config.ini")


def make_spawner(settings: Settings, binary: Path, run_dir: Path, marker: str) -> Spawner:
    owner = owner_token()
    env = child_env(os.environ, owner=owner, config_home=settings.cache_dir / "runner-config", marker=marker)
    counter = itertools.count(1)

    def spawn(config: RunnerConfig) -> RunnerProcess:
        # Short names: a Unix socket path must stay under ~100 bytes.
        socket_path = run_dir / f"r{next(counter)}.sock"
        return RunnerProcess(
            build_argv(binary, config, socket_path),
            env,
            name=config.alias,
            socket_path=socket_path,
            load_timeout=settings.load_timeout,
            stop_grace=settings.stop_grace,
        )

    return spawn


def inventory_source(settings: Settings, inventory: Inventory) -> InventorySource:
    """The inventory as loads see it: a file's as given, a probed one with free memory read again."""

    async def current() -> Inventory:
        if settings.hardware_file is not None:
            return inventory
        return await asyncio.to_thread(refresh, inventory)

    return current


# What registries see: Ollama's form, ``ollama/<version> (<goarch> <goos>)``, then llamasup's own mark.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}
USER_AGENT = f"ollama/{OLLAMA_VERSION} ({_GOARCH.get(platform.machine(), platform.machine())} {sys.platform}) llamasup"


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    stopped = stop_strays()
    if stopped:
        log.warning("stopped stray runners", pids=stopped)
    if _SYSTEM_LLAMA_CONFIG.exists():
        log.warning("llama.cpp system config applies to every runner", path=str(_SYSTEM_LLAMA_CONFIG))
    binary = find_llama_server(settings)
    log.info("llama-server", path=str(binary))
    run_dir = Path(tempfile.mkdtemp(prefix="llamasup-", dir=settings.runtime_dir))
    marker = media_marker(secrets.token_hex(8))
    if settings.hardware_file is not None:
        inventory = inventory_from_file(settings.hardware_file)
        log.info("hardware inventory", source=inventory.source, gpus=[g.id for g in inventory.gpus])
    else:
        inventory = await asyncio.to_thread(probe_inventory, binary)
    limits = Limits(
        max_loaded=max_loaded_models(settings.max_loaded_models, len(inventory.gpus)),
        gpu_overhead=settings.gpu_overhead,
        spread=settings.sched_spread,
    )
    pool = RunnerPool(
        spawn=make_spawner(settings, binary, run_dir, marker),
        default_keep_alive=settings.keep_alive,
        max_queue=settings.max_queue,
        max_loaded=limits.max_loaded,
        inventory=inventory_source(settings, inventory),
        limits=limits,
        health_interval=settings.health_interval,
        health_timeout=settings.health_timeout,
    )
    store = ModelStore(StoreLayout(settings.models_dir))
    if settings.noprune:
        log.info("not pruning the store", reason="OLLAMA_NOPRUNE")
    else:
        await asyncio.to_thread(prune_store, store)
    index = ModelIndex(store, settings.model_dirs)
    guard = StoreGuard()
    app[POOL] = pool
    default_ctx = default_num_ctx(settings, inventory)
    app[INFERENCE] = InferenceService(settings, index, pool, media_marker=marker, default_ctx=default_ctx)
    app[EMBED] = EmbedService(settings, index, pool, repack=app[INFERENCE].repack, default_ctx=default_ctx)
    app[PLAN] = PlanService(
        settings, index, pool, inventory, repack=app[INFERENCE].repack, default_ctx=default_ctx,
        limits=limits,
    )  # fmt: skip
    app[CATALOG] = CatalogService(store, index, guard, pool)
    app[BUILD] = BuildContext(store=store, index=index, guard=guard, llama_server=binary)
    app[RESPONSES] = ResponseStore(settings.responses_max, settings.responses_ttl)
    app[FETCH] = ImageFetcher(settings)
    registry = RegistryClient(user_agent=USER_AGENT, credentials=CredentialStore.from_settings(settings),
                              signer=KeyOnFirstUse(settings.key_dir), proxies=settings.proxies)  # fmt: skip
    app[TRANSFER] = TransferService(store, guard, registry, lambda name, insecure: Repository.of(name, insecure=insecure),
                                    retries=settings.pull_retries, parallel=settings.pull_parallel,
                                    architectures=runner_architectures(binary))  # fmt: skip
    try:
        yield
    finally:
        await registry.close()
        await app[FETCH].close()
        await pool.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=1 << 30)
    app[SETTINGS] = settings
    add_routes(app)
    openai_routes.add_routes(app)
    responses_routes.add_routes(app)
    anthropic_routes.add_routes(app)
    app.cleanup_ctx.append(_lifetime)
    return app
