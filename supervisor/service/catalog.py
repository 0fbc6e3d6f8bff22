"""The catalog of local models: list, show, copy, delete, blobs (no HTTP types here).

Reads go through ``ModelIndex`` (store manifests and in-place GGUFs alike). Changes to manifests take
``StoreGuard.lock`` and prune only blobs that no manifest references and no running create has pinned
(see ``store/guard.py``). Blocking file work runs in threads so a large store never stalls the loop.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from collections.abc import AsyncIterator
from typing import Any

import structlog

from ..errors import BadRequest, InvalidModelName, ModelNotFound, StoreError
from ..modelfile.parser import ModelfileSpec, format_parameters, render_modelfile
from ..protocol.ollama import check_options, format_local
from ..store import ModelName, ModelStore, read_gguf_info
from ..store.blobs import BlobWriter
from ..store.gguf_info import GGUFInfo, read_projector_info
from ..pool.pool import LoadedRunner, RunnerPool
from ..store.guard import StoreGuard
from ..store.manifests import ConfigV2
from ..store.index import ModelFiles, ModelIndex, ModelRef
from ..store.layout import normalize_digest
from ..store.prune import remove_unreferenced
from .planning import memory_report
from ..templates.capabilities import model_capabilities

log = structlog.get_logger("supervisor.catalog")

WRITE_BATCH = 1 << 20  # bytes handed to the writer thread at once (also how far a kill can lose)
# model_info keys Ollama leaves out of /api/show.
_HIDDEN_KEYS = frozenset({"general.name", "tokenizer.chat_template"})
_MAX_ARRAY = 5  # longer arrays are shown as [] unless verbose


FOREVER_SECONDS = 292 * 365.25 * 86400  # how Go's maximum duration shows as a date: ~292 years


class CatalogService:
    def __init__(self, store: ModelStore, index: ModelIndex, guard: StoreGuard, pool: RunnerPool) -> None:
        self.store = store
        self.index = index
        self.guard = guard
        self.pool = pool

    # -- list ---------------------------------------------------------------------------------------
    def tags(self) -> dict[str, Any]:
        """Every model, newest first, with the fields of Ollama's ``/api/tags``."""
        return {"models": [self._tag(ref) for ref in self.index.list_models()]}

    def models(self) -> list[ModelRef]:
        """Every model, newest first."""
        return self.index.list_models()

    def find(self, requested: str) -> ModelRef:
        """One model by name (any case), or ``model '<name:tag>' not found``."""
        name = ModelName.parse(requested)
        ref = self.index.find(name)
        if ref is None:
            raise ModelNotFound(name.display)
        return ref

    async def ps(self) -> dict[str, Any]:
        """``/api/ps``: the loaded models, the one expiring last first (reference/ollama-api.md §2.6).

        ``expires_at`` is when an idle runner unloads; while a request holds it, the time it would
        unload if that request ended now; ``keep_alive`` forever shows as now + 292 years, as in Go.
        ``size`` and ``size_vram`` are what the runner allocated (its load log; the model's files
        when the log had no buffer lines). Beyond Ollama, ``llamasup`` on each model holds the
        measured and estimated bytes per device, the layers on GPU and why it was loaded.
        """
        snapshot = self.pool.loaded()  # on the event loop: the pool's state is only read there
        return await asyncio.to_thread(self._ps, snapshot, time.time())

    def events(self) -> dict[str, Any]:
        """``GET /api/events`` (llamasup's own): the latest loads and unloads with their reasons."""
        return {
            "events": [
                {"at": format_local(datetime.fromtimestamp(e.at, timezone.utc)), "model": e.model, "action": e.action,
                 "reason": e.reason}
                for e in self.pool.events()
            ]
        }  # fmt: skip

    def _ps(self, snapshot: list[LoadedRunner], now: float) -> dict[str, Any]:
        rows = []
        for loaded in snapshot:
            ref = self.index.find(ModelName.parse(loaded.spec.name))
            if ref is None:  # deleted while loaded: nothing left to describe it; it unloads when idle
                continue
            if loaded.expires_at is not None:
                expires = loaded.expires_at
            else:
                expires = now + (FOREVER_SECONDS if loaded.keep_alive is None else loaded.keep_alive)
            measured = loaded.measured if loaded.measured is not None and loaded.measured.measured else None
            entry = {
                "name": ref.display_name,
                "model": ref.display_name,
                "size": measured.total if measured else ref.size,
                "digest": ref.digest,
                "details": self._details(ref)[0],
                "expires_at": format_local(datetime.fromtimestamp(expires, timezone.utc)),
                "size_vram": measured.gpu if measured else 0,
                "context_length": loaded.config.ctx_per_slot,
                "llamasup": memory_report(loaded),
            }
            rows.append((expires, entry))
        rows.sort(key=lambda row: -row[0])
        return {"models": [entry for _, entry in rows]}

    def _details(self, ref: ModelRef) -> tuple[dict[str, Any], ConfigV2 | None]:
        """Ollama's ``details`` object for a model, and its config (None when unreadable)."""
        try:
            config = self.index.config(ref)
        except StoreError as e:
            log.warning("cannot read model config", model=ref.display_name, error=str(e))
            config = None
        details: dict[str, Any] = {
            "parent_model": "",
            "format": config.model_format if config else "",
            "family": config.model_family if config else "",
            "families": config.model_families if config else None,
            "parameter_size": config.model_type if config else "",
            "quantization_level": config.file_type if config else "",
        }
        return details, config

    def _tag(self, ref: ModelRef) -> dict[str, Any]:
        details, config = self._details(ref)
        if config and config.context_length:
            details["context_length"] = config.context_length
        if config and config.embedding_length:
            details["embedding_length"] = config.embedding_length
        entry: dict[str, Any] = {"name": ref.display_name, "model": ref.display_name}
        if config and config.remote_model:
            entry["remote_model"] = config.remote_model
        if config and config.remote_host:
            entry["remote_host"] = config.remote_host
        entry.update(modified_at=format_local(ref.modified_at), size=ref.size, digest=ref.digest, details=details)
        caps = list(config.capabilities or []) if config else []
        if not caps:
            try:
                caps = self._capabilities(self.index.files(ref))
            except StoreError as e:
                log.warning("cannot read model weights", model=ref.display_name, error=str(e))
        if caps:
            entry["capabilities"] = caps
        return entry

    @staticmethod
    def _capabilities(files: ModelFiles, info: GGUFInfo | None = None) -> list[str]:
        info = info or read_gguf_info(files.weights)
        projector = read_projector_info(files.projectors)
        return model_capabilities(info, has_projector=bool(files.projectors), go_template=files.template, projector=projector)

    # -- show ---------------------------------------------------------------------------------------
    def show(self, data: dict[str, Any], *, user_agent: str = "") -> dict[str, Any]:
        """``/api/show``: everything about a model, in the field order of Ollama's ``ShowResponse``."""
        requested = data.get("model") or data.get("name") or ""
        if not isinstance(requested, str) or not requested.strip():
            raise BadRequest("model is required")
        ref = self.find(requested)
        files = self.index.files(ref)
        config = self.index.config(ref)
        info = read_gguf_info(files.weights)
        verbose = data.get("verbose") is True
        params = dict(files.params)
        if isinstance(data.get("options"), dict):
            params.update(check_options(data["options"]))
        system = data.get("system") if isinstance(data.get("system"), str) and data.get("system") else files.system

        out: dict[str, Any] = {}
        if files.licenses:
            out["license"] = "\n".join(files.licenses)
        out["modelfile"] = render_modelfile(
            ModelfileSpec(
                short_name=ref.display_name,
                model_path=str(files.weights),
                adapters=tuple(str(p) for p in files.adapters),
                projectors=tuple(str(p) for p in files.projectors),
                template=files.template or "",
                system=system or "",
                renderer=config.renderer,
                parser=config.parser,
                requires=config.requires,
                parameters=params,
                licenses=tuple(files.licenses),
                messages=tuple(files.messages),
            )
        )
        if params:
            out["parameters"] = format_parameters(params)
        template = files.template if files.template is not None else info.chat_template
        if template:
            out["template"] = template
        if system:
            out["system"] = system
        if config.renderer:
            out["renderer"] = config.renderer
        if config.parser:
            out["parser"] = config.parser
        out["details"] = {
            "parent_model": files.weights_from if ref.local is not None else "",
            "format": config.model_format,
            "family": config.model_family,
            "families": config.model_families,
            "parameter_size": config.model_type,
            "quantization_level": config.file_type or info.file_type,
        }
        if files.messages:
            out["messages"] = files.messages
        if config.remote_model:
            out["remote_model"] = config.remote_model
        if config.remote_host:
            out["remote_host"] = config.remote_host
        model_info = _model_info(info, verbose)
        if user_agent.startswith("GitHubCopilotChat/"):
            model_info["general.basename"] = requested
        out["model_info"] = model_info
        if files.projectors:
            try:
                out["projector_info"] = _model_info(read_gguf_info(files.projectors[0]), verbose)
            except StoreError as e:
                log.warning("cannot read projector", model=ref.display_name, error=str(e))
        if info.tensors:
            out["tensors"] = [{"name": t.name, "type": t.type, "shape": list(t.shape)} for t in info.tensors]
        caps = list(config.capabilities or []) or self._capabilities(files, info)
        if caps:
            out["capabilities"] = caps
        out["modified_at"] = format_local(ref.modified_at)
        if config.requires:
            out["requires"] = config.requires
        return out

    # -- copy and delete ----------------------------------------------------------------------------
    async def copy(self, data: dict[str, Any]) -> None:
        """``/api/copy``: the destination gets the source's manifest bytes (blobs are shared)."""
        source, destination = str(data.get("source") or ""), str(data.get("destination") or "")
        src_name = ModelName.try_parse(source)
        if src_name is None:
            raise InvalidModelName(f'source "{source}" is invalid')
        dst_name = ModelName.try_parse(destination)
        if dst_name is None:
            raise InvalidModelName(f'destination "{destination}" is invalid')
        ref = await asyncio.to_thread(self.index.find, src_name)
        if ref is None:
            raise ModelNotFound(source, template='model "{name}" not found')
        if ref.local is None:
            raise BadRequest(_in_place_message(ref, "copied"))
        manifest_bytes = await asyncio.to_thread(ref.local.path.read_bytes)
        async with self.guard.lock:
            await asyncio.to_thread(self.store.write_manifest, dst_name, manifest_bytes)
        log.info("copied model", source=ref.display_name, destination=dst_name.display)

    async def delete(self, data: dict[str, Any]) -> None:
        """``/api/delete``: remove the manifest, then the blobs nothing else references."""
        requested = str(data.get("model") or data.get("name") or "")
        name = ModelName.try_parse(requested)
        if name is None:
            raise InvalidModelName(f'name "{requested}" is invalid')
        async with self.guard.lock:
            ref = await asyncio.to_thread(self.index.find, name)
            if ref is None:
                raise ModelNotFound(requested)
            if ref.local is None:
                raise BadRequest(_in_place_message(ref, "deleted"))
            local = ref.local
            await asyncio.to_thread(self.store.delete_manifest, local)
            removed = await asyncio.to_thread(
                remove_unreferenced, self.store, local.manifest.digests, self.guard.pinned()
            )
        log.info("deleted model", model=ref.display_name, blobs_removed=len(removed))

    # -- blobs --------------------------------------------------------------------------------------
    def blob_exists(self, digest: str) -> bool:
        """``HEAD /api/blobs/:digest``; ``BadRequest`` for a malformed digest."""
        return self.store.layout.blob_path(normalize_digest(digest)).is_file()

    async def upload_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> str:
        """Stream a blob into the store, verified against ``digest`` before it becomes visible.

        Returns the digest written. A mismatch, an error or a cancelled request leaves nothing behind
        (the temp file is removed); two uploads of the same digest both succeed, the second rename
        replacing identical bytes.
        """
        expected = normalize_digest(digest)
        writer = await asyncio.to_thread(BlobWriter, self.store.layout)
        try:
            batch: list[bytes] = []
            size = 0
            async for chunk in chunks:
                batch.append(chunk)
                size += len(chunk)
                if size >= WRITE_BATCH:
                    await asyncio.to_thread(writer.write, b"".join(batch))
                    batch, size = [], 0
            if batch:
                await asyncio.to_thread(writer.write, b"".join(batch))
            if writer.digest != expected:
                raise BadRequest(f'digest mismatch, expected "{digest}", got "{writer.digest}"')
            return await asyncio.to_thread(writer.commit)
        finally:
            await asyncio.shield(asyncio.to_thread(writer.abort))


def _in_place_message(ref: ModelRef, verb: str) -> str:
    path = ref.in_place.path if ref.in_place else "?"
    return (
        f"model '{ref.display_name}' is a GGUF file used in place ({path}) and cannot be {verb}; "
        "manage the file itself, or remove its directory from LLAMASUP_MODEL_DIRS"
    )


def _model_info(info: GGUFInfo, verbose: bool) -> dict[str, Any]:
    """GGUF key/values as ``/api/show`` lists them: sorted, minus the hidden keys, long arrays elided."""
    out: dict[str, Any] = {}
    for key in sorted(info.metadata):
        if key in _HIDDEN_KEYS:
            continue
        value = info.metadata[key]
        if isinstance(value, tuple):
            value = list(value) if verbose or len(value) <= _MAX_ARRAY else []
        out[key] = value
    out.setdefault("general.parameter_count", info.parameter_count)
    return dict(sorted(out.items()))
