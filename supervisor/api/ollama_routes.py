"""Ollama's native routes (reference/ollama-api.md §2)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .. import __version__
from ..errors import BadRequest, NotFound
from ..modelfile.build import create_model
from ..protocol import ollama as wire
from ..protocol.create import parse_create_request
from ..protocol.embed import EmbedRequest, RerankRequest, embed_reply, legacy_reply, rerank_reply
from ..protocol.ollama_requests import ChatRequest, GenerateRequest
from ..service.output import collect
from ..service.planning import PlanRequest
from ..service.transfer import PullRequest, PushRequest
from .keys import BUILD, CATALOG, EMBED, INFERENCE, PLAN, TRANSFER
from .streaming import json_response as _json
from .streaming import respond

OLLAMA_VERSION = "0.33.0"  # the Ollama release whose API llamasup speaks; clients compare it


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def version(request: web.Request) -> web.Response:
    """The Ollama version clients compare; the ``Server`` header says which llamasup answers
    (``llamasup --version`` compares it with its own)."""
    response = _json({"version": OLLAMA_VERSION})
    response.headers["Server"] = f"llamasup/{__version__}"
    return response


async def tags(request: web.Request) -> web.Response:
    return _json(await asyncio.to_thread(request.app[CATALOG].tags))


async def ps(request: web.Request) -> web.Response:
    return _json(await request.app[CATALOG].ps())


async def events(request: web.Request) -> web.Response:
    """llamasup's own: the latest loads and unloads with their reasons."""
    return _json(request.app[CATALOG].events())


async def plan(request: web.Request) -> web.Response:
    """llamasup's own: what loading a model now would do (``service/planning.py``)."""
    req = PlanRequest.from_json(wire.decode_body(await request.read()))
    return _json(await request.app[PLAN].plan(req))


async def generate(request: web.Request) -> web.StreamResponse:
    req = GenerateRequest.from_json(wire.decode_body(await request.read()))
    return await respond(request, request.app[INFERENCE].generate(req), stream=req.stream, collect=collect)


async def chat(request: web.Request) -> web.StreamResponse:
    req = ChatRequest.from_json(wire.decode_body(await request.read()))
    return await respond(request, request.app[INFERENCE].chat(req), stream=req.stream, collect=collect)


async def embed(request: web.Request) -> web.Response:
    req = EmbedRequest.from_json(wire.decode_body(await request.read()))
    return _json(embed_reply(req.model, await request.app[EMBED].embed(req)))


async def embeddings(request: web.Request) -> web.Response:
    """The legacy route: one ``prompt``, one ``embedding``."""
    req = EmbedRequest.legacy(wire.decode_body(await request.read()))
    if not req.model:
        raise BadRequest("model is required")
    return _json(legacy_reply(await request.app[EMBED].embed(req)))


async def rerank(request: web.Request) -> web.Response:
    """llamasup's own (Ollama #3368): documents sorted by relevance to a query."""
    req = RerankRequest.from_json(wire.decode_body(await request.read()))
    return _json(rerank_reply(req, await request.app[EMBED].rerank(req)))


async def show(request: web.Request) -> web.Response:
    data = wire.decode_body(await request.read())
    agent = request.headers.get("User-Agent", "")
    return _json(await asyncio.to_thread(request.app[CATALOG].show, data, user_agent=agent))


async def create(request: web.Request) -> web.StreamResponse:
    req = parse_create_request(wire.decode_body(await request.read()))
    return await respond(request, create_model(request.app[BUILD], req), stream=req.stream, collect=lambda c: c[-1])


async def pull(request: web.Request) -> web.StreamResponse:
    req = PullRequest.from_json(wire.decode_body(await request.read()))
    return await respond(request, request.app[TRANSFER].pull(req), stream=req.stream, collect=lambda c: c[-1])


async def push(request: web.Request) -> web.StreamResponse:
    req = PushRequest.from_json(wire.decode_body(await request.read()))
    return await respond(request, request.app[TRANSFER].push(req), stream=req.stream, collect=lambda c: c[-1])


async def copy(request: web.Request) -> web.Response:
    await request.app[CATALOG].copy(wire.decode_body(await request.read()))
    return web.Response()


async def delete(request: web.Request) -> web.Response:
    await request.app[CATALOG].delete(wire.decode_body(await request.read()))
    return web.Response()


async def head_blob(request: web.Request) -> web.Response:
    digest = request.match_info["digest"]
    if not request.app[CATALOG].blob_exists(digest):
        raise NotFound(f'blob "{digest}" not found')
    return web.Response()


async def post_blob(request: web.Request) -> web.Response:
    digest = request.match_info["digest"]
    catalog = request.app[CATALOG]
    if catalog.blob_exists(digest):
        return web.Response()  # already present: 200, body not read (as Ollama)
    await catalog.upload_blob(digest, request.content.iter_chunked(1 << 20))
    return web.Response(status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # GET and HEAD
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/plan", plan)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)
    app.router.add_post("/api/rerank", rerank)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/create", create)
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/push", push)
    app.router.add_post("/api/copy", copy)
    app.router.add_delete("/api/delete", delete)
    app.router.add_head("/api/blobs/{digest}", head_blob)
    app.router.add_post("/api/blobs/{digest}", post_blob)
