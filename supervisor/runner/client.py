"""HTTP calls to one llama-server: JSON requests and server-sent-event streams.

Closing a stream early (the generator is closed or cancelled) closes the connection, which is how
llama-server learns that the client went away and stops generating (reference/llama-server.md §0.8).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import orjson

from ..errors import ContextOverflow, RunnerHTTPError

_JSON_HEADERS = {"Content-Type": "application/json"}
# llama-server closes the connection after a streamed response although it advertises keep-alive, so
# a pooled connection would fail on its next request; streams therefore never return to the pool.
_STREAM_HEADERS = {"Content-Type": "application/json", "Connection": "close"}
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class RunnerConnectionLost(Exception):
    """The connection to llama-server broke (usually because the process died)."""


def _http_error(status: int, body: bytes) -> RunnerHTTPError:
    """llama-server's error (``{"error":{"message":...}}``, or the raw body) with its status."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip() or f"llama-server returned status {status}"
        return RunnerHTTPError(text, status=status)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        if err.get("type") == "exceed_context_size_error":
            return ContextOverflow(
                str(err["message"]), n_prompt_tokens=int(err.get("n_prompt_tokens", 0)), n_ctx=int(err.get("n_ctx", 0))
            )
        return RunnerHTTPError(str(err["message"]), status=status)
    if isinstance(err, str):
        return RunnerHTTPError(err, status=status)
    return RunnerHTTPError(body.decode("utf-8", "replace").strip(), status=status)


def _event_error(err: Any) -> RunnerHTTPError:
    """An ``{"error": ...}`` event sent after the stream started."""
    if isinstance(err, dict):
        status = err.get("code", 500)
        return RunnerHTTPError(str(err.get("message", err)), status=status if isinstance(status, int) else 500)
    return RunnerHTTPError(str(err), status=500)


class RunnerClient:
    """Talks to one llama-server at ``base_url`` over a shared session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            async with self.session.post(
                self.base_url + path, data=orjson.dumps(body), headers=_JSON_HEADERS, timeout=_NO_TIMEOUT
            ) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise _http_error(resp.status, raw)
                return orjson.loads(raw)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise RunnerConnectionLost(str(e)) from e

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Yield each ``data:`` event of an SSE response; stops at ``[DONE]`` or the end of the body."""
        try:
            async with self.session.post(
                self.base_url + path, data=orjson.dumps(body), headers=_STREAM_HEADERS, timeout=_NO_TIMEOUT
            ) as resp:
                if resp.status != 200:
                    raise _http_error(resp.status, await resp.read())
                # Read whatever has arrived and split it ourselves: when tokens come faster than one
                # wake-up per token, several events are handled per read (cheaper than readline).
                pending = b""
                async for data in resp.content.iter_any():
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if not line.startswith(b"data: "):
                            continue  # blank separators and ":" keep-alive comments
                        payload = line[6:]
                        if payload.startswith(b"[DONE]"):
                            return
                        event = orjson.loads(payload)
                        if isinstance(event, dict) and "error" in event:
                            raise _event_error(event["error"])
                        yield event
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise RunnerConnectionLost(str(e)) from e
