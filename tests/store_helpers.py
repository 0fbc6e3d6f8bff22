"""Putting a GGUF into an Ollama-layout store exactly as Ollama's create would (tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from supervisor.store import (
    CONFIG_MEDIA_TYPE,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_SYSTEM,
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
) -> ModelName:
    """Write the GGUF blob, a params/system layer if given, the config blob and the manifest."""
    layout = StoreLayout(models_dir)
    layers = [Layer(mediaType=MEDIA_TYPE_MODEL, digest=write_blob_from_file(layout, gguf_path), size=gguf_path.stat().st_size)]
    if system is not None:
        data = system.encode()
        layers.append(Layer(mediaType=MEDIA_TYPE_SYSTEM, digest=write_blob_bytes(layout, data), size=len(data)))
    if params:
        data = orjson.dumps(params)
        layers.append(Layer(mediaType=MEDIA_TYPE_PARAMS, digest=write_blob_bytes(layout, data), size=len(data)))
    config = config_from_gguf(read_gguf_info(gguf_path)).to_bytes()
    manifest = Manifest(
        config=Layer(mediaType=CONFIG_MEDIA_TYPE, digest=write_blob_bytes(layout, config), size=len(config)),
        layers=layers,
    )
    return ModelStore(layout).write_manifest(ModelName.parse(name), manifest.to_bytes())
