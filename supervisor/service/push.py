"""Pushing models to registries (reference/ollama-api.md §2.14, §9.3), with Ollama's progress stream:
``retrieving manifest``, ``pushing <12 hex>`` per blob, ``pushing manifest``, ``success``. The other
half of ``TransferService`` (``transfer.py``), whose retries and thread helper it uses.

A push reads the local manifest, makes sure the registry has every blob it references, layers then
config, and PUTs the manifest's stored bytes unchanged (so the model's digest there is the local one).
One blob at a time, since a registry takes the chunks of an upload in order:

- the repository has it (``HEAD``): one progress line, complete;
- else a cross-repository mount when another repository of the same registry may hold it: the one
  the layer's ``from`` names when that is a model on this registry (what Ollama mounts from), else the
  repository of any other local model of this registry that references the blob. A registry that
  cannot mount opens a plain upload session instead, and the upload uses it, so a wrong guess costs
  nothing; a login that may not read the source (a 401) falls back to a plain upload;
- else an upload: a small blob (up to ``MONOLITHIC_MAX`` and within one part) in one ``PUT``; a larger
  one in ``PATCH``es of Ollama's part size (``store.partial.plan_parts``, or the service's
  ``upload_part``), each streamed from the blob file ``READ_SIZE`` bytes at a time, read in a thread:
  memory stays flat whatever the blob's size. A part the registry redirects (Ollama's
  ``X-Redirect-Uploads``) is streamed from the file again, to the redirect URL.

Failures: every request is retried with the service's backoff when its error is retryable
(``TransferService._retry``). After a failed ``PATCH`` the session is asked where it stands
(``upload_status``) and the rest is sent from there. A session the registry lost or cancelled is
replaced by a new one, and the blob sent again from its first byte: distribution cancels a session
whose size no longer matches the state in its URL, which a cut ``PATCH`` leaves behind, and it may
do so only at the request after the status (the cut request can still be writing when the status is
asked), so such an answer to a ``PATCH`` or ``PUT`` counts as one more failure and the retry starts a
new session. A monolithic ``PUT`` that failed is sent again in a new session.

The blobs are pinned (``StoreGuard``) for the whole push, so a delete meanwhile cannot remove what is
being read. A client that leaves cancels the upload in flight.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog

from ..errors import RegistryError, RegistryUnauthorized, StoreError
from ..store import ModelName, ModelStore
from ..store.manifests import Layer, LocalModel, Manifest
from ..store.partial import plan_parts
from .relay import Chunk
from .transfer import PushRequest, TransferService, _progress, _to_thread_uncancelled

log = structlog.get_logger("supervisor.transfer")
T = TypeVar("T")
MONOLITHIC_MAX = 16 << 20  # bytes: a blob up to this size is read whole and sent in one PUT
READ_SIZE = 1 << 20  # bytes read from the blob file at a time while a PATCH streams


async def push(service: TransferService, req: PushRequest) -> AsyncGenerator[Chunk, None]:
    """``TransferService.push``: the local model ``req.name`` onto its registry, as progress lines."""
    service.repository(req.name, req.insecure)  # `insecure protocol http` before anything streams
    yield {"status": "retrieving manifest"}
    local = await asyncio.to_thread(_read_local, service.store, req.name)
    if local is None:
        yield {"status": "couldn't retrieve manifest"}
        raise StoreError(f"open {service.store.layout.manifest_path(req.name)}: no such file or directory")  # Ollama's words
    model, raw, manifest = local
    repo = service.repository(model.name, req.insecure)  # the name as stored, as Ollama pushes it
    blobs = list({layer.digest: layer for layer in [*manifest.layers, manifest.config]}.values())
    tally: Counter[str] = Counter()
    with service.guard.pin() as pins:
        for layer in blobs:
            pins.add(layer.digest)
        paths = await asyncio.to_thread(_blob_files, service.store, model, blobs)
        sources = await asyncio.to_thread(_mount_sources, service.store, model.name, blobs)
        for layer in blobs:
            async with aclosing(_blob(service, repo, layer, paths[layer.digest], sources.get(layer.digest), tally)) as progress:
                async for chunk in progress:
                    yield chunk
    yield {"status": "pushing manifest"}
    await service._retry(lambda: service.registry.put_manifest(repo, model.name.tag, raw, manifest.media_type), "manifest")
    log.info("pushed model", model=model.name.display, **tally)
    yield {"status": "success"}


async def _blob(
    service: TransferService, repo: Any, layer: Layer, path: Path, source: str | None, tally: Counter[str]
) -> AsyncGenerator[Chunk, None]:
    """Progress lines until the registry has ``layer``'s blob (one line when it already had it)."""
    digest, size = layer.digest, layer.size
    if await service._retry(lambda: service.registry.blob_exists(repo, digest), digest):
        tally["present"] += 1
        yield _progress(digest, size, size, "pushing")
        return
    upload = _Upload(service, repo, layer, path, source)
    task = asyncio.create_task(upload.run(), name=f"push-{digest[7:19]}")
    try:
        while True:
            await asyncio.wait({task}, timeout=service.tick)
            if task.done():
                tally[task.result()] += 1  # the upload's error is the push's
                yield _progress(digest, size, size, "pushing")
                return
            yield _progress(digest, size, upload.completed, "pushing")
    finally:
        if not task.done():  # the client left: the upload stops (its session is the registry's to purge)
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: a failure was raised above, or the push is being closed


class _Upload:
    """One blob going up in one session at a time. ``offset`` is the next byte the session expects;
    ``lost`` says that a request on the session failed, so where it stands must be asked first;
    ``completed`` is what the progress lines show (bytes handed to the registry so far)."""

    def __init__(self, service: TransferService, repo: Any, layer: Layer, path: Path, source: str | None) -> None:
        self.service, self.registry, self.repo, self.path, self.source = service, service.registry, repo, path, source
        self.digest, self.size = layer.digest, layer.size
        self.url: str | None = None
        self.offset = 0
        self.lost = False
        self.completed = 0

    def _retry(self, call: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        return self.service._retry(call, self.digest)

    async def run(self) -> str:
        """``mounted`` or ``uploaded``, once the registry has the blob."""
        if self.source is not None and await self._mount(self.source):
            return "mounted"
        ends = _part_ends(self.size, self.service.upload_part)
        if len(ends) <= 1 and self.size <= MONOLITHIC_MAX:
            data = await _to_thread_uncancelled(self.path.read_bytes)
            await self._retry(partial(self._put_whole, data))
        else:
            for end in ends:
                await self._retry(partial(self._send, end))
            await self._retry(self._finish)
        return "uploaded"

    async def _mount(self, source: str) -> bool:
        try:
            url = await self._retry(lambda: self.registry.mount(self.repo, self.digest, source))
        except RegistryUnauthorized as e:  # e.g. a login that may push here but not read the source
            log.info("mount refused, uploading instead", digest=self.digest, source=source, error=str(e))
            return False
        if url is None:
            log.info("blob mounted", digest=self.digest, source=source)
            self.completed = self.size
            return True
        self.url = url  # the registry opened an upload session instead: use it
        return False

    async def _session(self) -> str:
        """The session to send to: the current one (asked where it stands after a failure), or a new one."""
        if self.url is not None and self.lost:
            try:
                status = await self.registry.upload_status(self.url)
            except RegistryError as e:
                if e.retryable:
                    raise  # asked again after the backoff
                log.info("upload session lost, starting the blob again", digest=self.digest, error=str(e))
                self.url = None
            else:
                self.url, self.offset, self.lost = status.url, status.offset, False
        if self.url is None:
            self.url, self.offset, self.lost = await self.registry.start_upload(self.repo), 0, False
        self.completed = self.offset
        return self.url

    async def _on_session(self, request: Awaitable[T]) -> T:
        """A request on the current session; an answer saying the session is gone drops it and is a
        retryable failure (the next attempt opens a new session and starts the blob again)."""
        try:
            return await request
        except RegistryError as e:
            if e.retryable or not _session_gone(e):
                raise
            log.info("upload session lost, starting the blob again", digest=self.digest, error=str(e))
            self.url = None
            raise _SessionLost(e.message, registry_status=e.registry_status) from e

    async def _put_whole(self, data: bytes) -> None:
        if self.lost:
            self.url = None  # a PUT that failed may have left part of its body in the session
        url = await self._session()
        self.lost = True
        await self._on_session(self.registry.finish_upload(url, self.digest, data))
        self.lost, self.completed = False, self.size

    async def _send(self, end: int) -> None:
        """One PATCH: the bytes from where the session stands up to ``end``, streamed from the file."""
        url = await self._session()
        if self.offset >= end:
            return  # the registry took them although its answer was lost
        self.lost = True
        bodies: list[_FileBody] = []

        def body() -> _FileBody:  # a second time when the registry redirects the part
            bodies.append(_FileBody(self, self.offset, end))
            return bodies[-1]

        try:
            self.url = await self._on_session(self.registry.upload_chunk(url, self.offset, body, end - self.offset))
        finally:
            for sent in bodies:
                sent.close()
        self.offset, self.lost = end, False

    async def _finish(self) -> None:
        await self._send(self.size)  # nothing, unless the session was lost and the blob starts again
        assert self.url is not None
        self.lost = True
        await self._on_session(self.registry.finish_upload(self.url, self.digest))
        self.lost = False


class _SessionLost(RegistryError):
    """The registry no longer knows the upload session: worth another attempt, in a new session."""

    @property
    def retryable(self) -> bool:
        return True


def _session_gone(e: RegistryError) -> bool:
    """Whether a refusal of an upload request means its session is gone (unknown, cancelled, or not at
    the offset its URL says), not that the request itself is wrong."""
    return e.registry_status in (404, 416) or "BLOB_UPLOAD_INVALID" in e.message or "BLOB_UPLOAD_UNKNOWN" in e.message


class _FileBody:
    """Bytes ``start``..``end`` (exclusive) of the blob file as a request body, ``READ_SIZE`` at a time,
    each read in a thread. It owns its descriptor and closes it at the end or on ``close``, but never
    under a read in flight: the writer of a request that failed may still be reading."""

    def __init__(self, upload: _Upload, start: int, end: int) -> None:
        self.upload, self.pos, self.end = upload, start, end
        try:
            self.fd = os.open(upload.path, os.O_RDONLY)  # a local open: no thread needed
        except OSError as e:
            raise StoreError(f"reading blob {upload.path}: {e.strerror or e}") from e
        self.reading = self.closing = False

    def __aiter__(self) -> _FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self.closing or self.pos >= self.end:
            self.close()
            raise StopAsyncIteration
        self.reading = True
        try:
            data = await _to_thread_uncancelled(os.pread, self.fd, min(READ_SIZE, self.end - self.pos), self.pos)
        finally:
            self.reading = False
            if self.closing:
                self._release()
        if not data:
            raise StoreError(f"blob {self.upload.digest} ({self.upload.path}) ended at byte {self.pos} of {self.upload.size}")
        self.pos += len(data)
        if not self.closing:
            self.upload.completed = self.pos
        return data

    def close(self) -> None:
        self.closing = True
        if not self.reading:
            self._release()

    def _release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _part_ends(size: int, part: int | None) -> list[int]:
    """Where each PATCH ends (exclusive): Ollama's split (``plan_parts``), or ``part`` bytes each."""
    if part is None:
        return [p.offset + p.size for p in plan_parts(size)]
    return [min(offset + part, size) for offset in range(0, size, part)]


def _read_local(store: ModelStore, name: ModelName) -> tuple[LocalModel, bytes, Manifest] | None:
    """The model, its manifest's bytes as stored, and the manifest they parse to; None when absent."""
    model = store.resolve(name)
    if model is None:
        return None
    try:
        raw = model.path.read_bytes()
    except FileNotFoundError:
        return None  # deleted since it was found
    except OSError as e:
        raise StoreError(f"reading manifest of '{model.name.display}': {e}") from e
    return model, raw, Manifest.parse(raw)


def _blob_files(store: ModelStore, model: LocalModel, blobs: list[Layer]) -> dict[str, Path]:
    """Each blob's file, checked before anything is sent: present, and of the size the manifest says."""
    paths: dict[str, Path] = {}
    for layer in blobs:
        path = paths[layer.digest] = store.blob_path(model, layer.digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StoreError(f"model '{model.name.display}' is missing blob {layer.digest} ({path}); pull or create the model again") from None
        except OSError as e:
            raise StoreError(f"reading blob {path}: {e}") from e
        if size != layer.size:
            raise StoreError(f"blob {layer.digest} of '{model.name.display}' has {size} bytes, its manifest says {layer.size}")
    return paths


def _mount_sources(store: ModelStore, name: ModelName, blobs: list[Layer]) -> dict[str, str]:
    """For each blob, another repository (``namespace/model``) of ``name``'s registry that may hold it:
    the model the layer's ``from`` names, else another local model of that registry that uses it."""
    host, own = name.host.lower(), (name.namespace.lower(), name.model.lower())

    def repository(other: ModelName | None) -> str | None:
        if other is None or other.host.lower() != host or (other.namespace.lower(), other.model.lower()) == own:
            return None
        return f"{other.namespace}/{other.model}"

    sources = {layer.digest: path for layer in blobs if layer.from_ and (path := repository(ModelName.try_parse(layer.from_)))}
    wanted = {layer.digest for layer in blobs} - sources.keys()
    if wanted:
        for other in store.list_models():
            path = repository(other.name)
            if path is not None:
                for digest in wanted.intersection(other.manifest.digests):
                    sources.setdefault(digest, path)
    return sources
