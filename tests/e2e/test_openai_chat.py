"""The official ``openai`` client against llamasup's ``/v1/chat/completions`` and ``/v1/completions``
with the real llama-server (the random ``tiny`` model; tool calls in tests/e2e/test_openai_tools.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import base_url
from tests.store_helpers import install_gguf

GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture
async def client(real_server: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async client, closed after the test."""
    async with openai.AsyncOpenAI(base_url=base_url(real_server) + "/v1", api_key="unused", max_retries=0) as c:
        yield c


async def test_chat_not_streamed_sync(real_server: TestServer) -> None:
    """The sync client, not streamed: one assistant choice, finish_reason length at max_tokens, usage counted."""
    with openai.OpenAI(base_url=base_url(real_server) + "/v1", api_key="unused", max_retries=0) as sync:
        r = await asyncio.to_thread(lambda: sync.chat.completions.create(  # off the loop the server runs on
            model="tiny", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], max_tokens=6, **GREEDY))  # fmt: skip
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "tiny"
    (choice,) = r.choices
    assert choice.index == 0 and choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 6 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 6


async def test_chat_streamed_matches_the_whole_reply(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """Streamed chunks: the role on the first delta, text pieces, a finish chunk, the usage chunk last;
    their text is the non-streamed text (greedy)."""
    messages = [{"role": "user", "content": "Tell me"}]
    stream = await client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, stream=True,  # type: ignore[arg-type]
                                                  stream_options={"include_usage": True}, **GREEDY)  # fmt: skip
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = await client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, **GREEDY)  # type: ignore[arg-type]
    assert text == whole.choices[0].message.content


async def test_raw_stream_is_server_sent_events_ending_in_done(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """On the wire: text/event-stream, every event a data line, the last one [DONE]."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(real_server) + "/v1/chat/completions", json=body) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            raw = await r.read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"


async def test_several_choices(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """n=2: two choices with their own index, streamed and not; usage counts both completions."""
    messages = [{"role": "user", "content": "Go"}]
    r = await client.chat.completions.create(model="tiny", messages=messages, max_tokens=4, n=2, temperature=1.0, seed=5)  # type: ignore[arg-type]
    assert [c.index for c in r.choices] == [0, 1] and all(c.message.content for c in r.choices)
    assert r.usage is not None and r.usage.completion_tokens == 8
    stream = await client.chat.completions.create(model="tiny", messages=messages, max_tokens=4, n=2, stream=True)  # type: ignore[arg-type]
    finished = {c.choices[0].index: c.choices[0].finish_reason async for c in stream if c.choices and c.choices[0].finish_reason}
    assert finished == {0: "length", 1: "length"}


async def test_logprobs(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """logprobs with top_logprobs: one entry per generated token, each with its alternatives and bytes."""
    r = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}], max_tokens=3,
                                             logprobs=True, top_logprobs=2, **GREEDY)  # fmt: skip
    logprobs = r.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None and len(logprobs.content) == 3
    for entry in logprobs.content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2 and entry.bytes == list(entry.token.encode())
    assert "".join(e.token for e in logprobs.content) == r.choices[0].message.content


async def test_json_schema_response_format(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """response_format json_schema constrains the random model to an instance of the schema."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    r = await client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "ok?"}], max_tokens=40, **GREEDY,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})  # fmt: skip
    assert isinstance(json.loads(r.choices[0].message.content or "")["ok"], bool)


async def test_completions(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """/v1/completions: text_completion with usage; streamed pieces add up to it; echo puts the prompt first."""
    r = await client.completions.create(model="tiny", prompt="Once upon", max_tokens=5, **GREEDY)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length" and r.choices[0].text
    assert r.usage is not None and r.usage.completion_tokens == 5
    stream = await client.completions.create(model="tiny", prompt="Once upon", max_tokens=5, stream=True, **GREEDY)
    pieces = [c async for c in stream]
    assert "".join(c.choices[0].text for c in pieces) == r.choices[0].text
    echoed = await client.completions.create(model="tiny", prompt="Once upon", max_tokens=5, echo=True, **GREEDY)
    assert echoed.choices[0].text == "Once upon" + r.choices[0].text


async def test_completion_logprobs(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """logprobs=N on /v1/completions: tokens, their log-probabilities and N alternatives each."""
    r = await client.completions.create(model="tiny", prompt="a", max_tokens=3, logprobs=2, **GREEDY)
    logprobs = r.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None and len(logprobs.tokens) == 3
    assert logprobs.top_logprobs is not None and all(len(t) >= 1 for t in logprobs.top_logprobs)
    assert "".join(logprobs.tokens) == r.choices[0].text


async def test_unknown_model_is_not_found(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """An unknown model: NotFoundError with Ollama's message, in OpenAI's error shape."""
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.body == {"message": "model 'nope' not found", "type": "not_found_error", "param": None, "code": None}


async def test_bad_requests_are_400(real_server: TestServer, client: openai.AsyncOpenAI) -> None:
    """Empty messages, a wrong field type and a bad stop are BadRequestError with their messages."""
    with pytest.raises(openai.BadRequestError, match=r"\[\] is too short - 'messages'"):
        await client.chat.completions.create(model="tiny", messages=[])
    with pytest.raises(openai.BadRequestError, match="Invalid type for 'temperature'"):
        await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], temperature="hot")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="invalid type for 'stop' field: int"):
        await client.completions.create(model="tiny", prompt="x", stop=[1])  # type: ignore[list-item]


async def test_completion_suffix_is_fill_in_middle(
    real_server: TestServer, client: openai.AsyncOpenAI, models_dir: Path, tiny_gguf: Path
) -> None:
    """suffix on /v1/completions is fill-in-middle: a model whose template renders .Suffix completes; one
    whose template has none is refused with Ollama's capability error, in OpenAI's shape."""
    install_gguf(models_dir, "fim", tiny_gguf, template="{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}")
    r = await client.completions.create(model="fim", prompt="def f(", suffix="return x", max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 3
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="tiny", prompt="def f(", suffix="return x", max_tokens=3)
    assert info.value.body == {"message": "registry.ollama.ai/library/tiny:latest does not support insert",
                               "type": "invalid_request_error", "param": None, "code": None}  # fmt: skip
