"""The official ``ollama`` Python client against llamasup with the real llama-server."""

from __future__ import annotations

from datetime import datetime

import ollama
from aiohttp.test_utils import TestServer

from tests.conftest import base_url


async def test_list_shows_the_store(real_server: TestServer) -> None:
    """client.list() returns the store's model with its details."""
    client = ollama.AsyncClient(host=base_url(real_server))
    listing = await client.list()
    assert [m.model for m in listing.models] == ["tiny:latest"]
    model = listing.models[0]
    assert model.size and model.size > 1_000_000
    assert model.digest and len(model.digest) == 64
    assert model.details is not None and model.details.family == "llama" and model.details.format == "gguf"
    assert isinstance(model.modified_at, datetime)


async def test_generate_not_streamed(real_server: TestServer) -> None:
    """generate(stream=False) returns the whole text, context tokens and every timing field."""
    client = ollama.AsyncClient(host=base_url(real_server))
    r = await client.generate(model="tiny", prompt="Hello there", options={"num_predict": 12, "temperature": 0})
    assert r.done and r.done_reason == "length"
    assert r.response
    assert r.eval_count == 12
    assert r.prompt_eval_count and r.prompt_eval_count > 0
    assert r.total_duration and r.load_duration and r.eval_duration and r.prompt_eval_duration
    assert r.total_duration >= r.load_duration
    assert r.context and all(isinstance(t, int) for t in r.context)
    assert r.model == "tiny"


async def test_generate_streamed(real_server: TestServer) -> None:
    """generate(stream=True) yields pieces, then one final chunk with done_reason and metrics."""
    client = ollama.AsyncClient(host=base_url(real_server))
    chunks = [c async for c in await client.generate(model="tiny", prompt="Once", stream=True, options={"num_predict": 10, "temperature": 0})]
    assert all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert len(chunks) >= 2
    assert chunks[-1].eval_count == 10
    streamed = "".join(c.response for c in chunks)
    whole = await client.generate(model="tiny", prompt="Once", options={"num_predict": 10, "temperature": 0})
    assert streamed == whole.response  # greedy decoding: the same text either way


async def test_chat_not_streamed(real_server: TestServer) -> None:
    """chat(stream=False) returns an assistant message rendered through the GGUF chat template."""
    client = ollama.AsyncClient(host=base_url(real_server))
    r = await client.chat(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}],
        options={"num_predict": 8, "temperature": 0},
    )
    assert r.message.role == "assistant" and r.message.content
    assert r.done and r.done_reason == "length" and r.eval_count == 8
    assert r.prompt_eval_count and r.prompt_eval_count > 5  # system + user through the template


async def test_chat_streamed(real_server: TestServer) -> None:
    """chat(stream=True) yields message pieces and a final chunk with metrics."""
    client = ollama.AsyncClient(host=base_url(real_server))
    stream = await client.chat(model="tiny", messages=[{"role": "user", "content": "Hello"}], stream=True, options={"num_predict": 6})
    chunks = [c async for c in stream]
    assert chunks[-1].done and chunks[-1].eval_count == 6
    assert "".join(c.message.content or "" for c in chunks)


async def test_unknown_model_raises_response_error(real_server: TestServer) -> None:
    """An unknown model raises ResponseError with Ollama's message and status 404."""
    client = ollama.AsyncClient(host=base_url(real_server))
    try:
        await client.generate(model="nope", prompt="x")
    except ollama.ResponseError as e:
        assert e.status_code == 404
        assert e.error == "model 'nope' not found"
    else:
        raise AssertionError("expected ResponseError")


def test_sync_client_against_a_server_process(subprocess_server) -> None:  # type: ignore[no-untyped-def]
    """The synchronous client works against `python -m supervisor serve` as a separate process."""
    _, url = subprocess_server()
    client = ollama.Client(host=url)
    assert [m.model for m in client.list().models] == ["tiny:latest"]
    r = client.chat(model="tiny:latest", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 4})
    assert r.done and r.eval_count == 4
    pieces = list(client.generate(model="TINY", prompt="hi", stream=True, options={"num_predict": 4}))
    assert pieces[-1].done and pieces[-1].eval_count == 4
