"""``/api/push`` against a real registry (Debian's docker-registry on 127.0.0.1), in each auth mode, with the
official ``ollama`` client: Ollama's progress stream, the registry's copy byte for byte, a pull back, a
second push that uploads nothing, cross-repository mounts, a missing login, Ollama's errors; and the
service itself against the registry with small parts: several streamed PATCHes, and an upload cut
mid-PATCH that still ends with the right blob."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import pytest
from aiohttp.test_utils import TestServer

from supervisor.registry.client import RegistryClient, Repository
from supervisor.registry.credentials import CredentialStore
from supervisor.service.transfer import PushRequest, TransferService
from supervisor.store import ModelName, ModelStore, StoreLayout
from supervisor.store.guard import StoreGuard
from tests.conftest import ServerFactory, base_url, wait_until
from tests.models import write_model
from tests.registry_proxy import RegistryProxy
from tests.registry_push import LoggedRequest, logged_requests, progress_statuses, registry_manifest
from tests.registry_server import RegistryServer
from tests.store_helpers import install_gguf

PART = 256 * 1024


@pytest.fixture(scope="module")
def push_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("push") / "push.gguf", preset="tiny", seed=11)  # not the store's tiny


def _credentials(tmp_path: Path, registry: RegistryServer | None) -> CredentialStore:
    """llamasup's credentials file of the test (``tmp_path/credentials.json``), with the registry's login."""
    store = CredentialStore(tmp_path / "credentials.json", docker_config=None)
    if registry is not None and registry.credentials is not None:
        store.save(registry.host, registry.credentials.username, registry.credentials.password)
    return store


async def _server(start_server: ServerFactory, fake_llama_server_bin: Path, tmp_path: Path, registry: RegistryServer | None = None) -> TestServer:
    _credentials(tmp_path, registry)
    return await start_server(fake_llama_server_bin)


def _install(models_dir: Path, registry: RegistryServer, gguf: Path, name: str = "team/m:1") -> str:
    full = f"{registry.host}/{name}"
    install_gguf(models_dir, full, gguf, params={"temperature": 0.25, "stop": ["<|end|>"]})
    return full


def _local(models_dir: Path, name: str) -> tuple[bytes, dict[str, bytes]]:
    """The model's manifest bytes and its blobs by digest, from the store."""
    store = ModelStore(StoreLayout(models_dir))
    model = store.resolve(ModelName.parse(name))
    assert model is not None
    return model.path.read_bytes(), {d: store.layout.blob_path(d).read_bytes() for d in model.manifest.digests}


async def _logged_through_manifest(registry: RegistryServer, since: int) -> list[LoggedRequest]:
    """The registry's logged requests after ``since``, once its log holds the push's last one (the
    manifest PUT): the registry writes each line as its answer goes out."""
    await wait_until(lambda: any(r.method == "PUT" and "/manifests/" in r.path for r in logged_requests(registry, since)),
                     what="the manifest PUT in the registry's access log")  # fmt: skip
    return logged_requests(registry, since)


def _check_progress(progress: list[Any], blobs: dict[str, bytes]) -> None:
    """Ollama's push sequence, each blob's lines `pushing <12 hex>` and its last one complete."""
    statuses = progress_statuses(progress)
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    assert all(s.startswith("pushing ") for s in statuses[1:-2])
    last = {p.digest: p for p in progress if p.digest}
    assert set(last) == set(blobs)
    for digest, data in blobs.items():
        assert last[digest].status == f"pushing {digest[7:19]}" and last[digest].completed == last[digest].total == len(data)


async def test_push_then_pull_round_trip(registry_any: RegistryServer, start_server: ServerFactory, fake_llama_server_bin: Path,
                                         tmp_path: Path, push_gguf: Path, models_dir: Path) -> None:  # fmt: skip
    """The model goes up with Ollama's progress stream; the registry holds its manifest byte for byte and
    every blob; deleted locally, it comes back by a pull, identical; a second push uploads nothing.
    Basic and token registries get the login from the credentials file."""
    registry = registry_any
    name = _install(models_dir, registry, push_gguf)
    manifest, blobs = _local(models_dir, name)
    server = await _server(start_server, fake_llama_server_bin, tmp_path, registry)
    client = ollama.AsyncClient(host=base_url(server))

    progress = [p async for p in await client.push(name, insecure=True, stream=True)]
    _check_progress(progress, blobs)
    assert await registry_manifest(registry, "team/m:1", tmp_path) == manifest
    for digest, data in blobs.items():
        assert registry.blob_path(digest).read_bytes() == data

    await client.delete(name)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    assert not StoreLayout(models_dir).blob_path(weights).exists()  # (the config blob may be the store's tiny's too)
    progress = [p async for p in await client.pull(name, insecure=True, stream=True)]
    assert progress[-1].status == "success"
    assert _local(models_dir, name) == (manifest, blobs)

    offset = registry.log.stat().st_size
    progress = [p async for p in await client.push(name, insecure=True, stream=True)]
    _check_progress(progress, blobs)
    assert len([p for p in progress if p.digest]) == len(blobs)  # one line each: the registry had it
    assert not [r for r in await _logged_through_manifest(registry, offset) if "/blobs/uploads/" in r.path]
    if registry.token_server is not None:
        assert any("repository:team/m:pull,push" in r.scopes or "repository:team/m:push,pull" in r.scopes for r in registry.token_server.requests)


async def test_a_copy_pushed_to_another_repository_is_mounted(registry_any: RegistryServer, start_server: ServerFactory,
                                                              fake_llama_server_bin: Path, tmp_path: Path, push_gguf: Path,
                                                              models_dir: Path) -> None:  # fmt: skip
    """A copy of a pushed model under another repository of the same registry: its blobs are mounted from
    the first repository (201), nothing is uploaded, and the registry serves the copy's manifest."""
    registry = registry_any
    name = _install(models_dir, registry, push_gguf, "team/a:1")
    server = await _server(start_server, fake_llama_server_bin, tmp_path, registry)
    client = ollama.AsyncClient(host=base_url(server))
    async for _ in await client.push(name, insecure=True, stream=True):
        pass
    copy = f"{registry.host}/team/b:1"
    await client.copy(name, copy)
    manifest, blobs = _local(models_dir, copy)
    offset = registry.log.stat().st_size
    progress = [p async for p in await client.push(copy, insecure=True, stream=True)]
    _check_progress(progress, blobs)
    requests = await _logged_through_manifest(registry, offset)
    mounts = [r for r in requests if r.method == "POST" and "mount=" in r.path and r.status == 201]
    assert len(mounts) == len(blobs) and all("from=team%2Fa" in r.path or "from=team/a" in r.path for r in mounts)
    assert not [r for r in requests if r.method in ("PATCH", "PUT") and "/blobs/uploads/" in r.path]
    assert await registry_manifest(registry, "team/b:1", tmp_path) == manifest


async def test_a_push_without_a_login_names_the_fix(registry_basic: RegistryServer, start_server: ServerFactory,
                                                    fake_llama_server_bin: Path, tmp_path: Path, push_gguf: Path,
                                                    models_dir: Path) -> None:  # fmt: skip
    """No login for a basic-auth registry: the stream ends with an error naming `llamasup login <host>`,
    and never a password; nothing reaches the registry's storage."""
    name = _install(models_dir, registry_basic, push_gguf)
    server = await _server(start_server, fake_llama_server_bin, tmp_path)  # no credentials saved
    client = ollama.AsyncClient(host=base_url(server))
    seen: list[Any] = []
    with pytest.raises(ollama.ResponseError) as info:
        async for p in await client.push(name, insecure=True, stream=True):
            seen.append(p)
    assert seen[0].status == "retrieving manifest"
    assert f"llamasup login {registry_basic.host}" in info.value.error
    assert registry_basic.credentials is not None and registry_basic.credentials.password not in info.value.error
    assert not (registry_basic.v2_root / "repositories").exists()


async def test_ollamas_errors(registry_open: RegistryServer, start_server: ServerFactory, fake_llama_server_bin: Path,
                              tmp_path: Path, models_dir: Path) -> None:  # fmt: skip
    """No model: 400 `model is required`. A model not in the store: `retrieving manifest`, `couldn't
    retrieve manifest`, then Ollama's open error (500 unstreamed). An http:// name without insecure:
    400 `insecure protocol http`."""
    server = await _server(start_server, fake_llama_server_bin, tmp_path)
    url = base_url(server) + "/api/push"
    missing = models_dir / "manifests" / registry_open.host / "team" / "none" / "1"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={}) as r:
            assert r.status == 400 and await r.json() == {"error": "model is required"}
        body = {"model": f"{registry_open.host}/team/none:1", "insecure": True, "stream": False}
        async with session.post(url, json=body) as r:
            assert r.status == 500 and await r.json() == {"error": f"open {missing}: no such file or directory"}
        async with session.post(url, json=body | {"stream": True}) as r:
            assert r.status == 200 and r.content_type == "application/x-ndjson"
            lines = [json.loads(line) for line in (await r.read()).splitlines()]
        assert lines == [{"status": "retrieving manifest"}, {"status": "couldn't retrieve manifest"},
                         {"error": f"open {missing}: no such file or directory"}]  # fmt: skip
        async with session.post(url, json={"model": f"http://{registry_open.host}/team/none:1", "stream": False}) as r:
            assert r.status == 400 and await r.json() == {"error": "insecure protocol http"}
    assert not [r for r in logged_requests(registry_open) if "/team/" in r.path]


# -- the service with small parts -------------------------------------------------------------------------


def _service(models_dir: Path, registry: RegistryClient, retries: int = 2) -> TransferService:
    return TransferService(ModelStore(StoreLayout(models_dir)), StoreGuard(), registry, lambda n, insecure: Repository.of(n, insecure=insecure),
                           retries=retries, backoff=0.0, tick=0.01, upload_part=PART)  # fmt: skip


async def test_a_blob_larger_than_a_part_goes_up_in_several_patches(registry_any: RegistryServer, tmp_path: Path, push_gguf: Path,
                                                                    models_dir: Path) -> None:  # fmt: skip
    """With 256 KiB parts the 1.1 MB weights go up in one PATCH per part (streamed bodies, authorized
    in every mode), then one PUT; the registry's blob is the file."""
    registry = registry_any
    name = _install(models_dir, registry, push_gguf)
    manifest, blobs = _local(models_dir, name)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    assert len(blobs[weights]) > 3 * PART
    async with RegistryClient(user_agent="llamasup-tests", credentials=_credentials(tmp_path, registry), proxy_from_env=False) as client:
        chunks = [c async for c in _service(models_dir, client).push(PushRequest(ModelName.parse(name), insecure=True))]
    assert chunks[-1] == {"status": "success"}
    patches = [r for r in await _logged_through_manifest(registry, 0) if r.method == "PATCH" and r.status == 202]
    assert len(patches) == -(-len(blobs[weights]) // PART)  # the other blobs are smaller than a part: one PUT each
    assert registry.blob_path(weights).read_bytes() == blobs[weights]
    assert await registry_manifest(registry, "team/m:1", tmp_path) == manifest


async def test_an_upload_cut_mid_patch_still_ends_with_the_right_blob(registry_open: RegistryServer, tmp_path: Path, push_gguf: Path,
                                                                      models_dir: Path) -> None:  # fmt: skip
    """The connection drops half way through a PATCH: the push goes on (from where the session stands, or
    in a new session when the registry cancelled the old one) and the registry ends with the exact blob.
    One cut may cost three failed requests (the cut PATCH; a PATCH that finds the session cancelled when
    the status was asked before the registry had written the cut bytes; a request on the connection the
    registry closes after refusing that PATCH unread): the default retries, not the tests' two."""
    proxy = RegistryProxy(registry_open.port, cut_after=PART + PART // 2)
    await proxy.start()
    try:
        name = _install(models_dir, registry_open, push_gguf)
        pushed = f"{proxy.host}/team/m:1"
        ModelStore(StoreLayout(models_dir)).write_manifest(ModelName.parse(pushed), _local(models_dir, name)[0])
        manifest, blobs = _local(models_dir, pushed)
        async with RegistryClient(user_agent="llamasup-tests", credentials=_credentials(tmp_path, None), proxy_from_env=False) as client:
            chunks = [c async for c in _service(models_dir, client, retries=6).push(PushRequest(ModelName.parse(pushed), insecure=True))]
        assert proxy.cut.is_set() and chunks[-1] == {"status": "success"}
        for digest, data in blobs.items():
            assert registry_open.blob_path(digest).read_bytes() == data
        assert await registry_manifest(registry_open, "team/m:1", tmp_path) == manifest
    finally:
        await proxy.close()
