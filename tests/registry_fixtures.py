"""Fixtures for a real registry (docker-registry on 127.0.0.1), one per auth mode; imported by tests/conftest.py.

Function-scoped: a registry starts in about 0.06 s, so each test gets empty storage of its own.
``registry_token`` is async because its token server runs in the test's event loop; the registry
itself starts in a worker thread so the loop keeps serving while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.registry_server import Mode, RegistryServer, TokenServer, registry_server


@pytest.fixture
def registry_open(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry with no authentication."""
    with registry_server(tmp_path / "registry-open", "open") as server:
        yield server


@pytest.fixture
def registry_basic(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry with htpasswd basic auth; ``.credentials`` is the one user."""
    with registry_server(tmp_path / "registry-basic", "basic") as server:
        yield server


@pytest.fixture
def token_server() -> TokenServer:
    """The token endpoint's policy, before it starts: a test may change ``users``, ``anonymous_actions``
    or ``expires_in`` by overriding this fixture or by mutating it (it is read per request)."""
    return TokenServer()


@contextlib.asynccontextmanager
async def started(tmp_path: Path, mode: Mode, token_server: TokenServer) -> AsyncIterator[RegistryServer]:
    """A registry in ``mode``, running (in token mode with ``token_server`` started too), then stopped."""
    if mode == "token":
        await token_server.start()
    server = RegistryServer(tmp_path / f"registry-{mode}", mode, token_server=token_server if mode == "token" else None)
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        if mode == "token":
            await token_server.close()


@pytest.fixture
async def registry_token(tmp_path: Path, token_server: TokenServer) -> AsyncIterator[RegistryServer]:
    """A registry with token auth against ``token_server`` (``.token_server``; ``.credentials`` is its user)."""
    async with started(tmp_path, "token", token_server) as server:
        yield server


@pytest.fixture(params=["open", "basic", "token"])
async def registry_any(request: pytest.FixtureRequest, tmp_path: Path, token_server: TokenServer) -> AsyncIterator[RegistryServer]:
    """Each of the three registries in turn (a test parametrized over the auth modes)."""
    async with started(tmp_path, request.param, token_server) as server:
        yield server
