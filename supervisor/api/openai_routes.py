"""OpenAI-compatible routes (reference/ollama-api.md §14): translations through the same services.

Also ``/v1/rerank`` (and ``/v2/rerank``, where Cohere's v2 client posts) in the shape Jina's and
Cohere's clients send; Ollama has no rerank (#3368).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

from aiohttp import web

from ..protocol import ollama as wire
from ..protocol import openai
from ..protocol import openai_chat as chat
from ..protocol import openai_stream as out
from ..protocol.ollama_requests import ChatRequest, GenerateRequest
from ..service.choices import merge
from ..service.output import collect
from ..service.relay import Chunk
from .keys import CATALOG, EMBED, FETCH, INFERENCE
from .streaming import json_response as _json
from .streaming import respond

R = TypeVar("R", ChatRequest, GenerateRequest)


async def models(request: web.Request) -> web.Response:
    refs = await asyncio.to_thread(request.app[CATALOG].models)
    return _json(openai.models_reply(refs))


async def model(request: web.Request) -> web.Response:
    """One model; ids with a namespace or host (``jmorgan/mistral:7b``) are matched too, beyond Ollama."""
    ref = await asyncio.to_thread(request.app[CATALOG].find, request.match_info["model"])
    return _json(openai.model_object(ref))


async def embeddings(request: web.Request) -> web.Response:
    req, encoding = openai.embeddings_request(wire.decode_body(await request.read()))
    return _json(openai.embeddings_reply(req.model, await request.app[EMBED].embed(req), encoding))


async def rerank(request: web.Request) -> web.Response:
    req = openai.rerank_request(wire.decode_body(await request.read()))
    return _json(openai.rerank_reply(req, await request.app[EMBED].rerank(req)))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    data = wire.decode_body(await request.read())
    urls = chat.remote_images(data)
    fetched = await request.app[FETCH].fetch(urls)  # {} when there are none
    req, opts = chat.chat_request(data, fetched)
    chunks = _choices(req, opts.n, request.app[INFERENCE].chat)
    return await respond(request, chunks, stream=opts.stream, framing=out.chat_stream(req.model, opts),
                         collect=lambda c: out.chat_reply(req.model, _finals(c, opts.n)))  # fmt: skip


async def completions(request: web.Request) -> web.StreamResponse:
    req, opts = chat.completion_request(wire.decode_body(await request.read()))
    chunks = _choices(req, opts.n, request.app[INFERENCE].generate)
    return await respond(request, chunks, stream=opts.stream, framing=out.completion_stream(req.model, opts),
                         collect=lambda c: out.completion_reply(req.model, _finals(c, opts.n), opts.echo))  # fmt: skip


def _choices(req: R, n: int, use_case: Callable[[R], AsyncGenerator[Chunk, None]]) -> AsyncGenerator[Chunk, None]:
    """One generation, or ``n`` run side by side (each with its own seed, when one is given)."""
    if n == 1:
        return use_case(req)
    seed = req.options.get("seed")
    variants = [dataclasses.replace(req, options=req.options | ({"seed": seed + i} if isinstance(seed, int) else {}))
                for i in range(n)]  # fmt: skip
    return merge([use_case(v) for v in variants], lambda i, c: c | {out.CHOICE: i})


def _finals(chunks: list[Chunk], n: int) -> list[Chunk]:
    """Each choice's chunks folded into its one reply (``collect``), in choice order."""
    per: list[list[Chunk]] = [[] for _ in range(n)]
    for c in chunks:
        per[c.pop(out.CHOICE, 0)].append(c)
    return [collect(p) for p in per]


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model:.+}", model)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/rerank", rerank)
    app.router.add_post("/v2/rerank", rerank)
