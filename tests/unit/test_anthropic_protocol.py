"""Anthropic's Messages API ↔ the chat use case: requests in, replies and stream events out (pure)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from supervisor.errors import BadRequest
from supervisor.protocol.anthropic import (
    MessageStream,
    error_body,
    message_reply,
    messages_request,
    remote_images,
)
from supervisor.protocol.ollama_requests import ChatRequest, Message, Think

PNG = b"\x89PNG\r\n\x1a\n fake"
PNG_B64 = base64.b64encode(PNG).decode()
USER = [{"role": "user", "content": "Hi"}]
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip
WEATHER_FN = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                               "parameters": WEATHER["input_schema"]}}  # fmt: skip
CLOCK = {"name": "clock", "input_schema": {"type": "object"}}
CLOCK_FN = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}


def _req(**fields: Any) -> ChatRequest:
    req, _ = messages_request({"model": "m", "max_tokens": 16, "messages": USER} | fields)
    return req


# -- requests --------------------------------------------------------------------------------------


def test_minimal_request() -> None:
    """model, max_tokens and a string message become a chat request with num_predict; no stream by default."""
    req, stream = messages_request({"model": "qwen3", "max_tokens": 32, "messages": USER})
    assert stream is False and req.stream is False
    assert req == ChatRequest(model="qwen3", stream=False, options={"num_predict": 32}, messages=[Message("user", "Hi")],
                              think_if_able=True)  # fmt: skip


def test_sampling_fields_become_options() -> None:
    """temperature, top_p, top_k and stop_sequences map to Ollama's options; metadata is accepted."""
    req = _req(temperature=0.5, top_p=1, top_k=40, stop_sequences=["END", "\n\n"], metadata={"user_id": "u1"}, stream=True)
    assert req.options == {"num_predict": 16, "temperature": 0.5, "top_p": 1.0, "top_k": 40, "stop": ["END", "\n\n"]}
    assert req.stream is True


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Be terse.", [Message("system", "Be terse.")]),
        ([{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be kind."}],
         [Message("system", "Be terse.\nBe kind.")]),
        ("", []),
    ],
)  # fmt: skip
def test_system_becomes_the_first_message(system: Any, expected: list[Message]) -> None:
    """system, a string or text blocks (cache_control ignored), is one system message before the turns."""
    assert _req(system=system).messages == [*expected, Message("user", "Hi")]


def test_content_blocks() -> None:
    """Text blocks are joined, base64 images become bytes, assistant thinking and text fill one message."""
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                                     {"type": "text", "text": "at this"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                                          {"type": "redacted_thinking", "data": "opaque"}, {"type": "text", "text": "A PNG."}]},
        {"role": "user", "content": "Thanks"},
    ]  # fmt: skip
    assert _req(messages=messages).messages == [
        Message("user", "Look\nat this", images=[PNG]),
        Message("assistant", "A PNG.", thinking="Hmm."),
        Message("user", "Thanks"),
    ]


def test_tool_use_and_results() -> None:
    """tool_use becomes tool_calls with its id; each tool_result is a tool message named after its call,
    before the turn's text."""
    messages = [
        {"role": "user", "content": "Weather and time?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                                          {"type": "tool_use", "id": "toolu_2", "name": "clock", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "20C"},
                                     {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
                                      "content": [{"type": "text", "text": "12:00"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}]},
                                     {"type": "tool_result", "tool_use_id": "toolu_1"},
                                     {"type": "text", "text": "Summarise."}]},
    ]  # fmt: skip
    assert _req(messages=messages, tools=[WEATHER, CLOCK]).messages == [
        Message("user", "Weather and time?"),
        Message("assistant", "Checking.", tool_calls=[
            {"id": "toolu_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "toolu_2", "function": {"index": 1, "name": "clock", "arguments": {}}}]),
        Message("tool", "20C", tool_name="get_weather", tool_call_id="toolu_1"),
        Message("tool", "12:00", images=[PNG], tool_name="clock", tool_call_id="toolu_2"),
        Message("tool", "", tool_name="get_weather", tool_call_id="toolu_1"),
        Message("user", "Summarise."),
    ]  # fmt: skip


def test_image_urls_are_listed_and_taken_from_the_fetched() -> None:
    """url image sources (also inside tool results) are listed once for the caller; their bytes come back in."""
    url_block = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    messages = [
        {"role": "user", "content": [url_block, url_block]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "clock", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "http://b/b.png"}}]}]},
    ]  # fmt: skip
    body = {"model": "m", "max_tokens": 1, "messages": messages}
    assert remote_images(body) == ["https://example.com/a.png", "http://b/b.png"]
    req, _ = messages_request(body, {"https://example.com/a.png": b"A", "http://b/b.png": b"B"})
    assert req.messages[0].images == [b"A", b"A"] and req.messages[2].images == [b"B"]


@pytest.mark.parametrize(
    ("fields", "tools", "choice", "parallel"),
    [
        ({"tools": [WEATHER, CLOCK]}, [WEATHER_FN, CLOCK_FN], "auto", None),
        ({"tools": [WEATHER], "tool_choice": {"type": "auto"}}, [WEATHER_FN], "auto", None),
        ({"tools": [WEATHER], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}, [WEATHER_FN], "auto", False),
        ({"tools": [WEATHER, CLOCK], "tool_choice": {"type": "any"}}, [WEATHER_FN, CLOCK_FN], "required", None),
        ({"tools": [WEATHER, CLOCK], "tool_choice": {"type": "tool", "name": "clock", "disable_parallel_tool_use": True}}, [CLOCK_FN], "required", False),
        ({"tools": [WEATHER, {**CLOCK, "type": "custom"}], "tool_choice": {"type": "none"}}, [], "auto", None),
    ],
)  # fmt: skip
def test_tools_and_tool_choice(fields: dict[str, Any], tools: list[Any], choice: str, parallel: bool | None) -> None:
    """Tools become function tools; any → required, tool → only that tool and required, none → no tools,
    disable_parallel_tool_use → parallel_tool_calls false."""
    req = _req(**fields)
    assert (req.tools, req.tool_choice, req.parallel_tool_calls) == (tools, choice, parallel)


@pytest.mark.parametrize(
    ("fields", "think"),
    [
        ({}, None),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, Think(True)),
        ({"thinking": {"type": "adaptive"}}, Think(True)),
        ({"thinking": {"type": "disabled"}}, Think(False)),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}, "output_config": {"effort": "high"}}, Think(True, "high")),
        ({"output_config": {"effort": "low"}}, Think(True, "low")),
    ],
)  # fmt: skip
def test_thinking(fields: dict[str, Any], think: Think | None) -> None:
    """thinking enabled/adaptive → think on (dropped later for a model that cannot), disabled → off, effort → level."""
    req = _req(**fields)
    assert req.think == think and req.think_if_able is True


def test_output_format_and_count_tokens_body() -> None:
    """output_config.format json_schema becomes format; a count_tokens body needs no max_tokens."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert _req(output_config={"format": {"type": "json_schema", "schema": schema}}).format == schema
    req, _ = messages_request({"model": "m", "messages": USER, "system": "S"}, counting=True)
    assert req.options == {} and req.messages == [Message("system", "S"), Message("user", "Hi")]


def _msg(content: Any, role: str = "user") -> dict[str, Any]:
    return {"model": "m", "max_tokens": 5, "messages": [{"role": role, "content": content}]}


_IMG = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
_OK = {"model": "m", "max_tokens": 5, "messages": USER}
ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"max_tokens": 5, "messages": USER}, "model: Field required"),
    (_OK | {"model": 5}, "model: Input should be a valid string"),
    ({"model": "m", "messages": USER}, "max_tokens: Field required"),
    (_OK | {"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    (_OK | {"max_tokens": "10"}, "max_tokens: Input should be a valid integer"),
    (_OK | {"max_tokens": True}, "max_tokens: Input should be a valid integer"),
    (_OK | {"max_tokens": 1.5}, "max_tokens: Input should be a valid integer"),
    ({"model": "m", "max_tokens": 5}, "messages: Field required"),
    (_OK | {"messages": []}, "messages: List should have at least 1 item after validation, not 0"),
    (_OK | {"messages": "Hi"}, "messages: Input should be a valid list"),
    (_OK | {"messages": ["Hi"]}, "messages.0: Input should be a valid dictionary"),
    (_OK | {"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be 'user' or 'assistant'"),
    (_OK | {"messages": [{"content": "x"}]}, "messages.0.role: Field required"),
    (_OK | {"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
    (_OK | {"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages.0.name: Extra inputs are not permitted"),
    (_OK | {"messages": [{"role": "user", "content": 5}]}, "messages.0.content: Input should be a valid list"),
    (_msg([{"type": "document", "source": {}}]), "messages.0.content.0: content block type 'document' is not supported here (expected one of 'text', 'image', 'tool_result')"),
    (_msg(["text"]), "messages.0.content.0: Input should be a valid dictionary"),
    (_msg([{"type": "text"}]), "messages.0.content.0.text: Field required"),
    (_msg([_IMG], role="assistant"), "messages.0.content.0: content block type 'image' is not supported here (expected one of 'text', 'thinking', 'redacted_thinking', 'tool_use')"),
    (_msg([{"type": "thinking", "thinking": "x"}]), "messages.0.content.0: content block type 'thinking' is not supported here (expected one of 'text', 'image', 'tool_result')"),
    (_msg([{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG_B64}}]),
     "messages.0.content.0.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif', 'image/webp'"),
    (_msg([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "data:image/png;base64,xx"}}]),
     "messages.0.content.0.source.data: the image data is not valid base64"),
    (_msg([{"type": "image", "source": {"type": "file", "file_id": "f"}}]), "messages.0.content.0.source: image source type 'file' is not supported (use 'base64' or 'url')"),
    (_msg([{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]),
     "messages.0.content.0.source: image URLs are not supported here; send the image as base64 data"),
    (_msg([{"type": "image"}]), "messages.0.content.0.source: Field required"),
    (_msg([{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]),
     "messages.0.content.0: tool_result refers to tool_use_id 'nope', which no earlier tool_use block has"),
    (_msg([{"type": "tool_use", "name": "f", "input": {}}], role="assistant"), "messages.0.content.0.id: Field required"),
    (_msg([{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}], role="assistant"), "messages.0.content.0.input: Input should be a valid dictionary"),
    (_OK | {"foo": 1}, "foo: Extra inputs are not permitted"),
    (_OK | {"stream": "yes"}, "stream: Input should be a valid boolean"),
    (_OK | {"temperature": "hot"}, "temperature: Input should be a valid number"),
    (_OK | {"top_k": -1}, "top_k: Input should be greater than or equal to 0"),
    (_OK | {"stop_sequences": "END"}, "stop_sequences: Input should be a valid list"),
    (_OK | {"stop_sequences": ["END", 1]}, "stop_sequences.1: Input should be a valid string"),
    (_OK | {"system": 5}, "system: Input should be a valid list"),
    (_OK | {"system": [{"type": "image", "source": {}}]}, "system.0: content block type 'image' is not supported here (expected one of 'text')"),
    (_OK | {"metadata": "x"}, "metadata: Input should be a valid dictionary"),
    (_OK | {"tools": {}}, "tools: Input should be a valid list"),
    (_OK | {"tools": [{"input_schema": {}}]}, "tools.0.name: Field required"),
    (_OK | {"tools": [{"name": "f"}]}, "tools.0.input_schema: Field required"),
    (_OK | {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools.0.type: tool type 'web_search_20250305' is not supported: only client tools (name, description, input_schema)"),
    (_OK | {"tool_choice": "auto"}, "tool_choice: Input should be a valid dictionary"),
    (_OK | {"tool_choice": {"type": "required"}}, "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"),
    (_OK | {"tool_choice": {"type": "any"}}, "tool_choice: 'any' requires at least one tool in tools"),
    (_OK | {"tools": [CLOCK], "tool_choice": {"type": "tool", "name": "get_weather"}}, "tool_choice.name: no tool named 'get_weather' in tools"),
    (_OK | {"tools": [CLOCK], "tool_choice": {"type": "tool"}}, "tool_choice.name: Field required"),
    (_OK | {"tool_choice": {"type": "auto", "disable_parallel_tool_use": "yes"}}, "tool_choice.disable_parallel_tool_use: Input should be a valid boolean"),
    (_OK | {"thinking": {"type": "on"}}, "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'"),
    (_OK | {"thinking": {"type": "enabled"}}, "thinking.budget_tokens: Field required"),
    (_OK | {"thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens: Input should be greater than or equal to 1"),
    (_OK | {"output_config": {"effort": "extreme"}}, "output_config.effort: Input should be 'low', 'medium', 'high', 'max'"),
    (_OK | {"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type: Input should be 'json_schema'"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), ERRORS, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(ERRORS)])
def test_request_errors(body: dict[str, Any], message: str) -> None:
    """Every invalid field is a 400 whose message names the field, in Anthropic's wording."""
    with pytest.raises(BadRequest) as e:
        messages_request(body)
    assert (e.value.status, e.value.message) == (400, message)


# -- replies ---------------------------------------------------------------------------------------


def _chunk(content: str = "", thinking: str = "", calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": message, "done": False}


def _final(reason: str = "stop", calls: list[dict[str, Any]] | None = None, prompt: int = 12, out: int = 5) -> dict[str, Any]:
    return _chunk(calls=calls) | {"done": True, "done_reason": reason, "prompt_eval_count": prompt, "eval_count": out}


CALL = {"id": "call_abc12345", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}


@pytest.mark.parametrize(
    ("final", "content", "stop"),
    [
        (_final() | {"message": {"role": "assistant", "content": "Hello."}}, [{"type": "text", "text": "Hello."}], "end_turn"),
        (_final() | {"message": {"role": "assistant", "content": "4", "thinking": "2+2"}},
         [{"type": "thinking", "thinking": "2+2", "signature": ""}, {"type": "text", "text": "4"}], "end_turn"),
        (_final(calls=[CALL]), [{"type": "tool_use", "id": "call_abc12345", "name": "get_weather", "input": {"city": "Paris"}}], "tool_use"),
        (_final("length") | {"message": {"role": "assistant", "content": "Hel"}}, [{"type": "text", "text": "Hel"}], "max_tokens"),
        (_final(), [], "end_turn"),
    ],
)  # fmt: skip
def test_message_reply(final: dict[str, Any], content: list[Any], stop: str) -> None:
    """A collected reply is a message: thinking, text and tool_use blocks, the stop reason, usage."""
    reply = message_reply("qwen3", final)
    assert re.fullmatch(r"msg_[A-Za-z0-9]{24}", reply.pop("id"))
    assert reply == {"type": "message", "role": "assistant", "model": "qwen3", "content": content, "stop_reason": stop,
                     "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 5}}  # fmt: skip


def test_tool_use_without_id_gets_one() -> None:
    """A tool call without an id gets a generated toolu_ id."""
    (block,) = message_reply("m", _final(calls=[{"function": {"name": "f", "arguments": {}}}]))["content"]
    assert re.fullmatch(r"toolu_[A-Za-z0-9]{24}", block["id"]) and block["input"] == {}


def _events(chunks: list[dict[str, Any]], error: tuple[str, int] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The stream's events as (name, data), checking that each data's type is the event's name."""
    stream = MessageStream("qwen3", ident="msg_1")
    raw = b"".join(stream.chunk(c) for c in chunks) + (stream.error(*error) if error else stream.end())
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert name_line.startswith("event: ") and data["type"] == name
        out.append((name, {k: v for k, v in data.items() if k != "type"}))
    return out


START: tuple[str, dict[str, Any]] = ("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "qwen3", "content": [],
                                       "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})  # fmt: skip
PING: tuple[str, dict[str, Any]] = ("ping", {})
STOP: tuple[str, dict[str, Any]] = ("message_stop", {})


def _delta(index: int, kind: str, **fields: str) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"index": index, "delta": {"type": kind, **fields}}


def _open(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {"index": index, "content_block": block}


def _close(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"index": index}


def _message_delta(stop: str, prompt: int = 12, out: int = 5) -> tuple[str, dict[str, Any]]:
    return "message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"input_tokens": prompt, "output_tokens": out}}


TEXT = {"type": "text", "text": ""}
THINKING = {"type": "thinking", "thinking": "", "signature": ""}


def test_stream_text_only() -> None:
    """Text deltas go into one text block, then the stop reason and usage, then message_stop."""
    assert _events([_chunk("Hel"), _chunk(""), _chunk("lo."), _final()]) == [
        START, PING, _open(0, TEXT), _delta(0, "text_delta", text="Hel"), _delta(0, "text_delta", text="lo."), _close(0),
        _message_delta("end_turn"), STOP,
    ]  # fmt: skip


def test_stream_thinking_then_text() -> None:
    """Thinking opens a thinking block that closes when text starts (a chunk may carry both)."""
    assert _events([_chunk(thinking="Let me"), _chunk("The", thinking=" see."), _chunk(" answer."), _final()]) == [
        START, PING, _open(0, THINKING), _delta(0, "thinking_delta", thinking="Let me"),
        _delta(0, "thinking_delta", thinking=" see."), _close(0),
        _open(1, TEXT), _delta(1, "text_delta", text="The"), _delta(1, "text_delta", text=" answer."), _close(1),
        _message_delta("end_turn"), STOP,
    ]  # fmt: skip


@pytest.mark.parametrize("on_final", [False, True], ids=["template-path", "native-path"])
def test_stream_tool_call(on_final: bool) -> None:
    """A tool call is a tool_use block with the whole arguments in one input_json_delta; stop reason tool_use."""
    two = {"function": {"index": 1, "name": "clock", "arguments": {}}}
    chunks = [_chunk(thinking="Need it."), _final(calls=[CALL, two])] if on_final else \
        [_chunk(thinking="Need it."), _chunk(calls=[CALL]), _chunk(calls=[two]), _final()]  # fmt: skip
    events = _events(chunks)
    generated = events[8][1]["content_block"]["id"]
    assert re.fullmatch(r"toolu_[A-Za-z0-9]{24}", generated)
    assert events == [
        START, PING, _open(0, THINKING), _delta(0, "thinking_delta", thinking="Need it."), _close(0),
        _open(1, {"type": "tool_use", "id": "call_abc12345", "name": "get_weather", "input": {}}),
        _delta(1, "input_json_delta", partial_json='{"city":"Paris"}'), _close(1),
        _open(2, {"type": "tool_use", "id": generated, "name": "clock", "input": {}}),
        _delta(2, "input_json_delta", partial_json="{}"), _close(2),
        _message_delta("tool_use"), STOP,
    ]  # fmt: skip


def test_stream_length_stop() -> None:
    """A reply cut by max_tokens ends with stop reason max_tokens."""
    assert _events([_chunk("Hel"), _final("length", prompt=3, out=1)])[-2:] == [_message_delta("max_tokens", 3, 1), STOP]


def test_stream_error_after_start() -> None:
    """An error after the stream started is an error event with the type for its status, and no message_stop."""
    assert _events([_chunk("Hel")], error=("model runner has unexpectedly stopped", 500))[-1] == (
        "error", {"error": {"type": "api_error", "message": "model runner has unexpectedly stopped"}})
    assert _events([_chunk("Hel")], error=("busy", 503))[-1][1]["error"]["type"] == "overloaded_error"


def test_stream_golden_bytes() -> None:
    """The exact bytes of a short streamed reply."""
    stream = MessageStream("qwen3", ident="msg_1")
    raw = stream.chunk(_chunk("Hi <b>")) + stream.chunk(_final(prompt=7, out=2)) + stream.end()
    assert raw == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
        b'"model":"qwen3","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi <b>"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"input_tokens":7,"output_tokens":2}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
     (413, "request_too_large"), (429, "rate_limit_error"), (503, "overloaded_error"), (529, "overloaded_error"),
     (500, "api_error"), (499, "api_error")],
)  # fmt: skip
def test_error_body(status: int, kind: str) -> None:
    """Error replies carry Anthropic's type for the status and a req_ request id."""
    body = error_body("model 'x' not found", status)
    assert re.fullmatch(r"req_[A-Za-z0-9]{24}", body.pop("request_id"))
    assert body == {"type": "error", "error": {"type": kind, "message": "model 'x' not found"}}
