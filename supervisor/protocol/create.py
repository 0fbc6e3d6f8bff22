"""The ``/api/create`` request (Ollama's JSON create API, reference/ollama-api.md §2.9), checked (pure).

Everything that can be refused without touching the store is refused here, before the progress
stream starts, so the client gets a real status: the name, the file names (they become paths when a
safetensors directory is rebuilt for conversion, so ``..``, absolute paths, backslashes and NUL bytes
are refused with Ollama's ``file path must be relative``), the digests, the quantization type, the
parameter types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest, InvalidJSON, InvalidModelName
from ..store.layout import INVALID_DIGEST_MESSAGE, is_valid_digest, normalize_digest
from ..store.names import ModelName
from .ollama import BOOL_OPTIONS, FLOAT_OPTIONS, INT_OPTIONS, check_options, go_type_error

# Modelfile parameters Ollama dropped; a create that still sends them loses them, with a log line.
DEPRECATED_PARAMETERS = frozenset(
    {"penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "mirostat",
     "mirostat_tau", "mirostat_eta"}
)  # fmt: skip
_KNOWN_PARAMETERS = INT_OPTIONS | FLOAT_OPTIONS | BOOL_OPTIONS | {"stop"}
_STRING_FIELDS = ("model", "name", "from", "template", "system", "quantize", "quantization", "renderer",
                  "parser", "requires", "draft_quantize")  # fmt: skip
_MAP_FIELDS = ("files", "adapters", "draft_files")


@dataclass(frozen=True)
class CreateRequest:
    name: ModelName
    from_: str = ""
    files: dict[str, str] = field(default_factory=dict)  # relative file name -> sha256:<hex>
    adapters: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    licenses: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: tuple[dict[str, Any], ...] | None = None
    quantize: str = ""  # upper-cased
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    stream: bool = True


def is_relative_file_name(name: str) -> bool:
    """Go's ``fs.ValidPath`` (slash-separated, unrooted, no ``.``/``..``/empty element), and no
    backslash or NUL, which would mean something else on some file system."""
    if not name or "\\" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _go_type_error(key: str, gotype: str, value: Any) -> InvalidJSON:
    return go_type_error("CreateRequest", key, gotype, value)


def _digest_map(key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _go_type_error(key, "map[string]string", value)
    out: dict[str, str] = {}
    for file_name, digest in value.items():
        if not is_relative_file_name(file_name):
            raise BadRequest("file path must be relative")
        if not digest or not is_valid_digest(digest):
            raise BadRequest(INVALID_DIGEST_MESSAGE)
        out[file_name] = normalize_digest(digest)
    return out


def check_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Typed parameters for a params layer: Ollama's option types, unknown names refused."""
    known: dict[str, Any] = {}
    for key, value in parameters.items():
        if key in DEPRECATED_PARAMETERS or value is None:
            continue
        if key not in _KNOWN_PARAMETERS:
            raise BadRequest(f"unknown parameter '{key}'")
        known[key] = [value] if key == "stop" and isinstance(value, str) else value
    return check_options(known)


def parse_create_request(data: dict[str, Any]) -> CreateRequest:
    """Check a decoded ``/api/create`` body; raises ``BadRequest`` with Ollama's messages."""
    for key in _STRING_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise _go_type_error(key, "string", data[key])
    if data.get("stream") is not None and not isinstance(data["stream"], bool):
        raise _go_type_error("stream", "bool", data["stream"])
    name = ModelName.try_parse(data.get("model") or data.get("name") or "")
    if name is None:
        raise InvalidModelName()
    maps = {key: _digest_map(key, data.get(key)) for key in _MAP_FIELDS}
    from_ = (data.get("from") or "").strip()
    if not from_ and not maps["files"]:
        raise BadRequest("neither 'from' or 'files' was specified")
    if from_ and ModelName.try_parse(from_) is None:
        raise InvalidModelName()
    if len(maps["adapters"]) > 1:
        raise BadRequest("only one adapter is currently supported")
    if maps["draft_files"] or data.get("draft_quantize"):
        raise BadRequest("draft models are not supported by llamasup yet")
    license_value = data.get("license")
    if license_value is None:
        licenses: tuple[str, ...] = ()
    elif isinstance(license_value, str):
        licenses = (license_value,)
    elif isinstance(license_value, list) and all(isinstance(x, str) for x in license_value):
        licenses = tuple(license_value)
    else:
        raise _go_type_error("license", "api.StringOrStringArray", license_value)
    parameters = data.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _go_type_error("parameters", "map[string]interface {}", parameters)
    messages = data.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _go_type_error("messages", "[]api.Message", messages)
        for m in messages:
            for key in ("role", "content"):
                if m.get(key) is not None and not isinstance(m[key], str):
                    raise _go_type_error(f"messages.{key}", "string", m[key])
    template = data.get("template")
    system = data.get("system")
    return CreateRequest(
        name=name,
        from_=from_,
        files=maps["files"],
        adapters=maps["adapters"],
        template=template or None,
        system=system or None,
        licenses=tuple(x for x in licenses if x),
        parameters=check_parameters(parameters or {}),
        messages=tuple({"role": m.get("role") or "", "content": m.get("content") or ""} for m in messages)
        if messages
        else None,
        quantize=(data.get("quantize") or data.get("quantization") or "").strip().upper(),
        renderer=data.get("renderer") or "",
        parser=data.get("parser") or "",
        requires=data.get("requires") or "",
        stream=data.get("stream") is not False,
    )
