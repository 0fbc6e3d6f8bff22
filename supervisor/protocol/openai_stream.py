"""``/v1/chat/completions`` and ``/v1/completions`` replies: the Ollama use cases' chunks as OpenAI's (pure).

One ``ChatChunks`` / ``TextChunks`` per choice: the first delta carries the role, a chunk with both
thinking and content is split in two, tool calls are deltas with ``index``, ``id``, ``type`` and the
whole ``arguments`` string, then a finish chunk; ``OpenAIStream`` (the route's ``Framing``) adds the
usage chunk when asked and ``data: [DONE]``. The request side is protocol/openai_chat.py.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from .ollama import dumps
from .openai import error_body
from .openai_chat import OpenAIRequest

Chunk = dict[str, Any]


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
