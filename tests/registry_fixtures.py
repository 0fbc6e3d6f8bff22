"""Fixtures for a real registry (docker-registry on 127.0.0.1), one per auth mode; imported by tests/conftest.py.

Function-scoped: a registry starts in about 0.06 s, so each test gets empty storage of its own.
``registry_token`` is async because its token server runs in the test's event loop; the registry
itself starts in a worker thread so the loop keeps serving while it waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.registry_server import RegistryServer, TokenServer, registry_server


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


@pytest.fixture
async def registry_token(tmp_path: Path, token_server: TokenServer) -> AsyncIterator[RegistryServer]:
    """A registry with token auth against ``token_server`` (``.token_server``; ``.credentials`` is its user)."""
    await token_server.start()
    server = RegistryServer(tmp_path / "registry-token", "token", token_server=token_server)
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        await token_server.close()


@pytest.fixture(params=["open", "basic", "token"])
async def registry_any(request: pytest.FixtureRequest, tmp_path: Path, token_server: TokenServer) -> AsyncIterator[RegistryServer]:
    """Each of the three registries in turn (a test parametrized over the auth modes)."""
    mode = request.param
    if mode != "token":
        server = RegistryServer(tmp_path / f"registry-{mode}", mode)
    else:
        await token_server.start()
        server = RegistryServer(tmp_path / "registry-token", "token", token_server=token_server)
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        if mode == "token":
            await token_server.close()
