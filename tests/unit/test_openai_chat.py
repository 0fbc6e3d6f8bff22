"""The OpenAI chat and completions translation (protocol/openai_chat.py, protocol/openai_stream.py): requests into the Ollama use
cases, Ollama chunks out as OpenAI's chunks and server-sent events, byte for byte."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from supervisor.errors import BadRequest
from supervisor.protocol import openai_chat as chat
from supervisor.protocol import openai_stream as replies
from supervisor.protocol.ollama_requests import Think

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _chat(**fields: Any) -> Any:
    return chat.chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_defaults_follow_ollama() -> None:
    """temperature and top_p default to 1.0; no stream, one choice; the model name is kept."""
    req, opts = _chat()
    assert req.model == "m" and req.options == {"temperature": 1.0, "top_p": 1.0}
    assert (opts.n, opts.stream, opts.include_usage) == (1, False, False)
    assert req.tool_choice == "auto" and req.parallel_tool_calls is None and req.think is None


def test_sampling_fields_map_to_options() -> None:
    """max_completion_tokens wins over max_tokens; stop may be a string; penalties and seed pass through."""
    req, _ = _chat(max_tokens=5, max_completion_tokens=7, temperature=0, top_p=0.5, seed=3, stop="x",
                   frequency_penalty=0.1, presence_penalty=0.2)  # fmt: skip
    assert req.options == {"num_predict": 7, "temperature": 0.0, "top_p": 0.5, "seed": 3, "stop": ["x"],
                           "frequency_penalty": 0.1, "presence_penalty": 0.2}  # fmt: skip
    assert _chat(max_tokens=5)[0].options["num_predict"] == 5


def test_stream_options_usage_only_when_streaming() -> None:
    """include_usage matters only for a streamed reply."""
    assert _chat(stream=True, stream_options={"include_usage": True})[1].include_usage is True
    assert _chat(stream=False, stream_options={"include_usage": True})[1].include_usage is False


def test_messages_parts_roles_and_tool_results() -> None:
    """Text parts are joined, data-URL images decoded, developer is a system message, assistant tool
    calls decoded, and a tool result names its function through the call id."""
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}}]},  # fmt: skip
        {"role": "assistant", "content": None, "reasoning": "hmm",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "look", "arguments": '{"x": 1}'}}]},  # fmt: skip
        {"role": "tool", "tool_call_id": "call_1", "content": "a pixel"},
    ]
    req, _ = chat.chat_request({"model": "m", "messages": messages})
    system, user, assistant, tool = req.messages
    assert (system.role, system.content) == ("system", "Be brief.")
    assert user.content == "What is\nthis?" and user.images == [PNG]
    assert assistant.thinking == "hmm"
    assert assistant.tool_calls == [{"id": "call_1", "function": {"index": 0, "name": "look", "arguments": {"x": 1}}}]
    assert (tool.role, tool.tool_call_id, tool.tool_name, tool.content) == ("tool", "call_1", "look", "a pixel")


def test_fetched_images_are_used_for_their_urls() -> None:
    """An http(s) image URL is listed for fetching, and its fetched bytes become the message's image."""
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/a.png"}]}]}
    assert chat.remote_images(body) == ["https://x/a.png"]
    req, _ = chat.chat_request(body, {"https://x/a.png": PNG})
    assert req.messages[0].images == [PNG]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"messages": []}, "[] is too short - 'messages'"),
        ({"messages": [{"role": "user", "content": None}]}, "invalid message content type: <nil>"),
        ({"messages": [{"role": "user", "content": 3}]}, "invalid message content type: float64"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}, "invalid image input"),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}]},
         "invalid tool call arguments"),
        ({"reasoning_effort": "huge"}, 'invalid reasoning value: "huge" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")'),
        ({"temperature": "hot"}, "Invalid type for 'temperature': expected a decimal, but got a string instead."),
        ({"max_tokens": 1.5}, "Invalid type for 'max_tokens': expected an integer, but got a decimal instead."),
        ({"stop": [1]}, "invalid type for 'stop' field: int"),
        ({"n": 0}, f"n must be between 1 and {chat.MAX_CHOICES}"),
        ({"top_logprobs": 21}, "top_logprobs must be between 0 and 20"),
        ({"tool_choice": "required"}, "tool_choice 'required' needs tools"),
        ({"tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": {"type": "function", "function": {"name": "b"}}},
         "tool_choice names a function that is not in tools: b"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format json_schema requires a 'schema' object"),
    ],
)  # fmt: skip
def test_bad_requests(fields: dict[str, Any], message: str) -> None:
    """Each malformed field is a 400 with its message."""
    with pytest.raises(BadRequest) as info:
        _chat(**fields)
    assert info.value.message == message and info.value.status == 400


def test_response_format_reasoning_and_tool_choice() -> None:
    """json_object is Ollama's "json"; json_schema its schema; reasoning_effort none turns thinking off;
    a named tool_choice offers only that function and requires a call."""
    schema = {"type": "object"}
    assert _chat(response_format={"type": "json_object"})[0].format == "json"
    assert _chat(response_format={"type": "json_schema", "json_schema": {"schema": schema}})[0].format == schema
    assert _chat(reasoning_effort="none")[0].think == Think(False)
    assert _chat(reasoning={"effort": "xhigh"})[0].think == Think(True, "max")
    tools = [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]
    req, _ = _chat(tools=tools, tool_choice={"type": "function", "function": {"name": "b"}}, parallel_tool_calls=False)
    assert (req.tools, req.tool_choice, req.parallel_tool_calls) == ([tools[1]], "required", False)
    assert _chat(tools=tools, tool_choice="none")[0].tools == []


def test_completions_request() -> None:
    """/v1/completions: a prompt, a suffix, logprobs N as top alternatives, echo kept for the reply;
    penalties always sent."""
    req, opts = chat.completion_request({"model": "m", "prompt": "abc", "suffix": "xyz", "logprobs": 2, "echo": True})
    assert (req.prompt, req.suffix, req.logprobs, req.top_logprobs, opts.echo) == ("abc", "xyz", True, 2, "abc")
    assert req.options["presence_penalty"] == 0.0 and req.options["frequency_penalty"] == 0.0
    with pytest.raises(BadRequest, match="invalid prompt"):
        chat.completion_request({"model": "m", "prompt": ["a", "b"]})


def _piece(content: str = "", thinking: str = "", calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {"model": "m", "created_at": "t", "message": message, "done": False}


FINAL = {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 3}  # fmt: skip


def test_stream_golden_bytes() -> None:
    """Role on the first delta, thinking split from content, a tool call as one delta with its
    arguments string, finish_reason tool_calls, the usage chunk, then [DONE] — exactly these bytes."""
    stream = replies.OpenAIStream([replies.ChatChunks("m", "chatcmpl-1", 100)], include_usage=True)
    call = {"id": "call_a", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}
    out = b"".join([stream.chunk(_piece("Hi", thinking="hm")), stream.chunk(_piece(" there")),
                    stream.chunk(_piece(calls=[call])), stream.chunk(dict(FINAL)), stream.end()])  # fmt: skip
    head = b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":100,"model":"m","system_fingerprint":"fp_ollama","choices":'
    assert out == (
        b"data: " + head + b'[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"hm"},"finish_reason":null}]}\n\n'
        b"data: " + head + b'[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
        b"data: " + head + b'[{"index":0,"delta":{"content":" there"},"finish_reason":null}]}\n\n'
        b"data: " + head + b'[{"index":0,"delta":{"content":"","tool_calls":[{"id":"call_a","index":0,"type":"function",'
        b'"function":{"name":"f","arguments":"{\\"x\\":1}"}}]},"finish_reason":null}]}\n\n'
        b"data: " + head + b'[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
        b"data: " + head + b'[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\n'
        b"data: [DONE]\n\n"
    )


def _events(data: bytes) -> list[Any]:
    return [orjson.loads(line[6:]) for line in data.split(b"\n\n") if line.startswith(b"data: {")]


def test_an_empty_reply_still_starts_with_the_role_and_ends_with_length() -> None:
    """A generation that produced nothing: one role delta, then finish_reason length; no usage chunk
    unless asked."""
    stream = replies.OpenAIStream([replies.ChatChunks("m", "i", 1)], include_usage=False)
    events = _events(stream.chunk(FINAL | {"done_reason": "length"}) + stream.end())
    assert [e["choices"][0]["delta"] for e in events] == [{"role": "assistant", "content": ""}, {}]
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_logprobs_ride_on_the_chunk_they_belong_to() -> None:
    """Ollama's logprobs become {"content": [...]} with bytes and top_logprobs."""
    stream = replies.OpenAIStream([replies.ChatChunks("m", "i", 1)], include_usage=False)
    piece = _piece("a") | {"logprobs": [{"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "a", "logprob": -0.5}]}]}
    (event,) = _events(stream.chunk(piece))
    assert event["choices"][0]["logprobs"] == {"content": [{"token": "a", "logprob": -0.5, "bytes": [97],
                                                            "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]}]}]}  # fmt: skip


def test_choices_are_translated_each_with_its_index() -> None:
    """With n > 1 each chunk carries its choice; each choice starts with its own role delta."""
    opts = chat.OpenAIRequest(n=2, stream=True)
    stream = replies.chat_stream("m", opts)
    events = _events(stream.chunk(_piece("a") | {replies.CHOICE: 1}) + stream.chunk(_piece("b")))
    assert [(e["choices"][0]["index"], e["choices"][0]["delta"]) for e in events] == [
        (1, {"role": "assistant", "content": "a"}), (0, {"role": "assistant", "content": "b"})]  # fmt: skip


def test_error_after_start_is_an_error_event_without_done() -> None:
    """An error once streaming is an OpenAI error object in a data event."""
    stream = replies.OpenAIStream([replies.ChatChunks("m", "i", 1)], include_usage=False)
    assert stream.error("boom", 500) == b'data: {"error":{"message":"boom","type":"api_error","param":null,"code":null}}\n\n'


def test_non_streamed_reply() -> None:
    """The collected Ollama reply as chat.completion: reasoning, tool calls (finish_reason tool_calls), usage."""
    final = FINAL | {"message": {"role": "assistant", "content": "ok", "thinking": "hm",
                                 "tool_calls": [{"function": {"index": 0, "name": "f", "arguments": {}}}]}}  # fmt: skip
    reply = replies.chat_reply("m", [final])
    assert reply["object"] == "chat.completion" and reply["id"].startswith("chatcmpl-")
    (choice,) = reply["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "ok" and choice["message"]["reasoning"] == "hm"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert reply["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_completion_chunks_and_reply() -> None:
    """text_completion chunks: echo before the first text, finish chunk last; legacy logprobs shape."""
    opts = chat.OpenAIRequest(stream=True, include_usage=True, echo="P:")
    stream = replies.completion_stream("m", opts)
    gen = {"model": "m", "created_at": "t", "response": "ab", "done": False,
           "logprobs": [{"token": "a", "logprob": -1.0, "top_logprobs": [{"token": "a", "logprob": -1.0}]}, {"token": "b", "logprob": -2.0}]}  # fmt: skip
    final = {"model": "m", "created_at": "t", "response": "", "done": True, "done_reason": "length", "prompt_eval_count": 2, "eval_count": 2}
    events = _events(stream.chunk(gen) + stream.chunk(final) + stream.end())
    assert [e["choices"][0]["text"] for e in events[:2]] == ["P:ab", ""]
    assert events[0]["choices"][0]["logprobs"] == {"tokens": ["a", "b"], "token_logprobs": [-1.0, -2.0],
                                                   "top_logprobs": [{"a": -1.0}, {}], "text_offset": [0, 1]}  # fmt: skip
    assert events[1]["choices"][0]["finish_reason"] == "length"
    assert events[2]["choices"] == [] and events[2]["usage"]["total_tokens"] == 4
    reply = replies.completion_reply("m", [final | {"response": "ab"}], echo="P:")
    assert reply["choices"][0]["text"] == "P:ab" and reply["object"] == "text_completion"
