"""One text completion on a runner (``/completion``), as the generate and Go-template chat paths use it.

The raw text is streamed through the output parsers (``OutputSplitter``) and leaves as pieces of
thinking, content and tool calls, each with the log-probabilities of the tokens that produced it.

Structured output with thinking (Ollama's rule, reference/ollama-api.md §12): a grammar from the
start would forbid the model's reasoning, so the first pass runs unconstrained and stops at the
closing thinking tag; the second continues from there (prompt + reasoning + tag) under the grammar.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from .output import OutputSplitter, Piece, Shape, completion_logprobs
from .relay import Chunk, Handle

Events = Callable[[str, dict[str, Any], Handle], AsyncGenerator[Chunk, None]]
_CONSTRAINTS = ("json_schema", "grammar")


@dataclass
class CompletionPrompt:
    """What goes into ``/completion``'s ``prompt``: text with media markers, or tokens."""

    text: str
    images: list[bytes] = field(default_factory=list)
    tokens: list[int] | None = None

    def field(self) -> Any:
        if self.tokens is not None:
            return self.tokens
        if self.images:
            return {"prompt_string": self.text, "multimodal_data": [base64.b64encode(i).decode() for i in self.images]}
        return self.text

    def extended(self, text: str) -> CompletionPrompt:
        """This prompt followed by ``text`` (the second pass of thinking-then-format)."""
        return CompletionPrompt(self.text + text, self.images)


@dataclass
class Outcome:
    """Filled in as the completion runs; read once it is over."""

    text: list[str] = field(default_factory=list)  # everything the model produced, tags included
    stop_type: str | None = None
    stopping_word: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def add_timings(self, timings: dict[str, Any] | None) -> None:
        for key in ("cache_n", "prompt_n", "prompt_ms", "predicted_n", "predicted_ms"):
            if timings and key in timings:
                # the second pass's prompt is the first's plus its output: count the prompt once
                if key in ("cache_n", "prompt_n", "prompt_ms") and key in self.timings:
                    continue
                self.timings[key] = self.timings.get(key, 0.0) + float(timings[key])


async def complete(
    events: Events,
    body: dict[str, Any],
    prompt: CompletionPrompt,
    splitter: OutputSplitter,
    outcome: Outcome,
    *,
    top_logprobs: int | None,
    shape: Shape,
    closing_tag: str = "",
) -> AsyncGenerator[Chunk, None]:
    """Stream ``prompt`` as the chunks ``shape`` makes; ``closing_tag`` (with a grammar in ``body``)
    asks for the two-pass run. ``top_logprobs`` None: no log-probabilities requested."""
    two_pass = bool(closing_tag) and any(k in body for k in _CONSTRAINTS)
    body = dict(body, stream=True, cache_prompt=True)
    first = dict(body, prompt=prompt.field())
    if two_pass:
        for key in _CONSTRAINTS:
            first.pop(key, None)
        first["stop"] = [*body.get("stop", ()), closing_tag]
    async for chunk in events("/completion", first, _CompletionEvents(splitter, outcome, top_logprobs, shape)):
        yield chunk
    if two_pass and outcome.stop_type == "word" and outcome.stopping_word == closing_tag:
        outcome.text.append(closing_tag)
        splitter.feed(closing_tag)  # ends the thinking; nothing to show
        second = dict(body, prompt=prompt.extended("".join(outcome.text)).field())
        if int(body.get("n_predict", -1)) > 0:
            second["n_predict"] = max(int(body["n_predict"]) - int(outcome.timings.get("predicted_n", 0)), 1)
        async for chunk in events("/completion", second, _CompletionEvents(splitter, outcome, top_logprobs, shape)):
            yield chunk
    tail = splitter.finish()
    if tail:
        yield shape(tail, [])


class _CompletionEvents:
    """``/completion`` events → chunks (``handle`` for ``pump``): text through the splitter, the
    stop event into ``outcome``, nothing after it."""

    def __init__(self, splitter: OutputSplitter, outcome: Outcome, top: int | None, shape: Shape) -> None:
        self.splitter, self.outcome, self.top, self.shape = splitter, outcome, top, shape
        self.stopped = False

    def __call__(self, event: dict[str, Any]) -> Chunk | None:
        if self.stopped:
            return None
        if event.get("stop"):
            self.stopped = True
            self.outcome.stop_type = event.get("stop_type")
            self.outcome.stopping_word = event.get("stopping_word") or ""
            self.outcome.add_timings(event.get("timings"))
            return None
        text = event.get("content") or ""
        logprobs = completion_logprobs(event, self.top) if self.top is not None else []
        if text:
            self.outcome.text.append(text)
        piece = self.splitter.feed(text) if text else Piece()
        return self.shape(piece, logprobs) if piece or logprobs else None
