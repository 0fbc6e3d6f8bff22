"""Pulling models from registries (reference/ollama-api.md §2.13, §9.1), with Ollama's progress stream;
pushing is the other half of this service, in ``push.py`` (which shares the helpers here).

A pull fetches the manifest, downloads every blob the store lacks, and writes the manifest byte for
byte. Each blob is downloaded by one task owned by this service (``_downloads``), in ranged parts
written at their offsets into a partial file whose state is kept on disk (``store/partial.py``), so:

- two pulls that need the same blob share its download (and its progress);
- a pull that stops at any point (the client leaves, the registry dies, llamasup is killed) leaves a
  partial that the next pull of that blob resumes; a download nobody waits for any more is cancelled;
- a part that receives nothing for ``stall`` seconds is restarted (not counted as a failure); other
  failures of a part are retried ``retries`` times with doubling waits;
- a blob becomes visible only once its sha256 is the digest (a mismatch leaves nothing behind);
- once downloaded, the GGUF weights' architecture is checked against what the runner can load
  (``architectures``); a refused model gets no manifest.

The blobs of the manifest are pinned (``StoreGuard``) from the start, so a delete that prunes meanwhile
cannot remove what this pull will reference; the manifest is written, and the layers the model no
longer uses removed, under the guard's lock.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

import structlog

from ..errors import BadRequest, RegistryConnectionError, RegistryError, StoreError
from ..store import ModelName, ModelStore
from ..store.blobs import ensure_dirs
from ..store.guard import StoreGuard
from ..runner.binary import RunnerArchitectures
from ..store.gguf_info import read_gguf_info
from ..store.manifests import MEDIA_TYPE_DRAFT, MEDIA_TYPE_JSON, MEDIA_TYPE_MODEL, MEDIA_TYPE_TENSOR, Layer, Manifest
from ..store.partial import Part, PartialBlob
from ..store.prune import remove_unreferenced
from .relay import Chunk

log = structlog.get_logger("supervisor.transfer")
T = TypeVar("T")
WRITE_SIZE = 4 << 20  # bytes of a part gathered before a write to the partial file
HASH_STEP = 64 << 20  # bytes hashed per step of the hashing that follows a download


class Registry(Protocol):
    """What pull and push need of a registry client (``registry.client.RegistryClient``)."""

    async def manifest(self, repo: Any, reference: str) -> bytes: ...

    async def blob_size(self, repo: Any, digest: str) -> int: ...

    async def blob_location(self, repo: Any, digest: str) -> Any: ...

    def read_range(self, location: Any, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` (inclusive) of the blob, as they arrive."""

    async def blob_exists(self, repo: Any, digest: str) -> bool: ...

    async def mount(self, repo: Any, digest: str, source_path: str) -> str | None:
        """None when mounted from ``source_path``, else the URL of the upload session opened instead."""

    async def start_upload(self, repo: Any) -> str: ...

    async def upload_chunk(self, url: str, start: int, data: Callable[[], AsyncIterable[bytes]] | bytes, length: int) -> str:
        """Send bytes ``start``.. of the blob; the session URL to continue at."""

    async def upload_status(self, url: str) -> Any:
        """Where the session stands: ``.url`` to continue at, ``.offset`` the next byte it expects."""

    async def finish_upload(self, url: str, digest: str, data: bytes | None = None) -> None: ...

    async def put_manifest(self, repo: Any, reference: str, data: bytes, media_type: str) -> None: ...


@dataclass
class _TransferRequest:
    """``{"model"`` (or ``"name"``), ``"insecure"``, ``"stream"}``, read as Ollama reads them."""

    name: ModelName
    insecure: bool = False
    stream: bool = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        model = data.get("model") or data.get("name")
        if not model or not isinstance(model, str):
            raise BadRequest("model is required")
        stream = data.get("stream")
        return cls(ModelName.parse(model), insecure=data.get("insecure") is True, stream=stream is not False)


class PullRequest(_TransferRequest):
    pass


class PushRequest(_TransferRequest):
    pass


@dataclass
class _Download:
    """One blob being downloaded, and how many pulls wait for it."""

    digest: str
    total: int
    completed: int = 0
    waiters: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    written: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # set by each write


class _Stalled(Exception):
    pass


class TransferService:
    def __init__(
        self,
        store: ModelStore,
        guard: StoreGuard,
        registry: Registry,
        repository: Callable[[ModelName, bool], Any],
        *,
        retries: int = 6,
        backoff: float = 1.0,
        stall: float = 30.0,
        parallel: int = 16,
        tick: float = 0.06,
        upload_part: int | None = None,
        architectures: RunnerArchitectures | None = None,
    ) -> None:
        """``upload_part``: bytes per upload PATCH of a push; None is Ollama's split (``plan_parts``).
        ``architectures``: what the runner can load; None checks nothing."""
        if upload_part is not None and upload_part < 1:
            raise ValueError(f"upload_part must be positive, not {upload_part}")
        self.store, self.guard, self.registry, self.repository = store, guard, registry, repository
        self.retries, self.backoff, self.stall, self.parallel, self.tick = retries, backoff, stall, parallel, tick
        self.upload_part, self.architectures = upload_part, architectures
        self._downloads: dict[str, _Download] = {}

    def downloading(self, digest: str) -> bool:
        """Whether a download of ``digest`` is running (or stopping)."""
        return digest in self._downloads

    def push(self, req: PushRequest) -> AsyncGenerator[Chunk, None]:
        """Ollama's push of a local model, with its progress stream (``push.py``)."""
        from .push import push  # push.py builds on this module's helpers: imported here, not at the top

        return push(self, req)

    # -- pull ---------------------------------------------------------------------------------------
    async def pull(self, req: PullRequest) -> AsyncGenerator[Chunk, None]:
        repo = self.repository(req.name, req.insecure)
        yield {"status": "pulling manifest"}
        raw = await self.registry.manifest(repo, req.name.tag)
        manifest = Manifest.parse(raw)
        _check_runnable(manifest)
        layers = [*manifest.layers, manifest.config]
        with self.guard.pin() as pins:
            for layer in layers:
                pins.add(layer.digest)
            async with aclosing(self._blobs(repo, layers)) as progress:
                async for chunk in progress:
                    yield chunk
            yield {"status": "verifying sha256 digest"}  # each blob was verified as it completed
            await self._check_architectures(req.name, manifest)
            yield {"status": "writing manifest"}
            async with self.guard.lock:
                old = await asyncio.to_thread(self.store.resolve, req.name)
                written = await asyncio.to_thread(self.store.write_manifest, req.name, raw)
                unused = [d for d in (old.manifest.digests if old else ()) if d not in pins.digests]
                if unused:
                    await asyncio.to_thread(remove_unreferenced, self.store, unused, self.guard.pinned() - pins.digests)
        if unused:
            yield {"status": "removing unused layers"}
        log.info("pulled model", model=written.display, layers=len(layers))
        yield {"status": "success"}

    async def _check_architectures(self, name: ModelName, manifest: Manifest) -> None:
        """Refuse weights (model or draft layers) the runner cannot load, read from the downloaded blobs."""
        if self.architectures is None:
            return
        for layer in manifest.layers:
            if layer.media_type not in (MEDIA_TYPE_MODEL, MEDIA_TYPE_DRAFT):
                continue
            try:
                info = await asyncio.to_thread(read_gguf_info, self.store.layout.blob_path(layer.digest))
            except StoreError as e:
                raise BadRequest(f"{name.display}: layer {layer.digest} is not a GGUF file, which llama-server cannot load") from e
            if (why := self.architectures.refusal(name.display, info.architecture)) is not None:
                raise BadRequest(why)

    async def _blobs(self, repo: Any, layers: list[Layer]) -> AsyncGenerator[Chunk, None]:
        """Progress lines until every blob of ``layers`` is in the store (present ones: one line)."""
        ensure_dirs(self.store.layout.blobs_dir)
        joined: list[_Download] = []
        pending: list[tuple[Layer, _Download]] = []
        try:
            for layer in dict((layer.digest, layer) for layer in layers).values():
                if self.store.layout.blob_path(layer.digest).is_file():
                    yield _progress(layer.digest, layer.size, layer.size)
                    continue
                download = await self._join(repo, layer)
                joined.append(download)
                pending.append((layer, download))
            while pending:
                tasks = {d.task for _, d in pending if d.task is not None}
                await asyncio.wait(tasks, timeout=self.tick, return_when=asyncio.ALL_COMPLETED)
                for layer, download in pending:
                    yield _progress(layer.digest, download.total, download.completed)
                for layer, download in list(pending):
                    if download.task is not None and download.task.done():
                        download.task.result()  # a failed download fails this pull
                        pending.remove((layer, download))
        finally:
            for download in joined:
                self._leave(download)

    async def _join(self, repo: Any, layer: Layer) -> _Download:
        """The blob's download, started if no other pull is running it. One being cancelled (its last
        pull left) is let finish first, so two tasks never write the same partial."""
        download = self._downloads.get(layer.digest)
        if download is not None and download.task is not None and download.task.cancelling():
            await asyncio.wait({download.task})
            download = self._downloads.get(layer.digest)
        if download is None or (download.task is not None and download.task.done()):
            download = _Download(layer.digest, layer.size)
            download.task = asyncio.create_task(self._download(repo, download), name=f"pull-{layer.digest[7:19]}")
            self._downloads[layer.digest] = download
            download.task.add_done_callback(lambda _: self._forget(download))
        download.waiters += 1
        return download

    def _leave(self, download: _Download) -> None:
        download.waiters -= 1
        if download.waiters == 0 and download.task is not None and not download.task.done():
            log.info("download stopped: no pull waits for it", digest=download.digest, completed=download.completed)
            download.task.cancel()  # its partial stays for the next pull to resume

    def _forget(self, download: _Download) -> None:
        if self._downloads.get(download.digest) is download:
            del self._downloads[download.digest]
        if download.task is not None and not download.task.cancelled():
            download.task.exception()  # retrieved: a failure is reported by the pulls that waited

    async def _download(self, repo: Any, download: _Download) -> None:
        layout = self.store.layout
        blob = await _to_thread_uncancelled(PartialBlob.open, layout, download.digest, download.total)
        download.completed = blob.completed
        parts = [p for p in blob.parts if not p.done]
        if parts:
            if download.completed:
                log.info("resuming download", digest=download.digest, completed=download.completed, total=download.total)
            location = await self._retry(lambda: self.registry.blob_location(repo, download.digest), download.digest)
            limit = asyncio.Semaphore(self.parallel)

            async def run(part: Part) -> None:
                async with limit:
                    await self._part(blob, part, location, download)

            async def follow() -> None:
                """Hash what arrives in file order meanwhile, so that commit has little left to hash."""
                while True:
                    await download.written.wait()
                    download.written.clear()
                    while await _to_thread_uncancelled(blob.hash_written, HASH_STEP):
                        pass

            hashing = asyncio.create_task(follow(), name=f"hash-{download.digest[7:19]}")
            try:
                async with asyncio.TaskGroup() as group:
                    for part in parts:
                        group.create_task(run(part))
            except ExceptionGroup as e:  # the first failure is the pull's error (the others were cancelled)
                raise e.exceptions[0] from None
            finally:
                hashing.cancel()
                await asyncio.gather(hashing, return_exceptions=True)
        await _to_thread_uncancelled(blob.commit)

    async def _part(self, blob: PartialBlob, part: Part, location: Any, download: _Download) -> None:
        """Fetch the rest of ``part``: restarted when it stalls, retried when it fails."""
        failures = 0
        while not part.done:
            try:
                await self._fetch(blob, part, location, download)
                if not part.done:
                    raise RegistryConnectionError(f"the registry ended part {part.n} of {blob.digest} early")
            except _Stalled:
                log.info("download part stalled, restarting", digest=blob.digest, part=part.n, seconds=self.stall)
            except RegistryError as e:
                failures += 1
                await self._back_off(e, failures, "download part failed, retrying", digest=blob.digest, part=part.n)

    async def _fetch(self, blob: PartialBlob, part: Part, location: Any, download: _Download) -> None:
        pieces: list[bytes] = []
        gathered = 0

        async def flush() -> None:
            nonlocal gathered
            if pieces:
                data, size = pieces.copy(), gathered
                pieces.clear()
                gathered = 0
                try:
                    await _to_thread_uncancelled(blob.write, part, data)
                except OSError as e:
                    raise _store_error(blob.digest, e) from e
                download.completed += size
                download.written.set()

        stream = self.registry.read_range(location, part.next_byte, part.last_byte)
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(anext(stream, None), self.stall)
                except TimeoutError:
                    raise _Stalled() from None
                if chunk is None:
                    break
                pieces.append(chunk)
                gathered += len(chunk)
                if gathered >= WRITE_SIZE:
                    await flush()
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()  # the connection goes with it
            await flush()  # what arrived before a failure is kept
            await _to_thread_uncancelled(blob.checkpoint, part)

    async def _retry(self, call: Callable[[], Awaitable[Any]], digest: str) -> Any:
        failures = 0
        while True:
            try:
                return await call()
            except RegistryError as e:
                failures += 1
                await self._back_off(e, failures, "registry request failed, retrying", digest=digest)

    async def _back_off(self, error: RegistryError, failures: int, event: str, **fields: Any) -> None:
        """After the ``failures``-th failure in a row: ``error`` again when it is not worth retrying or
        the retries are used up, else the doubling wait before the next attempt."""
        if not error.retryable or failures > self.retries:
            raise error
        wait = self.backoff * 2 ** (failures - 1)
        log.info(event, error=str(error), wait=wait, **fields)
        await asyncio.sleep(wait)


async def _to_thread_uncancelled(call: Callable[..., T], *args: Any) -> T:
    """``call`` in a thread, waited for to the end even when the task is cancelled meanwhile (then
    the cancellation follows): a file write cannot be interrupted, and a download must not count as
    stopped while its last write is still changing the partial and its state."""
    future = asyncio.ensure_future(asyncio.to_thread(call, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise


def _progress(digest: str, total: int, completed: int, verb: str = "pulling") -> Chunk:
    """``pulling <12 hex>`` (or ``pushing …``) with the digest and sizes; ``completed`` left out while 0, as Ollama."""
    chunk: Chunk = {"status": f"{verb} {digest.removeprefix('sha256:')[:12]}", "digest": digest, "total": total}
    if completed:
        chunk["completed"] = completed
    return chunk


def _check_runnable(manifest: Manifest) -> None:
    """Refuse a manifest llama-server cannot serve (safetensors tensor layers, for MLX)."""
    if any(layer.media_type in (MEDIA_TYPE_TENSOR, MEDIA_TYPE_JSON) for layer in manifest.layers):
        raise BadRequest(
            "this model is stored as safetensors tensors (an MLX model), which llama-server cannot run; "
            "pull a GGUF build of it instead"
        )


def _store_error(digest: str, e: OSError) -> StoreError:
    if e.errno == errno.ENOSPC:
        return StoreError(f"no space left on device while downloading {digest}: free some space and pull again (the download resumes)")
    return StoreError(f"writing {digest}: {e.strerror or e}")
