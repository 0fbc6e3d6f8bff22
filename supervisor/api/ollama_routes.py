"""Ollama's native routes (reference/ollama-api.md §2)."""

from __future__ import annotations

from aiohttp import web

from ..protocol import ollama as wire
from ..service.inference import collect
from .keys import CATALOG, INFERENCE
from .streaming import respond

OLLAMA_VERSION = "0.33.0"  # the Ollama release whose API llamasup speaks; clients compare it


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def version(request: web.Request) -> web.Response:
    return web.Response(body=wire.dumps({"version": OLLAMA_VERSION}), content_type="application/json", charset="utf-8")


async def tags(request: web.Request) -> web.Response:
    body = wire.dumps(request.app[CATALOG].tags())
    return web.Response(body=body, content_type="application/json", charset="utf-8")


async def generate(request: web.Request) -> web.StreamResponse:
    req = wire.GenerateRequest.from_json(wire.decode_body(await request.read()))
    return await respond(request, request.app[INFERENCE].generate(req), stream=req.stream, collect=collect)


async def chat(request: web.Request) -> web.StreamResponse:
    req = wire.ChatRequest.from_json(wire.decode_body(await request.read()))
    return await respond(request, request.app[INFERENCE].chat(req), stream=req.stream, collect=collect)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # GET and HEAD
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
