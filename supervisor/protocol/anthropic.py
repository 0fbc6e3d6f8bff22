"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``) translated to and from
the chat use case (pure; reference/ollama-api.md §14.5).

In: a Messages body becomes the ``ChatRequest`` that ``/api/chat`` takes. ``system`` becomes a first
system message; content blocks become Ollama's message fields (``tool_use`` → ``tool_calls`` with
its id, each ``tool_result`` → a role ``tool`` message named after the call it answers, ``thinking``
→ ``thinking``); ``tool_choice`` and ``disable_parallel_tool_use`` become the request's
``tool_choice`` / ``parallel_tool_calls``; ``thinking`` asked of a model that cannot think is dropped
(``think_if_able``), as Ollama does. Validation errors are worded as Anthropic's API words them
(``max_tokens: Field required``, ``<field>: Extra inputs are not permitted``), so a client's
message points at the field. Image ``url`` sources are listed by ``remote_images``; the caller
fetches them and passes the bytes back in.

Out: the collected reply becomes a ``message`` object; a stream becomes Anthropic's named events
(``MessageStream``): ``message_start``, ``ping``, then each content block opened, filled and closed
as the kind of content changes (thinking → text → tool_use), ``message_delta`` with the stop reason
and usage, ``message_stop``. Ollama's chunks do not say which stop sequence ended a reply, so
``stop_reason`` is ``end_turn`` for it and ``stop_sequence`` is always null.
"""

from __future__ import annotations

import base64
import binascii
import random
import string
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import BadRequest
from .ollama_requests import ChatRequest, Message, Think

Chunk = dict[str, Any]
_FIELDS = frozenset({"model", "max_tokens", "messages", "system", "stop_sequences", "temperature", "top_p", "top_k",
                     "tools", "tool_choice", "thinking", "metadata", "stream", "output_config", "service_tier"})  # fmt: skip
_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_EFFORTS = ("low", "medium", "high", "max")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                503: "overloaded_error", 529: "overloaded_error"}  # fmt: skip
_ID_CHARS = string.ascii_letters + string.digits


# -- field checks (Anthropic's wording) ------------------------------------------------------------
def _error(where: str, what: str) -> BadRequest:
    return BadRequest(f"{where}: {what}")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _error(where, "Input should be a valid string")
    return value


def _integer(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(where, "Input should be a valid integer")
    if minimum is not None and value < minimum:
        raise _error(where, f"Input should be greater than or equal to {minimum}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(where, "Input should be a valid number")
    return float(value)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error(where, "Input should be a valid dictionary")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _error(where, "Input should be a valid list")
    return value


def _required(data: Mapping[str, Any], key: str, where: str) -> Any:
    if data.get(key) is None:
        raise _error(f"{where}.{key}" if where else key, "Field required")
    return data[key]


def _kind(block: Any, where: str, allowed: tuple[str, ...]) -> str:
    """A content block's ``type``, one of ``allowed`` (the others are named in the message)."""
    kind = _object(block, where).get("type")
    if kind not in allowed:
        tags = ", ".join(f"'{t}'" for t in allowed)
        raise _error(where, f"content block type {kind!r} is not supported here (expected one of {tags})")
    return str(kind)


# -- in --------------------------------------------------------------------------------------------
def remote_images(data: Mapping[str, Any]) -> list[str]:
    """The ``url`` image sources of a body's messages (tool results included), in order, for the
    caller to fetch."""
    urls: list[str] = []

    def visit(blocks: Any) -> None:
        for block in blocks if isinstance(blocks, list) else ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                visit(block.get("content"))
            source = block.get("source") if block.get("type") == "image" else None
            url = source.get("url") if isinstance(source, dict) and source.get("type") == "url" else None
            if isinstance(url, str) and url not in urls:
                urls.append(url)

    messages = data.get("messages")
    for m in messages if isinstance(messages, list) else ():
        visit(m.get("content") if isinstance(m, dict) else None)
    return urls


def _image(block: dict[str, Any], where: str, fetched: Mapping[str, bytes]) -> bytes:
    source = _object(_required(block, "source", where), f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        media = source.get("media_type")
        if media not in _MEDIA_TYPES:
            raise _error(f"{where}.source.media_type", "Input should be " + ", ".join(f"'{m}'" for m in _MEDIA_TYPES))
        data = _string(_required(source, "data", f"{where}.source"), f"{where}.source.data")
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise _error(f"{where}.source.data", "the image data is not valid base64") from None
    if kind == "url":
        url = _string(_required(source, "url", f"{where}.source"), f"{where}.source.url")
        if url not in fetched:
            raise _error(f"{where}.source", "image URLs are not supported here; send the image as base64 data")
        return fetched[url]
    raise _error(f"{where}.source", f"image source type {kind!r} is not supported (use 'base64' or 'url')")


def _text_and_images(
    blocks: list[Any], where: str, fetched: Mapping[str, bytes], allowed: tuple[str, ...]
) -> tuple[list[str], list[bytes]]:
    texts: list[str] = []
    images: list[bytes] = []
    for j, block in enumerate(blocks):
        at = f"{where}.{j}"
        if _kind(block, at, allowed) == "text":
            texts.append(_string(_required(block, "text", at), f"{at}.text"))
        else:
            images.append(_image(block, at, fetched))
    return texts, images


def _tool_result(block: dict[str, Any], where: str, names: Mapping[str, str], fetched: Mapping[str, bytes]) -> Message:
    """A ``tool_result`` block → a role ``tool`` message naming the call it answers."""
    call_id = _string(_required(block, "tool_use_id", where), f"{where}.tool_use_id")
    if call_id not in names:
        raise _error(where, f"tool_result refers to tool_use_id {call_id!r}, which no earlier tool_use block has")
    content = block.get("content")
    images: list[bytes] = []
    if content is None or isinstance(content, str):
        texts = [content or ""]
    else:
        texts, images = _text_and_images(_list(content, f"{where}.content"), f"{where}.content", fetched, ("text", "image"))
    return Message(role="tool", content="\n".join(texts), images=images, tool_name=names[call_id], tool_call_id=call_id)


def _user(blocks: list[Any], where: str, names: Mapping[str, str], fetched: Mapping[str, bytes]) -> list[Message]:
    """A user turn: its tool results first (as Anthropic requires them), then its text and images."""
    results: list[Message] = []
    texts: list[str] = []
    images: list[bytes] = []
    for j, block in enumerate(blocks):
        at = f"{where}.{j}"
        kind = _kind(block, at, ("text", "image", "tool_result"))
        if kind == "tool_result":
            results.append(_tool_result(block, at, names, fetched))
        elif kind == "text":
            texts.append(_string(_required(block, "text", at), f"{at}.text"))
        else:
            images.append(_image(block, at, fetched))
    rest = [Message(role="user", content="\n".join(texts), images=images)] if texts or images else []
    return results + rest


def _assistant(blocks: list[Any], where: str, names: dict[str, str]) -> Message:
    """An assistant turn: text, thinking and tool calls in one message. ``redacted_thinking`` holds
    encrypted data no local model can read, so it is accepted and left out."""
    message = Message(role="assistant")
    texts: list[str] = []
    thoughts: list[str] = []
    for j, block in enumerate(blocks):
        at = f"{where}.{j}"
        kind = _kind(block, at, ("text", "thinking", "redacted_thinking", "tool_use"))
        if kind == "text":
            texts.append(_string(_required(block, "text", at), f"{at}.text"))
        elif kind == "thinking":
            thoughts.append(_string(_required(block, "thinking", at), f"{at}.thinking"))
        elif kind == "tool_use":
            call_id = _string(_required(block, "id", at), f"{at}.id")
            name = _string(_required(block, "name", at), f"{at}.name")
            arguments = _object(block.get("input", {}), f"{at}.input")
            names[call_id] = name
            index = len(message.tool_calls)
            message.tool_calls.append({"id": call_id, "function": {"index": index, "name": name, "arguments": arguments}})
    message.content, message.thinking = "\n".join(texts), "\n".join(thoughts)
    return message


def _messages(value: Any, fetched: Mapping[str, bytes]) -> list[Message]:
    out: list[Message] = []
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results that answer them
    if not _list(value, "messages"):
        raise _error("messages", "List should have at least 1 item after validation, not 0")
    for i, m in enumerate(value):
        where = f"messages.{i}"
        for key in _object(m, where):
            if key not in ("role", "content"):
                raise _error(f"{where}.{key}", "Extra inputs are not permitted")
        role = _required(m, "role", where)
        if role not in ("user", "assistant"):
            raise _error(f"{where}.role", "Input should be 'user' or 'assistant'")
        content = _required(m, "content", where)
        if isinstance(content, str):
            out.append(Message(role=role, content=content))
            continue
        blocks = _list(content, f"{where}.content")
        if role == "user":
            out.extend(_user(blocks, f"{where}.content", names, fetched))
        else:
            out.append(_assistant(blocks, f"{where}.content", names))
    return out


def _system(value: Any) -> list[Message]:
    if value is None:
        return []
    if isinstance(value, str):
        texts = [value]
    else:
        texts, _ = _text_and_images(_list(value, "system"), "system", {}, ("text",))
    text = "\n".join(t for t in texts if t)
    return [Message(role="system", content=text)] if text else []


def _tools(value: Any) -> list[dict[str, Any]]:
    """Client tools (``name``, ``description``, ``input_schema``) as Ollama's function tools; Anthropic's
    server tools (web search, code execution…) run on Anthropic's side and are refused."""
    tools = []
    for i, tool in enumerate(_list(value, "tools") if value is not None else ()):
        where = f"tools.{i}"
        kind = _object(tool, where).get("type")
        if kind not in (None, "custom"):
            raise _error(f"{where}.type", f"tool type {kind!r} is not supported: only client tools (name, description, input_schema)")  # fmt: skip
        function: dict[str, Any] = {"name": _string(_required(tool, "name", where), f"{where}.name")}
        if tool.get("description") is not None:
            function["description"] = _string(tool["description"], f"{where}.description")
        function["parameters"] = _object(_required(tool, "input_schema", where), f"{where}.input_schema")
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str, bool | None]:
    """The tools offered, ``auto``/``required``, and ``parallel_tool_calls``: ``any`` requires a call,
    ``tool`` offers only the named tool and requires it, ``none`` offers none."""
    if value is None:
        return tools, "auto", None
    choice = _object(value, "tool_choice")
    kind = choice.get("type")
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise _error("tool_choice.disable_parallel_tool_use", "Input should be a valid boolean")
    single = False if parallel else None
    if kind == "auto":
        return tools, "auto", single
    if kind == "none":
        return [], "auto", None
    if kind == "any":
        if not tools:
            raise _error("tool_choice", "'any' requires at least one tool in tools")
        return tools, "required", single
    if kind == "tool":
        name = _string(_required(choice, "name", "tool_choice"), "tool_choice.name")
        named = [t for t in tools if t["function"]["name"] == name]
        if not named:
            raise _error("tool_choice.name", f"no tool named {name!r} in tools")
        return named, "required", single
    raise _error("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")


def _think(thinking: Any, output_config: Any) -> Think | None:
    """``thinking`` (``enabled`` with a budget, ``adaptive``, ``disabled``) and ``output_config.effort``
    (the level); the budget itself is not enforced (llama-server has no thinking budget)."""
    effort = None
    if output_config is not None:
        effort = _object(output_config, "output_config").get("effort")
        if effort is not None and effort not in _EFFORTS:
            raise _error("output_config.effort", "Input should be " + ", ".join(f"'{e}'" for e in _EFFORTS))
    if thinking is None:
        return None if effort is None else Think(True, effort)
    kind = _object(thinking, "thinking").get("type")
    if kind == "disabled":
        return Think(False)
    if kind == "enabled":
        _integer(_required(thinking, "budget_tokens", "thinking"), "thinking.budget_tokens", minimum=1)
    elif kind != "adaptive":
        raise _error("thinking.type", "Input should be 'enabled', 'adaptive' or 'disabled'")
    return Think(True, effort or "")


def _format(output_config: Any) -> Any:
    """``output_config.format`` (``{"type": "json_schema", "schema": …}``) as Ollama's ``format``."""
    fmt = output_config.get("format") if isinstance(output_config, dict) else None
    if fmt is None:
        return None
    if _object(fmt, "output_config.format").get("type") != "json_schema":
        raise _error("output_config.format.type", "Input should be 'json_schema'")
    return _object(_required(fmt, "schema", "output_config.format"), "output_config.format.schema")


def _options(data: Mapping[str, Any], counting: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    limit = data.get("max_tokens")
    if limit is None and not counting:
        raise _error("max_tokens", "Field required")
    if limit is not None:
        options["num_predict"] = _integer(limit, "max_tokens", minimum=1)
    for key in ("temperature", "top_p"):
        if data.get(key) is not None:
            options[key] = _number(data[key], key)
    if data.get("top_k") is not None:
        options["top_k"] = _integer(data["top_k"], "top_k", minimum=0)
    if data.get("stop_sequences") is not None:
        stops = _list(data["stop_sequences"], "stop_sequences")
        options["stop"] = [_string(s, f"stop_sequences.{i}") for i, s in enumerate(stops)]
    return options


def messages_request(data: Mapping[str, Any], fetched: Mapping[str, bytes] | None = None, *,
                     counting: bool = False) -> tuple[ChatRequest, bool]:  # fmt: skip
    """A ``/v1/messages`` body → the chat request and whether to stream. ``counting``: a
    ``count_tokens`` body, where ``max_tokens`` is not needed."""
    for key in data:
        if key not in _FIELDS:
            raise _error(key, "Extra inputs are not permitted")
    model = _string(_required(data, "model", ""), "model")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _error("stream", "Input should be a valid boolean")
    if data.get("metadata") is not None:
        _object(data["metadata"], "metadata")  # accepted, and not used
    options = _options(data, counting)
    tools, tool_choice, parallel = _tool_choice(data.get("tool_choice"), _tools(data.get("tools")))
    messages = _system(data.get("system")) + _messages(_required(data, "messages", ""), fetched or {})
    req = ChatRequest(model=model, stream=bool(stream), format=_format(data.get("output_config")), options=options,
                      think=_think(data.get("thinking"), data.get("output_config")), messages=messages, tools=tools,
                      tool_choice=tool_choice, parallel_tool_calls=parallel, think_if_able=True)  # fmt: skip
    return req, bool(stream)


# -- out -------------------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    """``msg_…`` / ``toolu_…`` / ``req_…``: 24 random letters and digits, as Anthropic's ids look."""
    return prefix + "".join(random.choices(_ID_CHARS, k=24))


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error")


def error_body(message: str, status: int) -> dict[str, Any]:
    """An error reply in Anthropic's shape (the HTTP status goes with it)."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}, "request_id": new_id("req_")}


def stop_reason(final: Chunk, called: bool) -> str:
    if final.get("done_reason") == "length":
        return "max_tokens"
    return "tool_use" if called else "end_turn"


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"type": "tool_use", "id": call.get("id") or new_id("toolu_"), "name": function.get("name", ""),
            "input": function.get("arguments") or {}}  # fmt: skip


def message_reply(model: str, final: Chunk) -> dict[str, Any]:
    """The ``message`` object of a non-streamed reply, from the collected Ollama reply."""
    message = final.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("thinking"):
        content.append({"type": "thinking", "thinking": message["thinking"], "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    calls = [_tool_use(c) for c in message.get("tool_calls") or ()]
    return {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": model, "content": content + calls,
            "stop_reason": stop_reason(final, bool(calls)), "stop_sequence": None,
            "usage": {"input_tokens": int(final.get("prompt_eval_count", 0)),
                      "output_tokens": int(final.get("eval_count", 0))}}  # fmt: skip


def count_reply(tokens: int) -> dict[str, int]:
    return {"input_tokens": tokens}


def event(kind: str, body: dict[str, Any]) -> bytes:
    """One named server-sent event; ``body`` carries the same ``type``."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind} | body) + b"\n\n"


_OPENERS = {"thinking": {"type": "thinking", "thinking": "", "signature": ""}, "text": {"type": "text", "text": ""}}
_DELTAS = {"thinking": "thinking_delta", "text": "text_delta"}


class MessageStream:
    """Ollama chat chunks → Anthropic's stream events (a ``Framing``). ``chunk`` is synchronous and
    keeps the state: whether the message has started, the open block and the next block index."""

    content_type = "text/event-stream"

    def __init__(self, model: str, ident: str | None = None) -> None:
        self.model = model
        self.ident = ident or new_id("msg_")
        self.started = False
        self.finished = False
        self.open: str | None = None  # the kind of the open block
        self.index = 0  # the open block's index, or the next block's when none is open
        self.called = False

    def _start(self) -> bytes:
        self.started = True
        message: dict[str, Any] = {"id": self.ident, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}  # fmt: skip
        return event("message_start", {"message": message}) + event("ping", {})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        self.index += 1
        return event("content_block_stop", {"index": self.index - 1})

    def _text(self, kind: str, text: str) -> bytes:
        out = b""
        if self.open != kind:
            out = self._close() + event("content_block_start", {"index": self.index, "content_block": _OPENERS[kind]})
            self.open = kind
        delta = {"type": _DELTAS[kind], kind: text}
        return out + event("content_block_delta", {"index": self.index, "delta": delta})

    def _call(self, call: dict[str, Any]) -> bytes:
        block = _tool_use(call)
        arguments = orjson.dumps(block["input"]).decode()
        self.called = True
        out = self._close() + event("content_block_start", {"index": self.index, "content_block": block | {"input": {}}})
        out += event("content_block_delta", {"index": self.index, "delta": {"type": "input_json_delta", "partial_json": arguments}})  # fmt: skip
        self.open = "tool_use"
        return out + self._close()

    def _finish(self, final: Chunk) -> bytes:
        self.finished = True
        usage = {"input_tokens": int(final.get("prompt_eval_count", 0)), "output_tokens": int(final.get("eval_count", 0))}
        delta = {"stop_reason": stop_reason(final, self.called), "stop_sequence": None}
        return self._close() + event("message_delta", {"delta": delta, "usage": usage})

    def chunk(self, chunk: Chunk) -> bytes:
        out = b"" if self.started else self._start()
        message = chunk.get("message") or {}
        if message.get("thinking"):
            out += self._text("thinking", message["thinking"])
        if message.get("content"):
            out += self._text("text", message["content"])
        for call in message.get("tool_calls") or ():
            out += self._call(call)
        if chunk.get("done"):
            out += self._finish(chunk)
        return out

    def end(self) -> bytes:
        out = b"" if self.started else self._start()
        if not self.finished:
            out += self._finish({})
        return out + event("message_stop", {})

    def error(self, message: str, status: int) -> bytes:
        return event("error", {"error": {"type": error_type(status), "message": message}})
