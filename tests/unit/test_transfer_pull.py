"""Pull logic (service/transfer.py) against an in-memory registry: progress, resume, sharing, verification.

The real registry (docker-registry) is in tests/integration/test_pull.py; here a fake serves blobs
from memory, counts the bytes it sends, and fails or stalls on request.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import BadRequest, RegistryConnectionError
from supervisor.store import ModelName, ModelStore
from supervisor.store.guard import StoreGuard
from supervisor.store.layout import StoreLayout
from supervisor.runner.binary import RunnerArchitectures
from supervisor.store.manifests import MEDIA_TYPE_DRAFT, MEDIA_TYPE_MODEL, MEDIA_TYPE_TENSOR
from supervisor.store.partial import DigestMismatch
from supervisor.service.transfer import PullRequest, TransferService
from tests.models import write_header_gguf

CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(blobs: list[tuple[str, bytes]], config: bytes = b'{"model_format":"gguf"}') -> bytes:
    import orjson

    return orjson.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": kind, "digest": _digest(data), "size": len(data)} for kind, data in blobs],
    })  # fmt: skip


class FakeRegistry:
    """Blobs by digest; ``fail_after[digest]``: bytes sent before each next range read of it breaks;
    ``stall_once``: digests whose first range read sends nothing until released."""

    def __init__(self, manifest: bytes, blobs: dict[str, bytes]) -> None:
        self.raw_manifest, self.blobs = manifest, blobs
        self.sent = 0
        self.ranges: list[tuple[str, int, int]] = []
        self.fail_after: dict[str, list[int]] = {}
        self.stall_once: set[str] = set()
        self.corrupt: set[str] = set()
        self.release = asyncio.Event()

    async def manifest(self, repo: Any, reference: str) -> bytes:
        return self.raw_manifest

    async def blob_size(self, repo: Any, digest: str) -> int:
        return len(self.blobs[digest])

    async def blob_location(self, repo: Any, digest: str) -> str:
        return digest

    async def read_range(self, location: Any, start: int, end: int) -> AsyncIterator[bytes]:
        digest = str(location)
        self.ranges.append((digest, start, end))
        data = self.blobs[digest][start : end + 1]
        if digest in self.corrupt:
            data = bytes(b ^ 0xFF for b in data)
        if digest in self.stall_once:
            self.stall_once.discard(digest)
            await self.release.wait()  # never set: the pull's stall timeout ends this attempt
        schedule = self.fail_after.get(digest)
        limit = schedule.pop(0) if schedule else None
        for i in range(0, len(data), 4096):
            piece = data[i : i + 4096]
            if limit is not None and limit <= 0:
                raise RegistryConnectionError("connection reset by the registry")
            if limit is not None:
                piece = piece[:limit]
                limit -= len(piece)
            self.sent += len(piece)
            yield piece


def _service(tmp_path: Path, registry: FakeRegistry, **kwargs: Any) -> tuple[TransferService, ModelStore]:
    store = ModelStore(StoreLayout(tmp_path / "models"))
    options = {"retries": 2, "backoff": 0.0, "tick": 0.01} | kwargs
    return TransferService(store, StoreGuard(), registry, lambda name, insecure: name, **options), store


def _model(size: int = 300_000) -> tuple[bytes, dict[str, bytes]]:
    weights, config = os.urandom(size), b'{"model_format":"gguf"}'
    return _manifest([(MEDIA_TYPE_MODEL, weights)], config), {_digest(weights): weights, _digest(config): config}


async def _pull(service: TransferService, name: str = "example.com/ns/m:1") -> list[dict[str, Any]]:
    return [c async for c in service.pull(PullRequest(ModelName.parse(name), insecure=True))]


async def test_pull_streams_ollamas_progress_and_stores_the_model(tmp_path: Path) -> None:
    """pulling manifest, per-blob progress with digest/total/completed, verifying, writing, success; the
    manifest is stored byte for byte and every blob is there."""
    manifest, blobs = _model()
    service, store = _service(tmp_path, FakeRegistry(manifest, blobs))
    chunks = await _pull(service)
    statuses = [c["status"] for c in chunks]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    weights = next(d for d, b in blobs.items() if len(b) > 100)
    lines = [c for c in chunks if c.get("digest") == weights]
    assert lines[0]["status"] == "pulling " + weights[7:19] and lines[-1] == {
        "status": "pulling " + weights[7:19], "digest": weights, "total": len(blobs[weights]), "completed": len(blobs[weights])}  # fmt: skip
    assert all("completed" not in c or c["completed"] > 0 for c in chunks)
    model = store.resolve(ModelName.parse("example.com/ns/m:1"))
    assert model is not None and model.path.read_bytes() == manifest
    for digest, data in blobs.items():
        assert store.layout.blob_path(digest).read_bytes() == data
    assert not [p for p in store.layout.blobs_dir.iterdir() if "partial" in p.name]


async def test_present_blobs_are_one_line_and_not_fetched(tmp_path: Path) -> None:
    """A second pull of the same model fetches nothing and reports each blob once, complete."""
    manifest, blobs = _model()
    registry = FakeRegistry(manifest, blobs)
    service, _ = _service(tmp_path, registry)
    await _pull(service)
    sent = registry.sent
    chunks = await _pull(service)
    assert registry.sent == sent
    progress = [c for c in chunks if "digest" in c]
    assert len(progress) == len(blobs) and all(c["completed"] == c["total"] for c in progress)


async def test_an_interrupted_pull_resumes_with_the_remaining_bytes(tmp_path: Path) -> None:
    """The registry breaks after 100 kB and the retries are used up: the pull fails; the next pull
    fetches only what is missing (bytes counted at the registry)."""
    manifest, blobs = _model(400_000)
    registry = FakeRegistry(manifest, blobs)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    registry.fail_after = {weights: [100_000, 0, 0]}  # the first attempt stops at 100 kB, both retries at once
    service, store = _service(tmp_path, registry)
    with pytest.raises(RegistryConnectionError):
        await _pull(service)
    assert store.resolve(ModelName.parse("example.com/ns/m:1")) is None
    config_bytes = sum(len(b) for d, b in blobs.items() if d != weights)
    assert 100_000 <= registry.sent <= 100_000 + config_bytes  # the config blob is its own download
    await _pull(service)
    total = sum(len(b) for b in blobs.values())
    assert registry.sent == total  # 100 kB before, the rest now: nothing twice


async def test_a_failed_attempt_is_retried_from_where_it_broke(tmp_path: Path) -> None:
    """Within one pull a broken read is retried from its last byte, not from the part's start."""
    manifest, blobs = _model(200_000)
    registry = FakeRegistry(manifest, blobs)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    registry.fail_after = {weights: [50_000]}
    service, _ = _service(tmp_path, registry)
    await _pull(service)
    starts = [start for digest, start, _ in registry.ranges if digest == weights]
    assert starts == [0, 50_000] and registry.sent == sum(len(b) for b in blobs.values())


async def test_a_stalled_part_is_restarted(tmp_path: Path) -> None:
    """A read that sends nothing for the stall time is abandoned and the part fetched again."""
    manifest, blobs = _model(10_000)
    registry = FakeRegistry(manifest, blobs)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    registry.stall_once = {weights}
    service, store = _service(tmp_path, registry, stall=0.05, retries=0)
    await _pull(service)
    assert [r[0] for r in registry.ranges].count(weights) == 2
    assert store.layout.blob_path(weights).read_bytes() == blobs[weights]


async def test_two_pulls_share_one_download(tmp_path: Path) -> None:
    """Two clients pulling the same model at once: each blob is fetched once, both succeed."""
    manifest, blobs = _model(300_000)
    registry = FakeRegistry(manifest, blobs)
    service, _ = _service(tmp_path, registry)
    first, second = await asyncio.gather(_pull(service), _pull(service))
    assert first[-1] == second[-1] == {"status": "success"}
    assert registry.sent == sum(len(b) for b in blobs.values())


async def test_a_corrupt_blob_fails_the_pull_and_leaves_nothing(tmp_path: Path) -> None:
    """Bytes that do not match the digest: Ollama's digest mismatch error, no blob, no partial, no manifest."""
    manifest, blobs = _model(50_000)
    registry = FakeRegistry(manifest, blobs)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    registry.corrupt = {weights}
    service, store = _service(tmp_path, registry)
    with pytest.raises(DigestMismatch, match=f"digest mismatch, file must be downloaded again: want {weights}, got sha256:"):
        await _pull(service)
    assert not store.layout.blob_path(weights).exists()
    assert not [p for p in store.layout.blobs_dir.iterdir() if weights[7:] in p.name]
    assert store.resolve(ModelName.parse("example.com/ns/m:1")) is None


async def test_repulling_a_changed_tag_removes_the_old_layers(tmp_path: Path) -> None:
    """A tag that now points at other weights: the old weights go (removing unused layers)."""
    manifest, blobs = _model(20_000)
    registry = FakeRegistry(manifest, blobs)
    service, store = _service(tmp_path, registry)
    await _pull(service)
    old = max(blobs, key=lambda d: len(blobs[d]))
    registry.raw_manifest, new_blobs = _model(30_000)
    registry.blobs = new_blobs
    chunks = await _pull(service)
    assert [c["status"] for c in chunks][-2:] == ["removing unused layers", "success"]
    assert not store.layout.blob_path(old).exists()


async def test_safetensors_manifests_are_refused(tmp_path: Path) -> None:
    """An MLX (safetensors tensor layers) manifest: a clear 400 before any download."""
    tensor = b"t" * 10
    registry = FakeRegistry(_manifest([(MEDIA_TYPE_TENSOR, tensor)]), {_digest(tensor): tensor})
    service, _ = _service(tmp_path, registry)
    with pytest.raises(BadRequest, match="llama-server cannot run"):
        await _pull(service)
    assert registry.sent == 0


def _gguf_header(tmp_path: Path, arch: str) -> bytes:
    return write_header_gguf(tmp_path / f"{arch}.gguf", arch).read_bytes()


def _architectures(tmp_path: Path) -> RunnerArchitectures:
    return RunnerArchitectures(frozenset({"llama", "bert"}), tmp_path / "architectures.txt")


@pytest.mark.parametrize("kind", [MEDIA_TYPE_MODEL, MEDIA_TYPE_DRAFT])
async def test_weights_of_an_architecture_the_runner_cannot_load_get_no_manifest(tmp_path: Path, kind: str) -> None:
    """Checked after the download (from the blob's header): a 400 naming the architecture and the fix,
    no manifest, and the verified blob kept for the pull after the runner is updated."""
    weights, config = _gguf_header(tmp_path, "futurenet"), b'{"model_format":"gguf"}'
    registry = FakeRegistry(_manifest([(kind, weights)], config), {_digest(weights): weights, _digest(config): config})
    service, store = _service(tmp_path, registry, architectures=_architectures(tmp_path))
    statuses: list[str] = []
    with pytest.raises(BadRequest, match="architecture 'futurenet'.*cannot load") as info:
        async for chunk in service.pull(PullRequest(ModelName.parse("example.com/ns/m:1"), insecure=True)):
            statuses.append(chunk["status"])
    assert "build_runner.sh" in str(info.value) and "example.com/ns/m:1" in str(info.value)
    assert statuses[-1] == "verifying sha256 digest"
    assert store.resolve(ModelName.parse("example.com/ns/m:1")) is None
    assert store.layout.blob_path(_digest(weights)).read_bytes() == weights


async def test_weights_of_a_loadable_architecture_pass(tmp_path: Path) -> None:
    weights, config = _gguf_header(tmp_path, "llama"), b'{"model_format":"gguf"}'
    registry = FakeRegistry(_manifest([(MEDIA_TYPE_MODEL, weights)], config), {_digest(weights): weights, _digest(config): config})
    service, store = _service(tmp_path, registry, architectures=_architectures(tmp_path))
    assert [c["status"] for c in await _pull(service)][-1] == "success"
    assert store.resolve(ModelName.parse("example.com/ns/m:1")) is not None


async def test_weights_that_are_not_gguf_are_refused_when_the_runner_is_known(tmp_path: Path) -> None:
    manifest, blobs = _model(1000)
    service, store = _service(tmp_path, FakeRegistry(manifest, blobs), architectures=_architectures(tmp_path))
    with pytest.raises(BadRequest, match="is not a GGUF file"):
        await _pull(service)
    assert store.resolve(ModelName.parse("example.com/ns/m:1")) is None


def test_pull_request_fields() -> None:
    """model (or name) is required; insecure and stream are read as Ollama reads them."""
    req = PullRequest.from_json({"name": "m", "insecure": True, "stream": False})
    assert (req.name.host, req.name.namespace, req.name.model, req.name.tag) == ("registry.ollama.ai", "library", "m", "latest")
    assert req.insecure and not req.stream
    with pytest.raises(Exception, match="model is required"):
        PullRequest.from_json({})
