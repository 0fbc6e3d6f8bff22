"""The official ``openai`` SDK against llamasup's ``/v1/responses`` (and retrieve and delete) with the
real llama-server, on scripted models whose answers are known (tests/chat_models.py)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.chat_models import WEATHER_TOOL, ollama_prompt_tokens
from tests.conftest import ServerFactory, base_url
from tests.models import write_model
from tests.projector_models import image_token_count, tiny_png, write_projector
from tests.store_helpers import install_gguf

T = TypeVar("T")
WEATHER = {"type": "function", **WEATHER_TOOL["function"]}  # the Responses shape: name etc. at the top


@pytest.fixture
def server(chat_server: TestServer) -> TestServer:
    return chat_server


def _async(server: TestServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="x", max_retries=0)


def _sync(server: TestServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url(server) + "/v1", api_key="x", max_retries=0)


async def _in_thread(call: Callable[[], T]) -> T:
    """The sync client, off the event loop the server runs on."""
    return await asyncio.to_thread(call)


def _types(response: Any) -> list[str]:
    return [item.type for item in response.output]


# -- replies ---------------------------------------------------------------------------------------


async def test_text_response_sync(server: TestServer) -> None:
    """A sync create: one completed message item with the model's text; ids, usage and echo fields."""
    client = _sync(server)
    r = await _in_thread(lambda: client.responses.create(model="plain-go", input="Hi"))
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed" and r.model == "plain-go"
    assert r.output_text == "Hello from llamasup." and _types(r) == ["message"]
    (item,) = r.output
    assert item.type == "message" and item.id.startswith("msg_") and item.status == "completed" and item.role == "assistant"
    assert r.usage is not None and r.usage.output_tokens == 4 and r.usage.input_tokens > 0  # 3 pieces and the end of turn
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.tools == [] and r.tool_choice == "auto" and r.parallel_tool_calls is True and r.to_dict()["store"] is True


async def test_reasoning_then_text_async(server: TestServer) -> None:
    """A thinking model's thought is a reasoning item (summary text) before the message."""
    r = await _async(server).responses.create(model="answer-go", input="2+2?")
    assert _types(r) == ["reasoning", "message"] and r.output_text == "The answer is 4."
    reasoning = r.output[0]
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert [s.text for s in reasoning.summary] == ["Let me see."]


async def test_reasoning_effort_none_turns_thinking_off(server: TestServer) -> None:
    """reasoning.effort none: no reasoning item; the model's tags stay in the text (think false)."""
    r = await _async(server).responses.create(model="answer-go", input="2+2?", reasoning={"effort": "none"})
    assert _types(r) == ["message"] and "The answer is 4." in r.output_text


async def test_instructions_are_a_system_message(server: TestServer) -> None:
    """instructions come first as a system message: the prompt is /api/chat's with that system message."""
    r = await _async(server).responses.create(model="plain-go", instructions="Be terse.", input="Hi")
    expected = await ollama_prompt_tokens(server, {"model": "plain-go", "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]})  # fmt: skip
    assert r.usage is not None and r.usage.input_tokens == expected
    assert r.instructions == "Be terse." and r.output_text == "Hello from llamasup."


async def test_max_output_tokens_is_incomplete(server: TestServer) -> None:
    """max_output_tokens cuts the reply: status incomplete, reason max_output_tokens, streamed or not."""
    client = _async(server)
    r = await client.responses.create(model="plain-go", input="Hi", max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens" and r.output_text == "Hello from"
    assert r.max_output_tokens == 2 and r.usage is not None and r.usage.output_tokens == 2
    stream = await client.responses.create(model="plain-go", input="Hi", max_output_tokens=2, stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"


# -- streaming -------------------------------------------------------------------------------------


async def test_streamed_events_async(server: TestServer) -> None:
    """stream=True: created and in_progress first, the reasoning and message items' events in order with
    increasing sequence numbers, completed last with the same text as the deltas."""
    stream = await _async(server).responses.create(model="answer-go", input="2+2?", stream=True)
    events = [e async for e in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    names = [e.type for e in events]
    assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.reasoning_summary_part.added"]  # fmt: skip
    assert names[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta") == "Let me see."
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "The answer is 4." == events[-1].response.output_text
    created, completed = events[0].response, events[-1].response
    assert created.id == completed.id and created.status == "in_progress" and completed.status == "completed"


async def test_stream_helper_sync(server: TestServer) -> None:
    """client.responses.stream (sync): text deltas with snapshots, and the final parsed response."""
    client = _sync(server)

    def run() -> tuple[list[str], Any]:
        with client.responses.stream(model="plain-go", input="Hi") as stream:
            snapshots = [e.snapshot for e in stream if e.type == "response.output_text.delta"]
            return snapshots, stream.get_final_response()

    snapshots, final = await _in_thread(run)
    assert snapshots == ["Hello", "Hello from", "Hello from llamasup."]
    assert final.output_text == "Hello from llamasup." and final.status == "completed"


async def test_stream_helper_async_with_a_tool_call(server: TestServer) -> None:
    """client.responses.stream (async) with tools: argument deltas, and a final function_call item."""
    async with _async(server).responses.stream(model="tools-go", input="Weather in Paris?", tools=[WEATHER]) as stream:
        done = [e async for e in stream if e.type == "response.function_call_arguments.done"]
        final = await stream.get_final_response()
    assert [json.loads(e.arguments) for e in done] == [{"city": "Paris", "days": 2}]
    assert _types(final)[-1] == "function_call"
    call = final.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"


async def test_raw_stream_is_named_events(server: TestServer) -> None:
    """On the wire: text/event-stream; every event an event line naming the data's type; no [DONE]."""
    body = {"model": "plain-go", "input": "Hi", "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + "/v1/responses", json=body) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            raw = (await r.read()).decode()
    blocks = [b for b in raw.split("\n\n") if b]
    for block in blocks:
        event, data = block.split("\n")
        assert event.startswith("event: ") and json.loads(data.removeprefix("data: "))["type"] == event[7:]
    assert blocks[-1].startswith("event: response.completed\n")


# -- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tools-go", "tools-native"])
async def test_function_call_and_its_output(server: TestServer, model: str) -> None:
    """A tool call is a function_call item (llamasup's parser and llama-server's); its output sent with
    previous_response_id continues the conversation: the prompt is /api/chat's for the whole exchange."""
    client = _async(server)
    first = await client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2} and call.id and call.id.startswith("fc_")
    assert "message" not in _types(first)
    second = await client.responses.create(model=model, previous_response_id=first.id, tools=[WEATHER],
                                           input=[{"type": "function_call_output", "call_id": call.call_id, "output": "20C"}])  # fmt: skip
    thinking = "".join(s.text for item in first.output if item.type == "reasoning" for s in item.summary)
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "thinking": thinking,
         "tool_calls": [{"id": call.call_id, "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
        {"role": "tool", "content": "20C", "tool_name": "get_weather", "tool_call_id": call.call_id},
    ]  # fmt: skip
    expected = await ollama_prompt_tokens(server, {"model": model, "messages": messages, "tools": [WEATHER_TOOL]})
    assert second.usage is not None and second.usage.input_tokens == expected
    assert second.previous_response_id == first.id


async def test_tool_choice_none_offers_no_tools(server: TestServer) -> None:
    """tool_choice none: the tools are not offered, so the call stays text in the message."""
    r = await _async(server).responses.create(model="tools-go", input="Weather?", tools=[WEATHER], tool_choice="none")
    assert _types(r) == ["reasoning", "message"] and "get_weather" in r.output_text


# -- previous_response_id and the store ------------------------------------------------------------


async def test_previous_response_id_continues_the_conversation(server: TestServer) -> None:
    """The second turn's prompt holds the first turn (input, reasoning and answer) before the new input,
    but not the first turn's instructions."""
    client = _async(server)
    first = await client.responses.create(model="answer-go", instructions="Only for turn one.", input="2+2?")
    second = await client.responses.create(model="answer-go", previous_response_id=first.id, input="And 3+3?")
    fresh = await client.responses.create(model="answer-go", input="And 3+3?")
    messages = [{"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "The answer is 4.", "thinking": "Let me see."},
                {"role": "user", "content": "And 3+3?"}]  # fmt: skip
    expected = await ollama_prompt_tokens(server, {"model": "answer-go", "messages": messages})
    assert second.usage is not None and fresh.usage is not None
    assert second.usage.input_tokens == expected > fresh.usage.input_tokens
    third = await client.responses.create(model="answer-go", previous_response_id=second.id, input="And 4+4?")
    assert third.usage is not None and third.usage.input_tokens > second.usage.input_tokens


async def test_streamed_responses_are_stored(server: TestServer) -> None:
    """A streamed response is stored when it completes: retrieve returns the completed response."""
    client = _async(server)
    stream = await client.responses.create(model="plain-go", input="Hi", stream=True)
    final = [e async for e in stream][-1].response
    got = await client.responses.retrieve(final.id)
    assert got.id == final.id and got.output_text == "Hello from llamasup." and got.status == "completed"


async def test_retrieve_and_delete_sync(server: TestServer) -> None:
    """retrieve returns the stored response; after delete it and its continuation are 404s."""
    client = _sync(server)
    r = await _in_thread(lambda: client.responses.create(model="plain-go", input="Hi"))
    got = await _in_thread(lambda: client.responses.retrieve(r.id))
    assert got.model_dump() == r.model_dump()
    await _in_thread(lambda: client.responses.delete(r.id))
    with pytest.raises(openai.NotFoundError, match=f"Response with id '{r.id}' not found."):
        await _in_thread(lambda: client.responses.retrieve(r.id))
    with pytest.raises(openai.NotFoundError, match=f"Previous response with id '{r.id}' not found."):
        await _in_thread(lambda: client.responses.create(model="plain-go", input="x", previous_response_id=r.id))


async def test_store_false_is_not_kept(server: TestServer) -> None:
    """store: false answers as usual but keeps nothing: retrieve is a 404."""
    client = _async(server)
    r = await client.responses.create(model="plain-go", input="Hi", store=False)
    assert r.output_text == "Hello from llamasup." and r.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(r.id)


# -- images ----------------------------------------------------------------------------------------


async def test_input_images_reach_the_projector(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path,
                                                tmp_path: Path, image_url: str) -> None:  # fmt: skip
    """input_image parts, as a data: URL or an http URL that llamasup fetches, become the projector's tokens."""
    install_gguf(models_dir, "vision", write_model(tmp_path / "text.gguf", preset="tiny"),
                 projector=write_projector(tmp_path / "mmproj.gguf", text_n_embd=128))  # fmt: skip
    server = await start_server(llama_server_bin, image_fetch_allow=(ipaddress.ip_network("127.0.0.0/8"),))
    client = _async(server)
    data_url = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    plain = await client.responses.create(model="vision", input="What is it?", max_output_tokens=1)
    assert plain.usage is not None
    for url in (data_url, image_url):
        content = [{"type": "input_text", "text": "What is it?"}, {"type": "input_image", "image_url": url, "detail": "auto"}]
        r = await client.responses.create(model="vision", input=[{"role": "user", "content": content}], max_output_tokens=1)
        assert r.usage is not None and r.usage.input_tokens == plain.usage.input_tokens + image_token_count()


# -- errors ----------------------------------------------------------------------------------------


async def test_unknown_model_is_404(server: TestServer) -> None:
    """An unknown model: 404 in OpenAI's error shape, Ollama's message."""
    with pytest.raises(openai.NotFoundError) as e:
        await _async(server).responses.create(model="nope", input="Hi")
    assert e.value.body == {"message": "model 'nope' not found", "type": "not_found_error", "param": None, "code": None}


async def test_unknown_previous_response_id_is_404(server: TestServer) -> None:
    """An unknown previous_response_id: OpenAI's 404 text, before any model is loaded."""
    with pytest.raises(openai.NotFoundError) as e:
        await _async(server).responses.create(model="plain-go", input="Hi", previous_response_id="resp_nope")
    assert e.value.body["message"] == "Previous response with id 'resp_nope' not found."


async def test_bad_request_is_400(server: TestServer) -> None:
    """A malformed input item: 400 invalid_request_error with the reason."""
    with pytest.raises(openai.BadRequestError) as e:
        await _async(server).responses.create(model="plain-go", input=[{"type": "nope"}])
    assert e.value.body["message"] == "invalid input item type: 'nope'"
