"""One view of every usable model: the store's manifests and the GGUFs used in place.

Routes ask this index, never the two sources directly, so an in-place GGUF works wherever a pulled
model does. A store model wins a name clash (it is what Ollama would serve). ``ModelRef`` is cheap to
list (no GGUF parsing for store models); ``ModelFiles`` holds what running or showing a model needs.
All methods are blocking file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .gguf_info import config_from_gguf, read_gguf_info
from .inplace import InPlaceModel, scan_model_dirs
from .manifests import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    ConfigV2,
    LocalModel,
    ModelStore,
)
from .names import ModelName


@dataclass(frozen=True)
class ModelRef:
    """A model found by name or listed: exactly one of ``local`` and ``in_place`` is set."""

    name: ModelName
    modified_at: datetime
    size: int
    digest: str
    local: LocalModel | None = None
    in_place: InPlaceModel | None = None

    @property
    def display_name(self) -> str:
        return self.name.display


@dataclass(frozen=True)
class ModelFiles:
    """Everything a model is made of, read from its layers (or its file, in place)."""

    ref: ModelRef
    weights: Path
    weights_from: str  # the model layer's ``from`` (details.parent_model)
    projectors: tuple[Path, ...] = ()
    adapters: tuple[Path, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    template: str | None = None  # a Go TEMPLATE layer; None = the GGUF's own chat template
    messages: list[dict[str, Any]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)


class ModelIndex:
    def __init__(self, store: ModelStore, model_dirs: tuple[Path, ...] = ()) -> None:
        self.store = store
        self.model_dirs = model_dirs
        # A store model's files by manifest (path and digest): its layers are content-addressed, so
        # they cannot change under the same manifest. Read by every request; treat as read-only.
        self._files: dict[tuple[Path, str], ModelFiles] = {}

    def list_models(self) -> list[ModelRef]:
        """Every model, newest first (store models and in-place GGUFs)."""
        refs = [_from_local(m) for m in self.store.list_models()]
        taken = {r.name.casefold_key for r in refs}
        refs += [_from_in_place(m) for m in self._in_place() if m.name.casefold_key not in taken]
        refs.sort(key=lambda r: (-r.modified_at.timestamp(), str(r.name)))
        return refs

    def find(self, name: ModelName) -> ModelRef | None:
        """The model ``name`` refers to (ignoring case), or ``None``."""
        local = self.store.resolve(name)
        if local is not None:
            return _from_local(local)
        for model in self._in_place():
            if model.name.equal_fold(name):
                return _from_in_place(model)
        return None

    def config(self, ref: ModelRef) -> ConfigV2:
        """The config blob, or for an in-place GGUF the one a create would write."""
        if ref.local is not None:
            return self.store.read_config(ref.local)
        assert ref.in_place is not None
        return config_from_gguf(read_gguf_info(ref.in_place.path))

    def files(self, ref: ModelRef) -> ModelFiles:
        """Paths and text layers of a model; ``StoreError`` if its weights are missing."""
        if ref.in_place is not None:
            m = ref.in_place
            return ModelFiles(
                ref=ref,
                weights=m.path,
                weights_from=str(m.path),
                projectors=(m.projector,) if m.projector else (),
            )
        assert ref.local is not None
        key = (ref.local.path, ref.local.digest)
        cached = self._files.get(key)
        if cached is not None and cached.ref == ref:
            return cached
        if len(self._files) >= _FILES_KEPT:
            self._files.clear()
        self._files[key] = files = self._read_files(ref)
        return files

    def _read_files(self, ref: ModelRef) -> ModelFiles:
        assert ref.local is not None
        local, store = ref.local, self.store
        weights = store.model_blob(local)
        model_layer = local.manifest.layers_of(MEDIA_TYPE_MODEL)[0]
        licenses = [
            store.read_blob(local, layer.digest).decode("utf-8", errors="replace")
            for layer in local.manifest.layers_of(MEDIA_TYPE_LICENSE)
        ]
        return ModelFiles(
            ref=ref,
            weights=weights,
            weights_from=model_layer.from_ or "",
            projectors=tuple(_existing(store.layer_blobs(local, MEDIA_TYPE_PROJECTOR), ref)),
            adapters=tuple(_existing(store.layer_blobs(local, MEDIA_TYPE_ADAPTER), ref)),
            params=store.read_params(local),
            system=store.read_text_layer(local, MEDIA_TYPE_SYSTEM),
            template=store.read_text_layer(local, MEDIA_TYPE_TEMPLATE),
            messages=store.read_messages(local),
            licenses=licenses,
        )

    def _in_place(self) -> list[InPlaceModel]:
        return scan_model_dirs(self.model_dirs) if self.model_dirs else []


_FILES_KEPT = 256


def _existing(paths: list[Path], ref: ModelRef) -> list[Path]:
    for path in paths:
        if not path.is_file():
            raise StoreError(
                f"model '{ref.display_name}' is missing blob {path.name}; pull or create the model again"
            )
    return paths


def _from_local(m: LocalModel) -> ModelRef:
    return ModelRef(name=m.name, modified_at=m.modified_at, size=m.size, digest=m.digest, local=m)


def _from_in_place(m: InPlaceModel) -> ModelRef:
    return ModelRef(name=m.name, modified_at=m.modified_at, size=m.size, digest=m.digest, in_place=m)
