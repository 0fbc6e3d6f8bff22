"""What llama-server produces → the fields an Ollama client reads (pure).

Two sources, as there are two chat paths (DESIGN.md):

- ``/completion`` text (Go-template models, every generate): the raw text goes through the thinking
  parser and then the tool-call parser (``OutputSplitter``), which hold back partial tags so a tag
  split across tokens is never shown as content.
- ``/v1/chat/completions`` deltas (GGUF Jinja models): llama-server has already split reasoning and
  tool calls; tool-call argument strings arrive in pieces and become objects at the end
  (``NativeToolCalls``), as Ollama sends them on the final chunk.

``collect`` folds a stream into the one object a non-streamed reply is.

Token log-probabilities come in llama-server's two shapes and leave in Ollama's
(``{"token","logprob","top_logprobs"?}``; ``bytes`` omitted, as Ollama does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import RunnerHTTPError
from ..templates.thinking import ThinkingParser
from ..templates.tools import ParsedCall, ToolCallParser, call_id, tool_call_json


def _logprob(entry: dict[str, Any], top: int) -> dict[str, Any]:
    out: dict[str, Any] = {"token": entry.get("token", ""), "logprob": float(entry.get("logprob", 0.0))}
    if top > 0:
        out["top_logprobs"] = [
            {"token": t.get("token", ""), "logprob": float(t.get("logprob", 0.0))}
            for t in (entry.get("top_logprobs") or ())[:top]
        ]
    return out


def completion_logprobs(event: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """Ollama ``logprobs`` from a ``/completion`` event's ``completion_probabilities``."""
    return [_logprob(e, top) for e in event.get("completion_probabilities") or ()]


def chat_logprobs(choice: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """Ollama ``logprobs`` from a chat-completion choice's ``logprobs.content``."""
    content = (choice.get("logprobs") or {}).get("content") or ()
    return [_logprob(e, top) for e in content]


@dataclass
class Piece:
    """Text released by the parsers for one chunk, and the tool calls completed in it."""

    thinking: str = ""
    content: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.thinking or self.content or self.calls)


Shape = Callable[[Piece, list[dict[str, Any]]], dict[str, Any]]  # a piece and its log-probabilities → a chunk


class OutputSplitter:
    """Raw model text → thinking, content and tool calls, chunk by chunk (Ollama's order: thinking
    first, then tool calls in what is left)."""

    def __init__(self, thinking: ThinkingParser | None, tools: ToolCallParser | None) -> None:
        self.thinking = thinking
        self.tools = tools

    def feed(self, text: str) -> Piece:
        if self.thinking is None and self.tools is None:  # the common case, once per token
            return Piece("", text)
        if self.thinking is None:
            thought, content = "", text
        else:
            thought, content = self.thinking.feed(text)
        return self._tools(thought, content, final=False)

    def finish(self) -> Piece:
        thought, content = self.thinking.finish() if self.thinking is not None else ("", "")
        return self._tools(thought, content, final=True)

    def _tools(self, thought: str, content: str, *, final: bool) -> Piece:
        if self.tools is None:
            return Piece(thought, content)
        calls: list[ParsedCall] = []
        if content:
            calls, content = self.tools.feed(content)
        if final:
            more, rest = self.tools.finish()
            calls, content = calls + more, content + rest
        return Piece(thought, content, [tool_call_json(c, call_id()) for c in calls])


class NativeToolCalls:
    """Tool-call deltas of a chat-completion stream, collected by index and decoded at the end."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: list[dict[str, Any]]) -> None:
        for delta in deltas:
            call = self._calls.setdefault(int(delta.get("index", len(self._calls))), {"id": "", "name": "", "arguments": ""})
            call["id"] = delta.get("id") or call["id"]
            function = delta.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""

    def result(self) -> list[dict[str, Any]]:
        """Ollama's ``tool_calls``; an argument string that is not a JSON object is an error."""
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            try:
                arguments = orjson.loads(call["arguments"] or "{}")
            except orjson.JSONDecodeError as e:
                raise RunnerHTTPError(
                    f'llama-server returned invalid tool call arguments for "{call["name"]}": {e}', status=500
                ) from None
            if not isinstance(arguments, dict):
                raise RunnerHTTPError(
                    f'llama-server returned invalid tool call arguments for "{call["name"]}": not an object',
                    status=500,
                )
            entry: dict[str, Any] = {}
            if call["id"]:
                entry["id"] = call["id"]
            entry["function"] = {"index": index, "name": call["name"], "arguments": arguments}
            out.append(entry)
        return out


class NativeChatEvents:
    """``/v1/chat/completions`` events → chunks (``handle`` for ``pump``): reasoning and content
    deltas shaped by ``shape``; tool-call deltas, the finish reason and the timings kept for the
    final chunk. Only the first choice is read (Ollama has no ``n``)."""

    def __init__(self, top: int | None, shape: Shape) -> None:
        self.top, self.shape = top, shape
        self.calls = NativeToolCalls()
        self.finish: str | None = None
        self.timings: dict[str, Any] | None = None

    def __call__(self, event: dict[str, Any]) -> dict[str, Any] | None:
        self.timings = event.get("timings", self.timings)
        choices = event.get("choices")
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta") or {}
        self.calls.add(delta.get("tool_calls") or [])
        self.finish = choice.get("finish_reason") or self.finish
        piece = Piece(delta.get("reasoning_content") or "", delta.get("content") or "")
        logprobs = chat_logprobs(choice, self.top) if self.top is not None else []
        return self.shape(piece, logprobs) if piece or logprobs else None


def collect(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """One non-streamed response from the streamed chunks: text, tool calls and logprobs gathered
    into the last."""
    final = dict(chunks[-1])
    if "response" in final:
        final["response"] = "".join(c.get("response", "") for c in chunks)
        thinking = "".join(c.get("thinking", "") for c in chunks)
        if thinking:
            final = _insert_after(final, "response", "thinking", thinking)
    if "message" in final:
        message = dict(final["message"])
        message["content"] = "".join(c["message"].get("content", "") for c in chunks)
        thinking = "".join(c["message"].get("thinking", "") for c in chunks)
        if thinking:
            message["thinking"] = thinking
        calls = [call for c in chunks for call in c["message"].get("tool_calls", ())]
        if calls:
            message["tool_calls"] = calls
        final["message"] = message
    logprobs = [lp for c in chunks for lp in c.get("logprobs", ())]
    if logprobs:
        final["logprobs"] = logprobs
    return final


def _insert_after(d: dict[str, Any], after: str, key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out[k] = v
        if k == after:
            out[key] = value
    return out
