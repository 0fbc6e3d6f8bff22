"""``llamasup create``: read the Modelfile, upload local files as blobs, stream ``/api/create``.

The CLI is a client of the HTTP API, like ``ollama``, so it works against llamasup or Ollama alike.
Uploads stream each file from disk (never whole files in memory) and skip blobs the server already
has (``HEAD`` first), and a digest shared by two names goes up once. Every failure — a Modelfile
error, an HTTP error status, an ``{"error": …}`` line, a refused connection — ends as one
``Error: <message>`` line on stderr and exit status 1.

Progress goes to ``out``: on a terminal one line per status, redrawn in place (with a bar when the
status carries ``total``/``completed``); otherwise each status is printed once, as a plain line, so
logs and tests read the same sequence every time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson

from .. import __version__
from ..errors import InvalidModelName, LlamasupError
from ..store.names import ModelName
from .request import build_request, plan_create, read_modelfile, sha256_file

UPLOAD_CHUNK = 1 << 20
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30)  # uploads and quantizing take long
_BAR_WIDTH = 25


class ApiClient:
    """The three calls ``create`` makes; errors become ``LlamasupError`` with the server's message."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    async def has_blob(self, digest: str) -> bool:
        async with self._request("HEAD", f"/api/blobs/{digest}") as resp:
            if resp.status == 404:
                return False
            await _raise_for_status(resp)
            return True

    async def upload_blob(self, digest: str, path: Path, on_sent: Callable[[int], None] | None = None) -> None:
        """POST the file's bytes, read in chunks in a worker thread while the upload runs."""
        size = path.stat().st_size
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        body = _file_chunks(path, on_sent)
        async with self._request("POST", f"/api/blobs/{digest}", data=body, headers=headers) as resp:
            await _raise_for_status(resp)

    async def create(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The NDJSON progress objects of ``/api/create``; an ``error`` line raises."""
        async with self._request("POST", "/api/create", json=body) as resp:
            await _raise_for_status(resp)
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
                raise LlamasupError(f"reading the create stream: {str(e) or type(e).__name__}") from e

    def _request(self, method: str, path: str, **kwargs: Any) -> _Request:
        return _Request(self._session, method, self._base + path, kwargs)


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

    async def __aexit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.release()


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
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


# -- progress ---------------------------------------------------------------------------------------


def _human_bytes(n: int) -> str:
    """Decimal units as Ollama prints sizes (``4.7 GB``)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class Progress:
    """Shows statuses: redrawn in place on a terminal, else each distinct status once per line."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._current: str | None = None
        self._seen: set[str] = set()

    def update(self, status: str, total: int | None = None, completed: int | None = None) -> None:
        if not self._tty:
            if status not in self._seen:
                self._seen.add(status)
                self._out.write(status + "\n")
                self._out.flush()
            return
        if self._current is not None and status != self._current:
            self._out.write("\n")
        self._current = status
        line = status
        if total:
            done = min(completed or 0, total)
            filled = _BAR_WIDTH * done // total
            bar = "█" * filled + " " * (_BAR_WIDTH - filled)
            line += f" {100 * done // total:3d}% ▕{bar}▏ {_human_bytes(done)}/{_human_bytes(total)}"
        self._out.write(f"\r{line}\x1b[K")
        self._out.flush()

    def close(self) -> None:
        """End the line being redrawn, so what follows starts on its own line."""
        if self._tty and self._current is not None:
            self._out.write("\n")
            self._out.flush()
        self._current = None


# -- the command --------------------------------------------------------------------------------------


async def create_model(
    base_url: str,
    model: str,
    modelfile_path: str | None,
    quantize: str = "",
    *,
    out: TextIO,
    err: TextIO,
    cwd: Path | None = None,
) -> int:
    """Run ``llamasup create``; returns the exit status (0, or 1 after printing ``Error: …``)."""
    progress = Progress(out, tty=out.isatty())
    try:
        await _create(base_url, model, modelfile_path, quantize, progress, err, cwd or Path.cwd())
    except LlamasupError as e:
        progress.close()
        err.write(f"Error: {e.message}\n")
        err.flush()
        return 1
    progress.close()
    return 0


async def _create(
    base_url: str, model: str, modelfile_path: str | None, quantize: str, progress: Progress, err: TextIO, cwd: Path
) -> None:
    if ModelName.try_parse(model) is None:
        raise InvalidModelName(f"invalid model name: {model}")
    modelfile, base_dir = read_modelfile(modelfile_path, cwd)
    for warning in modelfile.warnings:
        err.write(f"warning: {warning}\n")
    progress.update("gathering model components")
    plan = plan_create(modelfile, base_dir, quantize=quantize)
    digests = {path: await asyncio.to_thread(sha256_file, path) for path in plan.paths()}
    body = build_request(model, plan, digests)
    async with aiohttp.ClientSession(timeout=_TIMEOUT, headers={"User-Agent": f"llamasup/{__version__}"}) as session:
        client = ApiClient(session, base_url)
        uploaded: set[str] = set()
        for path, digest in digests.items():
            if digest in uploaded:
                continue
            uploaded.add(digest)
            await _push_blob(client, digest, path, progress)
        async for msg in client.create(body):
            if status := msg.get("status"):
                progress.update(str(status), _int_or_none(msg.get("total")), _int_or_none(msg.get("completed")))


async def _push_blob(client: ApiClient, digest: str, path: Path, progress: Progress) -> None:
    status = f"copying file {digest}"
    total = path.stat().st_size
    progress.update(status, total, 0)
    if not await client.has_blob(digest):
        await client.upload_blob(digest, path, lambda sent: progress.update(status, total, sent))
    progress.update(status, total, total)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
