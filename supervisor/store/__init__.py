"""The Ollama-compatible model store: names, layout, blobs, manifests and GGUF header facts.

Reading is ``ModelStore`` (``manifests``) and ``read_gguf_info`` (``gguf_info``); writing is
``BlobWriter``/``write_blob_*`` (``blobs``) and ``ModelStore.write_manifest``, both atomic.
"""

from .blobs import (
    BlobWriter,
    file_digest,
    verify_blob,
    write_blob_bytes,
    write_blob_from_file,
    write_blob_from_stream,
)
from .gguf_info import (
    GGUFInfo,
    TensorInfo,
    capabilities,
    config_from_gguf,
    file_type_name,
    human_parameter_size,
    read_gguf_info,
)
from .layout import (
    StoreLayout,
    blob_file_name,
    digest_from_blob_name,
    digest_hex,
    is_valid_digest,
    normalize_digest,
)
from .manifests import (
    CONFIG_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    ConfigV2,
    Layer,
    LocalModel,
    Manifest,
    ModelStore,
)
from .names import DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "DEFAULT_HOST",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TAG",
    "MANIFEST_MEDIA_TYPE",
    "MEDIA_TYPE_ADAPTER",
    "MEDIA_TYPE_DRAFT",
    "MEDIA_TYPE_LICENSE",
    "MEDIA_TYPE_MESSAGES",
    "MEDIA_TYPE_MODEL",
    "MEDIA_TYPE_PARAMS",
    "MEDIA_TYPE_PROJECTOR",
    "MEDIA_TYPE_PROMPT",
    "MEDIA_TYPE_SYSTEM",
    "MEDIA_TYPE_TEMPLATE",
    "BlobWriter",
    "ConfigV2",
    "GGUFInfo",
    "Layer",
    "LocalModel",
    "Manifest",
    "ModelName",
    "ModelStore",
    "StoreLayout",
    "TensorInfo",
    "blob_file_name",
    "capabilities",
    "config_from_gguf",
    "digest_from_blob_name",
    "digest_hex",
    "file_digest",
    "file_type_name",
    "human_parameter_size",
    "is_valid_digest",
    "normalize_digest",
    "read_gguf_info",
    "verify_blob",
    "write_blob_bytes",
    "write_blob_from_file",
    "write_blob_from_stream",
]
