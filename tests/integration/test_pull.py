"""``/api/pull`` against a real registry (Debian's docker-registry on 127.0.0.1), in each auth mode, with
the official ``ollama`` client: Ollama's progress stream, the model usable afterwards, credentials
from llamasup's credentials file, resume after an interruption, and a corrupt blob refused."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
import json
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import pytest
from aiohttp.test_utils import TestServer

from supervisor.registry.credentials import CredentialStore
from supervisor.store.layout import StoreLayout
from tests.conftest import ServerFactory, base_url, wait_until
from tests.models import write_model
from tests.registry_proxy import RegistryProxy
from tests.registry_push import progress_statuses, publish
from tests.registry_server import RegistryServer


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("pull") / "small.gguf", preset="tiny", seed=7)  # not the store's tiny


async def _server(start_server: ServerFactory, fake_llama_server_bin: Path, tmp_path: Path, registry: RegistryServer | None = None,
                  **settings: object) -> TestServer:  # fmt: skip
    if registry is not None and registry.credentials is not None:
        CredentialStore(tmp_path / "credentials.json").save(registry.host, registry.credentials.username, registry.credentials.password)
    return await start_server(fake_llama_server_bin, **settings)


async def test_pull_from_a_registry(registry_any: RegistryServer, start_server: ServerFactory, fake_llama_server_bin: Path,
                                    tmp_path: Path, small_gguf: Path, models_dir: Path) -> None:  # fmt: skip
    """The model comes down with Ollama's progress sequence; its manifest and blobs are stored byte for
    byte and it is listed; basic and token registries get the login from the credentials file."""
    registry = registry_any
    manifest, blobs = await publish(registry, "team/small:1", small_gguf, tmp_path)
    server = await _server(start_server, fake_llama_server_bin, tmp_path, registry)
    client = ollama.AsyncClient(host=base_url(server))
    name = f"{registry.host}/team/small:1"
    progress = [p async for p in await client.pull(name, insecure=True, stream=True)]
    statuses = progress_statuses(progress)
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    pulled = {p.digest: p for p in progress if p.digest}
    assert set(pulled) == set(blobs) and all(pulled[d].completed == pulled[d].total == len(blobs[d]) for d in blobs)
    layout = StoreLayout(models_dir)
    for digest, data in blobs.items():
        assert layout.blob_path(digest).read_bytes() == data
    host, port = registry.host.split(":")
    assert (models_dir / "manifests" / f"{host}:{port}" / "team" / "small" / "1").read_bytes() == manifest
    assert name in [m.model for m in (await client.list()).models]
    if registry.token_server is not None:
        assert any("repository:team/small:pull" in r.scopes for r in registry.token_server.requests)


async def test_a_registry_that_wants_a_login_names_the_fix(registry_basic: RegistryServer, start_server: ServerFactory,
                                                           fake_llama_server_bin: Path, tmp_path: Path, small_gguf: Path) -> None:  # fmt: skip
    """No login for a basic-auth registry: the stream ends with an error naming `llamasup login <host>`,
    and never a password."""
    await publish(registry_basic, "team/small:1", small_gguf, tmp_path)
    server = await _server(start_server, fake_llama_server_bin, tmp_path)  # no credentials saved
    client = ollama.AsyncClient(host=base_url(server))
    with pytest.raises(ollama.ResponseError) as info:
        async for _ in await client.pull(f"{registry_basic.host}/team/small:1", insecure=True, stream=True):
            pass
    assert f"llamasup login {registry_basic.host}" in info.value.error
    assert registry_basic.credentials is not None and registry_basic.credentials.password not in info.value.error


async def test_unknown_model_and_plain_http(registry_open: RegistryServer, start_server: ServerFactory,
                                            fake_llama_server_bin: Path, tmp_path: Path) -> None:  # fmt: skip
    """Ollama's errors: an unknown tag is `pull model manifest: file does not exist` (500 unstreamed);
    an http:// name without insecure is `insecure protocol http`."""
    server = await _server(start_server, fake_llama_server_bin, tmp_path)
    async with aiohttp.ClientSession() as session:
        body = {"model": f"{registry_open.host}/team/none:1", "insecure": True, "stream": False}
        async with session.post(base_url(server) + "/api/pull", json=body) as r:
            assert r.status == 500 and await r.json() == {"error": "pull model manifest: file does not exist"}
        body = {"model": f"http://{registry_open.host}/team/none:1", "stream": False}
        async with session.post(base_url(server) + "/api/pull", json=body) as r:
            assert r.status == 400 and await r.json() == {"error": "insecure protocol http"}


async def test_a_corrupt_blob_is_refused_and_nothing_is_left(registry_open: RegistryServer, start_server: ServerFactory,
                                                             fake_llama_server_bin: Path, tmp_path: Path, small_gguf: Path,
                                                             models_dir: Path) -> None:  # fmt: skip
    """A blob altered on the registry's disk (same size): Ollama's digest mismatch error; no blob, partial
    or manifest of it in the store."""
    _, blobs = await publish(registry_open, "team/small:1", small_gguf, tmp_path)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    stored = registry_open.blob_path(weights)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    server = await _server(start_server, fake_llama_server_bin, tmp_path)
    client = ollama.AsyncClient(host=base_url(server))
    with pytest.raises(ollama.ResponseError) as info:
        async for _ in await client.pull(f"{registry_open.host}/team/small:1", insecure=True, stream=True):
            pass
    assert info.value.error.startswith(f"digest mismatch, file must be downloaded again: want {weights}, got sha256:")
    blobs_dir = StoreLayout(models_dir).blobs_dir
    assert not [p.name for p in blobs_dir.iterdir() if weights[7:] in p.name]
    assert not list((models_dir / "manifests").rglob("small"))


def _blob_bytes_served(registry: RegistryServer, digest: str, since: int) -> int:
    """Bytes of ``digest`` the registry wrote in GET responses, from its access log after offset ``since``."""
    total = 0
    with registry.log.open("rb") as f:
        f.seek(since)
        for line in f.read().decode(errors="replace").splitlines():
            if "GET" in line and f"/blobs/{digest}" in line:
                fields = line.split('"')
                # combined log format: "GET /path HTTP/1.1" <status> <bytes> ...
                try:
                    status, size = fields[2].split()[:2]
                except (IndexError, ValueError):
                    continue
                if status in ("200", "206"):
                    total += int(size)
    return total


async def test_an_interrupted_pull_resumes(registry_open: RegistryServer, start_server: ServerFactory,
                                           fake_llama_server_bin: Path, tmp_path: Path, models_dir: Path) -> None:  # fmt: skip
    """The registry is killed when about half the weights have reached llamasup (a proxy holds the rest
    back): the pull fails once its retry is used up, its progress on disk; after a restart the next
    pull continues from that progress, and the registry serves only the rest of the blob."""
    weights_file = tmp_path / "big.bin"
    weights_file.write_bytes(b"GGUF" + bytes(range(256)) * (16 << 12))  # 16 MiB, any bytes: nothing loads it
    _, blobs = await publish(registry_open, "team/big:1", weights_file, tmp_path)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    total = len(blobs[weights])
    proxy = RegistryProxy(registry_open.port, hold_after=total // 2)
    await proxy.start()
    try:
        server = await _server(start_server, fake_llama_server_bin, tmp_path, pull_retries=1)
        client = ollama.AsyncClient(host=base_url(server))
        name = f"{proxy.host}/team/big:1"
        pull = asyncio.create_task(_drain(client.pull(name, insecure=True, stream=True)))
        await asyncio.wait_for(proxy.held.wait(), 60)
        registry_open.kill()
        proxy.drop()
        with pytest.raises(ollama.ResponseError):
            await pull
        state = [json.loads(p.read_text()) for p in StoreLayout(models_dir).blobs_dir.glob(f"sha256-{weights[7:]}-partial-*")]
        kept = sum(s["Completed"] for s in state)
        assert 0 < kept < total
        registry_open.start()
        proxy.hold_after = None
        offset = registry_open.log.stat().st_size
        progress = [p async for p in await client.pull(name, insecure=True, stream=True)]
        assert progress[-1].status == "success"
        assert StoreLayout(models_dir).blob_path(weights).read_bytes() == blobs[weights]
        assert _blob_bytes_served(registry_open, weights, offset) == total - kept + 1  # + the redirect probe's one byte
    finally:
        await proxy.close()


async def _drain(stream: Any) -> None:
    async for _ in await stream:
        pass


async def test_a_client_that_leaves_stops_the_download(registry_open: RegistryServer, subprocess_server: Any,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """llamasup in its own process: a pull whose client disconnects while a blob is half downloaded stops
    that download (no other pull waits for it), leaving the partial for the next pull."""
    weights_file = tmp_path / "big.bin"
    weights_file.write_bytes(b"GGUF" + bytes(range(256)) * (16 << 12))
    _, blobs = await publish(registry_open, "team/big:1", weights_file, tmp_path)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    proxy = RegistryProxy(registry_open.port, hold_after=len(blobs[weights]) // 2)
    await proxy.start()
    try:
        proc, url = subprocess_server(LLAMASUP_CREDENTIALS=str(tmp_path / "none.json"), DOCKER_CONFIG=str(tmp_path / "docker"))
        async with aiohttp.ClientSession() as session:
            r = await session.post(url + "/api/pull", json={"model": f"{proxy.host}/team/big:1", "insecure": True})
            assert r.status == 200
            await asyncio.wait_for(proxy.held.wait(), 60)
            r.close()
        log = next(tmp_path.glob("server-*.log"))
        await wait_until(lambda: "download stopped: no pull waits for it" in log.read_text(), what="the download to stop")
    finally:
        await proxy.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (the tests run as root, as CI does; a failing mount fails the test, never skips it)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_is_a_clean_error(registry_open: RegistryServer, start_server: ServerFactory, fake_llama_server_bin: Path,
                                            tmp_path: Path, small_disk: Path) -> None:  # fmt: skip
    """A store on a disk too small for the model: the pull ends with an error that says so and how to go
    on; no manifest and no blob of it appear (the partial stays for a resumed pull)."""
    weights_file = tmp_path / "big.bin"
    weights_file.write_bytes(b"GGUF" + bytes(range(256)) * (8 << 12))  # 8 MiB on a 4 MiB disk
    _, blobs = await publish(registry_open, "team/big:1", weights_file, tmp_path)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    store = small_disk / "models"
    server = await start_server(fake_llama_server_bin, models_dir=store)
    client = ollama.AsyncClient(host=base_url(server))
    with pytest.raises(ollama.ResponseError) as info:
        async for _ in await client.pull(f"{registry_open.host}/team/big:1", insecure=True, stream=True):
            pass
    assert info.value.error.startswith(f"no space left on device while downloading {weights}")
    assert not StoreLayout(store).blob_path(weights).exists()
    assert not (store / "manifests").exists() or not list((store / "manifests").rglob("big"))
    assert (await client.list()).models == []
