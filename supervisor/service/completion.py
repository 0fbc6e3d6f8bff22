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
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from .output import OutputSplitter, Piece, completion_logprobs

Events = Callable[[str, dict[str, Any]], AsyncGenerator[dict[str, Any], None]]
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
    closing_tag: str = "",
) -> AsyncGenerator[tuple[Piece, list[dict[str, Any]]], None]:
    """Stream ``prompt``; ``closing_tag`` (with a grammar in ``body``) asks for the two-pass run.
    ``top_logprobs`` None: no log-probabilities requested."""
    two_pass = bool(closing_tag) and any(k in body for k in _CONSTRAINTS)
    body = dict(body, stream=True, cache_prompt=True)
    first = dict(body, prompt=prompt.field())
    if two_pass:
        for key in _CONSTRAINTS:
            first.pop(key, None)
        first["stop"] = [*body.get("stop", ()), closing_tag]
    async for item in _pass(events, first, splitter, outcome, top_logprobs):
        yield item
    if two_pass and outcome.stop_type == "word" and outcome.stopping_word == closing_tag:
        outcome.text.append(closing_tag)
        splitter.feed(closing_tag)  # ends the thinking; nothing to show
        second = dict(body, prompt=prompt.extended("".join(outcome.text)).field())
        if int(body.get("n_predict", -1)) > 0:
            second["n_predict"] = max(int(body["n_predict"]) - int(outcome.timings.get("predicted_n", 0)), 1)
        async for item in _pass(events, second, splitter, outcome, top_logprobs):
            yield item
    tail = splitter.finish()
    if tail:
        yield tail, []


async def _pass(
    events: Events, body: dict[str, Any], splitter: OutputSplitter, outcome: Outcome, top: int | None
) -> AsyncGenerator[tuple[Piece, list[dict[str, Any]]], None]:
    async with aclosing(events("/completion", body)) as stream:
        async for event in stream:
            if event.get("stop"):
                outcome.stop_type = event.get("stop_type")
                outcome.stopping_word = event.get("stopping_word") or ""
                outcome.add_timings(event.get("timings"))
                return
            text = event.get("content") or ""
            logprobs = completion_logprobs(event, top) if top is not None else []
            if text:
                outcome.text.append(text)
            piece = splitter.feed(text) if text else Piece()
            if piece or logprobs:
                yield piece, logprobs
