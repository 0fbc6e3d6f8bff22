"""GET /api/ps with the real llama-server: what is loaded, for how long, with which context."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import ollama
from aiohttp.test_utils import TestServer

from tests.conftest import ServerFactory, base_url
from tests.models import write_model
from tests.store_helpers import install_gguf


async def _get(server: TestServer, path: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url(server) + path) as r:
            assert r.status == 200
            return await r.json()


async def _load(server: TestServer, model: str, **body: Any) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/api/generate", json={"model": model, **body}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["done_reason"] in ("load", "unload")


def _expires(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["expires_at"]).timestamp()


async def test_ps_lists_loaded_models(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, tmp_path: Path) -> None:
    """Loaded models appear with Ollama's fields, their per-slot context and when they unload, latest first."""
    # another weights file: runners are keyed by weights, as Ollama keys them by model path
    install_gguf(models_dir, "second", write_model(tmp_path / "second.gguf", seed=1))
    server = await start_server(llama_server_bin)
    assert await _get(server, "/api/ps") == {"models": []}
    await _load(server, "tiny", keep_alive="10m")
    await _load(server, "second", keep_alive=-1, options={"num_ctx": 1024})
    listed = {m["name"]: m for m in (await _get(server, "/api/tags"))["models"]}
    ps = (await _get(server, "/api/ps"))["models"]
    assert [m["name"] for m in ps] == ["second:latest", "tiny:latest"]  # forever sorts first
    second, tiny = ps
    assert list(tiny) == ["name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length", "llamasup"]
    assert tiny["model"] == "tiny:latest" and tiny["digest"] == listed["tiny:latest"]["digest"]
    # size: what the runner allocated (weights, KV cache, compute), more than the file; no GPU here
    (cpu,) = tiny["llamasup"]["devices"]
    assert tiny["size"] == cpu["measured"]["total"] > listed["tiny:latest"]["size"] and tiny["size_vram"] == 0
    tag_details = {k: v for k, v in listed["tiny:latest"]["details"].items() if k not in ("context_length", "embedding_length")}
    assert tiny["details"] == tag_details
    assert tiny["context_length"] == 4096 and second["context_length"] == 1024
    assert abs(_expires(tiny) - (time.time() + 600)) < 60
    assert datetime.fromisoformat(second["expires_at"]).year > 2300  # keep_alive forever: ~292 years
    await _load(server, "tiny", keep_alive=0)  # unload
    deadline = time.monotonic() + 15  # the unload is asynchronous, as in Ollama: poll the state
    while [m["name"] for m in (await _get(server, "/api/ps"))["models"]] != ["second:latest"]:
        assert time.monotonic() < deadline, "tiny was not unloaded"


async def test_ollama_client_reads_ps(real_server: TestServer) -> None:
    """The ollama Python client parses /api/ps (timestamps, details, context length)."""
    await _load(real_server, "tiny", keep_alive="5m")
    (model,) = (await ollama.AsyncClient(host=base_url(real_server)).ps()).models
    assert model.model == "tiny:latest" and model.context_length == 4096 and model.expires_at is not None
    assert model.details is not None and model.details.format == "gguf"


async def test_max_loaded_models_unloads_the_idle_one(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, tmp_path: Path) -> None:
    """With OLLAMA_MAX_LOADED_MODELS=1, loading a second model unloads the first, idle one."""
    install_gguf(models_dir, "other", write_model(tmp_path / "other.gguf", seed=2))
    server = await start_server(llama_server_bin, max_loaded_models=1)
    await _load(server, "tiny")
    await _load(server, "other")
    assert [m["name"] for m in (await _get(server, "/api/ps"))["models"]] == ["other:latest"]
    await _load(server, "tiny")
    assert [m["name"] for m in (await _get(server, "/api/ps"))["models"]] == ["tiny:latest"]
