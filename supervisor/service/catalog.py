"""The catalog of local models (``/api/tags``); create/show/copy/delete grow here."""

from __future__ import annotations

from typing import Any

import structlog

from ..errors import StoreError
from ..protocol.ollama import format_local
from ..store import ModelStore, read_gguf_info
from ..store.gguf_info import capabilities
from ..store.manifests import MEDIA_TYPE_PROJECTOR, LocalModel

log = structlog.get_logger("supervisor.catalog")


class CatalogService:
    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def tags(self) -> dict[str, Any]:
        """Every local model, newest first, with the fields of Ollama's ``/api/tags``."""
        return {"models": [self._tag(m) for m in self.store.list_models()]}

    def _tag(self, model: LocalModel) -> dict[str, Any]:
        config = self.store.read_config(model) if model.manifest.config.digest else None
        details: dict[str, Any] = {
            "parent_model": "",
            "format": config.model_format if config else "",
            "family": config.model_family if config else "",
            "families": config.model_families if config else None,
            "parameter_size": config.model_type if config else "",
            "quantization_level": config.file_type if config else "",
        }
        if config and config.context_length:
            details["context_length"] = config.context_length
        if config and config.embedding_length:
            details["embedding_length"] = config.embedding_length
        entry: dict[str, Any] = {"name": model.display_name, "model": model.display_name}
        if config and config.remote_model:
            entry["remote_model"] = config.remote_model
        if config and config.remote_host:
            entry["remote_host"] = config.remote_host
        entry.update(modified_at=format_local(model.modified_at), size=model.size, digest=model.digest, details=details)
        caps = self._capabilities(model, config.capabilities if config else None)
        if caps:
            entry["capabilities"] = caps
        return entry

    def _capabilities(self, model: LocalModel, stored: list[str] | None) -> list[str]:
        if stored:
            return stored
        try:
            info = read_gguf_info(self.store.model_blob(model))
        except StoreError as e:
            log.warning("cannot read model weights", model=model.display_name, error=str(e))
            return []
        return capabilities(info, has_projector=bool(model.manifest.layers_of(MEDIA_TYPE_PROJECTOR)))
