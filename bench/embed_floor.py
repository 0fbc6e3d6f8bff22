#!/usr/bin/env python3
"""What an aiohttp hop in front of llama-server costs by itself: a bare aiohttp server that forwards
``/api/embed`` inputs to a runner's ``/v1/embeddings`` and returns the vectors, nothing else (no
model lookup, no lease, no checks, no normalising; JSON through orjson, as llamasup's). ``bench/embed.py``
runs it beside llamasup to show how much of llamasup's gap to direct calls is the hop itself.

Usage: ``python bench/embed_floor.py RUNNER_SOCKET PORT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.runner.client import RunnerClient  # noqa: E402


def app(socket_path: Path) -> web.Application:
    client = RunnerClient(socket_path)

    async def embed(request: web.Request) -> web.Response:
        inputs = orjson.loads(await request.read())["input"]
        data = await client.post_json("/v1/embeddings", {"input": inputs, "encoding_format": "float", "embd_normalize": -1})
        body = orjson.dumps({"embeddings": [row["embedding"] for row in data["data"]]})
        return web.Response(body=body, content_type="application/json")

    application = web.Application()
    application.router.add_post("/api/embed", embed)
    return application


if __name__ == "__main__":
    web.run_app(app(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
