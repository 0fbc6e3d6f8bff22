"""Ollama's error shapes, statuses and texts (reference/ollama-api.md §2.0, §2.2, §2.3, §15)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import base_url

CASES = [
    ("/api/generate", b"", 400, "missing request body"),
    ("/api/chat", b"", 400, "missing request body"),
    ("/api/generate", b"x", 400, "invalid character 'x' looking for beginning of value"),
    ("/api/generate", b"{", 400, "unexpected EOF"),
    ("/api/generate", b'{"prompt":"hi"}', 404, "model '' not found"),
    ("/api/chat", b'{"messages":[]}', 400, "model is required"),
    ("/api/generate", b'{"model":"nope","prompt":"hi"}', 404, "model 'nope' not found"),
    ("/api/chat", b'{"model":"nope","messages":[{"role":"user","content":"x"}]}', 404, "model 'nope' not found"),
    ("/api/generate", b'{"model":"bad name!","prompt":"hi"}', 400, "invalid model name"),
    ("/api/chat", b'{"model":"bad name!"}', 400, "invalid model name"),
    ("/api/generate", b'{"model":"tiny","stream":"no"}', 400, "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"),
    ("/api/generate", b'{"model":"tiny","prompt":"hi","raw":true,"system":"x"}', 400, "raw mode does not support template, system, or context"),
    ("/api/generate", b'{"model":"tiny","keep_alive":"-1"}', 400, 'time: missing unit in duration "-1"'),
    ("/api/generate", b'{"model":"tiny","keep_alive":true}', 400, "Unsupported type: 'bool'"),
    ("/api/generate", b'{"model":"tiny","prompt":"x","top_logprobs":21}', 400, "top_logprobs must be between 0 and 20"),
    ("/api/generate", b'{"model":"tiny","prompt":"x","options":{"temperature":"hot"}}', 500, 'option "temperature" must be of type float32'),
    ("/api/chat", b'{"model":"tiny","messages":[{"role":"user","content":"x"}],"options":{"stop":"x"}}', 500, 'option "stop" must be of type array'),
    ("/api/generate", b'{"model":"tiny","prompt":"x","think":"extreme"}', 400, 'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)'),
    ("/api/chat", b'{"model":"tiny","messages":[],"think":1}', 400, 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'),
    ("/api/chat", b'{"model":"tiny","messages":[{"role":"user","content":"x"}],"think":true}', 400, '"tiny" does not support thinking'),
    ("/api/chat", b'{"model":"tiny","messages":[{"role":"user","content":"x","images":["data:image/png;base64,iVBOR"]}]}', 400, "illegal base64 data at input byte 4"),
    ("/api/generate", b'{"model":"tiny","prompt":"x","suffix":"y"}', 400, "registry.ollama.ai/library/tiny:latest does not support insert"),
    ("/api/generate", b'{"model":"tiny","prompt":"x","template":"{{ .Prompt"}', 500, "template: :1: unclosed action"),
    ("/api/generate", b'{"model":"tiny","prompt":"x","format":"yaml"}', 500, 'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object'),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), CASES)
async def test_error_shapes(fake_server: TestServer, path: str, body: bytes, status: int, message: str) -> None:
    """Each bad request gets Ollama's status and exact {"error": ...} body, as JSON with no trailing newline."""
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(fake_server) + path, data=body) as r:
            raw = await r.read()
            assert r.status == status, raw
            assert r.content_type == "application/json"
            assert (await r.json()) == {"error": message}
            assert not raw.endswith(b"\n")


async def test_unknown_path_and_wrong_method(fake_server: TestServer) -> None:
    """Unknown paths are a plain-text 404; a known path with the wrong method is a plain-text 405."""
    url = base_url(fake_server)
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/api/nope") as r:
            assert (r.status, await r.text(), r.content_type) == (404, "404 page not found", "text/plain")
        async with session.get(url + "/api/generate") as r:
            assert (r.status, await r.text()) == (405, "405 method not allowed")


async def test_root_version_and_head(fake_server: TestServer) -> None:
    """/ says Ollama is running; /api/version answers a version; HEAD works on both and on /api/tags."""
    url = base_url(fake_server)
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/") as r:
            assert (r.status, await r.text()) == (200, "Ollama is running")
        async with session.get(url + "/api/version") as r:
            assert r.status == 200 and (await r.json())["version"].count(".") == 2
        for path in ("/", "/api/version", "/api/tags"):
            async with session.head(url + path) as r:
                assert r.status == 200 and await r.read() == b""


async def test_empty_store_lists_no_models(start_server, fake_llama_server_bin, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An empty (even missing) store gives {"models":[]}."""
    server = await start_server(fake_llama_server_bin, models_dir=tmp_path / "empty")
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url(server) + "/api/tags") as r:
            assert await r.read() == b'{"models":[]}'
