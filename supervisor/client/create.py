"""``llamasup create``: read the Modelfile, upload local files as blobs, stream ``/api/create``.

The CLI is a client of the HTTP API, like ``ollama``, so it works against llamasup or Ollama alike.
Uploads stream each file from disk (never whole files in memory) and skip blobs the server already
has (``HEAD`` first), and a digest shared by two names goes up once. Every failure — a Modelfile
error, an HTTP error status, an ``{"error": …}`` line, a refused connection — ends as one
``Error: <message>`` line on stderr and exit status 1.

Progress goes to ``err``, as Ollama's does: on a terminal a spinner per status and a bar per upload
or quantization, redrawn in place; otherwise each status once, as a plain line (``progress.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from ..errors import InvalidModelName, LlamasupError
from ..modelfile.request import build_request, plan_create, read_modelfile, sha256_file
from ..store.names import ModelName
from .api import Api, Message
from .commands import show_progress

# -- the command --------------------------------------------------------------------------------------


async def create_model(
    base_url: str,
    model: str,
    modelfile_path: str | None,
    quantize: str = "",
    *,
    err: TextIO,
    cwd: Path | None = None,
) -> int:
    """Run ``llamasup create``; returns the exit status (0, or 1 after printing ``Error: …``)."""
    try:
        async with Api(base_url) as api:
            await show_progress(_create(api, model, modelfile_path, quantize, err, cwd or Path.cwd()), err, "create")
    except LlamasupError as e:
        err.write(f"Error: {e.message}\n")
        err.flush()
        return 1
    return 0


async def _create(api: Api, model: str, modelfile_path: str | None, quantize: str, err: TextIO, cwd: Path) -> AsyncIterator[Message]:
    """The progress of a create: this side's (reading, uploads), then the server's stream."""
    if ModelName.try_parse(model) is None:
        raise InvalidModelName(f"invalid model name: {model}")
    modelfile, base_dir = read_modelfile(modelfile_path, cwd)
    for warning in modelfile.warnings:
        err.write(f"warning: {warning}\n")
    yield {"status": "gathering model components"}
    plan = plan_create(modelfile, base_dir, quantize=quantize)
    digests = {path: await asyncio.to_thread(sha256_file, path) for path in plan.paths()}
    body = build_request(model, plan, digests)
    uploaded: set[str] = set()
    for path, digest in digests.items():
        if digest in uploaded:
            continue
        uploaded.add(digest)
        async for msg in _upload(api, digest, path):
            yield msg
    async for msg in api.stream("/api/create", body):
        yield msg


async def _upload(api: Api, digest: str, path: Path) -> AsyncIterator[Message]:
    """A file's upload as a bar (``copying file sha256:…``); one the server has is complete at once."""
    status, total = f"copying file {digest}", path.stat().st_size
    yield {"status": status, "digest": digest, "total": total, "completed": 0}
    if not await api.has_blob(digest):
        sent: asyncio.Queue[int | None] = asyncio.Queue()  # bytes sent so far; None: the upload ended

        async def upload() -> None:
            try:
                await api.upload_blob(digest, path, sent.put_nowait)
            finally:
                sent.put_nowait(None)

        task = asyncio.create_task(upload())
        try:
            while (count := await sent.get()) is not None:
                yield {"status": status, "digest": digest, "total": total, "completed": count}
            await task  # its error, if it failed
        finally:
            task.cancel()
    yield {"status": status, "digest": digest, "total": total, "completed": total}
