"""generate/chat through llamasup with the fake runner: failures before and after the first byte."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import ServerFactory, base_url


async def test_load_failure_is_a_500_naming_the_cause(start_server: ServerFactory, fake_llama_server_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that cannot load answers 500 with its exit status and output, before any stream starts."""
    monkeypatch.setenv("FAKE_LLAMA_EXIT_ON_LOAD", "1")
    server = await start_server(fake_llama_server_bin)
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/api/generate", json={"model": "tiny", "prompt": "hi"}) as r:
            assert r.status == 500 and r.content_type == "application/json"
            error = (await r.json())["error"]
    assert error.startswith("llama-server process has terminated: exit status 1")
    assert "exiting due to model loading error" in error


async def test_crash_mid_stream_ends_with_error_line(start_server: ServerFactory, fake_llama_server_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that aborts mid-stream: HTTP 200, some tokens, then one {"error"} line with the signal and output."""
    monkeypatch.setenv("FAKE_LLAMA_CRASH_AFTER_TOKENS", "3")
    server = await start_server(fake_llama_server_bin)
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 200 and r.content_type == "application/x-ndjson"
            lines = [orjson.loads(line) for line in (await r.read()).splitlines()]
    assert [line["message"]["content"] for line in lines[:-1]] == ["tok0", " tok1", " tok2"]
    assert "model runner has unexpectedly stopped" in lines[-1]["error"]
    assert "signal: SIGABRT" in lines[-1]["error"] and "GGML_ASSERT(fake) failed" in lines[-1]["error"]


async def test_crash_non_streamed_is_a_500(start_server: ServerFactory, fake_llama_server_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With stream:false the same crash is a 500 with the error (nothing was sent yet)."""
    monkeypatch.setenv("FAKE_LLAMA_CRASH_AFTER_TOKENS", "2")
    server = await start_server(fake_llama_server_bin)
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/api/generate", json={"model": "tiny", "prompt": "x", "raw": True, "stream": False}) as r:
            assert r.status == 500
            assert "model runner has unexpectedly stopped" in (await r.json())["error"]


async def test_stop_words_and_eos_map_to_done_reason(fake_server) -> None:  # type: ignore[no-untyped-def]
    """A stop string ends with done_reason stop and is cut from the text; num_predict ends with length."""
    async with aiohttp.ClientSession() as session:
        url = base_url(fake_server) + "/api/generate"
        async with session.post(url, json={"model": "tiny", "prompt": "x", "raw": True, "stream": False, "options": {"stop": [" tok3"], "num_predict": 10}}) as r:
            data = await r.json()
        assert data["done_reason"] == "stop" and data["response"] == "tok0 tok1 tok2" and "context" not in data
        async with session.post(url, json={"model": "tiny", "prompt": "x", "stream": False, "options": {"num_predict": 4}}) as r:
            data = await r.json()
        assert data["done_reason"] == "length" and data["eval_count"] == 4 and data["response"] == "tok0 tok1 tok2 tok3"
        assert isinstance(data["context"], list) and data["context"]
