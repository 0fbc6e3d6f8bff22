"""The one place where errors become HTTP responses, in the shape of the route: Anthropic's under
``/v1/messages``, OpenAI's elsewhere under ``/v1/`` and ``/v2/`` (reference/ollama-api.md §14),
Ollama's elsewhere."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from ..errors import LlamasupError
from .streaming import json_response
from ..protocol.anthropic import error_body as anthropic_error_body
from ..protocol.openai import error_body as openai_error_body

log = structlog.get_logger("supervisor.api")
_OPENAI_PREFIXES = ("/v1/", "/v2/")
_ANTHROPIC_PATH = "/v1/messages"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ollama_error(message: str, status: int) -> web.Response:
    """``{"error": message}`` as Ollama writes it (no trailing newline)."""
    return json_response({"error": message}, status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LlamasupError as e:
        if e.status >= 500:
            log.error("request failed", path=request.path, status=e.status, error=e.message)
        if request.path == _ANTHROPIC_PATH or request.path.startswith(_ANTHROPIC_PATH + "/"):
            return json_response(anthropic_error_body(e.message, e.status), e.status)
        if request.path.startswith(_OPENAI_PREFIXES):
            return json_response(openai_error_body(e.message, e.status), e.status)
        return ollama_error(e.message, e.status)
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405, text="405 method not allowed")
    except web.HTTPNotFound:
        return web.Response(status=404, text="404 page not found")
