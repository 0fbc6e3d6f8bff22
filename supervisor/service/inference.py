"""Generate and chat: resolve the model, check what it can do, lease a runner, render, stream.

Each use case is an async generator of Ollama response objects. Everything that can fail before the
first object (bad request, unknown model, missing capability, load failure) raises before it is
produced, so the HTTP layer answers those with a real status; later failures become an
``{"error": ...}`` line.

Two paths (DESIGN.md): a model with a Go TEMPLATE (or a request ``template``/``suffix``) is rendered
here and completed with ``/completion``, with thinking and tool calls parsed out of the text
(``OutputSplitter``); any other chat goes to llama-server's ``/v1/chat/completions``, which applies
the GGUF's Jinja template and splits reasoning and tool calls itself. A generate without a Go
template renders through ``/apply-template`` and completes with ``/completion``, which gives the
prompt text Ollama's ``context`` is made of. A prompt that overflows the context is refused by
llama-server, truncated (``prompting``) and retried once or twice — never for ``truncate: false``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import structlog

from ..errors import BadRequest, ContextOverflow, LlamasupError, MissingCapability, PromptTooLong
from ..pool.hardware import cpu_flags, repack_is_safe
from ..pool.pool import UNSET, Runner, RunnerPool, RunnerSpec
from ..protocol import ollama as wire
from ..protocol.llama_server import chat_body, check_images, forced_call_schema, media_needed, tool_fields
from ..protocol.ollama_requests import ChatRequest, GenerateRequest, Message, Think
from ..runner.client import RunnerConnectionLost
from ..settings import Settings
from ..store.index import ModelIndex
from ..templates import TemplateSet, TemplateSyntaxError, parse_ollama_template
from ..templates.gotemplate import infer_thinking_tags
from ..templates.prompt import render_suffix, tag_images
from ..templates.thinking import ThinkingParser, prompt_opens_thinking
from ..templates.tools import ToolCallParser, tool_call_tag
from .calls import crashed
from .completion import CompletionPrompt, Events, Outcome, complete
from .output import NativeChatEvents, OutputSplitter, Piece, Shape
from .prompting import (
    GoRenderer,
    NativeRenderer,
    Renderer,
    chat_messages,
    fit_messages,
    generate_messages,
    mark_images,
)
from .relay import Chunk, Handle, pump
from .resolve import ResolvedModel, go_template, resolve_model, runner_spec

log = structlog.get_logger("supervisor.inference")
DEFAULT_THINK_TAGS = ("<think>", "</think>")
_ATTEMPTS = 3  # as sent, with old messages dropped, with the prompt's middle cut


@dataclass
class _Plan:
    spec: RunnerSpec
    body: dict[str, Any]  # sampling, format and logprobs fields
    num_keep: int
    top_logprobs: int | None  # None: logprobs not asked for


@dataclass
class _Rendered:
    """A prompt and how to make it shorter when llama-server says it does not fit."""

    prompt: CompletionPrompt
    shown: str  # what _debug_render_only returns
    messages: list[Message] | None = None
    renderer: Renderer | None = None


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        models: ModelIndex,
        pool: RunnerPool,
        *,
        media_marker: str = "<__media__>",
        default_ctx: int | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.pool = pool
        self.marker = media_marker
        self.repack = repack_is_safe(cpu_flags())
        self.default_ctx = default_ctx  # num_ctx when nobody chose one (placement.default_num_ctx)

    # -- checks -------------------------------------------------------------------------------------
    @staticmethod
    def _think(model: ResolvedModel, requested: Think | None, name: str, *, if_able: bool = False) -> Think | None:
        """The request's ``think``; on by default for thinking models; refused for the others (or
        dropped, ``if_able``)."""
        thinks = "thinking" in model.capabilities
        if requested is not None and requested.enabled and not thinks:
            if if_able:
                return None
            raise MissingCapability(f'"{name}" does not support thinking')
        if requested is None and thinks:
            return Think(True, explicit=False)
        return requested

    @staticmethod
    def _require(model: ResolvedModel, name: str, verb: str, *needed: str) -> None:
        if model.missing("completion"):
            raise MissingCapability(f'"{name}" does not support {verb}')
        missing = model.missing(*needed)
        if missing:
            raise MissingCapability(f"{model.name} does not support " + "\n".join(missing))

    @staticmethod
    def _user_template(source: str) -> TemplateSet:
        try:
            return parse_ollama_template(source)
        except TemplateSyntaxError as e:
            raise LlamasupError(str(e)) from None

    # -- runner and request fields -----------------------------------------------------------------
    def _plan(self, model: ResolvedModel, req: GenerateRequest | ChatRequest, *, chat_api: bool, fmt: Any = None) -> _Plan:
        """``fmt``: a format that replaces the request's (a forced tool call)."""
        options = wire.resolve_options(model.params, req.options)
        spec = runner_spec(model, options.runner, self.settings, repack=self.repack, default_ctx=self.default_ctx)
        config = spec.config
        body = dict(options.sampling) | wire.format_fields(req.format if fmt is None else fmt, chat=chat_api)
        # num_predict is bounded by the per-slot context the runner is planned with.
        body["n_predict"] = wire.bound_num_predict(int(body.get("n_predict", -1)), config.ctx_per_slot)
        top: int | None = None
        if req.logprobs:
            top = req.top_logprobs
            if chat_api:
                body.update(logprobs=True, top_logprobs=max(top, 1))  # llama-server reports nothing with 0
            else:
                body["n_probs"] = max(top, 1)
        return _Plan(spec, body, int(options.sampling.get("n_keep", 4)), top)

    @staticmethod
    def _reply(model: str, *, chat: bool, done: bool) -> Chunk:
        """An empty reply in the route's shape (``message`` for chat, ``response`` for generate)."""
        chunk: Chunk = {"model": model, "created_at": wire.utc_now()}
        if chat:
            chunk["message"] = {"role": "assistant", "content": ""}
        else:
            chunk["response"] = ""
        chunk["done"] = done
        return chunk

    def _control(self, model: str, done_reason: str, *, chat: bool) -> Chunk:
        return self._reply(model, chat=chat, done=True) | {"done_reason": done_reason}

    def _debug(self, model: str, rendered: _Rendered, *, chat: bool) -> Chunk:
        info = {"rendered_template": rendered.shown, "image_count": len(rendered.prompt.images)}
        return self._reply(model, chat=chat, done=False) | {"_debug_info": info}

    @staticmethod
    def _events(runner: Runner) -> Events:
        """The runner's event streams made into chunks (``pump``); a broken connection becomes
        ``RunnerCrashed`` with the cause."""

        async def events(path: str, body: dict[str, Any], handle: Handle) -> AsyncGenerator[Chunk, None]:
            try:
                async with aclosing(pump(runner.client.stream(path, body), handle)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            except RunnerConnectionLost as e:
                raise await crashed(runner, e) from e

        return events

    def _splitter(
        self, tset: TemplateSet | None, think: Think | None, tools: Sequence[dict[str, Any]], prompt: str, *, forced: bool = False
    ) -> tuple[OutputSplitter, str]:
        """Parsers for the model's text, and the closing thinking tag (empty when not thinking)."""
        thinking = None
        closing = ""
        if think is not None and think.enabled:
            opening, closing = infer_thinking_tags(tset) if tset is not None else DEFAULT_THINK_TAGS
            if opening and closing:
                started = prompt_opens_thinking(prompt, opening, closing)
                thinking = ThinkingParser(opening, closing, started=started)
            else:
                closing = ""
        parser = None
        if tools:
            names = [str((t.get("function") or {}).get("name", "")) for t in tools]
            # a forced call is constrained to bare JSON (``forced_call_schema``), whatever the template's tag
            tag = "{" if forced else tool_call_tag(tset) if tset is not None else None
            parser = ToolCallParser(tag, names)
        return OutputSplitter(thinking, parser), closing

    # -- prompts ------------------------------------------------------------------------------------
    def _renderer(
        self, tset: TemplateSet | None, runner: Runner, model: ResolvedModel, tools: Sequence[dict[str, Any]], think: Think | None
    ) -> Renderer:
        """The model's Go TEMPLATE rendered here, or else its GGUF template rendered by llama-server."""
        has_projector = model.projector is not None
        if tset is not None:
            return GoRenderer(tset, runner.client, self.marker, has_projector, tools, think)
        return NativeRenderer(runner.client, self.marker, has_projector, tools, think)

    async def _from_messages(self, renderer: Renderer, messages: list[Message]) -> _Rendered:
        text, shown, images = await renderer.render(messages)
        return _Rendered(CompletionPrompt(text, images), shown, messages, renderer)

    async def _for_debug(self, rendered: _Rendered, plan: _Plan, truncate: bool) -> _Rendered:
        """What ``_debug_render_only`` shows: the prompt as it would be sent, history truncated to fit."""
        messages, renderer = rendered.messages, rendered.renderer
        n_ctx = plan.spec.config.ctx_per_slot
        if truncate and messages and renderer is not None and len(messages) > 1 and await renderer.count(messages) >= n_ctx:
            return await self._from_messages(renderer, await fit_messages(messages, renderer.count, n_ctx))
        return rendered

    def _single(self, text: str, images: list[bytes], wrap: Callable[[str], str] = str) -> _Rendered:
        """A prompt that is not built from messages (raw; suffix, which ``wrap`` renders): images
        tagged into its text, then swapped for the media marker."""
        (tagged,), all_images = tag_images([Message(role="user", content=text, images=images)])
        shown = wrap(tagged.content)
        marked, used = mark_images(shown, all_images, self.marker)
        return _Rendered(CompletionPrompt(marked, used), shown)

    @staticmethod
    async def _drop_old(messages: list[Message], renderer: Renderer, n_ctx: int) -> list[Message] | None:
        """The history without the oldest messages that keep it from fitting; None if none can go."""
        if len(messages) < 2:
            return None
        fitted = await fit_messages(messages, renderer.count, n_ctx)
        if len(fitted) == len(messages):
            return None
        log.info("truncating input messages which exceed context length", dropped=len(messages) - len(fitted))
        return fitted

    async def _shrink(self, runner: Runner, rendered: _Rendered, n_ctx: int, plan: _Plan, shift: bool | None) -> _Rendered:
        """A shorter prompt after ``ContextOverflow``: drop old messages, else cut the middle."""
        messages, renderer = rendered.messages, rendered.renderer
        if messages is not None and renderer is not None:
            fitted = await self._drop_old(messages, renderer, n_ctx)
            if fitted is not None:
                return await self._from_messages(renderer, fitted)
        if shift is False or rendered.prompt.images or rendered.prompt.tokens is not None:
            raise PromptTooLong()
        tokens: list[int] = (await runner.client.post_json("/tokenize", {"content": rendered.prompt.text, "add_special": True}))["tokens"]  # fmt: skip
        keep = min(plan.num_keep + 1, len(tokens))  # +1: the BOS token the tokenizer put first
        target = n_ctx - max((n_ctx - plan.num_keep) // 2, 1)
        if target <= keep:
            raise PromptTooLong()
        log.info("truncating prompt which exceeds context length", tokens=len(tokens), kept=target)
        cut = tokens[:keep] + tokens[len(tokens) - (target - keep) :]
        return _Rendered(CompletionPrompt(rendered.prompt.text, tokens=cut), rendered.shown)

    async def _completion(
        self,
        runner: Runner,
        rendered: _Rendered,
        plan: _Plan,
        req: GenerateRequest | ChatRequest,
        make_splitter: Callable[[str], tuple[OutputSplitter, str]],
        shape: Shape,
        outcome: list[Outcome],
    ) -> AsyncGenerator[Chunk, None]:
        """``complete`` with the overflow retries; the last attempt's outcome is left in ``outcome``."""
        events = self._events(runner)
        for attempt in range(_ATTEMPTS):
            splitter, closing = make_splitter(rendered.prompt.text)
            result = Outcome()
            outcome[:] = [result]
            started = False
            try:
                async with aclosing(
                    complete(events, plan.body, rendered.prompt, splitter, result, top_logprobs=plan.top_logprobs, shape=shape, closing_tag=closing)  # fmt: skip
                ) as chunks:
                    async for chunk in chunks:
                        started = True
                        yield chunk
                return
            except ContextOverflow as e:
                if started or not req.truncate:
                    raise
                if attempt == _ATTEMPTS - 1:
                    raise PromptTooLong() from None
                rendered = await self._shrink(runner, rendered, e.n_ctx, plan, req.shift)

    def _final(self, req: GenerateRequest | ChatRequest, stop_type: str | None, done_reason: str | None = None) -> Chunk:
        reason = done_reason or wire.done_reason_from_stop_type(stop_type)
        return self._reply(req.model, chat=isinstance(req, ChatRequest), done=True) | {"done_reason": reason}

    # -- generate -----------------------------------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> AsyncGenerator[Chunk, None]:
        start = time.monotonic_ns()
        model = await resolve_model(self.models, req.model)
        keep_alive = wire.parse_keep_alive(req.keep_alive, UNSET)
        if not req.prompt and not req.suffix and keep_alive == 0:
            self.pool.expire(str(model.path))
            yield self._control(req.model, "unload", chat=False)
            return
        if req.raw and (req.template or req.system or req.context):
            raise BadRequest("raw mode does not support template, system, or context")
        think = self._think(model, req.think, req.model)
        needed = (["insert"] if req.suffix else []) + media_needed(req.images)
        self._require(model, req.model, "generate", *needed)
        check_images(req.images, audio="audio" in model.capabilities)
        tset = self._user_template(req.template) if req.template else go_template(model.template) if model.template else None  # fmt: skip
        plan = self._plan(model, req, chat_api=False)
        async with self.pool.lease(plan.spec, keep_alive) as runner:
            load_ns = time.monotonic_ns() - start
            if not req.prompt and not req.suffix:
                yield self._control(req.model, "load", chat=False)
                return
            rendered = await self._render_generate(runner, model, req, tset, think)
            if req.debug_render_only:
                yield self._debug(req.model, await self._for_debug(rendered, plan, req.truncate), chat=False)
                return
            outcome: list[Outcome] = []

            def splitter(prompt: str) -> tuple[OutputSplitter, str]:
                return self._splitter(tset, think, (), prompt)

            def shape(piece: Piece, logprobs: list[dict[str, Any]]) -> Chunk:
                chunk: Chunk = {"model": req.model, "created_at": wire.utc_now(), "response": piece.content}
                if piece.thinking:
                    chunk["thinking"] = piece.thinking
                chunk["done"] = False
                if logprobs:
                    chunk["logprobs"] = logprobs
                return chunk

            async for chunk in self._completion(runner, rendered, plan, req, splitter, shape, outcome):
                yield chunk
            result = outcome[0]
            last = self._final(req, result.stop_type)
            if not req.raw:
                text = rendered.prompt.text.replace(self.marker, "") + "".join(result.text)
                tokens = await runner.client.post_json("/tokenize", {"content": text, "add_special": False, "parse_special": True})  # fmt: skip
                last["context"] = tokens.get("tokens", [])
            last.update(wire.metrics(result.timings, total_ns=time.monotonic_ns() - start, load_ns=load_ns))
            yield last

    async def _render_generate(
        self, runner: Runner, model: ResolvedModel, req: GenerateRequest, tset: TemplateSet | None, think: Think | None
    ) -> _Rendered:
        if req.raw:
            return self._single(req.prompt, req.images)
        if req.suffix:
            fim = tset
            assert fim is not None  # the insert capability comes from a Go template
            rendered = self._single(req.prompt, req.images, lambda prompt: render_suffix(fim, prompt, req.suffix, think))
        else:
            renderer = self._renderer(tset, runner, model, (), think)
            rendered = await self._from_messages(renderer, generate_messages(model, req))
        if req.context:
            previous = await runner.client.post_json("/detokenize", {"tokens": req.context})
            prefix = str(previous.get("content", ""))
            rendered.prompt.text = prefix + rendered.prompt.text
            rendered.shown = prefix + rendered.shown
            rendered.messages = None  # the earlier exchange is not messages: cut tokens if too long
        return rendered

    # -- chat ---------------------------------------------------------------------------------------
    async def chat(self, req: ChatRequest) -> AsyncGenerator[Chunk, None]:
        start = time.monotonic_ns()
        if not req.model.strip():
            raise BadRequest("model is required")
        model = await resolve_model(self.models, req.model)
        keep_alive = wire.parse_keep_alive(req.keep_alive, UNSET)
        if not req.messages and keep_alive == 0:
            self.pool.expire(str(model.path))
            yield self._control(req.model, "unload", chat=True)
            return
        think = self._think(model, req.think, req.model, if_able=req.think_if_able)
        media = [i for m in req.messages for i in m.images]
        self._require(model, req.model, "chat", *(["tools"] if req.tools else []), *media_needed(media))
        check_images(media, audio="audio" in model.capabilities)
        tset = go_template(model.template) if model.template else None
        forced = tset is not None and req.tool_choice == "required" and bool(req.tools)
        plan = self._plan(model, req, chat_api=tset is None, fmt=forced_call_schema(req.tools) if forced else None)
        async with self.pool.lease(plan.spec, keep_alive) as runner:
            load_ns = time.monotonic_ns() - start
            if not req.messages:
                yield self._control(req.model, "load", chat=True)
                return
            messages = chat_messages(model, req.messages)
            has_projector = model.projector is not None
            if tset is not None:
                chunks = self._chat_template(runner, req, plan, messages, tset, think, has_projector)
            else:
                chunks = self._chat_native(runner, req, plan, messages, think, has_projector)
            async with aclosing(chunks) as stream:
                async for chunk in stream:
                    if chunk["done"]:
                        chunk.update(wire.metrics(chunk.pop("_timings", None), total_ns=time.monotonic_ns() - start, load_ns=load_ns))  # fmt: skip
                    yield chunk

    async def count_tokens(self, req: ChatRequest) -> int:
        """The tokens of the prompt ``req``'s messages and tools render to (nothing is generated)."""
        model = await resolve_model(self.models, req.model)
        think = self._think(model, req.think, req.model, if_able=req.think_if_able)
        self._require(model, req.model, "chat", *(["tools"] if req.tools else []))
        tset = go_template(model.template) if model.template else None
        plan = self._plan(model, req, chat_api=tset is None)
        async with self.pool.lease(plan.spec, wire.parse_keep_alive(req.keep_alive, UNSET)) as runner:
            renderer = self._renderer(tset, runner, model, req.tools, think)
            return await renderer.count(chat_messages(model, req.messages))

    @staticmethod
    def _message_chunk(req: ChatRequest, piece: Piece, logprobs: list[dict[str, Any]]) -> Chunk:
        message: dict[str, Any] = {"role": "assistant", "content": piece.content}
        if piece.thinking:
            message["thinking"] = piece.thinking
        if piece.calls:
            message["tool_calls"] = piece.calls
        chunk: Chunk = {"model": req.model, "created_at": wire.utc_now(), "message": message, "done": False}
        if logprobs:
            chunk["logprobs"] = logprobs
        return chunk

    async def _chat_template(
        self,
        runner: Runner,
        req: ChatRequest,
        plan: _Plan,
        messages: list[Message],
        tset: TemplateSet,
        think: Think | None,
        has_projector: bool,
    ) -> AsyncGenerator[Chunk, None]:
        renderer = GoRenderer(tset, runner.client, self.marker, has_projector, req.tools, think)
        rendered = await self._from_messages(renderer, messages)
        if req.debug_render_only:
            yield self._debug(req.model, await self._for_debug(rendered, plan, req.truncate), chat=True)
            return
        outcome: list[Outcome] = []

        forced = req.tool_choice == "required" and bool(req.tools)
        calls = 0

        def splitter(prompt: str) -> tuple[OutputSplitter, str]:
            return self._splitter(tset, think, req.tools, prompt, forced=forced)

        def shape(piece: Piece, logprobs: list[dict[str, Any]]) -> Chunk:
            nonlocal calls
            if req.parallel_tool_calls is False and piece.calls:  # one call only
                piece.calls = piece.calls[: max(0, 1 - calls)]
            calls += len(piece.calls)
            return self._message_chunk(req, piece, logprobs)

        async for chunk in self._completion(runner, rendered, plan, req, splitter, shape, outcome):
            yield chunk
        last = self._final(req, outcome[0].stop_type)
        last["_timings"] = outcome[0].timings
        yield last

    async def _chat_native(
        self,
        runner: Runner,
        req: ChatRequest,
        plan: _Plan,
        messages: list[Message],
        think: Think | None,
        has_projector: bool,
    ) -> AsyncGenerator[Chunk, None]:
        renderer = NativeRenderer(runner.client, self.marker, has_projector, req.tools, think)
        if req.debug_render_only:
            rendered = await self._from_messages(renderer, messages)
            yield self._debug(req.model, await self._for_debug(rendered, plan, req.truncate), chat=True)
            return
        events = self._events(runner)
        top = plan.top_logprobs
        for attempt in range(_ATTEMPTS):
            body = dict(plan.body, stream=True) | chat_body(messages, req.tools, think) | tool_fields(req)
            reader = NativeChatEvents(top, lambda piece, logprobs: self._message_chunk(req, piece, logprobs))
            started = False
            try:
                async with aclosing(events("/v1/chat/completions", body, reader)) as chunks:
                    async for chunk in chunks:
                        started = True
                        yield chunk
            except ContextOverflow as e:
                if started or not req.truncate or attempt == _ATTEMPTS - 1:
                    raise
                fitted = await self._drop_old(messages, renderer, e.n_ctx)
                if fitted is None:
                    raise PromptTooLong() from None
                messages = fitted
                continue
            last = self._final(req, None, wire.done_reason_from_finish(reader.finish))
            tool_calls = reader.calls.result()
            if tool_calls:
                last["message"]["tool_calls"] = tool_calls
            last["_timings"] = reader.timings
            yield last
            return

