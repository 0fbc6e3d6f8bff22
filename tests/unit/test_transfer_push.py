"""Push logic (service/push.py) against an in-memory registry: progress, present blobs, mounts, monolithic
and chunked uploads streamed from the file, resuming or restarting a session after a failure.

The real registry (docker-registry) is in tests/integration/test_push.py; here a fake keeps repositories
and upload sessions in memory, with each session's state (id, offset) in its URL as distribution keeps it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import defaultdict
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import Any

import pytest

import supervisor.service.push as push_module
from supervisor.errors import RegistryConnectionError, RegistryHTTPError, RegistryInsufficientScope, RegistryNotFound, StoreError
from supervisor.registry.client import UploadStatus
from supervisor.service.transfer import PushRequest, TransferService
from supervisor.store import CONFIG_MEDIA_TYPE, Layer, Manifest, ModelName, ModelStore, StoreLayout, write_blob_bytes
from supervisor.store.guard import StoreGuard
from supervisor.store.manifests import MANIFEST_MEDIA_TYPE, MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS

HOST = "example.com"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Repositories (``namespace/model``) linking blobs by digest, manifests by (repository, tag), and upload
    sessions whose URL is ``upload/<repo>/<id>?offset=<n>``.

    ``cuts``: for each next PATCH, None (it goes through) or the number of bytes after which the
    connection breaks; the session keeps what arrived, as a registry writing to disk does. ``strict``:
    a request on a URL whose offset no longer matches its session cancels the session (distribution);
    otherwise ``upload_status`` says where the session stands. ``failing_puts`` / ``failing_finishes``:
    monolithic PUTs / closing PUTs (no body) that break before anything is stored. ``deny_mounts``: mounts
    are refused as for a login that may not read the source. ``stale_status``: the next status answers
    with the offset its URL says, unchecked (a cut PATCH still being written when it is asked).
    ``gate``: when set, PATCHes wait for it (``entered`` is set then).
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.repos: dict[str, set[str]] = defaultdict(set)
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.sessions: dict[int, bytearray] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.cuts: list[int | None] = []
        self.failing_puts = self.failing_finishes = 0
        self.deny_mounts = self.stale_status = False
        self.read_sizes: list[int] = []
        self.patched = 0  # bytes received by PATCHes
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.cancelled = False
        self._ids = 0

    # -- sessions --------------------------------------------------------------------------------
    def _open(self, repo: str) -> str:
        self._ids += 1
        self.sessions[self._ids] = bytearray()
        return self._url(repo, self._ids)

    def _url(self, repo: str, sid: int) -> str:
        return f"upload/{repo}/{sid}?offset={len(self.sessions[sid])}"

    def _session(self, url: str) -> tuple[str, int, bytearray]:
        path, _, query = url.partition("?offset=")
        repo, _, sid_text = path.removeprefix("upload/").rpartition("/")
        sid = int(sid_text)
        session = self.sessions.get(sid)
        if session is None:
            raise RegistryNotFound("404: BLOB_UPLOAD_UNKNOWN", registry_status=404)
        if self.strict and int(query) != len(session):
            del self.sessions[sid]
            raise RegistryHTTPError("400: BLOB_UPLOAD_INVALID: upload resumed at wrong offset", registry_status=400)
        return repo, sid, session

    # -- the Registry protocol -------------------------------------------------------------------
    async def blob_exists(self, repo: str, digest: str) -> bool:
        self.calls.append(("HEAD", repo, digest))
        return digest in self.repos[repo]

    async def mount(self, repo: str, digest: str, source_path: str) -> str | None:
        self.calls.append(("MOUNT", repo, digest, source_path))
        if self.deny_mounts:
            raise RegistryInsufficientScope(f"unauthorized: access denied: the login does not allow pull on {source_path}", host=HOST)
        if digest in self.repos[source_path]:
            self.repos[repo].add(digest)
            return None
        return self._open(repo)

    async def start_upload(self, repo: str) -> str:
        self.calls.append(("POST", repo))
        return self._open(repo)

    async def upload_chunk(self, url: str, start: int, data: Callable[[], AsyncIterable[bytes]] | bytes, length: int) -> str:
        repo, sid, session = self._session(url)
        self.calls.append(("PATCH", sid, start, length, "bytes" if isinstance(data, bytes) else "stream"))
        if self.gate is not None:
            self.entered.set()
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if start != len(session):
            raise RegistryHTTPError(f"416: expected offset {len(session)}, got {start}", registry_status=416)
        cut = self.cuts.pop(0) if self.cuts else None
        assert not isinstance(data, bytes)
        received = 0
        async for chunk in data():
            self.read_sizes.append(len(chunk))
            if cut is not None and received + len(chunk) > cut:
                session += chunk[: cut - received]
                self.patched += cut - received
                raise RegistryConnectionError("connection reset by the registry")
            session += chunk
            received += len(chunk)
            self.patched += len(chunk)
        assert received == length
        return self._url(repo, sid)

    async def upload_status(self, url: str) -> UploadStatus:
        if self.stale_status:
            self.stale_status = False
            self.calls.append(("STATUS", "stale"))
            return UploadStatus(url, int(url.partition("?offset=")[2]))
        repo, sid, session = self._session(url)
        self.calls.append(("STATUS", sid, len(session)))
        return UploadStatus(self._url(repo, sid), len(session))

    async def finish_upload(self, url: str, digest: str, data: bytes | None = None) -> None:
        repo, sid, session = self._session(url)
        self.calls.append(("PUT", sid, digest, data is not None))
        if data is not None and self.failing_puts:
            self.failing_puts -= 1
            raise RegistryConnectionError("connection reset by the registry")
        if data is None and self.failing_finishes:
            self.failing_finishes -= 1
            raise RegistryConnectionError("connection reset by the registry")
        session += data or b""
        if _digest(bytes(session)) != digest:
            raise RegistryHTTPError("400: DIGEST_INVALID", registry_status=400)
        self.blobs[digest] = bytes(session)
        self.repos[repo].add(digest)
        del self.sessions[sid]

    async def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> None:
        self.calls.append(("MANIFEST", repo, reference))
        manifest = Manifest.parse(data)
        missing = [d for d in manifest.digests if d not in self.repos[repo]]
        if missing:
            raise RegistryHTTPError(f"400: MANIFEST_BLOB_UNKNOWN {missing}", registry_status=400)
        self.manifests[(repo, reference)] = (data, media_type)

    # -- for assertions --------------------------------------------------------------------------
    def uploads(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] in ("POST", "PATCH", "PUT")]


def _service(tmp_path: Path, registry: FakeRegistry, **kwargs: Any) -> tuple[TransferService, ModelStore]:
    store = ModelStore(StoreLayout(tmp_path / "models"))
    options = {"retries": 2, "backoff": 0.0, "tick": 0.01} | kwargs
    return TransferService(store, StoreGuard(), registry, lambda name, insecure: f"{name.namespace}/{name.model}", **options), store


def _install(store: ModelStore, name: str, weights: bytes, *, params: bytes = b'{"temperature":0.5}',
             config: bytes = b'{"model_format":"gguf"}', weights_from: str | None = None) -> tuple[bytes, dict[str, bytes]]:  # fmt: skip
    """A model of weights, params and config in the store; its manifest bytes and blobs by digest."""
    layers = [
        Layer(mediaType=MEDIA_TYPE_MODEL, digest=write_blob_bytes(store.layout, weights), size=len(weights), **{"from": weights_from}),
        Layer(mediaType=MEDIA_TYPE_PARAMS, digest=write_blob_bytes(store.layout, params), size=len(params)),
    ]
    manifest = Manifest(config=Layer(mediaType=CONFIG_MEDIA_TYPE, digest=write_blob_bytes(store.layout, config), size=len(config)), layers=layers)
    raw = manifest.to_bytes()
    store.write_manifest(ModelName.parse(name), raw)
    return raw, {_digest(d): d for d in (weights, params, config)}


async def _push(service: TransferService, name: str = f"{HOST}/team/m:1") -> list[dict[str, Any]]:
    return [c async for c in service.push(PushRequest(ModelName.parse(name), insecure=True))]


def _lines(chunks: list[dict[str, Any]], digest: str) -> list[dict[str, Any]]:
    return [c for c in chunks if c.get("digest") == digest]


async def test_push_streams_ollamas_progress_and_the_registry_gets_the_model(tmp_path: Path) -> None:
    """retrieving manifest, `pushing <12 hex>` lines per blob ending complete, pushing manifest, success;
    the registry holds every blob and the manifest's stored bytes unchanged, with its media type. Small
    blobs go up in one PUT each."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    raw, blobs = _install(store, f"{HOST}/team/m:1", os.urandom(300_000))
    chunks = await _push(service)
    statuses = [c["status"] for c in chunks]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    for digest, data in blobs.items():
        lines = _lines(chunks, digest)
        assert lines and all(c["status"] == f"pushing {digest[7:19]}" and c["total"] == len(data) for c in lines)
        assert lines[-1]["completed"] == len(data)
        assert registry.blobs[digest] == data
    assert all("completed" not in c or c["completed"] > 0 for c in chunks)
    assert registry.manifests[("team/m", "1")] == (raw, MANIFEST_MEDIA_TYPE)
    uploads = registry.uploads()
    assert [c[0] for c in uploads] == ["POST", "PUT"] * 3 and all(c[3] for c in uploads if c[0] == "PUT")  # monolithic
    assert {c[2] for c in registry.calls if c[0] == "HEAD"} == set(blobs)


async def test_a_blob_larger_than_a_part_goes_up_in_patches_streamed_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 64 KiB parts a 300 kB blob is five PATCHes at the part offsets, each an async body read from
    the file a few kB at a time (never the whole blob), then a PUT without a body; progress rises."""
    monkeypatch.setattr(push_module, "READ_SIZE", 10_000)
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry, upload_part=64 * 1024)
    weights = os.urandom(300_000)
    _, blobs = _install(store, f"{HOST}/team/m:1", weights)
    chunks = await _push(service)
    digest = _digest(weights)
    assert registry.blobs[digest] == weights
    patches = [c for c in registry.calls if c[0] == "PATCH"]
    assert [(c[2], c[3], c[4]) for c in patches] == [(o, min(65536, 300_000 - o), "stream") for o in range(0, 300_000, 65536)]
    assert max(registry.read_sizes) <= 10_000
    assert ("PUT", patches[0][1], digest, False) in registry.calls
    completed = [c.get("completed", 0) for c in _lines(chunks, digest)]
    assert completed == sorted(completed) and completed[-1] == len(weights)
    assert chunks[-1] == {"status": "success"}


async def test_a_second_push_uploads_nothing(tmp_path: Path) -> None:
    """Every blob is already there: one complete line each, HEADs and the manifest PUT only."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    _, blobs = _install(store, f"{HOST}/team/m:1", os.urandom(50_000))
    await _push(service)
    before = len(registry.calls)
    chunks = await _push(service)
    assert [c[0] for c in registry.calls[before:]] == ["HEAD"] * 3 + ["MANIFEST"]
    progress = [c for c in chunks if "digest" in c]
    assert len(progress) == len(blobs) and all(c["completed"] == c["total"] for c in progress)


async def _pushed_through_a_cut_patch(tmp_path: Path, registry: FakeRegistry) -> bytes:
    """300 kB of weights pushed to ``registry`` in 64 KiB PATCHes, the second of which breaks after
    30 kB; the push succeeds and the registry holds the blob whole. Returns the weights."""
    registry.cuts = [None, 30_000]
    service, store = _service(tmp_path, registry, upload_part=65536)
    weights = os.urandom(300_000)
    _install(store, f"{HOST}/team/m:1", weights)
    assert (await _push(service))[-1] == {"status": "success"}
    assert registry.blobs[_digest(weights)] == weights
    return weights


async def test_a_cut_patch_continues_where_the_session_stands(tmp_path: Path) -> None:
    """The second PATCH breaks after 30 kB (kept by the registry): the session is asked where it stands
    and the rest is sent from there; no byte goes up twice."""
    registry = FakeRegistry()
    weights = await _pushed_through_a_cut_patch(tmp_path, registry)
    assert ("STATUS", 1, 65536 + 30_000) in registry.calls
    assert registry.patched == len(weights)
    assert [c[2] for c in registry.calls if c[0] == "PATCH"] == [0, 65536, 95536, 131072, 196608, 262144]


async def test_a_session_the_registry_cancelled_starts_the_blob_again(tmp_path: Path) -> None:
    """As distribution does, the registry cancels a session whose size no longer matches its URL after a
    cut PATCH: a new session, and the blob from its first byte."""
    registry = FakeRegistry(strict=True)
    await _pushed_through_a_cut_patch(tmp_path, registry)
    patches = [(c[1], c[2], c[3]) for c in registry.calls if c[0] == "PATCH"]
    assert patches[:2] == [(1, 0, 65536), (1, 65536, 65536)]
    assert patches[2] == (2, 0, 131072)  # the new session catches up to the part's end in one PATCH


async def test_a_failed_closing_put_is_sent_again_without_resending_the_blob(tmp_path: Path) -> None:
    """The PUT that closes a chunked upload breaks: the session says it has every byte, so only the PUT
    goes again."""
    registry = FakeRegistry()
    registry.failing_finishes = 1
    service, store = _service(tmp_path, registry, upload_part=65536)
    weights = os.urandom(200_000)
    _install(store, f"{HOST}/team/m:1", weights)
    await _push(service)
    assert registry.blobs[_digest(weights)] == weights and registry.patched == len(weights)
    assert [c for c in registry.calls if c[0] in ("STATUS", "PUT") and c[1] == 1] == [
        ("PUT", 1, _digest(weights), False), ("STATUS", 1, len(weights)), ("PUT", 1, _digest(weights), False)]  # fmt: skip


async def test_a_session_found_cancelled_only_by_the_next_patch_starts_the_blob_again(tmp_path: Path) -> None:
    """The status after a cut PATCH still shows the old offset, and the registry cancels the session at the
    next PATCH (distribution, when the cut request was still being written): one more failure, then a new
    session and the blob from its first byte."""
    registry = FakeRegistry(strict=True)
    registry.stale_status = True
    await _pushed_through_a_cut_patch(tmp_path, registry)
    assert ("STATUS", "stale") in registry.calls
    assert [(c[1], c[2]) for c in registry.calls if c[0] == "PATCH"][:4] == [(1, 0), (1, 65536), (2, 0), (2, 131072)]  # the refused one is not logged


async def test_failures_beyond_the_retries_fail_the_push(tmp_path: Path) -> None:
    """A PATCH that keeps breaking: the error once the retries are used up; no manifest is put."""
    registry = FakeRegistry()
    registry.cuts = [0, 0, 0, 0]
    service, store = _service(tmp_path, registry, upload_part=65536, retries=2)
    _install(store, f"{HOST}/team/m:1", os.urandom(200_000))
    with pytest.raises(RegistryConnectionError):
        await _push(service)
    assert len([c for c in registry.calls if c[0] == "PATCH"]) == 3 and not registry.manifests


async def test_a_failed_monolithic_put_is_sent_again_in_a_new_session(tmp_path: Path) -> None:
    """The whole-blob PUT breaks once: a new session and the PUT again."""
    registry = FakeRegistry()
    registry.failing_puts = 1
    service, store = _service(tmp_path, registry)
    weights = os.urandom(20_000)
    _install(store, f"{HOST}/team/m:1", weights)
    await _push(service)
    assert registry.blobs[_digest(weights)] == weights
    uploads = registry.uploads()
    assert [c[0] for c in uploads[:4]] == ["POST", "PUT", "POST", "PUT"] and uploads[1][1] != uploads[3][1]


async def test_a_layer_from_a_model_of_the_registry_is_mounted_from_its_repository(tmp_path: Path) -> None:
    """A layer whose `from` names a model on the same registry (here no longer local) is mounted from that
    model's repository and not uploaded; a model of another registry is no source."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    weights = os.urandom(40_000)
    _install(store, f"{HOST}/team/base:1", weights)
    await _push(service, f"{HOST}/team/base:1")
    base = store.resolve(ModelName.parse(f"{HOST}/team/base:1"))
    assert base is not None
    store.delete_manifest(base)  # the blobs stay
    config = b'{"model_format":"gguf","model_family":"llama"}'
    _install(store, "elsewhere.com/team/base:2", os.urandom(1000), config=config)
    _, blobs = _install(store, f"{HOST}/team/derived:1", weights, params=b'{"top_k":3}', config=config,
                        weights_from=f"{HOST}/team/base:1")  # fmt: skip
    before = len(registry.calls)
    chunks = await _push(service, f"{HOST}/team/derived:1")
    calls = registry.calls[before:]
    assert [c[2:] for c in calls if c[0] == "MOUNT"] == [(_digest(weights), "team/base")]
    assert {c[2] for c in calls if c[0] == "PUT"} == set(blobs) - {_digest(weights)}
    assert all(_lines(chunks, d)[-1]["completed"] == len(data) for d, data in blobs.items())
    assert registry.repos["team/derived"] == set(blobs) and ("team/derived", "1") in registry.manifests


async def _pushed_as_other_one(tmp_path: Path) -> tuple[FakeRegistry, TransferService, ModelStore, bytes]:
    """A registry holding ``other/one:1``, pushed from the local store with 40 kB of weights."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    weights = os.urandom(40_000)
    _install(store, f"{HOST}/other/one:1", weights)
    await _push(service, f"{HOST}/other/one:1")
    return registry, service, store, weights


async def test_a_blob_another_local_model_of_the_registry_uses_is_mounted_from_its_repository(tmp_path: Path) -> None:
    """Without a `from`, another local model of the same registry that references the blob is the source."""
    registry, service, store, weights = await _pushed_as_other_one(tmp_path)
    _install(store, f"{HOST}/team/m:1", weights, params=b'{"top_k":3}', config=b'{"model_format":"gguf","file_type":"F16"}')
    before = len(registry.calls)
    await _push(service)
    calls = registry.calls[before:]
    assert [c[2:] for c in calls if c[0] == "MOUNT"] == [(_digest(weights), "other/one")]
    assert len([c for c in calls if c[0] == "PUT"]) == 2  # params and config


async def test_a_mount_the_login_may_not_do_falls_back_to_an_upload(tmp_path: Path) -> None:
    """A mount refused for want of access to the source is no failure: the blob is uploaded."""
    registry, service, store, weights = await _pushed_as_other_one(tmp_path)
    registry.deny_mounts = True
    _install(store, f"{HOST}/team/m:1", weights, params=b'{"top_k":3}')
    assert (await _push(service))[-1] == {"status": "success"}
    assert _digest(weights) in registry.repos["team/m"]
    assert ("POST", "team/m") in registry.calls


async def test_a_mount_the_registry_cannot_do_uploads_through_the_session_it_opened(tmp_path: Path) -> None:
    """The source repository lacks the blobs: the registry opens an upload session for each mount instead,
    and each blob goes up through it (no other session)."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    weights = os.urandom(30_000)
    _, blobs = _install(store, f"{HOST}/team/never-pushed:1", weights)
    _install(store, f"{HOST}/team/m:1", weights)
    await _push(service)
    mounts = [c for c in registry.calls if c[0] == "MOUNT"]
    assert {c[2] for c in mounts} == set(blobs) and {c[3] for c in mounts} == {"team/never-pushed"}
    assert not [c for c in registry.calls if c[0] == "POST"]
    assert [(c[1], c[2]) for c in registry.calls if c[0] == "PUT"] == list(enumerate(blobs, start=1))  # session n: blob n
    assert all(registry.blobs[d] == data for d, data in blobs.items())


async def test_the_name_as_stored_is_pushed(tmp_path: Path) -> None:
    """A name that differs in case from the stored one pushes the stored model under its stored name."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    _install(store, f"{HOST}/team/m:1", os.urandom(1000))
    await _push(service, f"{HOST}/TEAM/M:1")
    assert list(registry.manifests) == [("team/m", "1")]


async def test_a_missing_model_is_ollamas_error(tmp_path: Path) -> None:
    """No such model: `retrieving manifest`, `couldn't retrieve manifest`, then Ollama's open error;
    the registry is not asked anything."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    chunks: list[dict[str, Any]] = []
    with pytest.raises(StoreError, match=r"^open .*/manifests/example.com/team/none/1: no such file or directory$"):
        async for chunk in service.push(PushRequest(ModelName.parse(f"{HOST}/team/none:1"))):
            chunks.append(chunk)
    assert chunks == [{"status": "retrieving manifest"}, {"status": "couldn't retrieve manifest"}]
    assert registry.calls == []


async def test_a_missing_blob_fails_before_anything_is_sent(tmp_path: Path) -> None:
    """A blob of the model gone from the store: an error naming the model and blob, before any request."""
    registry = FakeRegistry()
    service, store = _service(tmp_path, registry)
    weights = os.urandom(1000)
    _install(store, f"{HOST}/team/m:1", weights)
    store.layout.blob_path(_digest(weights)).unlink()
    with pytest.raises(StoreError, match=f"model '{HOST}/team/m:1' is missing blob {_digest(weights)}"):
        await _push(service)
    assert registry.calls == []


async def test_a_client_that_leaves_stops_the_upload(tmp_path: Path) -> None:
    """Closing the push while a PATCH is in flight cancels it; nothing is left running."""
    registry = FakeRegistry()
    registry.gate = asyncio.Event()
    service, store = _service(tmp_path, registry, upload_part=65536)
    weights = os.urandom(200_000)
    _install(store, f"{HOST}/team/m:1", weights)
    stream = service.push(PushRequest(ModelName.parse(f"{HOST}/team/m:1")))
    async for chunk in stream:
        if chunk.get("digest") == _digest(weights):
            break
    await registry.entered.wait()
    await stream.aclose()
    assert registry.cancelled
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("push-")] == []


def test_push_request_fields() -> None:
    """model (or name) is required; insecure and stream are read as Ollama reads them."""
    req = PushRequest.from_json({"name": "team/m", "insecure": True, "stream": False})
    assert (req.name.host, req.name.namespace, req.name.model, req.name.tag) == ("registry.ollama.ai", "team", "m", "latest")
    assert req.insecure and not req.stream and isinstance(req, PushRequest)
    assert PushRequest.from_json({"model": "x"}).stream
    with pytest.raises(Exception, match="model is required"):
        PushRequest.from_json({})
