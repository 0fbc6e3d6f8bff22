"""Manifests and the read side of the model store.

A manifest (``manifests/<host>/<namespace>/<model>/<tag>``) lists a config blob and layer blobs by
digest. Manifests pulled from registries are stored byte-for-byte as received and may carry keys we
do not model (``annotations``, ``urls``…); they are ignored on reading, never fatal. A manifest's
identity (``digest`` in ``/api/tags``) is the sha256 of its file bytes, so nothing here re-encodes a
manifest that was read.

``ModelStore`` re-reads the files on every call: stores hold tens of models, ``/api/tags`` wants the
current state, and there is then no cache to invalidate. It never parses GGUF files (see
``gguf_info``). One corrupt manifest is skipped with a warning when listing, and is a ``StoreError``
when that model is asked for by name. All methods are blocking file I/O.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import gojson
from ..errors import InvalidModelName, LlamasupError, StoreError
from .blobs import BLOB_MODE, ensure_dirs, fsync_dir
from .layout import StoreLayout
from .names import ModelName

log = structlog.get_logger(__name__)

# Media types (reference §8.3).
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_MODEL = "application/vnd.ollama.image.model"
MEDIA_TYPE_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TYPE_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_TYPE_DRAFT = "application/vnd.ollama.image.draft"
MEDIA_TYPE_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_TYPE_PROMPT = "application/vnd.ollama.image.prompt"  # legacy name of TEMPLATE
MEDIA_TYPE_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_TYPE_PARAMS = "application/vnd.ollama.image.params"
MEDIA_TYPE_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_TYPE_LICENSE = "application/vnd.ollama.image.license"
MEDIA_TYPE_EMBED = "application/vnd.ollama.image.embed"  # deprecated, ignored
MEDIA_TYPE_TENSOR = "application/vnd.ollama.image.tensor"  # MLX, not for llama-server
MEDIA_TYPE_JSON = "application/vnd.ollama.image.json"  # MLX, not for llama-server

# Media types read as one another (Ollama treats "prompt" layers as templates).
_MEDIA_ALIASES: dict[str, frozenset[str]] = {
    MEDIA_TYPE_TEMPLATE: frozenset({MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT}),
    MEDIA_TYPE_PROMPT: frozenset({MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT}),
}


class Layer(BaseModel):
    """One manifest entry (also the shape of the manifest's ``config``)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    media_type: str = Field(alias="mediaType")
    digest: str
    size: int = 0
    from_: str | None = Field(default=None, alias="from")
    name: str | None = None

    def to_go(self) -> dict[str, Any]:
        """The dict Go marshals: field order of Ollama's ``Layer``, ``from``/``name`` omitempty."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out


class Manifest(BaseModel):
    """An image manifest (schema 2)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str = Field(default=MANIFEST_MEDIA_TYPE, alias="mediaType")
    config: Layer
    layers: list[Layer] = Field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Parse manifest bytes; ``StoreError`` if they are not a manifest."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise StoreError(f"invalid manifest: {_first_error(exc)}") from exc

    def to_bytes(self) -> bytes:
        """The bytes Ollama's create writes: Go-encoded JSON and a trailing newline."""
        body = {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_go(),
            "layers": [layer.to_go() for layer in self.layers],
        }
        return gojson.dumps(body) + b"\n"

    def layers_of(self, media_type: str) -> list[Layer]:
        """Layers of one media type, in manifest order (``prompt`` counts as ``template``)."""
        wanted = _MEDIA_ALIASES.get(media_type, frozenset({media_type}))
        return [layer for layer in self.layers if layer.media_type in wanted]

    @property
    def total_size(self) -> int:
        """Sum of the layer sizes and the config size (``/api/tags`` ``size``)."""
        return self.config.size + sum(layer.size for layer in self.layers)

    @property
    def digests(self) -> list[str]:
        """Every blob digest this manifest references, config first."""
        return [self.config.digest, *(layer.digest for layer in self.layers)]


class ConfigV2(BaseModel):
    """The config blob (Ollama's ``model.ConfigV2``); unknown keys such as ``rootfs`` are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model_format: str = ""
    model_family: str = ""
    model_families: list[str] | None = None
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: list[str] | None = None
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    draft: dict[str, Any] | None = None
    architecture: str = ""
    os: str = ""

    def to_bytes(self) -> bytes:
        """Go-encoded JSON, in ``ConfigV2`` field order with its ``omitempty`` fields left out."""
        out: dict[str, Any] = {
            "model_format": self.model_format,
            "model_family": self.model_family,
            "model_families": self.model_families,
            "model_type": self.model_type,
            "file_type": self.file_type,
        }
        optional: dict[str, Any] = {
            "renderer": self.renderer,
            "parser": self.parser,
            "requires": self.requires,
            "remote_host": self.remote_host,
            "remote_model": self.remote_model,
            "capabilities": self.capabilities,
            "context_length": self.context_length,
            "embedding_length": self.embedding_length,
            "base_name": self.base_name,
            "draft": self.draft,
        }
        out.update({k: v for k, v in optional.items() if v})
        out["architecture"] = self.architecture
        out["os"] = self.os
        return gojson.dumps(out)


@dataclass(frozen=True)
class LocalModel:
    """A model present in the store, as its manifest file says."""

    name: ModelName  # as stored on disk (case preserved)
    manifest: Manifest
    digest: str  # sha256 hex of the manifest file bytes, no prefix
    modified_at: datetime  # manifest mtime, aware, local time zone
    size: int  # layers + config
    path: Path  # the manifest file

    @property
    def display_name(self) -> str:
        return self.name.display


class ModelStore:
    """Reads models from an Ollama-layout store and writes manifests atomically."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        # Parsed manifests by file identity (path, inode, size, mtime, ctime), since every request
        # resolves its model: a manifest renamed over or rewritten in place (ctime moves even when
        # mtime is set back) is read again.
        self._parsed: dict[tuple[str, int, int, int, int], LocalModel] = {}

    # -- listing and lookup -------------------------------------------------------------------

    def list_models(self) -> list[LocalModel]:
        """Every readable manifest in the store, newest first; corrupt ones are logged and skipped."""
        models: list[LocalModel] = []
        for name, path in self.manifest_files():
            try:
                models.append(self._load(name, path))
            except FileNotFoundError:
                continue  # deleted while we listed
            except (OSError, StoreError) as exc:
                log.warning("skipping unreadable manifest", path=str(path), error=str(exc))
        models.sort(key=lambda m: (-m.modified_at.timestamp(), str(m.name)))
        return models

    def find_name(self, name: ModelName) -> ModelName | None:
        """The name as stored on disk of the manifest that matches ``name`` ignoring case."""
        directory = self.layout.manifests_dir
        found: list[str] = []
        for depth, part in enumerate(name.parts):
            entry = _match_entry(directory, part, want_file=depth == 3)
            if entry is None:
                return None
            found.append(entry)
            directory = directory / entry
        host, namespace, model, tag = found
        return ModelName(host, namespace, model, tag, scheme=name.scheme)

    def resolve(self, name: ModelName) -> LocalModel | None:
        """The model ``name`` refers to (each part matched ignoring case), or ``None`` if absent.

        A manifest that exists but cannot be read is a ``StoreError``, not ``None``.
        """
        stored = name  # the exact spelling wins (one stat when it exists)
        path = self.layout.manifest_path(name)
        st = _regular_file(path)
        if st is None:
            found = self.find_name(name)
            if found is None:
                return None
            stored, path = found, self.layout.manifest_path(found)
            st = _regular_file(path)
            if st is None:
                return None
        try:
            return self._load(stored, path, st)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"reading manifest of '{stored.display}': {exc}") from exc

    # -- reading a model's blobs --------------------------------------------------------------

    def blob_path(self, model: LocalModel, digest: str) -> Path:
        """Path of a blob the manifest references; ``StoreError`` for a malformed digest."""
        try:
            return self.layout.blob_path(digest)
        except LlamasupError as exc:
            raise StoreError(
                f"manifest of '{model.name.display}' references an invalid digest {digest!r}"
            ) from exc

    def read_blob(self, model: LocalModel, digest: str) -> bytes:
        """A referenced blob's bytes; ``StoreError`` naming the model if it is missing."""
        path = self.blob_path(model, digest)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(
                f"model '{model.name.display}' is missing blob {digest} ({path}); "
                "pull or create the model again"
            ) from exc
        except OSError as exc:
            raise StoreError(f"reading blob {path}: {exc}") from exc

    def read_config(self, model: LocalModel) -> ConfigV2:
        """The model's config blob."""
        data = self.read_blob(model, model.manifest.config.digest)
        try:
            return ConfigV2.model_validate_json(data)
        except ValidationError as exc:
            raise StoreError(
                f"config blob of '{model.name.display}' is invalid: {_first_error(exc)}"
            ) from exc

    def layer_blobs(self, model: LocalModel, media_type: str) -> list[Path]:
        """Paths of the blobs of every layer of ``media_type`` (existence not checked)."""
        return [self.blob_path(model, layer.digest) for layer in model.manifest.layers_of(media_type)]

    def model_blob(self, model: LocalModel) -> Path:
        """The weights (``application/vnd.ollama.image.model`` layer); ``StoreError`` if absent."""
        paths = self.layer_blobs(model, MEDIA_TYPE_MODEL)
        if not paths:
            raise StoreError(f"model '{model.name.display}' has no model layer")
        path = paths[0]
        if not path.is_file():
            raise StoreError(
                f"model '{model.name.display}' is missing its weights blob ({path}); "
                "pull or create the model again"
            )
        return path

    def read_text_layer(self, model: LocalModel, media_type: str) -> str | None:
        """A text layer (template, system, license); ``None`` if the model has none.

        As Ollama: the last layer of a type wins, except licenses, which are joined with ``\\n``.
        """
        layers = model.manifest.layers_of(media_type)
        if not layers:
            return None
        if media_type == MEDIA_TYPE_LICENSE:
            return "\n".join(self._read_text(model, layer) for layer in layers)
        return self._read_text(model, layers[-1])

    def read_params(self, model: LocalModel) -> dict[str, Any]:
        """Default options from the params layer(s), merged in order; ``{}`` if there are none."""
        params: dict[str, Any] = {}
        for layer in model.manifest.layers_of(MEDIA_TYPE_PARAMS):
            value = self._read_json(model, layer)
            if not isinstance(value, dict):
                raise StoreError(f"params layer of '{model.name.display}' is not a JSON object")
            params.update(value)
        return params

    def read_messages(self, model: LocalModel) -> list[dict[str, Any]]:
        """The MESSAGE history (last messages layer); ``[]`` if there is none."""
        layers = model.manifest.layers_of(MEDIA_TYPE_MESSAGES)
        if not layers:
            return []
        value = self._read_json(model, layers[-1])
        if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            raise StoreError(f"messages layer of '{model.name.display}' is not a list of objects")
        return [dict(message) for message in value]

    # -- writing ------------------------------------------------------------------------------

    def write_manifest(self, name: ModelName, manifest_bytes: bytes) -> ModelName:
        """Atomically write (or replace) the manifest of ``name``; returns the name written.

        If a manifest whose name differs only in case exists, it is the one replaced (Ollama
        canonicalizes names against the store before writing: creating ``FOO`` overwrites ``foo``).
        The bytes are stored as given (their sha256 is the model's digest), once they parse.
        """
        Manifest.parse(manifest_bytes)
        target = self.find_name(name) or name
        path = self.layout.manifest_path(target)
        try:
            ensure_dirs(path.parent)
            # A leading "." makes the temp file an invalid tag, so listing never sees it.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StoreError(f"writing manifest of '{target.display}': {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(manifest_bytes)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, BLOB_MODE)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"writing manifest of '{target.display}': {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return target

    def delete_manifest(self, model: LocalModel) -> None:
        """Remove a model's manifest and the directories that leaves empty (blobs are not touched)."""
        try:
            model.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"deleting manifest of '{model.name.display}': {exc}") from exc
        fsync_dir(model.path.parent)
        directory = model.path.parent
        while directory != self.layout.manifests_dir and self.layout.manifests_dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                break  # not empty
            directory = directory.parent

    # -- internals ----------------------------------------------------------------------------

    def manifest_files(self) -> list[tuple[ModelName, Path]]:
        """``(name, path)`` of every regular file at depth host/namespace/model/tag whose path
        parts form a valid name (temp files and stray files are not models)."""
        out: list[tuple[ModelName, Path]] = []
        for host in _subdirs(self.layout.manifests_dir):
            for namespace in _subdirs(host):
                for model in _subdirs(namespace):
                    for tag in _files(model):
                        try:
                            name = ModelName(host.name, namespace.name, model.name, tag.name)
                        except InvalidModelName:
                            continue
                        out.append((name, tag))
        return out

    def _load(self, name: ModelName, path: Path, st: os.stat_result | None = None) -> LocalModel:
        """The parsed manifest at ``path``, from the cache while the file's identity (``st``, taken
        now when not given) is unchanged. Manifests are replaced by rename, so a file read after
        the stat is whole, and one replaced since has a new identity the next time."""
        st = st or os.stat(path)
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._parsed.get(key)
        if cached is not None and cached.name == name:
            return cached
        with path.open("rb") as f:
            data = f.read()
        manifest = Manifest.parse(data)
        if len(self._parsed) >= _PARSED_KEPT:
            self._parsed.clear()
        self._parsed[key] = model = LocalModel(
            name=name,
            manifest=manifest,
            digest=hashlib.sha256(data).hexdigest(),
            modified_at=datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=timezone.utc).astimezone(),
            size=manifest.total_size,
            path=path,
        )
        return model

    def _read_text(self, model: LocalModel, layer: Layer) -> str:
        return self.read_blob(model, layer.digest).decode("utf-8", errors="replace")

    def _read_json(self, model: LocalModel, layer: Layer) -> Any:
        try:
            return json.loads(self.read_blob(model, layer.digest))
        except ValueError as exc:
            raise StoreError(
                f"{layer.media_type} layer of '{model.name.display}' is not valid JSON: {exc}"
            ) from exc


_PARSED_KEPT = 512


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def _scandir(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        log.warning("cannot list manifest directory", path=str(directory), error=str(exc))
        return []


def _subdirs(directory: Path) -> list[Path]:
    return [Path(e.path) for e in _scandir(directory) if e.is_dir(follow_symlinks=True)]


def _files(directory: Path) -> list[Path]:
    return [Path(e.path) for e in _scandir(directory) if e.is_file(follow_symlinks=True)]


def _match_entry(directory: Path, part: str, *, want_file: bool) -> str | None:
    """The entry of ``directory`` named ``part``, exactly if present, else ignoring case."""
    folded: list[str] = []
    for entry in _scandir(directory):
        ok = entry.is_file() if want_file else entry.is_dir()
        if not ok:
            continue
        if entry.name == part:
            return entry.name
        if entry.name.lower() == part.lower():
            folded.append(entry.name)
    return min(folded) if folded else None


def _regular_file(path: Path) -> os.stat_result | None:
    """``path``'s stat when it is a regular file (following links), else None."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None
