"""``/v1/chat/completions`` and ``/v1/completions`` requests translated to the Ollama use cases (pure).

In: an OpenAI body becomes the ``ChatRequest`` / ``GenerateRequest`` that ``/api/chat`` and
``/api/generate`` take (reference/ollama-api.md §14.1, §14.2): Ollama's field mapping and error
texts, and beyond Ollama ``max_completion_tokens``, ``tool_choice``, ``parallel_tool_calls``, ``n``,
and image URLs fetched by llamasup (``remote_images`` lists them; the caller fetches and passes the
bytes back in). ``input_audio`` parts (base64 WAV or MP3) join the message's media, as audio does in
Ollama's ``images``.

Out: protocol/openai_stream.py.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import BadRequest
from .llama_server import audio_type
from .ollama_requests import ChatRequest, GenerateRequest, Message, Think
from .openai import model_field

MAX_CHOICES = 8  # n beyond this is refused: each choice is a whole generation
_EFFORTS = {"none": None, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
            "max": "max", "xhigh": "max", "ultra": "max"}  # fmt: skip
_IMAGE_PREFIXES = ("data:image/jpeg;base64,", "data:image/jpg;base64,", "data:image/png;base64,",
                   "data:image/webp;base64,", "data:;base64,")  # fmt: skip


@dataclass
class OpenAIRequest:
    """What the route needs besides the Ollama request: how many choices and how to stream them."""

    n: int = 1
    stream: bool = False
    include_usage: bool = False
    echo: str = ""  # /v1/completions ``echo``: the prompt, put before the text


# -- in --------------------------------------------------------------------------------------------
def type_error(name: str, expected: str, value: Any) -> BadRequest:
    got = {bool: "a boolean", str: "a string", int: "an integer", float: "a decimal", list: "an array",
           dict: "an object", type(None): "null"}.get(type(value), "a value")  # fmt: skip
    return BadRequest(f"Invalid type for '{name}': expected {expected}, but got {got} instead.")


def number_field(data: Mapping[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(name, "a decimal", value)
    return float(value)


def integer_field(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(name, "an integer", value)
    return value


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise BadRequest(f"invalid type for 'stop' field: {type(item).__name__}")
        return list(value)
    raise BadRequest(f"invalid type for 'stop' field: {type(value).__name__}")


def _options(data: Mapping[str, Any], *, completions: bool) -> dict[str, Any]:
    """Sampling options as Ollama maps them: temperature and top_p default to 1.0 (OpenAI's
    defaults, not the model's); ``max_completion_tokens`` wins over ``max_tokens``."""
    options: dict[str, Any] = {}
    limit = integer_field(data, "max_completion_tokens")
    if limit is None:
        limit = integer_field(data, "max_tokens")
    if limit is not None:
        options["num_predict"] = limit
    temperature = number_field(data, "temperature")
    options["temperature"] = 1.0 if temperature is None else temperature
    top_p = number_field(data, "top_p")
    options["top_p"] = 1.0 if not top_p else top_p
    seed = integer_field(data, "seed")
    if seed is not None:
        options["seed"] = seed
    stop = _stop(data.get("stop"))
    if stop is not None:
        options["stop"] = stop
    for name in ("frequency_penalty", "presence_penalty"):
        value = number_field(data, name)
        if value is not None or completions:
            options[name] = value or 0.0
    return options


def _choices(data: Mapping[str, Any]) -> int:
    n = integer_field(data, "n")
    if n is None:
        return 1
    if not 1 <= n <= MAX_CHOICES:
        raise BadRequest(f"n must be between 1 and {MAX_CHOICES}")
    return n


def _streaming(data: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise type_error("stream", "a boolean", stream)
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise type_error("stream_options", "an object", options)
    return bool(stream), bool(stream) and options.get("include_usage") is True


def remote_images(data: Mapping[str, Any]) -> list[str]:
    """The ``http(s)`` image URLs of a chat body's messages, in order (for the caller to fetch)."""
    urls = []
    for m in data.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        for part in content if isinstance(content, list) else ():
            url = _image_url(part) if isinstance(part, dict) and part.get("type") == "image_url" else None
            if url is not None and url.lower().startswith(("http://", "https://")) and url not in urls:
                urls.append(url)
    return urls


def _image_url(part: Mapping[str, Any]) -> str | None:
    value = part.get("image_url")
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) else None


def image_part(part: Mapping[str, Any], fetched: Mapping[str, bytes]) -> bytes:
    url = _image_url(part)
    if url is None:
        raise BadRequest("invalid image input")
    if url in fetched:
        return fetched[url]
    prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        raise BadRequest("invalid image input")
    try:
        return base64.b64decode(url[len(prefix) :], validate=True)
    except binascii.Error:
        raise BadRequest("invalid image input") from None


def audio_part(part: Mapping[str, Any]) -> bytes:
    """An ``input_audio`` part's bytes: ``input_audio.data`` is base64 WAV or MP3 (``format`` is not
    needed: the bytes tell, as they do for audio in Ollama's ``images``)."""
    value = part.get("input_audio")
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, str):
        raise BadRequest("invalid audio input")
    try:
        audio = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise BadRequest("invalid audio input") from None
    if audio_type(audio) is None:
        raise BadRequest("invalid audio input")
    return audio


def _content(role: str, content: Any, fetched: Mapping[str, bytes]) -> tuple[str, list[bytes]]:
    """Text and media of a message's ``content`` (a string, or an array of parts); images and audio
    go into one list, in order, as they do in Ollama's ``images``."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise BadRequest(f"invalid message content type: {_go_kind(content)}")
    texts: list[str] = []
    images: list[bytes] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(image_part(part, fetched))
        elif kind == "input_audio":
            images.append(audio_part(part))
        else:
            raise BadRequest("invalid message format")
    return "\n".join(texts), images


def _go_kind(value: Any) -> str:
    return "<nil>" if value is None else {bool: "bool", int: "float64", float: "float64", dict: "map[string]interface {}"}.get(type(value), type(value).__name__)  # fmt: skip


def json_object(value: Any, not_json: str, not_object: str) -> dict[str, Any]:
    """Function-call arguments (JSON text, or already decoded) as an object; None or "" is {}.
    ``BadRequest(not_json)`` / ``BadRequest(not_object)`` otherwise."""
    if value is None or value == "":
        return {}
    try:
        decoded = orjson.loads(value) if isinstance(value, str) else value
    except orjson.JSONDecodeError:
        raise BadRequest(not_json) from None
    if not isinstance(decoded, dict):
        raise BadRequest(not_object)
    return decoded


def _calls(value: Any) -> list[dict[str, Any]]:
    """An assistant message's OpenAI ``tool_calls`` as Ollama's (arguments decoded)."""
    calls = []
    for i, call in enumerate(value if isinstance(value, list) else ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise BadRequest("invalid tool call")
        decoded = json_object(function.get("arguments") or "{}", "invalid tool call arguments", "invalid tool call arguments")
        out: dict[str, Any] = {"id": call["id"]} if isinstance(call.get("id"), str) and call["id"] else {}
        out["function"] = {"index": i, "name": str(function.get("name") or ""), "arguments": decoded}
        calls.append(out)
    return calls


def _messages(value: Any, fetched: Mapping[str, bytes]) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise BadRequest("[] is too short - 'messages'")
    out: list[Message] = []
    names: dict[str, str] = {}  # tool call id -> function name, for results that only give the id
    for m in value:
        if not isinstance(m, dict):
            raise BadRequest("invalid message format")
        role = m.get("role")
        if not isinstance(role, str):
            raise BadRequest("invalid message role")
        calls = _calls(m.get("tool_calls"))
        content = m.get("content")
        if content is None and not calls:
            raise BadRequest("invalid message content type: <nil>")
        text, images = _content(role, content, fetched) if content is not None else ("", [])
        thinking = m.get("reasoning") or m.get("reasoning_content") or ""
        message = Message(role="system" if role == "developer" else role, content=text, images=images,
                          tool_calls=calls, thinking=thinking if isinstance(thinking, str) else "")  # fmt: skip
        for call in calls:
            if "id" in call:
                names[call["id"]] = call["function"]["name"]
        if role == "tool":
            call_id = m.get("tool_call_id")
            message.tool_call_id = call_id if isinstance(call_id, str) else ""
            name = m.get("name")
            message.tool_name = name if isinstance(name, str) and name else names.get(message.tool_call_id, "")
        out.append(message)
    return out


def _format(value: Any) -> Any:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema") if isinstance(value.get("json_schema"), dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("response_format json_schema requires a 'schema' object")
        return schema
    if kind == "text":
        return None
    raise BadRequest(f"invalid response_format type: {kind!r}")


def reasoning_think(data: Mapping[str, Any]) -> Think | None:
    """``reasoning_effort`` (or ``reasoning.effort``) as Ollama's ``think``."""
    effort = data.get("reasoning_effort")
    reasoning = data.get("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort = reasoning.get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise BadRequest(f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")')  # fmt: skip
    level = _EFFORTS[effort]
    return Think(False) if level is None else Think(True, level)


def tool_choice_tools(data: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The tools to offer and whether a call is required (``tool_choice``: ``none`` offers none,
    a named function offers only it, and requires it)."""
    tools = data.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRequest("invalid tools")
    choice = data.get("tool_choice")
    if choice is None or choice == "auto":
        return tools, "auto"
    if choice == "none":
        return [], "auto"
    if choice == "required":
        if not tools:
            raise BadRequest("tool_choice 'required' needs tools")
        return tools, "required"
    name = ((choice.get("function") or {}).get("name") if isinstance(choice, dict) else None) or None
    if not isinstance(name, str):
        raise BadRequest("invalid tool_choice: expected 'none', 'auto', 'required' or a function")
    named = [t for t in tools if (t.get("function") or {}).get("name") == name]
    if not named:
        raise BadRequest(f"tool_choice names a function that is not in tools: {name}")
    return named, "required"


def _logprobs(data: Mapping[str, Any]) -> tuple[bool, int]:
    top = integer_field(data, "top_logprobs") or 0
    if not 0 <= top <= 20:
        raise BadRequest("top_logprobs must be between 0 and 20")
    return data.get("logprobs") is True, top


def chat_request(data: dict[str, Any], fetched: Mapping[str, bytes] | None = None) -> tuple[ChatRequest, OpenAIRequest]:
    """``/v1/chat/completions`` → the ``/api/chat`` request, and the choices and streaming asked for."""
    stream, usage = _streaming(data)
    tools, tool_choice = tool_choice_tools(data)
    logprobs, top = _logprobs(data)
    parallel = data.get("parallel_tool_calls")
    req = ChatRequest(
        model=model_field(data),
        stream=stream,
        format=_format(data.get("response_format")),
        options=_options(data, completions=False),
        think=reasoning_think(data),
        logprobs=logprobs,
        top_logprobs=top,
        messages=_messages(data.get("messages"), fetched or {}),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel if isinstance(parallel, bool) else None,
    )
    return req, OpenAIRequest(n=_choices(data), stream=stream, include_usage=usage)


def completion_request(data: dict[str, Any]) -> tuple[GenerateRequest, OpenAIRequest]:
    """``/v1/completions`` → the ``/api/generate`` request (``logprobs`` N asks for N alternatives)."""
    stream, usage = _streaming(data)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("invalid prompt: expected a string")
    suffix = data.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise type_error("suffix", "a string", suffix)
    top = integer_field(data, "logprobs")
    if top is not None and not 0 <= top <= 20:
        raise BadRequest("logprobs must be between 0 and 20")
    echo = data.get("echo") is True
    req = GenerateRequest(model=model_field(data), stream=stream, options=_options(data, completions=True),
                          prompt=prompt, suffix=suffix or "", logprobs=top is not None, top_logprobs=top or 0)  # fmt: skip
    return req, OpenAIRequest(n=_choices(data), stream=stream, include_usage=usage, echo=prompt if echo else "")
