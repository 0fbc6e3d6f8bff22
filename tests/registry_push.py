"""A test registry seen through llamasup's registry client: putting a model there without llamasup's push
(`publish`), reading a manifest back, and the requests its access log recorded."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from supervisor.registry.client import RegistryClient, Repository
from supervisor.registry.credentials import CredentialStore
from supervisor.store import ModelName
from supervisor.store.manifests import MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS
from tests.registry_server import MANIFEST_V2, RegistryServer

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_for(layers: list[tuple[str, bytes]], config: bytes) -> bytes:
    """A schema-2 manifest of ``layers`` (media type, bytes) and ``config``, as Ollama writes one."""
    return orjson.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": kind, "digest": digest_of(data), "size": len(data)} for kind, data in layers],
    }) + b"\n"  # fmt: skip


async def publish(registry: RegistryServer, name: str, gguf: Path, tmp_path: Path, *, params: bytes = b'{"temperature":0.5}') -> tuple[bytes, dict[str, bytes]]:
    """Upload ``gguf`` (and a params layer) as model ``name`` (``ns/model:tag``) on ``registry``; returns
    the manifest bytes and every blob by digest."""
    weights = gguf.read_bytes()
    config = orjson.dumps({"model_format": "gguf", "model_family": "llama", "file_type": "F16", "rootfs": {"type": "layers", "diff_ids": []}})
    layers = [(MEDIA_TYPE_MODEL, weights), (MEDIA_TYPE_PARAMS, params)]
    manifest = manifest_for(layers, config)
    store = CredentialStore(tmp_path / "publisher-credentials.json")
    if registry.credentials is not None:
        store.save(registry.host, registry.credentials.username, registry.credentials.password)
    model = ModelName.parse(f"{registry.host}/{name}")
    repo = Repository.of(model, insecure=True)
    async with RegistryClient(user_agent="llamasup-tests", credentials=store, proxy_from_env=False) as client:
        for data in (weights, params, config):
            url = await client.start_upload(repo)
            await client.finish_upload(url, digest_of(data), data)
        await client.put_manifest(repo, model.tag, manifest, MANIFEST_V2)
    return manifest, {digest_of(d): d for d in (weights, params, config)}


async def registry_manifest(registry: RegistryServer, name: str, tmp_path: Path) -> bytes:
    """The manifest bytes the registry holds for ``name`` (``ns/model:tag``), read with its login."""
    store = CredentialStore(tmp_path / "reader-credentials.json")
    if registry.credentials is not None:
        store.save(registry.host, registry.credentials.username, registry.credentials.password)
    model = ModelName.parse(f"{registry.host}/{name}")
    async with RegistryClient(user_agent="llamasup-tests", credentials=store, proxy_from_env=False) as client:
        return await client.manifest(Repository.of(model, insecure=True), model.tag)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # with its query
    status: int


def logged_requests(registry: RegistryServer, since: int = 0) -> list[LoggedRequest]:
    """The requests in the registry's access log (combined format) after byte offset ``since``."""
    found: list[LoggedRequest] = []
    with registry.log.open("rb") as f:
        f.seek(since)
        for line in f.read().decode(errors="replace").splitlines():
            m = _ACCESS.match(line)
            if m is not None:
                found.append(LoggedRequest(m.group("method"), m.group("path"), int(m.group("status"))))
    return found


_ACCESS = re.compile(r'^\S+ - \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


def progress_statuses(progress: list[Any]) -> list[str]:
    """The statuses of a pull's or push's progress, repeats of one line collapsed."""
    out: list[str] = []
    for p in progress:
        if not out or out[-1] != p.status:
            out.append(p.status)
    return out
