"""Ollama's ``/api/generate`` and ``/api/chat`` requests, decoded with Go's error texts (pure).

Clients show Ollama's messages verbatim, so each field is checked as Go's ``encoding/json`` would
check it against ``api.GenerateRequest`` / ``api.ChatRequest`` (reference/ollama-api.md §2.2, §2.3):
a wrong JSON type names the struct field, ``think`` has its own two messages, and images are
standard padded base64 whose errors give the offending byte (``illegal base64 data at input byte 4``
for a ``data:`` URL). Everything after decoding (model capabilities, rendering) is the service's.
"""

from __future__ import annotations

import binascii
import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import BadRequest, InvalidJSON
from .ollama import check_types, go_type_error

THINK_LEVELS = ("high", "medium", "low", "max")
_THINK_CHOICES = '("high", "medium", "low", "max", true, or false)'


@dataclass(frozen=True)
class Think:
    """A request's ``think``: on/off, and the level when a string was given."""

    enabled: bool
    level: str = ""
    explicit: bool = True  # False: the default for a thinking model, not in the request (.IsThinkSet)

    @property
    def template_level(self) -> str:
        """``.ThinkLevel``: the level, ``medium`` for plain ``true``, empty when off."""
        if not self.enabled:
            return ""
        return self.level or "medium"


def parse_think(value: Any) -> Think | None:
    """``think`` as Ollama's ``ThinkValue`` decodes it; ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Think(value)
    if isinstance(value, str):
        if value not in THINK_LEVELS:
            raise BadRequest(f'invalid think value: "{value}" (must be {_THINK_CHOICES[1:-1]})')
        return Think(True, value)
    raise BadRequest(f"think must be a boolean or string {_THINK_CHOICES}")


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _base64_error_offset(data: bytes) -> int | None:
    """Where Go's ``base64.StdEncoding`` stops on ``data`` (``None`` when it decodes)."""
    quantum = 0  # position within the current 4-character group
    start = 0  # offset of the group's first character
    padded_at: int | None = None
    for i, ch in enumerate(data):
        if ch in b"\r\n":
            continue  # Go skips line breaks
        if padded_at is not None:
            if ch != ord("=") or quantum == 0:
                return i
        if ch == ord("="):
            if quantum < 2:
                return i
            padded_at = padded_at if padded_at is not None else i
        elif ch not in _B64_ALPHABET:
            return i
        if quantum == 0:
            start = i
        quantum = (quantum + 1) % 4
    return start if quantum else None


def decode_image(text: str) -> bytes:
    """One base64 image, or Go's ``illegal base64 data at input byte N``."""
    raw = text.encode()
    offset = _base64_error_offset(raw)
    if offset is not None:
        raise InvalidJSON(f"illegal base64 data at input byte {offset}")
    try:
        return base64.b64decode(raw.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except binascii.Error:  # a case the scan above does not model; still Go's wording
        raise InvalidJSON("illegal base64 data at input byte 0") from None


def _images(struct: str, value: Any) -> list[bytes]:
    if value is None:
        return []
    out = []
    for item in value:
        if not isinstance(item, str):
            raise go_type_error(struct, "images", "api.ImageData", item)
        out.append(decode_image(item))
    return out


def _arguments(value: Any, struct: str) -> dict[str, Any]:
    """Tool-call arguments: an object (a JSON string holding one is accepted, as clients send it)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidJSON(f"json: cannot unmarshal string into Go struct field {struct}.arguments of type map[string]interface {{}}") from None  # fmt: skip
    if not isinstance(value, dict):
        raise go_type_error(struct, "arguments", "map[string]interface {}", value)
    return value


def _tool_calls(value: Any) -> list[dict[str, Any]]:
    """Tool calls of an assistant message in Ollama's wire shape (``function.index`` filled in)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise go_type_error("Message.messages", "tool_calls", "[]api.ToolCall", value)
    calls = []
    for i, call in enumerate(value):
        if not isinstance(call, dict):
            raise go_type_error("Message.messages", "tool_calls", "api.ToolCall", call)
        function = call.get("function") or {}
        if not isinstance(function, dict):
            raise go_type_error("ToolCall.messages.tool_calls", "function", "api.ToolCallFunction", function)
        name = function.get("name") or ""
        if not isinstance(name, str):
            raise go_type_error("ToolCallFunction.messages.tool_calls.function", "name", "string", name)
        index = function.get("index", i)
        out: dict[str, Any] = {}
        if isinstance(call.get("id"), str) and call["id"]:
            out["id"] = call["id"]
        out["function"] = {
            "index": index if isinstance(index, int) and not isinstance(index, bool) else i,
            "name": name,
            "arguments": _arguments(function.get("arguments"), "ToolCallFunction.messages.tool_calls.function"),
        }
        calls.append(out)
    return calls


@dataclass
class Message:
    """A chat message (``api.Message``); ``images`` are decoded bytes."""

    role: str
    content: str = ""
    thinking: str = ""
    images: list[bytes] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_name: str = ""
    tool_call_id: str = ""

    @classmethod
    def from_json(cls, m: Any) -> Message:
        if not isinstance(m, dict):
            raise go_type_error("ChatRequest", "messages", "api.Message", m)
        for key in ("role", "content", "thinking", "tool_name", "tool_call_id"):
            value = m.get(key)
            if value is not None and not isinstance(value, str):
                raise go_type_error("Message.messages", key, "string", value)
        images = m.get("images")
        if images is not None and not isinstance(images, list):
            raise go_type_error("Message.messages", "images", "[]api.ImageData", images)
        return cls(
            role=(m.get("role") or "").lower(),
            content=m.get("content") or "",
            thinking=m.get("thinking") or "",
            images=_images("Message.messages", images),
            tool_calls=_tool_calls(m.get("tool_calls")),
            tool_name=m.get("tool_name") or "",
            tool_call_id=m.get("tool_call_id") or "",
        )

    def to_json(self) -> dict[str, Any]:
        """Ollama's JSON of the message (images as base64), for templates and logs."""
        images = [base64.b64encode(i).decode() for i in self.images]
        optional = {"thinking": self.thinking, "images": images, "tool_calls": self.tool_calls,
                    "tool_name": self.tool_name, "tool_call_id": self.tool_call_id}  # fmt: skip
        return {"role": self.role, "content": self.content} | {k: v for k, v in optional.items() if v}


def _check(struct: str, data: dict[str, Any]) -> None:
    """The checks Ollama makes on every inference request before anything else."""
    check_types(struct, data)
    top = data.get("top_logprobs")
    if top is not None and not 0 <= top <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")


def _tools(value: Any) -> list[dict[str, Any]]:
    out = []
    for tool in value or ():
        if not isinstance(tool, dict):
            raise go_type_error("ChatRequest", "tools", "api.Tool", tool)
        function = tool.get("function")
        if function is not None and not isinstance(function, dict):
            raise go_type_error("Tool.tools", "function", "api.ToolFunction", function)
        out.append(tool)
    return out


@dataclass
class _Common:
    """Fields shared by generate and chat."""

    model: str
    stream: bool = True
    format: Any = None
    keep_alive: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    think: Think | None = None
    truncate: bool = True
    shift: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    debug_render_only: bool = False

    @staticmethod
    def common(data: dict[str, Any]) -> dict[str, Any]:
        stream, truncate = data.get("stream"), data.get("truncate")
        return {
            "model": data.get("model") or "",
            "stream": True if stream is None else stream,
            "format": data.get("format"),
            "keep_alive": data.get("keep_alive"),
            "options": data.get("options") or {},
            "think": parse_think(data.get("think")),
            "truncate": True if truncate is None else truncate,
            "shift": data.get("shift"),
            "logprobs": bool(data.get("logprobs")),
            "top_logprobs": data.get("top_logprobs") or 0,
            "debug_render_only": data.get("_debug_render_only") is True,
        }


@dataclass
class GenerateRequest(_Common):
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[bytes] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerateRequest:
        _check("GenerateRequest", data)
        return cls(
            **cls.common(data),
            prompt=data.get("prompt") or "",
            suffix=data.get("suffix") or "",
            system=data.get("system"),
            template=data.get("template") or None,
            context=data.get("context"),
            raw=bool(data.get("raw")),
            images=_images("GenerateRequest", data.get("images")),
        )


@dataclass
class ChatRequest(_Common):
    messages: list[Message] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    # beyond Ollama, set by the OpenAI and Anthropic translations: "required" makes the model call a
    # tool; False keeps only the first call
    tool_choice: str = "auto"
    parallel_tool_calls: bool | None = None
    think_if_able: bool = False  # thinking asked of a model that cannot is dropped, not refused (Anthropic)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatRequest:
        _check("ChatRequest", data)
        return cls(
            **cls.common(data),
            messages=[Message.from_json(m) for m in data.get("messages") or ()],
            tools=_tools(data.get("tools")),
        )
