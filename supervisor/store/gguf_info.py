"""What llamasup needs to know about a GGUF file, read once per file version.

``read_gguf_info`` parses the header (key/value metadata and tensor descriptors, never the tensor
data) with ``gguf.GGUFReader`` and caches the result by ``(path, size, mtime_ns)``: blobs are
content-addressed and never change, and an in-place GGUF that is rewritten gets a new cache entry.
Parsing a large vocabulary takes a noticeable fraction of a second, so listing models never calls this.

The cached ``GGUFInfo`` is shared by every caller and is immutable: ``metadata`` is a read-only
mapping and array values are tuples. Callers that need to modify it (``/api/show`` truncating arrays,
setting ``general.basename``) build their own dict from it.

The rest is pure: parameter-size formatting, capabilities and the config blob of a new model.
"""

from __future__ import annotations

import collections
import os
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import gguf
import numpy as np

from ..errors import StoreError
from .manifests import ConfigV2

GGUF_MAGIC = b"GGUF"
_CACHE_SIZE = 32

# The file types llama.cpp guesses from the most common tensor type when general.file_type is absent.
_GUESS_FROM_TENSOR_TYPE = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "MXFP4": "MXFP4_MOE"}


@dataclass(frozen=True)
class TensorInfo:
    """A tensor descriptor; ``shape`` in GGUF (ggml) order, as ``/api/show`` reports it."""

    name: str
    type: str
    shape: tuple[int, ...]
    n_elements: int


@dataclass(frozen=True, eq=False)
class GGUFInfo:
    """Header facts of one GGUF file."""

    architecture: str
    name: str
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    has_pooling_type: bool
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    file_type: str
    parameter_count: int
    metadata: Mapping[str, Any]  # every KV pair; arrays as tuples; read-only
    tensors: tuple[TensorInfo, ...]

    @property
    def pooling_type(self) -> int | None:
        """llama.cpp's pooling enum from ``<arch>.pooling_type`` (0 none, 1 mean, 2 cls, 3 last,
        4 rank), None when the GGUF declares none (a generative model)."""
        value = self.metadata.get(self.arch_key("pooling_type"))
        return int(value) if isinstance(value, int) else None

    def arch_key(self, suffix: str) -> str:
        """``<architecture>.<suffix>``, the spelling of architecture-specific keys."""
        return f"{self.architecture}.{suffix}"

    def get_int(self, key: str) -> int | None:
        """An integer value (the largest element of a per-layer array), or ``None``."""
        return _as_int(self.metadata.get(key))


# -- reading ------------------------------------------------------------------------------------


def read_gguf_info(path: Path) -> GGUFInfo:
    """Header facts of the GGUF at ``path``; ``StoreError`` if it is missing or not GGUF.

    Parsed once per file version (path, size, mtime). A first parse can take seconds (gguf-py reads
    every token of a large vocabulary), so code on the event loop asks ``cached_gguf_info`` first
    and parses in a thread on a miss."""
    key = _key(path)
    with _lock:
        info = _cache.get(key)
        if info is not None:
            _cache.move_to_end(key)
            return info
    info = _read(path)
    with _lock:
        _cache[key] = info
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return info


def read_projector_info(projectors: Sequence[Path]) -> GGUFInfo | None:
    """The first projector layer's header (`projector_media` reads it), or None: no projector, or
    one that cannot be read (the runner reports that when it loads)."""
    if not projectors:
        return None
    try:
        return read_gguf_info(projectors[0])
    except StoreError:
        return None


def cached_gguf_info(path: Path) -> GGUFInfo | None:
    """The parsed header if this version of the file was read before (a stat, no parsing), else None."""
    key = _key(path)
    with _lock:
        return _cache.get(key)


def _key(path: Path) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror or exc}") from exc
    return str(path), st.st_size, st.st_mtime_ns


_cache: collections.OrderedDict[tuple[str, int, int], GGUFInfo] = collections.OrderedDict()
_lock = threading.Lock()


def _read(path: Path) -> GGUFInfo:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror or exc}") from exc
    if magic != GGUF_MAGIC:
        raise StoreError(f"{path}: not in GGUF format")
    try:
        reader = gguf.GGUFReader(path, "r")
        metadata = {
            name: _field_value(field)
            for name, field in reader.fields.items()
            if not name.startswith("GGUF.")  # the reader's pseudo-fields for the header
        }
        tensors = tuple(
            TensorInfo(
                name=t.name,
                type=t.tensor_type.name,
                shape=tuple(int(d) for d in t.shape),
                n_elements=int(t.n_elements),
            )
            for t in reader.tensors
        )
    except (ValueError, IndexError, KeyError, TypeError, OSError) as exc:
        raise StoreError(f"{path}: invalid GGUF file: {exc}") from exc
    return info_from_metadata(metadata, tensors)


def info_from_metadata(metadata: dict[str, Any], tensors: tuple[TensorInfo, ...]) -> GGUFInfo:
    """Build a ``GGUFInfo`` from decoded metadata and tensors (pure; used by ``read_gguf_info``)."""
    arch = _as_str(metadata.get("general.architecture")) or ""

    def arch_int(suffix: str) -> int | None:
        return _as_int(metadata.get(f"{arch}.{suffix}"))

    return GGUFInfo(
        architecture=arch,
        name=_as_str(metadata.get("general.name")) or "",
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        block_count=arch_int("block_count"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=arch_int("attention.head_count_kv"),
        has_pooling_type=f"{arch}.pooling_type" in metadata,
        chat_template=_as_str(metadata.get("tokenizer.chat_template")),
        bos_token_id=_as_int(metadata.get("tokenizer.ggml.bos_token_id")),
        eos_token_id=_as_int(metadata.get("tokenizer.ggml.eos_token_id")),
        file_type=_file_type_name(metadata.get("general.file_type"), tensors),
        parameter_count=sum(t.n_elements for t in tensors),
        metadata=MappingProxyType(metadata),
        tensors=tensors,
    )


def _field_value(field: Any) -> Any:
    """Decode one ``ReaderField``: strings as ``str``, arrays as tuples, float32 at float32 precision."""
    types = field.types
    if not types:
        return None
    main = types[0]
    if main == gguf.GGUFValueType.ARRAY:
        sub = types[-1]
        if sub == gguf.GGUFValueType.STRING:
            return tuple(_decode(field.parts[i]) for i in field.data)
        if not field.data:
            return ()
        values = np.concatenate([field.parts[i] for i in field.data])
        return tuple(_scalars(values, sub))
    if main == gguf.GGUFValueType.STRING:
        return _decode(field.parts[-1])
    return _scalars(field.parts[-1], main)[0]


def _decode(part: Any) -> str:
    return bytes(part).decode("utf-8", errors="replace")


def _scalars(values: Any, value_type: Any) -> list[Any]:
    if value_type == gguf.GGUFValueType.FLOAT32:
        # float32 → shortest decimal that round-trips in float32 (1e-05, not 9.99999974737875e-06),
        # which is how Go prints a float32 in /api/show model_info.
        return [float(str(v)) for v in np.asarray(values, dtype=np.float32)]
    if value_type == gguf.GGUFValueType.BOOL:
        return [bool(v) for v in values.tolist()]
    result: list[Any] = values.tolist()
    return result


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return int(max(value))
    return None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _file_type_name(value: Any, tensors: tuple[TensorInfo, ...]) -> str:
    """Ollama's name for ``general.file_type``, or llama.cpp's guess from the tensor types."""
    guessed = int(gguf.LlamaFileType.GUESSED)
    if isinstance(value, int) and not isinstance(value, bool) and value != guessed:
        return file_type_name(value)
    return guess_file_type(tensors)


def file_type_name(value: int) -> str:
    """``general.file_type`` number → Ollama's name (``15`` → ``Q4_K_M``); ``unknown`` otherwise."""
    try:
        member = gguf.LlamaFileType(value)
    except ValueError:
        return "unknown"
    if member == gguf.LlamaFileType.GUESSED:
        return "unknown"
    return str(member.name).removeprefix("MOSTLY_").removeprefix("ALL_")


def guess_file_type(tensors: tuple[TensorInfo, ...]) -> str:
    """The file type of the most common tensor type (by tensor count, ties to the lower type id),
    mapped as llama.cpp does (``Q4_K`` → ``Q4_K_M``)."""
    if not tensors:
        return "unknown"
    counts = Counter(t.type for t in tensors)
    most = max(counts.items(), key=lambda kv: (kv[1], -_type_id(kv[0])))[0]
    candidate = _GUESS_FROM_TENSOR_TYPE.get(most, most)
    names = {str(m.name).removeprefix("MOSTLY_").removeprefix("ALL_") for m in gguf.LlamaFileType}
    return candidate if candidate in names and candidate != "GUESSED" else "unknown"


def _type_id(type_name: str) -> int:
    try:
        return int(gguf.GGMLQuantizationType[type_name])
    except KeyError:
        return 1 << 30


# -- pure helpers -------------------------------------------------------------------------------


def human_parameter_size(n: int) -> str:
    """Ollama's ``format.HumanNumber``: ``8B``, ``8.0B``, ``3.2B``, ``135M``, ``1.24M``, ``12K``, ``999``."""
    if n >= 1_000_000_000:
        value = n / 1_000_000_000
        return f"{value:.0f}B" if value.is_integer() else f"{value:.1f}B"
    if n >= 1_000_000:
        value = n / 1_000_000
        return f"{value:.0f}M" if value.is_integer() else f"{value:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


def _thinks(template: str) -> bool:
    if "<think>" in template and "</think>" in template:
        return True
    return "split('</think>')" in template or 'split("</think>")' in template


POOLING_RANK = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK


def projector_media(projector: GGUFInfo | None) -> list[str]:
    """What a projector (mmproj) layer lets the model take in: ``vision`` when it has an image encoder
    (``clip.has_vision_encoder``), ``audio`` when it has an audio encoder (``clip.has_audio_encoder``).

    ``None`` (a projector whose header could not be read) and a projector that declares neither
    (older conversions) count as vision, which is what Ollama reports for every projector."""
    if projector is None:
        return ["vision"]
    vision = projector.metadata.get("clip.has_vision_encoder") is True
    audio = projector.metadata.get("clip.has_audio_encoder") is True
    return (["vision"] if vision or not audio else []) + (["audio"] if audio else [])


def capabilities(info: GGUFInfo, has_projector: bool = False, projector: GGUFInfo | None = None) -> list[str]:
    """Capabilities that follow from the GGUF (and a projector layer), in Ollama's order.

    ``completion``, ``embedding`` (``<arch>.pooling_type`` present) or ``rerank`` (pooling type
    rank: a cross-encoder scores query/document pairs and has no use as an embedder), then
    ``vision`` (a projector with an image encoder, or ``<arch>.vision.block_count``), ``audio`` (a
    projector with an audio encoder; ``projector`` is its header, see `projector_media`),
    ``tools`` (Jinja template mentions ``tools``/``tool_call``), ``thinking`` (template has
    ``<think>`` and ``</think>``). Go-template capabilities (``insert``, ``.Tools``) belong to
    whoever renders the Go template.
    """
    pooling = info.pooling_type
    caps = ["completion" if not info.has_pooling_type else "rerank" if pooling == POOLING_RANK else "embedding"]
    media = projector_media(projector) if has_projector else []
    if "vision" in media or info.arch_key("vision.block_count") in info.metadata:
        caps.append("vision")
    if "audio" in media:
        caps.append("audio")
    template = info.chat_template or ""
    if "tools" in template or "tool_call" in template:
        caps.append("tools")
    if _thinks(template):
        caps.append("thinking")
    return caps


def config_from_gguf(info: GGUFInfo) -> ConfigV2:
    """The config blob Ollama's create writes for a GGUF model."""
    return ConfigV2(
        model_format="gguf",
        model_family=info.architecture,
        model_families=[info.architecture],
        model_type=human_parameter_size(info.parameter_count),
        file_type=info.file_type,
        architecture="amd64",
        os="linux",
    )
