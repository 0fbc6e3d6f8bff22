"""``/v1/responses`` (OpenAI's Responses API) requests translated to the chat use case (pure).

In: a Responses body becomes the ``ChatRequest`` that ``/api/chat`` takes (reference/ollama-api.md
§14.5): ``input`` (a string, or items: messages with text, image and audio parts, ``function_call``,
``function_call_output``, ``reasoning``), ``instructions`` (a system message first), function
``tools`` and ``tool_choice``, sampling, ``max_output_tokens``, ``reasoning.effort`` and
``text.format``. Beyond Ollama, ``previous_response_id``: the route looks the earlier conversation
up in the store and passes it in (``history``); the conversation kept for the next turn excludes
``instructions``, as OpenAI does not carry them over.

Out: protocol/responses_out.py.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


from ..errors import BadRequest
from .ollama import dumps
from .ollama_requests import ChatRequest, Message
from .openai import model_field
from .openai_chat import audio_part, image_part, integer_field, json_object, number_field, reasoning_think, tool_choice_tools, type_error

Chunk = dict[str, Any]
IdFactory = Callable[[str], str]
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_NO_URL = "image URLs are not currently supported, please use base64 encoded data instead"


def new_id(prefix: str) -> str:
    """``resp_…``, ``msg_…``, ``rs_…``, ``fc_…``: random, as OpenAI's are."""
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass
class ResponsesRequest:
    """What the route and the reply need besides the chat request."""

    ident: str
    created_at: int
    stream: bool
    store: bool
    conversation: list[Message]  # the earlier turns and this input, without ``instructions``
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the response object repeats


# -- in --------------------------------------------------------------------------------------------
_EXPECTED = {str: "a string", bool: "a boolean", dict: "an object"}


def _field(data: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """A field of JSON type ``kind`` (str, bool or dict), ``default`` when absent or null."""
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise type_error(name, _EXPECTED[kind], value)
    return value


def previous_response_id(data: Mapping[str, Any]) -> str | None:
    return _field(data, "previous_response_id", str) or None


def _parts(value: Any) -> list[dict[str, Any]]:
    """The content parts of a message item, or of a ``function_call_output``'s ``output``."""
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else []


def remote_images(data: Mapping[str, Any]) -> list[str]:
    """The ``http(s)`` image URLs of a body's input items, in order (for the caller to fetch)."""
    urls: list[str] = []
    items = data.get("input")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        for part in _parts(item.get("content")) + _parts(item.get("output")):
            url = part.get("image_url")
            if part.get("type") == "input_image" and isinstance(url, str):
                if url.lower().startswith(("http://", "https://")) and url not in urls:
                    urls.append(url)
    return urls


def _content(value: Any, fetched: Mapping[str, bytes]) -> tuple[str, list[bytes]]:
    """Text and media of a message's ``content``: a string, or input/output text, image and audio
    parts (``input_audio`` as in chat completions: base64 WAV or MP3, joining the images)."""
    if isinstance(value, str):
        return value, []
    if not isinstance(value, list):
        raise type_error("content", "a string or an array of content parts", value)
    texts: list[str] = []
    images: list[bytes] = []
    for part in value:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "input_image":
            url = part.get("image_url")
            if part.get("file_id") and not url:
                raise BadRequest("input_image with file_id is not supported; send image_url as a data: URL")
            if isinstance(url, str) and url.lower().startswith(("http://", "https://")) and url not in fetched:
                raise BadRequest(_NO_URL)
            images.append(image_part(part, fetched))
        elif kind == "input_file":
            raise BadRequest("input_file content is not supported")
        elif kind == "input_audio":
            images.append(audio_part(part))
        else:
            raise BadRequest(f"invalid content part type: {kind!r}")
    return "\n".join(texts), images


def arguments_object(value: Any) -> dict[str, Any]:
    return json_object(value, "invalid function_call arguments: not JSON", "invalid function_call arguments: not a JSON object")


def _string(item: Mapping[str, Any], name: str, kind: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{kind} item requires a string '{name}'")
    return value


class _Conversation:
    """Input items → Ollama messages: a reasoning item, assistant text and function calls that
    follow one another make one assistant message (one turn), as a model produced them."""

    def __init__(self, history: Sequence[Message], fetched: Mapping[str, bytes]) -> None:
        self.messages: list[Message] = []
        self.fetched = fetched
        self.names: dict[str, str] = {}  # call id -> function name, for outputs that only give the id
        for m in history:
            self._learn(m)

    def _learn(self, message: Message) -> None:
        for call in message.tool_calls:
            if call.get("id"):
                self.names[call["id"]] = call["function"]["name"]

    def _assistant(self, *, for_text: bool) -> Message:
        """The assistant message this item joins: the last one when it may, else a new one."""
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "assistant" and (not for_text or not (last.content or last.tool_calls)):
            return last
        message = Message(role="assistant")
        self.messages.append(message)
        return message

    def add(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise type_error("input", "an array of input items", item)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            self._message(item)
        elif kind == "function_call":
            call_id, name = _string(item, "call_id", "function_call"), _string(item, "name", "function_call")
            message = self._assistant(for_text=False)
            arguments = arguments_object(item.get("arguments"))
            message.tool_calls.append({"id": call_id, "function": {"index": len(message.tool_calls), "name": name, "arguments": arguments}})  # fmt: skip
            self.names[call_id] = name
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", "function_call_output")
            output = item.get("output")
            text, images = (output, []) if isinstance(output, str) else _content(output, self.fetched)
            self.messages.append(Message(role="tool", content=text, images=images, tool_call_id=call_id,
                                         tool_name=self.names.get(call_id, "")))  # fmt: skip
        elif kind == "reasoning":
            texts = [p.get("text") for p in _parts(item.get("summary")) + _parts(item.get("content"))]
            thinking = "\n".join(t for t in texts if isinstance(t, str))
            if thinking:
                self.messages.append(Message(role="assistant", thinking=thinking))
        elif kind == "item_reference":
            raise BadRequest("item_reference input items are not supported; use previous_response_id")
        else:
            raise BadRequest(f"invalid input item type: {kind!r}")

    def _message(self, item: Mapping[str, Any]) -> None:
        role = item.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise BadRequest(f"invalid message role: {role!r} (must be 'user', 'system', 'developer' or 'assistant')")
        text, images = _content(item.get("content"), self.fetched)
        if role == "assistant":
            message = self._assistant(for_text=True)
            message.content, message.images = text, images
        else:
            self.messages.append(Message(role=_ROLES[role], content=text, images=images))


def _input(value: Any, history: Sequence[Message], fetched: Mapping[str, bytes]) -> list[Message]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Message(role="user", content=value)]
    if not isinstance(value, list):
        raise type_error("input", "a string or an array of input items", value)
    conversation = _Conversation(history, fetched)
    for item in value:
        conversation.add(item)
    return conversation.messages


def _function_tools(data: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """Responses ``tools`` as chat function tools, whether a call is required, and the tools as the
    response repeats them."""
    tools = data.get("tools")
    tools = [] if tools is None else tools
    if not isinstance(tools, list):
        raise type_error("tools", "an array", tools)
    chat_tools, echo = [], []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise BadRequest(f"tool type {kind!r} is not supported; only function tools are")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("function tools require a 'name'")
        function: dict[str, Any] = {"name": name}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        chat_tools.append({"type": "function", "function": function})
        echo.append({"type": "function", "name": name, "description": tool.get("description"),
                     "parameters": tool.get("parameters"), "strict": tool.get("strict")})  # fmt: skip
    choice = data.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise BadRequest(f"tool_choice type {choice.get('type')!r} is not supported")
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    offered, mode = tool_choice_tools({"tools": chat_tools, "tool_choice": choice})
    return offered, mode, echo


def _text_format(data: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``text.format`` as Ollama's ``format``, and ``text`` as the response repeats it."""
    text = _field(data, "text", dict, {})
    fmt = text.get("format")
    if fmt is None:
        return None, text | {"format": {"type": "text"}}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None, text
    if kind == "json_object":
        return "json", text
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("text.format json_schema requires a 'schema' object")
        return schema, text
    raise BadRequest(f"invalid text.format type: {kind!r}")


def _options(data: Mapping[str, Any]) -> dict[str, Any]:
    """Sampling as chat maps it: temperature and top_p default to 1.0 (OpenAI's defaults)."""
    options: dict[str, Any] = {}
    limit = integer_field(data, "max_output_tokens")
    if limit is not None:
        if limit < 1:
            raise BadRequest(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 1, but got {limit} instead.")  # fmt: skip
        options["num_predict"] = limit
    temperature = number_field(data, "temperature")
    options["temperature"] = 1.0 if temperature is None else temperature
    top_p = number_field(data, "top_p")
    options["top_p"] = 1.0 if not top_p else top_p
    return options


def _truncate(data: Mapping[str, Any]) -> bool:
    """``truncation``: ``disabled`` refuses a prompt that does not fit; absent or ``auto``, the oldest
    messages go first (Ollama's behaviour, whatever OpenAI's default)."""
    value = data.get("truncation")
    if value not in (None, "auto", "disabled"):
        raise BadRequest(f"invalid truncation: {value!r} (must be 'auto' or 'disabled')")
    return value != "disabled"


def _unsupported(data: Mapping[str, Any]) -> None:
    if data.get("conversation") is not None:
        raise BadRequest("conversation is not supported; use previous_response_id")
    if data.get("background") is True:
        raise BadRequest("background responses are not supported")
    if data.get("prompt") is not None:
        raise BadRequest("prompt templates are not supported; send input")


def responses_request(
    data: dict[str, Any], history: Sequence[Message] = (), fetched: Mapping[str, bytes] | None = None
) -> tuple[ChatRequest, ResponsesRequest]:
    """``/v1/responses`` → the ``/api/chat`` request (``history``: the conversation of
    ``previous_response_id``), and what the reply repeats."""
    _unsupported(data)
    instructions = _field(data, "instructions", str)
    reasoning = _field(data, "reasoning", dict, {})
    parallel = _field(data, "parallel_tool_calls", bool)
    tools, tool_choice, tools_echo = _function_tools(data)
    fmt, text = _text_format(data)
    options = _options(data)
    conversation = [*history, *_input(data.get("input"), history, fetched or {})]
    if not conversation:
        raise BadRequest("Missing required parameter: 'input'.")
    system = [Message(role="system", content=instructions)] if instructions else []
    req = ChatRequest(model=model_field(data), stream=_field(data, "stream", bool, False), format=fmt, options=options,
                      think=reasoning_think({"reasoning": reasoning}), truncate=_truncate(data), messages=system + conversation,
                      tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel)  # fmt: skip
    echo = {"instructions": instructions, "max_output_tokens": options.get("num_predict"), "model": req.model,
            "parallel_tool_calls": parallel is not False, "previous_response_id": previous_response_id(data),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "temperature": options["temperature"], "text": text, "tool_choice": data.get("tool_choice") or "auto",
            "tools": tools_echo, "top_p": options["top_p"], "truncation": "auto" if req.truncate else "disabled",
            "user": _field(data, "user", str), "metadata": _field(data, "metadata", dict, {})}  # fmt: skip
    head = ResponsesRequest(ident=new_id("resp"), created_at=int(time.time()), stream=req.stream,
                            store=_field(data, "store", bool, True), conversation=conversation, echo=echo)  # fmt: skip
    return req, head
