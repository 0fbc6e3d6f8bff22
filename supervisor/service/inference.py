"""Generate and chat: resolve the model, lease a runner, translate the stream (no HTTP types here).

Each use case is an async generator of Ollama response objects. Everything that can fail before the
first object (bad request, unknown model, load failure) raises before it is produced, so the HTTP layer
answers those with a real status; failures after that become an ``{"error": ...}`` line.

Chat uses the GGUF's own chat template inside llama-server (``/v1/chat/completions``). Non-raw generate
renders the same template with ``/apply-template`` and completes with ``/completion``, which gives the
prompt text needed for Ollama's ``context`` tokens; raw generate goes straight to ``/completion``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..errors import BadRequest, ModelNotFound, RunnerCrashed
from ..pool.hardware import cpu_flags, repack_is_safe
from ..pool.placement import plan_runner
from ..pool.pool import UNSET, Runner, RunnerPool, RunnerSpec
from ..protocol import ollama as wire
from ..runner.client import RunnerConnectionLost
from ..settings import Settings
from ..store import ModelName, read_gguf_info
from ..store.index import ModelIndex

log = structlog.get_logger("supervisor.inference")
Chunk = dict[str, Any]


@dataclass(frozen=True)
class _Model:
    """A resolved model and what running it needs."""

    name: ModelName
    path: Path
    train_ctx: int | None
    params: dict[str, Any]
    system: str | None
    projector: Path | None
    adapters: tuple[Path, ...]


class InferenceService:
    def __init__(self, settings: Settings, models: ModelIndex, pool: RunnerPool) -> None:
        self.settings = settings
        self.models = models
        self.pool = pool
        self.repack = repack_is_safe(cpu_flags())

    # -- shared steps -------------------------------------------------------------------------------
    def _resolve(self, requested: str) -> _Model:
        if not requested.strip():
            raise ModelNotFound("")
        ref = self.models.find(ModelName.parse(requested))
        if ref is None:
            raise ModelNotFound(requested)
        files = self.models.files(ref)
        info = read_gguf_info(files.weights)
        return _Model(
            name=ref.name,
            path=files.weights,
            train_ctx=info.context_length,
            params=files.params,
            system=files.system,
            projector=files.projectors[0] if files.projectors else None,
            adapters=files.adapters,
        )

    def _spec(self, model: _Model, options: wire.ResolvedOptions) -> RunnerSpec:
        config = plan_runner(
            model_path=model.path,
            alias=model.name.display,
            train_ctx=model.train_ctx,
            options=options.runner,
            settings=self.settings,
            projector=model.projector,
            adapters=model.adapters,
            repack=self.repack,
        )
        return RunnerSpec(model_key=str(model.path), name=model.name.display, config=config)

    @staticmethod
    async def _events(runner: Runner, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The runner's event stream; a broken connection becomes ``RunnerCrashed`` with the cause."""
        stream = runner.client.stream(path, body)
        try:
            async for event in stream:
                yield event
        except RunnerConnectionLost as e:
            process = runner.process
            if await process.wait_exit(timeout=2.0) is not None:
                raise RunnerCrashed(await process.exit_detail()) from e
            raise RunnerCrashed(f"lost connection to llama-server: {e}") from e
        finally:
            await stream.aclose()

    def _prepare(
        self, requested: str, keep_alive_value: Any, request_options: dict[str, Any], fmt: Any, *, chat: bool
    ) -> tuple[_Model, float | None | object, RunnerSpec, dict[str, Any]]:
        """Everything a request needs before a runner: model, keep-alive, runner spec, request fields."""
        model = self._resolve(requested)
        keep_alive = wire.parse_keep_alive(keep_alive_value, UNSET)
        options = wire.resolve_options(model.params, request_options)
        spec = self._spec(model, options)
        body = dict(options.sampling) | wire.format_fields(fmt, chat=chat)
        # num_predict is bounded by the per-slot context the runner is planned with.
        body["n_predict"] = wire.bound_num_predict(int(body.get("n_predict", -1)), spec.config.ctx_per_slot)
        return model, keep_alive, spec, body

    @staticmethod
    def _control(model: str, done_reason: str, *, chat: bool) -> Chunk:
        chunk: Chunk = {"model": model, "created_at": wire.utc_now()}
        if chat:
            chunk["message"] = {"role": "assistant", "content": ""}
        else:
            chunk["response"] = ""
        chunk["done"] = True
        chunk["done_reason"] = done_reason
        return chunk

    # -- generate -----------------------------------------------------------------------------------
    async def generate(self, req: wire.GenerateRequest) -> AsyncGenerator[Chunk, None]:
        start = time.monotonic_ns()
        model, keep_alive, spec, body = self._prepare(req.model, req.keep_alive, req.options, req.format, chat=False)
        if req.raw and (req.template or req.system or req.context):
            raise BadRequest("raw mode does not support template, system, or context")
        if not req.prompt and keep_alive == 0:
            self.pool.expire(spec.model_key)
            yield self._control(req.model, "unload", chat=False)
            return
        async with self.pool.lease(spec, keep_alive) as runner:
            load_ns = time.monotonic_ns() - start
            if not req.prompt:
                yield self._control(req.model, "load", chat=False)
                return
            if req.raw:
                prompt = req.prompt
            else:
                prompt = await self._render_generate(runner, model, req)
            body.update(prompt=prompt, stream=True, cache_prompt=True)
            pieces: list[str] = []
            final: dict[str, Any] = {}
            async for event in self._events(runner, "/completion", body):
                if event.get("stop"):
                    final = event
                    break
                piece = event.get("content") or ""
                if piece:
                    pieces.append(piece)
                    yield {"model": req.model, "created_at": wire.utc_now(), "response": piece, "done": False}
            last: Chunk = {
                "model": req.model,
                "created_at": wire.utc_now(),
                "response": "",
                "done": True,
                "done_reason": wire.done_reason_from_stop_type(final.get("stop_type")),
            }
            if not req.raw:
                tokens = await runner.client.post_json(
                    "/tokenize", {"content": prompt + "".join(pieces), "add_special": False, "parse_special": True}
                )
                last["context"] = tokens.get("tokens", [])
            last.update(wire.metrics(final.get("timings"), total_ns=time.monotonic_ns() - start, load_ns=load_ns))
            yield last

    async def _render_generate(self, runner: Runner, model: _Model, req: wire.GenerateRequest) -> str:
        messages = []
        system = req.system or model.system  # as in Ollama, an empty "system" means the model's
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": req.prompt})
        rendered = await runner.client.post_json("/apply-template", {"messages": messages})
        prompt = str(rendered.get("prompt", ""))
        if req.context:
            previous = await runner.client.post_json("/detokenize", {"tokens": req.context})
            prompt = str(previous.get("content", "")) + prompt
        return prompt

    # -- chat ---------------------------------------------------------------------------------------
    async def chat(self, req: wire.ChatRequest) -> AsyncGenerator[Chunk, None]:
        start = time.monotonic_ns()
        if not req.model.strip():
            raise BadRequest("model is required")
        model, keep_alive, spec, body = self._prepare(req.model, req.keep_alive, req.options, req.format, chat=True)
        if not req.messages and keep_alive == 0:
            self.pool.expire(spec.model_key)
            yield self._control(req.model, "unload", chat=True)
            return
        messages: list[dict[str, Any]] = []
        if model.system and (not req.messages or req.messages[0].role != "system"):
            messages.append({"role": "system", "content": model.system})
        for m in req.messages:
            out: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.thinking and m.role == "assistant":
                out["reasoning_content"] = m.thinking
            messages.append(out)
        body.update(messages=messages, stream=True)
        async with self.pool.lease(spec, keep_alive) as runner:
            load_ns = time.monotonic_ns() - start
            if not req.messages:
                yield self._control(req.model, "load", chat=True)
                return
            finish: str | None = None
            timings: dict[str, Any] | None = None
            async for event in self._events(runner, "/v1/chat/completions", body):
                timings = event.get("timings", timings)
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    thinking = delta.get("reasoning_content")
                    if content or thinking:
                        message: dict[str, Any] = {"role": "assistant", "content": content or ""}
                        if thinking:
                            message["thinking"] = thinking
                        yield {"model": req.model, "created_at": wire.utc_now(), "message": message, "done": False}
                    finish = choice.get("finish_reason") or finish
            last: Chunk = {
                "model": req.model,
                "created_at": wire.utc_now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": wire.done_reason_from_finish(finish),
            }
            last.update(wire.metrics(timings, total_ns=time.monotonic_ns() - start, load_ns=load_ns))
            yield last


def collect(chunks: list[Chunk]) -> Chunk:
    """One non-streamed response from the streamed chunks: text fields concatenated into the last."""
    final = dict(chunks[-1])
    if "response" in final:
        final["response"] = "".join(c.get("response", "") for c in chunks)
    if "message" in final:
        message = dict(final["message"])
        message["content"] = "".join(c["message"].get("content", "") for c in chunks)
        thinking = "".join(c["message"].get("thinking", "") for c in chunks)
        if thinking:
            message["thinking"] = thinking
        final["message"] = message
    return final

