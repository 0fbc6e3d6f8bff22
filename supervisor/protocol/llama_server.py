"""Request bodies for llama-server's chat endpoints, built from Ollama's messages (pure).

llama-server speaks OpenAI's chat format (reference/llama-server.md §3.6): images are ``image_url``
parts with base64 ``data:`` URIs (never URLs it would fetch itself), audio (WAV or MP3, which Ollama
carries in ``images`` too and tells apart by sniffing) is ``input_audio`` parts, assistant tool calls
carry their arguments as a JSON *string*, a tool result is a ``tool`` message naming its call, and a
previous answer's reasoning goes back as ``reasoning_content``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson

from ..errors import BadRequest
from .ollama_requests import ChatRequest, Message, Think

_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def media_type(data: bytes) -> str | None:
    """The MIME type of an image from its first bytes; ``None`` when it is not an image format
    llama-server decodes (it would try such bytes as video, through an external ffprobe)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    return None


def audio_type(data: bytes) -> str | None:
    """``audio/wav`` or ``audio/mpeg`` when the bytes are WAV (``RIFF….WAVE``) or MP3 (an ID3 tag or
    an MPEG frame sync), the audio Ollama sniffs in ``images``; llama-server's decoder tells audio
    from images by the same signatures. ``None`` for anything else (images included: JPEG's
    ``FF D8`` is no frame sync)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"ID3") or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


def audio_format(data: bytes) -> str | None:
    """OpenAI's ``input_audio.format`` of the bytes: ``wav``, ``mp3`` or ``None`` (not audio)."""
    return {"audio/wav": "wav", "audio/mpeg": "mp3"}.get(audio_type(data) or "")


def media_needed(media: Sequence[bytes]) -> list[str]:
    """The capabilities a request's media needs: ``vision`` for anything that is not audio (images,
    and bytes that are neither, which `check_images` then refuses), ``audio`` for WAV or MP3."""
    audio = [audio_type(m) is not None for m in media]
    return (["vision"] if not all(audio) else []) + (["audio"] if any(audio) else [])


def check_images(images: Sequence[bytes], *, audio: bool = False) -> None:
    """Refuse media that is not JPEG, PNG, GIF, BMP or WebP (or, when the model takes ``audio``, WAV
    or MP3), before a runner sees it."""
    for i, data in enumerate(images):
        if media_type(data) is None and not (audio and audio_type(data) is not None):
            kinds = " or audio (WAV or MP3)" if audio else ""
            raise BadRequest(f"image {i} is not a supported image (JPEG, PNG, GIF, BMP or WebP){kinds}")


def data_uri(data: bytes) -> str:
    return f"data:{media_type(data) or 'application/octet-stream'};base64,{base64.b64encode(data).decode()}"


def media_part(data: bytes) -> dict[str, Any]:
    """One medium as a content part: audio as ``input_audio`` (base64 and its format), anything
    else as an ``image_url`` with a ``data:`` URI."""
    fmt = audio_format(data)
    if fmt is not None:
        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}
    return {"type": "image_url", "image_url": {"url": data_uri(data)}}


def _content(m: Message) -> str | list[dict[str, Any]]:
    if not m.images:
        return m.content
    parts = [media_part(i) for i in m.images]
    if m.content:
        parts.append({"type": "text", "text": m.content})
    return parts


def chat_message(m: Message) -> dict[str, Any]:
    """One Ollama message as llama-server's chat endpoint takes it."""
    out: dict[str, Any] = {"role": m.role, "content": _content(m)}
    if m.role == "assistant":
        if m.thinking:
            out["reasoning_content"] = m.thinking
        if m.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.get("id") or f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": orjson.dumps(call["function"]["arguments"]).decode(),
                    },
                }
                for i, call in enumerate(m.tool_calls)
            ]
    if m.role == "tool":
        if m.tool_name:
            out["name"] = m.tool_name
        if m.tool_call_id:
            out["tool_call_id"] = m.tool_call_id
    return out


def _link_tool_results(messages: list[dict[str, Any]]) -> None:
    """Give a tool result without ``tool_call_id`` the id of the call it answers (by name, else in
    order): Jinja templates that pair results with calls need it, and Ollama clients rarely send it."""
    pending: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            pending = list(m["tool_calls"])
        elif m["role"] == "tool" and "tool_call_id" not in m and pending:
            match = next((c for c in pending if c["function"]["name"] == m.get("name")), pending[0])
            pending.remove(match)
            m["tool_call_id"] = match["id"]


def chat_body(
    messages: Sequence[Message], tools: Sequence[dict[str, Any]], think: Think | None
) -> dict[str, Any]:
    """``messages``, ``tools`` and the thinking switches of a chat request (sampling added by the caller)."""
    body: dict[str, Any] = {"messages": [chat_message(m) for m in messages]}
    _link_tool_results(body["messages"])
    if tools:
        body["tools"] = list(tools)
    if think is not None:
        kwargs: dict[str, Any] = {"enable_thinking": think.enabled}
        if think.level:
            kwargs["reasoning_effort"] = think.level
            body["reasoning_effort"] = think.level
        body["chat_template_kwargs"] = kwargs
    return body


def tool_fields(req: ChatRequest) -> dict[str, Any]:
    """``tool_choice`` and ``parallel_tool_calls`` for llama-server's chat endpoint, when asked for."""
    out: dict[str, Any] = {}
    if req.tools and req.tool_choice != "auto":
        out["tool_choice"] = req.tool_choice
    if req.parallel_tool_calls is not None:
        out["parallel_tool_calls"] = req.parallel_tool_calls
    return out


def forced_call_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema whose every instance is a call of one of ``tools``
    (``{"name": …, "arguments": {…}}``): the format that makes a Go-template model call a tool."""

    def call(tool: dict[str, Any]) -> dict[str, Any]:
        function = tool.get("function") or {}
        parameters = function.get("parameters")
        arguments = parameters if isinstance(parameters, dict) and parameters else {"type": "object"}
        return {"type": "object", "properties": {"name": {"const": function.get("name", "")}, "arguments": arguments},
                "required": ["name", "arguments"]}  # fmt: skip

    calls = [call(t) for t in tools]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}
