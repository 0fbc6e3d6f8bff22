"""Decoding /api/generate and /api/chat requests: think, images, tool calls, Go's error texts."""

from __future__ import annotations

import base64

import pytest

from supervisor.errors import BadRequest, InvalidJSON
from supervisor.protocol.ollama_requests import ChatRequest, GenerateRequest, Message, Think, decode_image, parse_think


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (True, Think(True)), (False, Think(False)), ("high", Think(True, "high")), ("max", Think(True, "max"))],
)
def test_think_values(value: object, expected: Think | None) -> None:
    """think accepts booleans and the four level strings; absent stays unset."""
    assert parse_think(value) == expected


def test_think_errors_match_ollama() -> None:
    """A bad think string and a wrong JSON type get Ollama's two messages, status 400."""
    with pytest.raises(BadRequest) as e:
        parse_think("extreme")
    assert str(e.value) == 'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)'
    with pytest.raises(BadRequest) as e:
        parse_think(1)
    assert str(e.value) == 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'
    assert e.value.status == 400


def test_think_template_level() -> None:
    """.ThinkLevel is the level, medium for plain true, empty when off."""
    assert Think(True).template_level == "medium"
    assert Think(True, "low").template_level == "low"
    assert Think(False).template_level == ""


@pytest.mark.parametrize(
    ("text", "offset"),
    [("data:image/png;base64,iVBOR", 4), ("ab$d", 2), ("abcde", 4), ("=abc", 0), ("abcd=efg", 4)],
)
def test_bad_base64_names_the_byte(text: str, offset: int) -> None:
    """Malformed base64 images fail as Go's decoder does: illegal base64 data at input byte N."""
    with pytest.raises(InvalidJSON) as e:
        decode_image(text)
    assert str(e.value) == f"illegal base64 data at input byte {offset}" and e.value.status == 400


def test_images_decode_to_bytes() -> None:
    """Valid padded base64 (line breaks allowed) decodes to the image bytes."""
    data = bytes(range(40))
    encoded = base64.b64encode(data).decode()
    assert decode_image(encoded) == data
    assert decode_image(encoded[:20] + "\n" + encoded[20:]) == data
    req = GenerateRequest.from_json({"model": "m", "prompt": "x", "images": [encoded]})
    assert req.images == [data]


def test_chat_message_fields() -> None:
    """Messages keep thinking, tool calls (index filled in, string arguments parsed), tool_name and images."""
    req = ChatRequest.from_json(
        {
            "model": "m",
            "messages": [
                {"role": "Assistant", "content": "", "thinking": "hmm",
                 "tool_calls": [{"function": {"name": "a", "arguments": {"x": 1, "b": 2}}},
                                {"id": "call_1", "function": {"name": "b", "arguments": '{"y": "z"}'}}]},
                {"role": "tool", "content": "42", "tool_name": "a", "images": [base64.b64encode(b"png").decode()]},
            ],
            "tools": [{"type": "function", "function": {"name": "a"}}],
            "think": "low",
            "logprobs": True,
            "top_logprobs": 3,
            "_debug_render_only": True,
            "truncate": False,
        }
    )  # fmt: skip
    first, second = req.messages
    assert first.role == "assistant" and first.thinking == "hmm"
    assert first.tool_calls == [
        {"function": {"index": 0, "name": "a", "arguments": {"x": 1, "b": 2}}},
        {"id": "call_1", "function": {"index": 1, "name": "b", "arguments": {"y": "z"}}},
    ]
    assert list(first.tool_calls[0]["function"]["arguments"]) == ["x", "b"]  # key order kept
    assert second.tool_name == "a" and second.images == [b"png"]
    assert req.think == Think(True, "low") and req.logprobs and req.top_logprobs == 3
    assert req.debug_render_only and req.truncate is False and req.tools[0]["function"]["name"] == "a"


def test_message_round_trip() -> None:
    """Message.to_json gives Ollama's message JSON back, empty fields omitted."""
    m = Message.from_json({"role": "user", "content": "hi", "images": [base64.b64encode(b"i").decode()]})
    assert m.to_json() == {"role": "user", "content": "hi", "images": ["aQ=="]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": 1}]}, "json: cannot unmarshal number 1 into Go struct field Message.messages.role of type string"),
        ({"messages": [{"role": "user", "images": ["aQ==", 2]}]}, "json: cannot unmarshal number 2 into Go struct field Message.messages.images of type api.ImageData"),
        ({"messages": [{"role": "assistant", "tool_calls": {}}]}, "json: cannot unmarshal object into Go struct field Message.messages.tool_calls of type []api.ToolCall"),
        ({"tools": "x"}, "json: cannot unmarshal string into Go struct field ChatRequest.tools of type []api.Tool"),
        ({"_debug_render_only": "yes"}, "json: cannot unmarshal string into Go struct field ChatRequest._debug_render_only of type bool"),
    ],
)  # fmt: skip
def test_chat_type_errors(body: dict[str, object], message: str) -> None:
    """Wrong JSON types inside messages and tools get Go's unmarshal messages."""
    with pytest.raises(InvalidJSON) as e:
        ChatRequest.from_json({"model": "m", **body})
    assert str(e.value) == message


def test_defaults() -> None:
    """stream and truncate default to true; think unset; no logprobs."""
    req = GenerateRequest.from_json({"model": "m"})
    assert req.stream and req.truncate and req.think is None and not req.logprobs and req.images == []
