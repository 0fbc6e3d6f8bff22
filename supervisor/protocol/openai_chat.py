"""``/v1/chat/completions`` and ``/v1/completions`` translated to and from the Ollama use cases (pure).

In: an OpenAI body becomes the ``ChatRequest`` / ``GenerateRequest`` that ``/api/chat`` and
``/api/generate`` take (reference/ollama-api.md §14.1, §14.2): Ollama's field mapping and error
texts, and beyond Ollama ``max_completion_tokens``, ``tool_choice``, ``parallel_tool_calls``, ``n``,
and image URLs fetched by llamasup (``remote_images`` lists them; the caller fetches and passes the
bytes back in).

Out: the use case's Ollama chunks become OpenAI's, one ``ChatChunks`` / ``TextChunks`` per choice:
the first delta carries the role, a chunk with both thinking and content is split in two, tool
calls are deltas with ``index``, ``id``, ``type`` and the whole ``arguments`` string, then a finish
chunk, a usage chunk when asked, and ``[DONE]`` (the framing's).
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import BadRequest
from .ollama import dumps
from .ollama_requests import ChatRequest, GenerateRequest, Message, Think
from .openai import error_body, model_field

Chunk = dict[str, Any]
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


def _content(role: str, content: Any, fetched: Mapping[str, bytes]) -> tuple[str, list[bytes]]:
    """Text and images of a message's ``content`` (a string, or an array of parts)."""
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
            raise BadRequest("audio input is not supported")
        else:
            raise BadRequest("invalid message format")
    return "\n".join(texts), images


def _go_kind(value: Any) -> str:
    return "<nil>" if value is None else {bool: "bool", int: "float64", float: "float64", dict: "map[string]interface {}"}.get(type(value), type(value).__name__)  # fmt: skip


def _calls(value: Any) -> list[dict[str, Any]]:
    """An assistant message's OpenAI ``tool_calls`` as Ollama's (arguments decoded)."""
    calls = []
    for i, call in enumerate(value if isinstance(value, list) else ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise BadRequest("invalid tool call")
        arguments = function.get("arguments") or "{}"
        try:
            decoded = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise BadRequest("invalid tool call arguments") from None
        if not isinstance(decoded, dict):
            raise BadRequest("invalid tool call arguments")
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


# -- out -------------------------------------------------------------------------------------------
def response_id(prefix: str) -> str:
    """``chatcmpl-…`` / ``cmpl-…``: unique enough for clients that key on it."""
    return f"{prefix}-{random.getrandbits(48):012x}"


def usage(final: Chunk) -> dict[str, int]:
    prompt, completion = int(final.get("prompt_eval_count", 0)), int(final.get("eval_count", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(final: Chunk, called: bool) -> str:
    reason = str(final.get("done_reason") or "stop")
    return "tool_calls" if called and reason == "stop" else reason


def _token_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Ollama's ``logprobs`` as a chat choice's ``{"content": [...]}`` (with ``bytes``)."""

    def one(e: dict[str, Any]) -> dict[str, Any]:
        token = str(e.get("token", ""))
        return {"token": token, "logprob": e.get("logprob", 0.0), "bytes": list(token.encode())}

    return {"content": [one(e) | {"top_logprobs": [one(t) for t in e.get("top_logprobs") or ()]} for e in entries]}


def tool_call(call: dict[str, Any], index: int) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = orjson.dumps(function.get("arguments") or {}).decode()
    return {"id": call.get("id") or f"call_{random.getrandbits(40):010x}", "index": index, "type": "function",
            "function": {"name": function.get("name", ""), "arguments": arguments}}  # fmt: skip


class ChatChunks:
    """One choice's Ollama chat chunks → ``chat.completion.chunk`` objects."""

    def __init__(self, model: str, ident: str, created: int, index: int = 0) -> None:
        self.model, self.ident, self.created, self.index = model, ident, created, index
        self.started = False
        self.calls = 0  # tool calls sent so far (their next ``index``)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        choice: dict[str, Any] = {"index": self.index, "delta": delta, "finish_reason": finish}
        return {"id": self.ident, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": "fp_ollama", "choices": [choice]}  # fmt: skip

    def _delta(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self.started:
            return fields
        self.started = True
        return {"role": "assistant"} | fields

    def pieces(self, chunk: Chunk) -> list[Chunk]:
        """The chunks for one Ollama chunk's thinking, text, tool calls and log-probabilities; an
        empty chunk only to start the reply."""
        message = chunk.get("message") or {}
        thinking, content = message.get("thinking") or "", message.get("content") or ""
        calls = message.get("tool_calls") or ()
        logprobs = _token_logprobs(chunk["logprobs"]) if chunk.get("logprobs") else None
        out = []
        if thinking:
            out.append(self._chunk(self._delta({"content": "", "reasoning": thinking})))
        if content or not (self.started or calls):
            out.append(self._chunk(self._delta({"content": content})))
        if calls:
            deltas = [tool_call(call, self.calls + i) for i, call in enumerate(calls)]
            self.calls += len(deltas)
            out.append(self._chunk(self._delta({"content": "", "tool_calls": deltas})))
        if logprobs is not None:
            if not out:
                out.append(self._chunk(self._delta({"content": ""})))
            out[-1]["choices"][0] = {"index": self.index, "delta": out[-1]["choices"][0]["delta"],
                                     "logprobs": logprobs, "finish_reason": None}  # fmt: skip
        return out

    def finish(self, final: Chunk) -> list[Chunk]:
        """The last chunks: what the final Ollama chunk carries (tool calls on the native path), then
        the ``finish_reason``."""
        return [*self.pieces(final), self._chunk({}, finish_reason(final, self.calls > 0))]

    def usage_chunk(self, totals: dict[str, int]) -> Chunk:
        return {"id": self.ident, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": "fp_ollama", "choices": [], "usage": totals}  # fmt: skip


def chat_choice(final: Chunk, index: int) -> dict[str, Any]:
    """One choice of a non-streamed reply from the collected Ollama reply."""
    message = final.get("message") or {}
    calls = [tool_call(c, i) for i, c in enumerate(message.get("tool_calls") or ())]
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out["reasoning"] = message["thinking"]
    if calls:
        out["tool_calls"] = calls
    choice: dict[str, Any] = {"index": index, "message": out}
    if final.get("logprobs"):
        choice["logprobs"] = _token_logprobs(final["logprobs"])
    choice["finish_reason"] = finish_reason(final, bool(calls))
    return choice


def chat_reply(model: str, finals: list[Chunk]) -> dict[str, Any]:
    """``chat.completion`` from the collected reply of each choice."""
    totals = _sum_usage(finals)
    return {"id": response_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_ollama", "choices": [chat_choice(f, i) for i, f in enumerate(finals)],
            "usage": totals}  # fmt: skip


def _sum_usage(finals: list[Chunk]) -> dict[str, int]:
    parts = [usage(f) for f in finals]
    prompt = parts[0]["prompt_tokens"] if parts else 0  # the prompt is the same for every choice
    completion = sum(p["completion_tokens"] for p in parts)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# -- /v1/completions -------------------------------------------------------------------------------
def _text_logprobs(entries: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """Ollama's ``logprobs`` in the legacy completions shape (tokens, token_logprobs, top_logprobs,
    text_offset)."""
    tokens = [str(e.get("token", "")) for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    tops = [{str(t.get("token", "")): t.get("logprob", 0.0) for t in e.get("top_logprobs") or ()} for e in entries]
    return {"tokens": tokens, "token_logprobs": [e.get("logprob", 0.0) for e in entries], "top_logprobs": tops,
            "text_offset": offsets}  # fmt: skip


class TextChunks:
    """One choice's Ollama generate chunks → ``text_completion`` chunks."""

    def __init__(self, model: str, ident: str, created: int, index: int = 0, echo: str = "") -> None:
        self.model, self.ident, self.created, self.index = model, ident, created, index
        self.echo = echo
        self.offset = 0  # characters of text sent (for ``text_offset``)

    def _chunk(self, text: str, finish: str | None, logprobs: Any = None) -> Chunk:
        choice: dict[str, Any] = {"text": text, "index": self.index, "logprobs": logprobs, "finish_reason": finish}
        return {"id": self.ident, "object": "text_completion", "created": self.created, "model": self.model,
                "system_fingerprint": "fp_ollama", "choices": [choice]}  # fmt: skip

    def pieces(self, chunk: Chunk) -> list[Chunk]:
        text = chunk.get("response") or ""
        if self.echo:
            text, self.echo = self.echo + text, ""
        entries = chunk.get("logprobs")
        if not text and not entries:
            return []
        logprobs = _text_logprobs(entries, self.offset) if entries else None
        self.offset += len(text)
        return [self._chunk(text, None, logprobs)]

    def finish(self, final: Chunk) -> list[Chunk]:
        return [*self.pieces(final), self._chunk("", str(final.get("done_reason") or "stop"))]

    def usage_chunk(self, totals: dict[str, int]) -> Chunk:
        return {"id": self.ident, "object": "text_completion", "created": self.created, "model": self.model,
                "system_fingerprint": "fp_ollama", "choices": [], "usage": totals}  # fmt: skip


def completion_reply(model: str, finals: list[Chunk], echo: str = "") -> dict[str, Any]:
    choices = []
    for i, final in enumerate(finals):
        entries = final.get("logprobs")
        choices.append({"text": echo + (final.get("response") or ""), "index": i,
                        "logprobs": _text_logprobs(entries, len(echo)) if entries else None,
                        "finish_reason": str(final.get("done_reason") or "stop")})  # fmt: skip
    return {"id": response_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_ollama", "choices": choices, "usage": _sum_usage(finals)}  # fmt: skip


# -- the stream ------------------------------------------------------------------------------------
CHOICE = "_choice"  # the choice a chunk belongs to, when n > 1 (absent: 0)


def sse(event: Any) -> bytes:
    return b"data: " + dumps(event) + b"\n\n"


class OpenAIStream:
    """Ollama chunks → OpenAI's server-sent events (a ``Framing``): each choice's chunks, then the
    usage chunk when asked, then ``data: [DONE]``; an error after the start is an ``error`` event
    (the SDKs raise it), and no ``[DONE]``."""

    content_type = "text/event-stream"

    def __init__(self, choices: list[ChatChunks] | list[TextChunks], include_usage: bool) -> None:
        self.choices = choices
        self.include_usage = include_usage
        self.finals: dict[int, Chunk] = {}

    def chunk(self, chunk: Chunk) -> bytes:
        index = chunk.pop(CHOICE, 0)
        translator = self.choices[index]
        if chunk.get("done"):
            self.finals[index] = chunk
            events = translator.finish(chunk)
        else:
            events = translator.pieces(chunk)
        return b"".join(sse(e) for e in events)

    def end(self) -> bytes:
        tail = b""
        if self.include_usage:
            finals = [self.finals[i] for i in sorted(self.finals)]
            tail = sse(self.choices[0].usage_chunk(_sum_usage(finals)))
        return tail + b"data: [DONE]\n\n"

    def error(self, message: str, status: int) -> bytes:
        return sse(error_body(message, status))


def chat_stream(model: str, opts: OpenAIRequest) -> OpenAIStream:
    ident, created = response_id("chatcmpl"), int(time.time())
    return OpenAIStream([ChatChunks(model, ident, created, i) for i in range(opts.n)], opts.include_usage)


def completion_stream(model: str, opts: OpenAIRequest) -> OpenAIStream:
    ident, created = response_id("cmpl"), int(time.time())
    return OpenAIStream([TextChunks(model, ident, created, i, opts.echo) for i in range(opts.n)], opts.include_usage)
