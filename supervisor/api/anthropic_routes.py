"""Anthropic's Messages API (reference/ollama-api.md §14.5): a translation through the chat use case,
like the OpenAI routes (rule 7). Errors take Anthropic's shape in ``api/errors.py``."""

from __future__ import annotations

from aiohttp import web

from ..protocol import anthropic
from ..protocol import ollama as wire
from ..protocol.ollama_requests import ChatRequest
from ..service.output import collect
from .keys import FETCH, INFERENCE
from .streaming import json_response, respond


async def _request(request: web.Request, *, counting: bool) -> tuple[ChatRequest, bool]:
    """The body decoded and translated, with its image URLs fetched (by llamasup, as for OpenAI)."""
    data = wire.decode_body(await request.read())
    urls = anthropic.remote_images(data)
    fetched = await request.app[FETCH].fetch(urls)  # {} when there are none
    return anthropic.messages_request(data, fetched, counting=counting)


async def messages(request: web.Request) -> web.StreamResponse:
    req, stream = await _request(request, counting=False)
    return await respond(request, request.app[INFERENCE].chat(req), stream=stream,
                         framing=anthropic.MessageStream(req.model),
                         collect=lambda c: anthropic.message_reply(req.model, collect(c)))  # fmt: skip


async def count_tokens(request: web.Request) -> web.Response:
    req, _ = await _request(request, counting=True)
    return json_response(anthropic.count_reply(await request.app[INFERENCE].count_tokens(req)))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
