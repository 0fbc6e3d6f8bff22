"""Embedding and rerank routes with the fake runner: every refusal, in the shape and status of its route.

The store holds a generative model (``tiny``), an embedding model (``embed``: pooling mean) and a
reranker (``rr``: pooling rank); the fake runner answers the embedding and rerank endpoints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.bert_models import write_bert_reranker_model
from tests.conftest import ServerFactory, base_url
from tests.models import write_embedding_model
from tests.store_helpers import install_gguf


@pytest.fixture
async def server(start_server: ServerFactory, fake_llama_server_bin: Path, models_dir: Path, tmp_path: Path) -> TestServer:
    install_gguf(models_dir, "embed", write_embedding_model(tmp_path / "e.gguf"))
    install_gguf(models_dir, "rr", write_bert_reranker_model(tmp_path / "r.gguf"))
    return await start_server(fake_llama_server_bin)


async def post(server: TestServer, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(base_url(server) + path, json=body) as r:
        return r.status, await r.json()


OLLAMA_ERRORS = [
    ("/api/embed", {"model": "embed", "input": 5}, 400, "invalid input type"),
    ("/api/embed", {"model": "embed", "input": ["a", 1]}, 400, "invalid input type"),
    ("/api/embed", {"model": "embed", "input": "a", "dimensions": "8"}, 400,
     "json: cannot unmarshal string into Go struct field EmbedRequest.dimensions of type int"),
    ("/api/embed", {"model": "embed", "input": "a", "truncate": "no"}, 400,
     "json: cannot unmarshal string into Go struct field EmbedRequest.truncate of type bool"),
    ("/api/embed", {"input": "a"}, 404, "model '' not found"),
    ("/api/embed", {"model": "nope", "input": "a"}, 404, 'model "nope" not found, try pulling it first'),
    ("/api/embed", {"model": "tiny", "input": "a"}, 400, '"tiny" does not support embeddings'),
    ("/api/embed", {"model": "rr", "input": "a"}, 400, '"rr" does not support embeddings'),
    ("/api/embeddings", {"prompt": "a"}, 400, "model is required"),
    ("/api/embeddings", {"model": "nope", "prompt": "a"}, 404, 'model "nope" not found, try pulling it first'),
    ("/api/generate", {"model": "embed", "prompt": "a"}, 400, '"embed" does not support generate'),
    ("/api/chat", {"model": "embed", "messages": [{"role": "user", "content": "a"}]}, 400, '"embed" does not support chat'),
    ("/api/rerank", {"model": "rr", "documents": ["a"]}, 400, "query is required"),
    ("/api/rerank", {"model": "rr", "query": "q", "documents": "a"}, 400, "documents must be an array of strings"),
    ("/api/rerank", {"model": "rr", "query": "q", "documents": ["a"], "top_n": -1}, 400, "top_n must be a non-negative integer"),
    ("/api/rerank", {"model": "embed", "query": "q", "documents": ["a"]}, 400, '"embed" does not support rerank'),
    ("/api/rerank", {"model": "nope", "query": "q", "documents": ["a"]}, 404, 'model "nope" not found, try pulling it first'),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "message"), OLLAMA_ERRORS)
async def test_ollama_routes_refuse_with_ollama_errors(server: TestServer, path: str, body: Any, status: int, message: str) -> None:
    assert await post(server, path, body) == (status, {"error": message})


OPENAI_ERRORS = [
    ("/v1/embeddings", {"model": "embed"}, 400, "invalid input", "invalid_request_error"),
    ("/v1/embeddings", {"model": "embed", "input": []}, 400, "invalid input", "invalid_request_error"),
    ("/v1/embeddings", {"model": "embed", "input": [[1, 2]]}, 400, "invalid input type", "invalid_request_error"),
    ("/v1/embeddings", {"model": "embed", "input": "a", "encoding_format": "int8"}, 400,
     "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64'].", "invalid_request_error"),
    ("/v1/embeddings", {"model": "nope", "input": "a"}, 404, 'model "nope" not found, try pulling it first', "not_found_error"),
    ("/v1/rerank", {"model": "rr", "documents": ["a"]}, 400, "query is required", "invalid_request_error"),
    ("/v1/rerank", {"model": "rr", "query": "q", "documents": []}, 400, "documents is required", "invalid_request_error"),
    ("/v1/rerank", {"model": "rr", "query": "q", "documents": [{"title": "x"}]}, 400,
     "documents must be an array of strings", "invalid_request_error"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "message", "kind"), OPENAI_ERRORS)
async def test_v1_routes_refuse_in_openai_error_shape(server: TestServer, path: str, body: Any, status: int, message: str, kind: str) -> None:
    error = {"message": message, "type": kind, "param": None, "code": None}
    assert await post(server, path, body) == (status, {"error": error})


async def test_nan_or_inf_in_an_embedding_is_an_error(start_server: ServerFactory, fake_llama_server_bin: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server writes NaN/Inf as null; llamasup refuses the vector with Ollama's message."""
    monkeypatch.setenv("FAKE_LLAMA_EMBED_NULL", "1")
    install_gguf(models_dir, "embed", write_embedding_model(tmp_path / "e.gguf"))
    server = await start_server(fake_llama_server_bin)
    assert await post(server, "/api/embed", {"model": "embed", "input": "a"}) == (500, {"error": "embedding contains NaN or Inf values"})


async def test_empty_input_loads_the_model_and_returns_no_vectors(server: TestServer) -> None:
    status, reply = await post(server, "/api/embed", {"model": "embed", "input": []})
    assert status == 200 and reply["model"] == "embed" and reply["embeddings"] == []
    assert (await post(server, "/api/embeddings", {"model": "embed", "prompt": ""})) == (200, {"embedding": []})
    async with aiohttp.ClientSession() as session, session.get(base_url(server) + "/api/ps") as r:
        assert [m["name"] for m in (await r.json())["models"]] == ["embed:latest"]


async def test_keep_alive_zero_unloads_the_embedding_model_after_the_request(server: TestServer) -> None:
    status, reply = await post(server, "/api/embed", {"model": "embed", "input": "a", "keep_alive": 0})
    assert status == 200 and len(reply["embeddings"]) == 1

    async def loaded() -> list[str]:
        async with aiohttp.ClientSession() as session, session.get(base_url(server) + "/api/ps") as r:
            return [m["name"] for m in (await r.json())["models"]]

    deadline = asyncio.get_running_loop().time() + 10
    while await loaded() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)  # polling the server's state, not waiting for time to pass
    assert await loaded() == []
    status, reply = await post(server, "/api/embed", {"model": "embed", "input": "a", "keep_alive": "5m"})
    assert status == 200 and await loaded() == ["embed:latest"]
