"""Tool calls, reasoning and tool_choice through ``/v1/chat/completions`` with the ``openai`` client
and the real llama-server, on both chat paths (a Go template parsed by llamasup, a GGUF Jinja
template parsed by llama-server). Scripted models make the output deterministic (tests/chat_models.py);
a random-weight model shows that ``tool_choice`` forces a call on a Go template. (On a GGUF template
llama-server enforces ``required`` itself, and its grammar lets text come before the call, so a
random model is no test of it.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.chat_models import GO_CHATML, WEATHER_TOOL, install_chat_models
from tests.conftest import ServerFactory, base_url
from tests.models import write_model
from tests.scripted_models import ASSISTANT_TRIGGER, write_scripted_model
from tests.store_helpers import install_gguf

ASK = [{"role": "user", "content": "Weather in Paris?"}]
TWO_CALLS = ["<tool_call>", '{"name": "get_weather", "arguments": {"city": "Paris"}}', "</tool_call>", "\n<tool_call>",
             '{"name": "get_weather", "arguments": {"city": "Rome"}}', "</tool_call>\n"]  # fmt: skip
NO_ARGS_TOOL = {"type": "function", "function": {"name": "ping", "description": "Ping",
                                                  "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}}  # fmt: skip


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory, chat_ggufs: dict[str, Path]) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("openai-tools")
    return chat_ggufs | {
        "two": write_scripted_model(d / "two.gguf", {ASSISTANT_TRIGGER: TWO_CALLS}),
        "random": write_model(d / "random.gguf", preset="tiny"),
    }


@pytest.fixture
async def server(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, ggufs: dict[str, Path]) -> TestServer:
    install_chat_models(models_dir, ggufs)
    install_gguf(models_dir, "two-go", ggufs["two"], template=GO_CHATML)
    install_gguf(models_dir, "random-go", ggufs["random"], template=GO_CHATML)
    return await start_server(llama_server_bin, models_dir=models_dir)


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The async client, closed after the test."""
    async with openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def _arguments(call: Any) -> dict[str, Any]:
    return json.loads(call.function.arguments)  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", ["tools-go", "tools-native"])
async def test_tool_call_not_streamed(server: TestServer, model: str, client: openai.AsyncOpenAI) -> None:
    """The model's call comes back as tool_calls (id, type, name, arguments as a JSON string) with
    finish_reason tool_calls, and its thinking as reasoning."""
    r = await client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    (choice,) = r.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    assert _arguments(call) == {"city": "Paris", "days": 2}
    assert getattr(choice.message, "reasoning", None) == "I need the weather."
    assert not choice.message.content


@pytest.mark.parametrize("model", ["tools-go", "tools-native"])
async def test_tool_call_streamed(server: TestServer, model: str, client: openai.AsyncOpenAI) -> None:
    """Streamed: reasoning deltas, then a tool-call delta with index 0 that the SDK's accumulation turns
    into the call; the finish chunk says tool_calls."""
    stream = await client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER_TOOL], stream=True)  # type: ignore[list-item]
    chunks = [c async for c in stream]
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning", None) or "" for c in chunks)
    assert reasoning == "I need the weather."
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert [d.index for d in deltas] == [0] and deltas[0].function is not None
    assert deltas[0].function.name == "get_weather" and json.loads(deltas[0].function.arguments or "") == {"city": "Paris", "days": 2}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_tool_result_follow_up_is_answered(server: TestServer, client: openai.AsyncOpenAI) -> None:
    """The assistant's call and a tool result (named through tool_call_id) go back in; the reply comes."""
    first = await client.chat.completions.create(model="tools-native", messages=ASK, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    call = (first.choices[0].message.tool_calls or [])[0]
    follow = ASK + [first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 20}'}]
    r = await client.chat.completions.create(model="tools-native", messages=follow, tools=[WEATHER_TOOL])  # type: ignore[arg-type, list-item]
    assert r.usage is not None and first.usage is not None and r.usage.prompt_tokens > first.usage.prompt_tokens


async def test_tool_choice_none_offers_no_tools(server: TestServer, client: openai.AsyncOpenAI) -> None:
    """tool_choice none: the tools are not offered, so the model's call text is plain content."""
    r = await client.chat.completions.create(model="tools-go", messages=ASK, tools=[WEATHER_TOOL], tool_choice="none")  # type: ignore[list-item]
    assert not r.choices[0].message.tool_calls and r.choices[0].finish_reason == "stop"
    assert "get_weather" in (r.choices[0].message.content or "")


async def test_parallel_tool_calls_false_keeps_one_call(server: TestServer, client: openai.AsyncOpenAI) -> None:
    """A model that makes two calls: both by default; only the first with parallel_tool_calls false."""
    both = await client.chat.completions.create(model="two-go", messages=ASK, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    assert [_arguments(c)["city"] for c in both.choices[0].message.tool_calls or []] == ["Paris", "Rome"]
    one = await client.chat.completions.create(model="two-go", messages=ASK, tools=[WEATHER_TOOL], parallel_tool_calls=False)  # type: ignore[list-item]
    assert [_arguments(c)["city"] for c in one.choices[0].message.tool_calls or []] == ["Paris"]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "ping"}}])
async def test_tool_choice_forces_a_call_on_a_go_template(server: TestServer, choice: Any, client: openai.AsyncOpenAI) -> None:
    """A random-weight model that would babble calls the tool when tool_choice requires it (by name or
    "required"): llamasup constrains its output to a call; without tool_choice it does not call."""
    ask: Any = [{"role": "user", "content": "ping"}]
    r = await client.chat.completions.create(model="random-go", messages=ask, tools=[NO_ARGS_TOOL], tool_choice=choice,  # type: ignore[list-item]
                                             max_tokens=80, temperature=0, reasoning_effort="none")  # fmt: skip
    (call,) = r.choices[0].message.tool_calls or []
    assert call.function.name == "ping" and _arguments(call) == {}
    assert r.choices[0].finish_reason == "tool_calls"
    free = await client.chat.completions.create(model="random-go", messages=ask, tools=[NO_ARGS_TOOL],  # type: ignore[list-item]
                                                max_tokens=10, temperature=0, reasoning_effort="none")  # fmt: skip
    assert not free.choices[0].message.tool_calls and free.choices[0].finish_reason == "length"


async def test_a_named_tool_choice_offers_only_that_tool(server: TestServer, client: openai.AsyncOpenAI) -> None:
    """On a GGUF template the named function alone is offered (and llama-server told a call is
    required): the rendered prompt is shorter than with both tools."""
    both = await client.chat.completions.create(model="tools-native", messages=ASK, tools=[WEATHER_TOOL, NO_ARGS_TOOL])  # type: ignore[list-item]
    named = await client.chat.completions.create(model="tools-native", messages=ASK, tools=[WEATHER_TOOL, NO_ARGS_TOOL],  # type: ignore[list-item]
                                                 tool_choice={"type": "function", "function": {"name": "get_weather"}})  # fmt: skip
    assert [c.function.name for c in named.choices[0].message.tool_calls or []] == ["get_weather"]
    assert both.usage is not None and named.usage is not None and named.usage.prompt_tokens < both.usage.prompt_tokens


async def test_reasoning_is_streamed_apart_from_the_answer(server: TestServer, client: openai.AsyncOpenAI) -> None:
    """A thinking model: reasoning chunks first, then content, never both in one delta."""
    stream = await client.chat.completions.create(model="answer-go", messages=[{"role": "user", "content": "2+2?"}], stream=True)
    chunks = [c async for c in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert all(not (getattr(d, "reasoning", None) and d.content) for d in deltas)
    assert "".join(getattr(d, "reasoning", None) or "" for d in deltas) == "Let me see."
    assert "".join(d.content or "" for d in deltas) == "The answer is 4."
