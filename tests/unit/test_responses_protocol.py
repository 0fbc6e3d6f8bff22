"""The Responses API translation (protocol/responses.py): request bodies into the chat use case, Ollama
chunks out as output items, response objects and named server-sent events, byte for byte."""

from __future__ import annotations

import base64
import dataclasses
import itertools
from typing import Any

import orjson
import pytest

from supervisor.errors import BadRequest
from supervisor.protocol import responses, responses_out
from supervisor.protocol.ollama_requests import Message, Think

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


def _request(**fields: Any) -> tuple[Any, responses.ResponsesRequest]:
    return responses.responses_request({"model": "m", "input": "hi", **fields})


def _chunk(content: str = "", thinking: str = "", calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": message, "done": False}


def _final(reason: str = "stop", **message: Any) -> dict[str, Any]:
    chunk = _chunk(**message)
    return chunk | {"done": True, "done_reason": reason, "prompt_eval_count": 7, "eval_count": 3}


def _stream(**fields: Any) -> responses_out.ResponseStream:
    """A stream with fixed ids and time, for byte-exact output."""
    _, head = _request(**fields)
    head = dataclasses.replace(head, ident="resp_1", created_at=1700000000)
    counter = itertools.count(1)
    return responses_out.ResponseStream(head, ids=lambda prefix: f"{prefix}_{next(counter)}")


def _events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            event_line, data_line = block.split("\n")
            assert event_line.startswith("event: ") and data_line.startswith("data: ")
            payload = orjson.loads(data_line[6:])
            assert payload["type"] == event_line[7:]
            out.append((event_line[7:], payload))
    return out


# -- in --------------------------------------------------------------------------------------------
def test_string_input_and_defaults() -> None:
    """A string input is one user message; temperature and top_p default to 1.0; stored, not streamed."""
    req, head = _request()
    assert req.model == "m" and [(m.role, m.content) for m in req.messages] == [("user", "hi")]
    assert req.options == {"temperature": 1.0, "top_p": 1.0} and req.stream is False and req.think is None
    assert head.store is True and head.stream is False and head.ident.startswith("resp_")
    assert req.tools == [] and req.tool_choice == "auto" and req.parallel_tool_calls is None


def test_instructions_lead_but_are_not_kept_in_the_conversation() -> None:
    """instructions are a system message first; the conversation kept for later turns leaves them out."""
    req, head = _request(instructions="Be brief.")
    assert [(m.role, m.content) for m in req.messages] == [("system", "Be brief."), ("user", "hi")]
    assert [(m.role, m.content) for m in head.conversation] == [("user", "hi")]
    assert head.echo["instructions"] == "Be brief."


def test_items_become_messages() -> None:
    """Message items (string or parts, developer as system, data-URL images), and reasoning, assistant
    text and function calls in a row as one assistant turn; an output names its function by call id."""
    items = [
        {"type": "message", "role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "What is"}, {"type": "input_text", "text": "this?"},
                                     {"type": "input_image", "image_url": PNG_URL, "detail": "auto"}]},  # fmt: skip
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hmm"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": '{"x": 1}'},
        {"type": "function_call", "call_id": "call_2", "name": "zoom", "arguments": ""},
        {"type": "function_call_output", "call_id": "call_1", "output": "a pixel"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "2x"}]},
    ]
    req, _ = responses.responses_request({"model": "m", "input": items})
    system, user, assistant, tool1, tool2 = req.messages
    assert (system.role, system.content) == ("system", "Be brief.")
    assert (user.role, user.content, user.images) == ("user", "What is\nthis?", [PNG])
    assert (assistant.role, assistant.thinking, assistant.content) == ("assistant", "hmm", "Looking.")
    assert assistant.tool_calls == [
        {"id": "call_1", "function": {"index": 0, "name": "look", "arguments": {"x": 1}}},
        {"id": "call_2", "function": {"index": 1, "name": "zoom", "arguments": {}}},
    ]
    assert (tool1.role, tool1.tool_call_id, tool1.tool_name, tool1.content) == ("tool", "call_1", "look", "a pixel")
    assert (tool2.tool_name, tool2.content) == ("zoom", "2x")


def test_history_comes_first_and_names_earlier_calls() -> None:
    """previous_response_id's conversation goes before the input (after instructions), and a function
    output finds the name of a call made in an earlier turn."""
    history = [Message(role="user", content="Weather?"),
               Message(role="assistant", tool_calls=[{"id": "c9", "function": {"index": 0, "name": "get_weather", "arguments": {}}}])]  # fmt: skip
    body = {"model": "m", "instructions": "Sys", "previous_response_id": "resp_0",
            "input": [{"type": "function_call_output", "call_id": "c9", "output": "sunny"}]}  # fmt: skip
    req, head = responses.responses_request(body, history)
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[-1].tool_name == "get_weather"
    assert [m.role for m in head.conversation] == ["user", "assistant", "tool"]
    assert responses.previous_response_id(body) == "resp_0" and head.echo["previous_response_id"] == "resp_0"


def test_input_may_be_left_out_when_continuing() -> None:
    """With a history, no input is needed (the model goes on from the stored turn)."""
    req, _ = responses.responses_request({"model": "m"}, [Message(role="user", content="x")])
    assert [m.content for m in req.messages] == ["x"]


def test_fetched_image_urls() -> None:
    """http(s) image URLs are listed for fetching (also inside function outputs), and their bytes used."""
    body = {"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png"}, {"type": "input_image", "image_url": PNG_URL}]},
        {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "http://y/b.png"}]},
    ]}  # fmt: skip
    assert responses.remote_images(body) == ["https://x/a.png", "http://y/b.png"]
    req, _ = responses.responses_request(body, (), {"https://x/a.png": b"A", "http://y/b.png": b"B"})
    assert req.messages[0].images == [b"A", PNG] and req.messages[1].images == [b"B"]


def test_tools_and_tool_choice() -> None:
    """Function tools become chat tools; a named tool_choice offers only that tool and requires it;
    none offers none; the response repeats tools in the Responses shape."""
    other = WEATHER | {"name": "other"}
    req, head = _request(tools=[WEATHER, other], parallel_tool_calls=False)
    assert req.tools == [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                           "parameters": WEATHER["parameters"]}},
                         {"type": "function", "function": {"name": "other", "description": "Weather for a city",
                                                           "parameters": WEATHER["parameters"]}}]  # fmt: skip
    assert req.tool_choice == "auto" and req.parallel_tool_calls is False
    assert head.echo["tools"][0] == WEATHER | {"strict": None} and head.echo["parallel_tool_calls"] is False
    named, head = _request(tools=[WEATHER, other], tool_choice={"type": "function", "name": "other"})
    assert [t["function"]["name"] for t in named.tools] == ["other"] and named.tool_choice == "required"
    assert head.echo["tool_choice"] == {"type": "function", "name": "other"}
    assert _request(tools=[WEATHER], tool_choice="none")[0].tools == []
    assert _request(tools=[WEATHER], tool_choice="required")[0].tool_choice == "required"


def test_sampling_reasoning_and_format() -> None:
    """max_output_tokens is num_predict; reasoning.effort maps as in chat; text.format is Ollama's format."""
    req, head = _request(max_output_tokens=5, temperature=0.2, top_p=0.5, reasoning={"effort": "high"})
    assert req.options == {"num_predict": 5, "temperature": 0.2, "top_p": 0.5} and req.think == Think(True, "high")
    assert head.echo["max_output_tokens"] == 5 and head.echo["reasoning"] == {"effort": "high", "summary": None}
    assert _request(reasoning={"effort": "none"})[0].think == Think(False)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req, head = _request(text={"format": {"type": "json_schema", "name": "x", "schema": schema}})
    assert req.format == schema and head.echo["text"]["format"]["name"] == "x"
    assert _request(text={"format": {"type": "json_object"}})[0].format == "json"
    assert _request(text={"format": {"type": "text"}})[0].format is None
    assert _request()[1].echo["text"] == {"format": {"type": "text"}}


def test_accepted_fields() -> None:
    """stream, store, metadata and user are accepted and repeated."""
    _, head = _request(stream=True, store=False, metadata={"k": "v"}, user="u")
    assert head.stream is True and head.store is False
    assert head.echo["metadata"] == {"k": "v"} and head.echo["user"] == "u"


def test_truncation() -> None:
    """truncation disabled refuses a prompt that does not fit (truncate false); absent or auto, old
    messages are dropped, as Ollama does; the response says which."""
    for value, truncate, echo in ((None, True, "auto"), ("auto", True, "auto"), ("disabled", False, "disabled")):
        req, head = _request(truncation=value)
        assert req.truncate is truncate and head.echo["truncation"] == echo


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": None}, "Missing required parameter: 'input'."),
        ({"input": []}, "Missing required parameter: 'input'."),
        ({"input": 3}, "Invalid type for 'input': expected a string or an array of input items, but got an integer instead."),
        ({"input": ["x"]}, "Invalid type for 'input': expected an array of input items, but got a string instead."),
        ({"input": [{"type": "nope"}]}, "invalid input item type: 'nope'"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference input items are not supported; use previous_response_id"),
        ({"input": [{"role": "tool", "content": "x"}]}, "invalid message role: 'tool' (must be 'user', 'system', 'developer' or 'assistant')"),
        ({"input": [{"role": "user", "content": None}]}, "Invalid type for 'content': expected a string or an array of content parts, but got null instead."),
        ({"input": [{"role": "user", "content": [{"type": "refusal"}]}]}, "invalid content part type: 'refusal'"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input_file content is not supported"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
         "input_image with file_id is not supported; send image_url as a data: URL"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]}]},
         "image URLs are not currently supported, please use base64 encoded data instead"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:text/plain;base64,eA=="}]}]}, "invalid image input"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "function_call item requires a string 'call_id'"),
        ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "function_call item requires a string 'name'"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]}, "invalid function_call arguments: not JSON"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}, "invalid function_call arguments: not a JSON object"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "function_call_output item requires a string 'call_id'"),
        ({"instructions": 1}, "Invalid type for 'instructions': expected a string, but got an integer instead."),
        ({"tools": [{"type": "web_search"}]}, "tool type 'web_search' is not supported; only function tools are"),
        ({"tools": [{"type": "function"}]}, "function tools require a 'name'"),
        ({"tools": {}}, "Invalid type for 'tools': expected an array, but got an object instead."),
        ({"tool_choice": "required"}, "tool_choice 'required' needs tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "x"}}, "tool_choice names a function that is not in tools: x"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice type 'allowed_tools' is not supported"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "invalid tool_choice: expected 'none', 'auto', 'required' or a function"),
        ({"parallel_tool_calls": "yes"}, "Invalid type for 'parallel_tool_calls': expected a boolean, but got a string instead."),
        ({"text": {"format": {"type": "xml"}}}, "invalid text.format type: 'xml'"),
        ({"text": {"format": {"type": "json_schema"}}}, "text.format json_schema requires a 'schema' object"),
        ({"text": "json"}, "Invalid type for 'text': expected an object, but got a string instead."),
        ({"max_output_tokens": 0}, "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead."),
        ({"max_output_tokens": 1.5}, "Invalid type for 'max_output_tokens': expected an integer, but got a decimal instead."),
        ({"temperature": "hot"}, "Invalid type for 'temperature': expected a decimal, but got a string instead."),
        ({"stream": "yes"}, "Invalid type for 'stream': expected a boolean, but got a string instead."),
        ({"store": 1}, "Invalid type for 'store': expected a boolean, but got an integer instead."),
        ({"metadata": []}, "Invalid type for 'metadata': expected an object, but got an array instead."),
        ({"user": 5}, "Invalid type for 'user': expected a string, but got an integer instead."),
        ({"reasoning": "high"}, "Invalid type for 'reasoning': expected an object, but got a string instead."),
        ({"reasoning": {"effort": "extreme"}},
         'invalid reasoning value: "extreme" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")'),
        ({"previous_response_id": 3}, "Invalid type for 'previous_response_id': expected a string, but got an integer instead."),
        ({"truncation": "sometimes"}, "invalid truncation: 'sometimes' (must be 'auto' or 'disabled')"),
        ({"conversation": "conv_1"}, "conversation is not supported; use previous_response_id"),
        ({"background": True}, "background responses are not supported"),
        ({"prompt": {"id": "p"}}, "prompt templates are not supported; send input"),
    ],
)
def test_request_errors(fields: dict[str, Any], message: str) -> None:
    """Each malformed or unsupported field is a 400 that says what is wrong."""
    with pytest.raises(BadRequest) as e:
        responses.responses_request({"model": "m", "input": "hi"} | fields)
    assert e.value.message == message and e.value.status == 400


def test_model_must_be_a_string() -> None:
    """A model that is not a string is ``invalid model``, as elsewhere under /v1/."""
    with pytest.raises(BadRequest, match="invalid model"):
        responses.responses_request({"model": 3, "input": "hi"})


# -- out -------------------------------------------------------------------------------------------
def test_reply_with_reasoning_and_text() -> None:
    """Thinking is a reasoning item, text a message item; usage from the counts; the request repeated."""
    reply = _stream(instructions="Be brief.", max_output_tokens=50).reply(_final(content="4.", thinking="2+2"))
    assert reply["output"] == [
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "2+2"}]},
        {"id": "msg_2", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "4.", "annotations": []}]},
    ]  # fmt: skip
    assert reply["id"] == "resp_1" and reply["object"] == "response" and reply["created_at"] == 1700000000
    assert reply["status"] == "completed" and reply["incomplete_details"] is None and reply["error"] is None
    assert reply["usage"] == {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                              "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10}  # fmt: skip
    assert reply["instructions"] == "Be brief." and reply["max_output_tokens"] == 50 and reply["model"] == "m"
    assert reply["tools"] == [] and reply["tool_choice"] == "auto" and reply["parallel_tool_calls"] is True
    assert reply["store"] is True and reply["text"] == {"format": {"type": "text"}}


def test_reply_with_tool_calls_only() -> None:
    """Tool calls are function_call items with the call id and JSON arguments; whitespace text around
    them makes no message item."""
    calls = [{"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
             {"function": {"index": 1, "name": "noop", "arguments": {}}}]  # fmt: skip
    reply = _stream().reply(_final(content="\n", calls=calls))
    first, second = reply["output"]
    assert first == {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": '{"city":"Paris"}',
                     "call_id": "call_a", "name": "get_weather"}  # fmt: skip
    assert second["name"] == "noop" and second["arguments"] == "{}" and second["call_id"].startswith("call_")


def test_length_is_incomplete() -> None:
    """done_reason length: status incomplete with reason max_output_tokens; the message is incomplete."""
    reply = _stream().reply(_final("length", content="The ans"))
    assert reply["status"] == "incomplete" and reply["incomplete_details"] == {"reason": "max_output_tokens"}
    assert reply["output"][0]["status"] == "incomplete"


def test_empty_reply_has_an_empty_message() -> None:
    """A reply with no text and no calls still has one (empty) message item."""
    assert _stream().reply(_final())["output"] == [
        {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "", "annotations": []}]}]  # fmt: skip


def test_output_message_is_the_assistant_turn() -> None:
    """The stored turn of a response: its reasoning as thinking, its text, its calls with their ids."""
    calls = [{"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}]
    message = responses_out.output_message(_stream().reply(_final(content="ok", thinking="t", calls=calls)))
    assert message == Message(role="assistant", content="ok", thinking="t",
                              tool_calls=[{"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}])  # fmt: skip


GOLDEN_TEXT_STREAM = (
    'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":RESPONSE_IN_PROGRESS}\n\n'
    'event: response.in_progress\ndata: {"type":"response.in_progress","sequence_number":1,"response":RESPONSE_IN_PROGRESS}\n\n'
    'event: response.output_item.added\ndata: {"type":"response.output_item.added","sequence_number":2,"output_index":0,'
    '"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}\n\n'
    'event: response.content_part.added\ndata: {"type":"response.content_part.added","sequence_number":3,"output_index":0,'
    '"item_id":"msg_1","content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}\n\n'
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":4,"output_index":0,'
    '"item_id":"msg_1","content_index":0,"delta":"Hello","logprobs":[]}\n\n'
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":5,"output_index":0,'
    '"item_id":"msg_1","content_index":0,"delta":" world","logprobs":[]}\n\n'
    'event: response.output_text.done\ndata: {"type":"response.output_text.done","sequence_number":6,"output_index":0,'
    '"item_id":"msg_1","content_index":0,"text":"Hello world","logprobs":[]}\n\n'
    'event: response.content_part.done\ndata: {"type":"response.content_part.done","sequence_number":7,"output_index":0,'
    '"item_id":"msg_1","content_index":0,"part":{"type":"output_text","text":"Hello world","annotations":[]}}\n\n'
    'event: response.output_item.done\ndata: {"type":"response.output_item.done","sequence_number":8,"output_index":0,'
    '"item":MESSAGE}\n\n'
    'event: response.completed\ndata: {"type":"response.completed","sequence_number":9,"response":RESPONSE_COMPLETED}\n\n'
)
_RESPONSE = ('{"id":"resp_1","object":"response","created_at":1700000000,"status":"STATUS","background":false,"error":null,'
             '"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"m","parallel_tool_calls":true,'
             '"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"temperature":1.0,'
             '"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"auto",'
             '"user":null,"metadata":{},"store":true,"service_tier":"default","top_logprobs":0,"max_tool_calls":null,'
             '"output":OUTPUT,"usage":USAGE}')  # fmt: skip
_MESSAGE = ('{"id":"msg_1","type":"message","status":"completed","role":"assistant",'
            '"content":[{"type":"output_text","text":"Hello world","annotations":[]}]}')  # fmt: skip
_USAGE = ('{"input_tokens":7,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":3,'
          '"output_tokens_details":{"reasoning_tokens":0},"total_tokens":10}')  # fmt: skip


def test_golden_text_stream() -> None:
    """A text reply streamed: created, in_progress, the message item with its part and deltas, then
    completed with the whole response; sequence numbers count from 0; nothing at the end."""
    stream = _stream()
    data = stream.chunk(_chunk("Hello")) + stream.chunk(_chunk(" world")) + stream.chunk(_final()) + stream.end()
    in_progress = _RESPONSE.replace("STATUS", "in_progress").replace("OUTPUT", "[]").replace("USAGE", "null")
    completed = _RESPONSE.replace("STATUS", "completed").replace("OUTPUT", f"[{_MESSAGE}]").replace("USAGE", _USAGE)
    expected = (GOLDEN_TEXT_STREAM.replace("RESPONSE_IN_PROGRESS", in_progress)
                .replace("RESPONSE_COMPLETED", completed).replace("MESSAGE", _MESSAGE))  # fmt: skip
    assert data.decode() == expected
    assert stream.content_type == "text/event-stream"


def test_stream_of_reasoning_text_and_calls() -> None:
    """Reasoning streams as summary events, then the message, then each call as arguments events; each
    item is closed before the next opens; the final response lists them in order."""
    stream = _stream()
    calls = [{"id": "c1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}]
    data = b"".join([stream.chunk(_chunk(thinking="hm")), stream.chunk(_chunk(thinking="m")), stream.chunk(_chunk("\n")),
                     stream.chunk(_chunk("Hi")), stream.chunk(_final(calls=calls))])  # fmt: skip
    events = _events(data)
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    by_name = dict(events)
    assert by_name["response.reasoning_summary_text.done"]["text"] == "hmm"
    assert by_name["response.output_text.delta"]["delta"] == "\nHi"  # held-back whitespace goes with the text
    assert by_name["response.function_call_arguments.done"] | {"sequence_number": 0} == {
        "type": "response.function_call_arguments.done", "sequence_number": 0, "output_index": 2, "item_id": "fc_3",
        "arguments": '{"a":1}'}  # fmt: skip
    final = by_name["response.completed"]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final == stream.final


def test_streamed_and_collected_replies_agree() -> None:
    """The streamed final response and the non-streamed reply of the same output have the same items."""
    calls = [{"id": "c1", "function": {"index": 0, "name": "f", "arguments": {}}}]
    streamed = _stream()
    for chunk in (_chunk(thinking="t"), _chunk("a"), _chunk("b"), _final(calls=calls)):
        streamed.chunk(chunk)
    collected = _stream().reply(_final(content="ab", thinking="t", calls=calls))
    assert streamed.final == collected


def test_stream_length_is_incomplete() -> None:
    """A stream cut by max_output_tokens ends with response.incomplete."""
    stream = _stream()
    events = _events(stream.chunk(_chunk("The")) + stream.chunk(_final("length")))
    name, last = events[-1]
    assert name == "response.incomplete" and last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"


def test_error_after_the_start_is_response_failed() -> None:
    """An error mid-stream is response.failed carrying the error and the output so far; no final."""
    stream = _stream()
    data = stream.chunk(_chunk("Par")) + stream.error("model runner has unexpectedly stopped", 500)
    name, failed = _events(data)[-1]
    assert name == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "model runner has unexpectedly stopped"}
    assert failed["response"]["output"] == [{"id": "msg_1", "type": "message", "status": "incomplete", "role": "assistant",
                                             "content": [{"type": "output_text", "text": "Par", "annotations": []}]}]  # fmt: skip
    assert stream.final is None


def test_sdk_models_validate_every_event() -> None:
    """Every event and response validates against the openai SDK's own models (strictly, not merely
    constructed), for a reply with reasoning, text and a call, and for a failure mid-reasoning."""
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    events = TypeAdapter(ResponseStreamEvent)
    calls = [{"id": "c1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}]
    stream = _stream(tools=[WEATHER], instructions="x", text={"format": {"type": "json_object"}})
    data = stream.chunk(_chunk(thinking="t")) + stream.chunk(_chunk("Hi")) + stream.chunk(_final(calls=calls))
    failing = _stream()
    data += failing.chunk(_chunk(thinking="t")) + failing.error("boom", 500)
    for _, event in _events(data):
        events.validate_python(event)
    assert stream.final is not None
    Response.model_validate(stream.final)
    Response.model_validate(_stream().reply(_final("length", content="x")))
