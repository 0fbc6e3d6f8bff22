"""OpenAI errors that need a misbehaving runner or a busy scheduler (fake runner): an error event
after the stream started, which the SDK raises, and the queue's 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from supervisor.api.keys import POOL
from tests.conftest import ServerFactory, app_of, base_url, wait_until


async def test_an_error_after_the_stream_started_is_raised(
    start_server: ServerFactory, fake_llama_server_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner that dies mid-stream: the SSE stream ends with an error event, which the client raises."""
    monkeypatch.setenv("FAKE_LLAMA_CRASH_AFTER_TOKENS", "2")
    server = await start_server(fake_llama_server_bin)
    client = openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=10, stream=True)
    seen = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            seen.append(chunk)
    assert seen and info.value.message.startswith("model runner has unexpectedly stopped")


async def test_a_full_queue_is_503_in_openai_shape(
    start_server: ServerFactory, fake_llama_server_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's 503 (OLLAMA_MAX_QUEUE) reaches an OpenAI client as InternalServerError with the body."""
    monkeypatch.setenv("FAKE_LLAMA_LOAD_SECONDS", "1")
    server = await start_server(fake_llama_server_bin, max_queue=1)
    pool = app_of(server)[POOL]
    async with openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused", max_retries=0) as client:
        first = asyncio.create_task(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2))
        await wait_until(lambda: pool.waiting == 1, what="the first request to wait for the load")
        with pytest.raises(openai.InternalServerError) as info:
            await client.completions.create(model="tiny", prompt="x", max_tokens=2)
        assert info.value.status_code == 503
        assert info.value.body == {"message": "server busy, please try again.  maximum pending requests exceeded",
                                   "type": "api_error", "param": None, "code": None}  # fmt: skip
        assert (await first).choices[0].finish_reason == "length"
