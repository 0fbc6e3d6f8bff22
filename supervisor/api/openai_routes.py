"""OpenAI-compatible routes (reference/ollama-api.md §14): translations through the same services.

Also ``/v1/rerank`` (and ``/v2/rerank``, where Cohere's v2 client posts) in the shape Jina's and
Cohere's clients send; Ollama has no rerank (#3368).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..protocol import ollama as wire
from ..protocol import openai
from .keys import CATALOG, EMBED
from .streaming import json_response as _json


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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model:.+}", model)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/rerank", rerank)
    app.router.add_post("/v2/rerank", rerank)
