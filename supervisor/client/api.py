"""The server's HTTP API as the ``llamasup`` command uses it: one aiohttp session against
``OLLAMA_HOST``, JSON calls, NDJSON streams and blob uploads.

Every failure ends as a ``LlamasupError`` whose message is the one line the command prints after
``Error:``: the server's ``{"error": …}`` text (its status kept in ``.status``, so ``run`` can tell a
missing model, 404, from other failures), an ``{"error"}`` line in a stream, or a refused connection
named with the address tried. Works against llamasup or Ollama alike.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from .. import __version__
from ..errors import LlamasupError

UPLOAD_CHUNK = 1 << 20
# Pulls, loads and quantizing take as long as they take; only connecting has a deadline.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30)
Message = dict[str, Any]


class Api:
    """The calls the command makes, on one session; use as ``async with Api(base_url) as api``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(timeout=TIMEOUT, headers={"User-Agent": f"llamasup/{__version__}"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    # -- JSON calls ------------------------------------------------------------------------------------
    async def version(self) -> str:
        return str((await self.call("GET", "/api/version")).get("version") or "")

    async def tags(self) -> list[Message]:
        return list((await self.call("GET", "/api/tags")).get("models") or [])

    async def running(self) -> list[Message]:
        return list((await self.call("GET", "/api/ps")).get("models") or [])

    async def show(self, model: str, *, verbose: bool = False) -> Message:
        body: Message = {"model": model}
        if verbose:
            body["verbose"] = True
        return await self.call("POST", "/api/show", body)

    async def copy(self, source: str, destination: str) -> None:
        await self.call("POST", "/api/copy", {"source": source, "destination": destination})

    async def delete(self, model: str) -> None:
        await self.call("DELETE", "/api/delete", {"model": model})

    async def call(self, method: str, path: str, body: Message | None = None) -> Message:
        """One request and its JSON object reply (an empty reply is ``{}``)."""
        async with self.request(method, path, json=body) as resp:
            await raise_for_status(resp)
            data = await resp.read()
        if not data.strip():
            return {}
        try:
            reply = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise LlamasupError(f"{method} {path}: the server's reply is not JSON ({e})") from None
        return reply if isinstance(reply, dict) else {}

    # -- streams ---------------------------------------------------------------------------------------
    async def stream(self, path: str, body: Message) -> AsyncIterator[Message]:
        """The objects of an NDJSON reply (``/api/pull``, ``/api/chat``, …); an ``error`` line raises."""
        async with self.request("POST", path, json=body) as resp:
            await raise_for_status(resp)
            try:
                async for line in resp.content:
                    if not line.strip():
                        continue
                    msg = orjson.loads(line)
                    if isinstance(msg, dict) and msg.get("error"):
                        raise LlamasupError(str(msg["error"]))
                    if isinstance(msg, dict):
                        yield msg
            except (aiohttp.ClientError, ValueError) as e:  # ValueError: bad JSON, or a line past aiohttp's limit
                raise LlamasupError(f"reading the reply of {path}: {str(e) or type(e).__name__}") from e

    # -- blobs -----------------------------------------------------------------------------------------
    async def has_blob(self, digest: str) -> bool:
        async with self.request("HEAD", f"/api/blobs/{digest}") as resp:
            if resp.status == 404:
                return False
            await raise_for_status(resp)
            return True

    async def upload_blob(self, digest: str, path: Path, on_sent: Callable[[int], None] | None = None) -> None:
        """POST the file's bytes, read in chunks in a worker thread while the upload runs."""
        size = path.stat().st_size
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        async with self.request("POST", f"/api/blobs/{digest}", data=_file_chunks(path, on_sent), headers=headers) as resp:
            await raise_for_status(resp)

    def request(self, method: str, path: str, **kwargs: Any) -> _Request:
        assert self._session is not None, "use Api as an async context manager"
        return _Request(self._session, method, self.base_url + path, kwargs)


class _Request:
    """``session.request`` as a context manager that turns connection failures into one clear error."""

    def __init__(self, session: aiohttp.ClientSession, method: str, url: str, kwargs: dict[str, Any]) -> None:
        self._session, self._method, self._url, self._kwargs = session, method, url, kwargs
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            self._resp = await self._session.request(self._method, self._url, **self._kwargs)
        except aiohttp.ClientConnectorError as e:
            err = e.os_error  # aiohttp's own strerror for a refusal is unhelpful; the errno's text is not
            reason = os.strerror(err.errno) if err.errno and err.errno > 0 else (err.strerror or str(err))
            raise LlamasupError(
                f"could not connect to the server at {_origin(self._url)} ({reason}); is 'llamasup serve' running?"
            ) from e
        except aiohttp.ClientError as e:
            raise LlamasupError(f"{self._method} {self._url}: {str(e) or type(e).__name__}") from e
        return self._resp

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._resp is not None:
            self._resp.release()


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def raise_for_status(resp: aiohttp.ClientResponse) -> None:
    """Ollama's error bodies are ``{"error": "…"}``; anything else is reported by its text or status."""
    if resp.status < 400:
        return
    text = (await resp.text(errors="replace")).strip() if resp.method != "HEAD" else ""
    message = text or f"{resp.status} {resp.reason or ''}".strip()
    try:
        body = orjson.loads(text)
        if isinstance(body, dict) and body.get("error"):
            message = str(body["error"])
    except orjson.JSONDecodeError:
        pass
    raise LlamasupError(message, status=resp.status)


async def _file_chunks(path: Path, on_sent: Callable[[int], None] | None) -> AsyncIterator[bytes]:
    sent = 0
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, UPLOAD_CHUNK):
            yield chunk
            sent += len(chunk)
            if on_sent is not None:
                on_sent(sent)
