"""/api/generate and /api/chat with the real llama-server: fields, options, context, templates."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from tests.conftest import ServerFactory, base_url
from tests.store_helpers import install_gguf


async def _post(server: TestServer, path: str, body: dict[str, Any]) -> tuple[int, str, list[dict[str, Any]]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + path, json=body) as r:
            raw = await r.read()
            return r.status, r.content_type, [json.loads(line) for line in raw.splitlines() if line.strip()]


async def test_streamed_generate_shape(real_server: TestServer) -> None:
    """Streaming is NDJSON: one object per token with model/created_at/response/done, then a final object."""
    status, ctype, lines = await _post(real_server, "/api/generate", {"model": "tiny", "prompt": "Hi", "options": {"num_predict": 5, "temperature": 0}})
    assert status == 200 and ctype == "application/x-ndjson"
    assert len(lines) == 6  # five tokens, each flushed on its own, then the final object
    for line in lines[:-1]:
        assert set(line) == {"model", "created_at", "response", "done"} and line["done"] is False and line["response"]
        datetime.fromisoformat(line["created_at"].replace("Z", "+00:00"))
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "length" and final["response"] == ""
    assert set(final) >= {"context", "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"}


async def test_context_round_trip(real_server: TestServer) -> None:
    """context is the tokens of the rendered prompt plus the answer; passing it back continues the conversation."""
    _, _, (first,) = await _post(real_server, "/api/generate", {"model": "tiny", "prompt": "Hello", "stream": False, "options": {"num_predict": 6, "temperature": 0}})
    assert first["context"]
    _, _, (second,) = await _post(
        real_server, "/api/generate",
        {"model": "tiny", "prompt": "More", "context": first["context"], "stream": False, "options": {"num_predict": 3, "temperature": 0}},
    )  # fmt: skip
    # The second prompt holds the whole first exchange, so it is longer by at least its context.
    assert second["prompt_eval_count"] >= len(first["context"]) + 3
    assert second["context"][: len(first["context"])] == first["context"]


async def test_raw_generate_has_no_context_and_skips_template(real_server: TestServer) -> None:
    """raw sends the prompt as is (a few tokens, no chat template) and returns no context."""
    _, _, (raw,) = await _post(real_server, "/api/generate", {"model": "tiny", "prompt": "Hello", "raw": True, "stream": False, "options": {"num_predict": 2}})
    _, _, (templated,) = await _post(real_server, "/api/generate", {"model": "tiny", "prompt": "Hello", "stream": False, "options": {"num_predict": 2}})
    assert "context" not in raw and "context" in templated
    assert raw["prompt_eval_count"] < templated["prompt_eval_count"]


async def test_seed_and_temperature_are_honoured(real_server: TestServer) -> None:
    """The same seed at a high temperature reproduces the text; greedy decoding is deterministic too."""
    body = {"model": "tiny", "prompt": "Story:", "raw": True, "stream": False, "options": {"num_predict": 24, "temperature": 1.5, "seed": 7, "top_k": 0, "top_p": 1.0}}
    _, _, (a,) = await _post(real_server, "/api/generate", body)
    _, _, (b,) = await _post(real_server, "/api/generate", body)
    body["options"]["seed"] = 8  # type: ignore[index]
    _, _, (c,) = await _post(real_server, "/api/generate", body)
    assert a["response"] == b["response"]
    assert a["response"] != c["response"]


async def test_stop_option_cuts_output(real_server: TestServer) -> None:
    """A stop string taken from a greedy run ends the next run there, with done_reason stop."""
    body: dict[str, Any] = {"model": "tiny", "prompt": "Go", "raw": True, "stream": False, "options": {"num_predict": 40, "temperature": 0}}
    _, _, (full,) = await _post(real_server, "/api/generate", body)
    text = full["response"]
    stop = text[len(text) // 2 : len(text) // 2 + 4]
    body["options"]["stop"] = [stop]
    _, _, (cut,) = await _post(real_server, "/api/generate", body)
    assert cut["done_reason"] == "stop"
    assert cut["response"] == text[: text.index(stop)]


async def test_system_layer_and_params_layer(start_server: ServerFactory, llama_server_bin: Path, tiny_gguf: Path, models_dir: Path) -> None:
    """The model's SYSTEM text is rendered into the prompt and its params layer sets default options."""
    install_gguf(models_dir, "withsys", tiny_gguf, system="You are a very long-winded and extremely detailed helper.", params={"num_predict": 3})
    server = await start_server(llama_server_bin)
    _, _, (plain,) = await _post(server, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": False, "options": {"num_predict": 3}})
    _, _, (sys,) = await _post(server, "/api/chat", {"model": "withsys", "messages": [{"role": "user", "content": "x"}], "stream": False})
    assert sys["eval_count"] == 3  # num_predict from the params layer
    assert sys["prompt_eval_count"] > plain["prompt_eval_count"] + 5  # the system message was rendered
    _, _, (override,) = await _post(server, "/api/generate", {"model": "withsys", "prompt": "x", "system": "Be short.", "stream": False})
    _, _, (default,) = await _post(server, "/api/generate", {"model": "withsys", "prompt": "x", "system": "", "stream": False})
    assert override["prompt_eval_count"] < default["prompt_eval_count"]  # a request system replaces the model's; "" keeps it


async def test_chat_load_and_format_json(real_server: TestServer) -> None:
    """chat with no messages loads the model; format json constrains the output to JSON."""
    _, ctype, (loaded,) = await _post(real_server, "/api/chat", {"model": "tiny", "messages": []})
    assert ctype == "application/json"
    assert loaded["message"] == {"role": "assistant", "content": ""} and loaded["done_reason"] == "load"
    _, _, (out,) = await _post(
        real_server, "/api/chat",
        {"model": "tiny", "messages": [{"role": "user", "content": "json"}], "format": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
         "stream": False, "options": {"num_predict": 64, "temperature": 0}},
    )  # fmt: skip
    if out["done_reason"] == "stop":  # finished: must be a whole object matching the schema
        assert isinstance(json.loads(out["message"]["content"])["a"], int)
    else:
        assert out["message"]["content"].lstrip().startswith("{")
