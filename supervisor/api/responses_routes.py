"""OpenAI's Responses API: ``POST /v1/responses`` as a translation through the chat use case, and
``GET``/``DELETE /v1/responses/{id}`` on the store that ``previous_response_id`` reads (beyond
Ollama, whose ``/v1/responses`` is stateless)."""

from __future__ import annotations

from aiohttp import web

from ..protocol import ollama as wire
from ..protocol import responses
from ..protocol.responses_out import ResponseStream, output_message
from ..service.output import collect
from .keys import FETCH, INFERENCE, RESPONSES
from .streaming import json_response, respond


async def create(request: web.Request) -> web.StreamResponse:
    """Continue the stored conversation (if asked), run the chat, keep the finished response."""
    data = wire.decode_body(await request.read())
    store = request.app[RESPONSES]
    previous = responses.previous_response_id(data)
    history = store.conversation(previous) if previous else []
    urls = responses.remote_images(data)
    fetched = await request.app[FETCH].fetch(urls)  # {} when there are none
    req, head = responses.responses_request(data, history, fetched)
    out = ResponseStream(head)
    reply = await respond(request, request.app[INFERENCE].chat(req), stream=head.stream, framing=out,
                          collect=lambda chunks: out.reply(collect(chunks)))  # fmt: skip
    if out.final is not None:
        store.put(out.final, [*head.conversation, output_message(out.final)])
    return reply


async def retrieve(request: web.Request) -> web.Response:
    return json_response(request.app[RESPONSES].response(request.match_info["id"]))


async def delete(request: web.Request) -> web.Response:
    ident = request.match_info["id"]
    request.app[RESPONSES].delete(ident)
    return json_response({"id": ident, "object": "response", "deleted": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/responses", create)
    app.router.add_get("/v1/responses/{id}", retrieve)
    app.router.add_delete("/v1/responses/{id}", delete)
