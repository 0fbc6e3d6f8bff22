"""Putting a GGUF into an Ollama-layout store exactly as Ollama's create would (tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from supervisor.store import (
    CONFIG_MEDIA_TYPE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    Layer,
    Manifest,
    ModelName,
    ModelStore,
    StoreLayout,
    config_from_gguf,
    read_gguf_info,
    write_blob_bytes,
    write_blob_from_file,
)


def install_gguf(
    models_dir: Path,
    name: str,
    gguf_path: Path,
    *,
    params: dict[str, Any] | None = None,
    system: str | None = None,
    template: str | None = None,
    messages: list[dict[str, str]] | None = None,
    projector: Path | None = None,
) -> ModelName:
    """Write the GGUF blob, the text layers given (Ollama's layer order), the config blob and the manifest."""
    layout = StoreLayout(models_dir)
    layers = [Layer(mediaType=MEDIA_TYPE_MODEL, digest=write_blob_from_file(layout, gguf_path), size=gguf_path.stat().st_size)]
    if projector is not None:
        layers.append(Layer(mediaType=MEDIA_TYPE_PROJECTOR, digest=write_blob_from_file(layout, projector), size=projector.stat().st_size))

    def text_layer(media_type: str, data: bytes) -> None:
        layers.append(Layer(mediaType=media_type, digest=write_blob_bytes(layout, data), size=len(data)))

    if template is not None:
        text_layer(MEDIA_TYPE_TEMPLATE, template.encode())
    if system is not None:
        text_layer(MEDIA_TYPE_SYSTEM, system.encode())
    if params:
        text_layer(MEDIA_TYPE_PARAMS, orjson.dumps(params))
    if messages:
        text_layer(MEDIA_TYPE_MESSAGES, orjson.dumps(messages))
    config = config_from_gguf(read_gguf_info(gguf_path)).to_bytes()
    manifest = Manifest(
        config=Layer(mediaType=CONFIG_MEDIA_TYPE, digest=write_blob_bytes(layout, config), size=len(config)),
        layers=layers,
    )
    return ModelStore(layout).write_manifest(ModelName.parse(name), manifest.to_bytes())
