"""The official ``anthropic`` SDK against llamasup's ``/v1/messages`` and ``/v1/messages/count_tokens``
with the real llama-server, on scripted models whose answers are known (tests/chat_models.py)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import anthropic
import pytest
from aiohttp.test_utils import TestServer

from tests.chat_models import ANSWER_SCRIPT, WEATHER_TOOL, ollama_prompt_tokens
from tests.conftest import ServerFactory, base_url
from tests.models import write_model
from tests.projector_models import image_token_count, tiny_png, write_projector
from tests.store_helpers import install_gguf

T = TypeVar("T")
QUESTION: Any = [{"role": "user", "content": "2+2?"}]  # Any: the SDK's TypedDicts
WEATHER: Any = {"name": "get_weather", "description": WEATHER_TOOL["function"]["description"],
           "input_schema": WEATHER_TOOL["function"]["parameters"]}  # fmt: skip
THINK: Any = {"type": "enabled", "budget_tokens": 1024}
ANSWER_TOKENS = len(ANSWER_SCRIPT) + 1  # the script's pieces and the end token


@pytest.fixture
def server(chat_server: TestServer) -> TestServer:
    return chat_server


def _async(server: TestServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url(server), api_key="x", max_retries=0)


def _sync(server: TestServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url(server), api_key="x", max_retries=0)


async def _in_thread(call: Callable[[], T]) -> T:
    """The sync client, off the event loop the server runs on."""
    return await asyncio.to_thread(call)


def _blocks(message: Any) -> list[tuple[str, Any]]:
    """A message's content as (type, the block's payload) pairs."""
    out: list[tuple[str, Any]] = []
    for block in message.content:
        payload = {"text": block.text if block.type == "text" else None, "thinking": getattr(block, "thinking", None),
                   "tool_use": (getattr(block, "name", None), getattr(block, "input", None))}[block.type]  # fmt: skip
        out.append((block.type, payload))
    return out


# -- replies ---------------------------------------------------------------------------------------


async def test_not_streamed_sync(server: TestServer) -> None:
    """A sync create on a thinking model: a thinking block, then the text; end_turn; usage counted."""
    client = _sync(server)
    message = await _in_thread(lambda: client.messages.create(model="answer-go", max_tokens=64, messages=QUESTION, thinking=THINK))
    assert re.fullmatch(r"msg_[A-Za-z0-9]{24}", message.id) and message.type == "message" and message.role == "assistant"
    assert message.model == "answer-go"
    assert _blocks(message) == [("thinking", "Let me see."), ("text", "The answer is 4.")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == ANSWER_TOKENS


async def test_streamed_with_the_helper(server: TestServer) -> None:
    """messages.stream: text_stream yields the text, the final message holds the thinking and the usage."""
    async with _async(server).messages.stream(model="answer-go", max_tokens=64, messages=QUESTION, thinking=THINK) as stream:
        text = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(text) == "The answer is 4." and len(text) == 2
    assert _blocks(final) == [("thinking", "Let me see."), ("text", "The answer is 4.")]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == ANSWER_TOKENS and final.usage.input_tokens > 0


async def test_streamed_events_sync(server: TestServer) -> None:
    """create(stream=True): Anthropic's event sequence, blocks opened and closed as the content changes."""
    client = _sync(server)

    def run() -> list[Any]:
        with client.messages.create(model="answer-go", max_tokens=64, messages=QUESTION, stream=True) as events:
            return list(events)

    events = await _in_thread(run)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    blocks = [(e.index, e.content_block.type) for e in events if e.type == "content_block_start"]
    assert blocks == [(0, "thinking"), (1, "text")]
    thinking = "".join(e.delta.thinking for e in events if e.type == "content_block_delta" and e.delta.type == "thinking_delta")
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert (thinking, text) == ("Let me see.", "The answer is 4.")
    assert [e.index for e in events if e.type == "content_block_stop"] == [0, 1]
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == ANSWER_TOKENS


async def test_raw_stream_is_named_server_sent_events(server: TestServer) -> None:
    """On the wire: text/event-stream, every event an event line and a data line of the same type."""
    body = {"model": "plain-go", "max_tokens": 16, "messages": QUESTION, "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/v1/messages", json=body) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            raw = (await r.read()).decode()
    names = []
    for event in raw.split("\n\n")[:-1]:
        name, data = event.split("\n")
        assert name.startswith("event: ") and json.loads(data.removeprefix("data: "))["type"] == name[7:]
        names.append(name[7:])
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]  # fmt: skip


async def test_system_prompt_and_count_tokens(server: TestServer) -> None:
    """system reaches the prompt as Ollama's system message: count_tokens and usage.input_tokens equal the
    prompt_eval_count of /api/chat with the same messages, and grow with the text."""
    client = _async(server)
    messages: Any = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}]
    expected = await ollama_prompt_tokens(server, {"model": "plain-go", "messages": [{"role": "system", "content": "Be terse."}, *messages]})
    counted = await client.messages.count_tokens(model="plain-go", system="Be terse.", messages=messages)
    message = await client.messages.create(model="plain-go", max_tokens=16, system=[{"type": "text", "text": "Be terse."}], messages=messages)
    assert counted.input_tokens == expected == message.usage.input_tokens
    assert _blocks(message) == [("text", "Hello from llamasup.")]
    longer = await client.messages.count_tokens(model="plain-go", system="Be terse. Be kind.", messages=messages)
    assert longer.input_tokens > counted.input_tokens


async def test_max_tokens_and_stop_sequences(server: TestServer) -> None:
    """A small max_tokens stops with max_tokens; a stop sequence ends the text before it."""
    client = _async(server)
    cut = await client.messages.create(model="plain-go", max_tokens=2, messages=QUESTION)
    assert _blocks(cut) == [("text", "Hello from")] and cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2
    stopped = await client.messages.create(model="plain-go", max_tokens=16, messages=QUESTION, stop_sequences=[" from"])
    assert _blocks(stopped) == [("text", "Hello")] and stopped.stop_reason == "end_turn"
    async with client.messages.stream(model="plain-go", max_tokens=1, messages=QUESTION) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "max_tokens" and _blocks(final) == [("text", "Hello")]


# -- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tools-go", "tools-native"])
async def test_tool_call(server: TestServer, model: str) -> None:
    """A deterministic tool call comes back as a tool_use block (stop reason tool_use), streamed or not,
    on the template path and on llama-server's."""
    client = _async(server)
    message = await client.messages.create(model=model, max_tokens=128, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER])
    assert _blocks(message) == [("thinking", "I need the weather."), ("tool_use", ("get_weather", {"city": "Paris", "days": 2}))]
    assert message.stop_reason == "tool_use" and message.content[1].type == "tool_use" and message.content[1].id
    async with client.messages.stream(model=model, max_tokens=128, messages=[{"role": "user", "content": "Weather?"}],
                                      tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True}) as stream:
        final = await stream.get_final_message()
    assert _blocks(final) == _blocks(message) and final.stop_reason == "tool_use"


CLOCK: Any = {"name": "clock", "description": "The time", "input_schema": {"type": "object", "properties": {}, "additionalProperties": False}}


@pytest.mark.parametrize(("model", "forced", "expected"), [("tools-go", "clock", {}),
                                                           ("tools-native", "get_weather", {"city": "Paris", "days": 2})])  # fmt: skip
async def test_forced_tool_call(server: TestServer, model: str, forced: str, expected: dict[str, Any]) -> None:
    """tool_choice naming a tool offers only that tool and requires a call: on a Go template the output is
    constrained to a call of it (here a tool the script never calls, whose only valid input is {});
    on a GGUF template llama-server is told (the script's own call comes back)."""
    message = await _async(server).messages.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Weather?"}], tools=[CLOCK, WEATHER],
        tool_choice={"type": "tool", "name": forced})  # fmt: skip
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [(forced, expected)] and message.stop_reason == "tool_use"


@pytest.mark.parametrize("model", ["tools-go", "tools-native"])
async def test_tool_result_follow_up(server: TestServer, model: str) -> None:
    """The call and its result sent back render as Ollama's tool_calls and role "tool" message: the prompt
    has as many tokens as the same conversation on /api/chat, and the model answers."""
    client = _async(server)
    first = await client.messages.create(model=model, max_tokens=128, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER])
    call = first.content[-1]
    assert call.type == "tool_use"
    messages: Any = [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "20C"}]}]}]  # fmt: skip
    ollama_messages = [{"role": "user", "content": "Weather?"},
                       {"role": "assistant", "content": "", "tool_calls": [{"id": call.id, "function": {"name": call.name, "arguments": call.input}}]},
                       {"role": "tool", "content": "20C", "tool_name": "get_weather", "tool_call_id": call.id}]  # fmt: skip
    counted = await client.messages.count_tokens(model=model, messages=messages, tools=[WEATHER])
    assert counted.input_tokens == await ollama_prompt_tokens(server, {"model": model, "messages": ollama_messages, "tools": [WEATHER_TOOL]})
    reply = await client.messages.create(model=model, max_tokens=128, messages=messages, tools=[WEATHER])
    assert reply.usage.input_tokens == counted.input_tokens and reply.stop_reason == "tool_use"


# -- thinking --------------------------------------------------------------------------------------


async def test_thinking_disabled(server: TestServer) -> None:
    """thinking disabled on a thinking model: no thinking block, the tags stay in the text (think false)."""
    message = await _async(server).messages.create(model="answer-go", max_tokens=64, messages=QUESTION, thinking={"type": "disabled"})
    assert _blocks(message) == [("text", "<think>Let me see.</think>The answer is 4.")]


async def test_thinking_dropped_on_a_model_that_cannot_think(server: TestServer) -> None:
    """thinking asked of a model without the capability is dropped, not refused (as Ollama's /v1/messages),
    while /api/chat refuses think for it."""
    client = _async(server)
    message = await client.messages.create(model="plain-go", max_tokens=2048, messages=QUESTION, thinking=THINK)
    assert _blocks(message) == [("text", "Hello from llamasup.")]
    counted = await client.messages.count_tokens(model="plain-go", messages=QUESTION, thinking=THINK)
    assert counted.input_tokens == message.usage.input_tokens
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/api/chat", json={"model": "plain-go", "messages": QUESTION, "think": True}) as r:
            assert r.status == 400 and (await r.json())["error"] == '"plain-go" does not support thinking'


# -- images ----------------------------------------------------------------------------------------


async def test_images_reach_the_projector(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path,
                                          tmp_path: Path, image_url: str) -> None:  # fmt: skip
    """A base64 image block and a url image block (fetched by llamasup) each become the projector's tokens."""
    install_gguf(models_dir, "vision", write_model(tmp_path / "text.gguf", preset="tiny"),
                 projector=write_projector(tmp_path / "mmproj.gguf", text_n_embd=128))  # fmt: skip
    server = await start_server(llama_server_bin, image_fetch_allow=(ipaddress.ip_network("127.0.0.0/8"),))
    client = _async(server)
    png = base64.b64encode(tiny_png()).decode()
    text: Any = {"type": "text", "text": "What is it?"}
    sources: Any = [{"type": "base64", "media_type": "image/png", "data": png}, {"type": "url", "url": image_url}]
    plain = await client.messages.create(model="vision", max_tokens=1, messages=[{"role": "user", "content": [text]}])
    for source in sources:
        seen = await client.messages.create(model="vision", max_tokens=1, messages=[{"role": "user", "content": [text, {"type": "image", "source": source}]}])
        assert seen.usage.input_tokens == plain.usage.input_tokens + image_token_count(), source["type"]


# -- errors ----------------------------------------------------------------------------------------


async def test_unknown_model_is_not_found(server: TestServer) -> None:
    """An unknown model: NotFoundError with Ollama's message in Anthropic's body, streamed or not, and for count_tokens."""
    client = _async(server)
    expected = "model 'nope' not found"
    with pytest.raises(anthropic.NotFoundError) as info:
        await client.messages.create(model="nope", max_tokens=8, messages=QUESTION)
    body: Any = info.value.body
    assert info.value.status_code == 404 and body["error"] == {"type": "not_found_error", "message": expected}
    with pytest.raises(anthropic.NotFoundError):
        async with client.messages.stream(model="nope", max_tokens=8, messages=QUESTION) as stream:
            await stream.get_final_message()
    with pytest.raises(anthropic.NotFoundError) as info:
        await client.messages.count_tokens(model="nope", messages=QUESTION)
    assert info.value.message.endswith(expected) or expected in str(info.value.body)


async def test_invalid_requests_are_bad_requests(server: TestServer) -> None:
    """A missing max_tokens or an unknown field: BadRequestError naming the field."""
    client = _async(server)
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="plain-go", max_tokens=anthropic.NOT_GIVEN, messages=QUESTION, timeout=60)  # type: ignore[call-overload]
    body: Any = info.value.body
    assert body["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="plain-go", max_tokens=8, messages=QUESTION, extra_body={"frobnicate": 1})
    body = info.value.body
    assert body["error"]["message"] == "frobnicate: Extra inputs are not permitted"


async def test_error_shape_on_the_wire(server: TestServer) -> None:
    """Errors under /v1/messages have Anthropic's shape and status (with a req_ id); other /v1 routes keep OpenAI's."""
    url = base_url(server)
    cases = [
        ("/v1/messages", {"model": "plain-go", "messages": QUESTION}, 400, "invalid_request_error", "max_tokens: Field required"),
        ("/v1/messages", {"model": "nope", "max_tokens": 1, "messages": QUESTION}, 404, "not_found_error", "model 'nope' not found"),
        ("/v1/messages/count_tokens", {"model": "plain-go", "messages": []}, 400, "invalid_request_error",
         "messages: List should have at least 1 item after validation, not 0"),
    ]  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for path, body, status, kind, message in cases:
            async with session.post(url + path, json=body) as r:
                reply = await r.json()
                assert r.status == status and re.fullmatch(r"req_[A-Za-z0-9]{24}", reply.pop("request_id"))
                assert reply == {"type": "error", "error": {"type": kind, "message": message}}
        async with session.post(url + "/v1/messages", data=b"{not json") as r:
            reply = await r.json()
            assert r.status == 400 and reply["type"] == "error" and reply["error"]["type"] == "invalid_request_error"
        async with session.post(url + "/v1/chat/completions", json={"model": "nope", "messages": QUESTION}) as r:
            assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
