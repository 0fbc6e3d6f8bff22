"""Runner output → Ollama fields: native tool calls, log-probabilities, non-streamed collection."""

from __future__ import annotations

import pytest

from supervisor.errors import RunnerHTTPError
from supervisor.service.output import collect
from supervisor.service.output import NativeToolCalls, chat_logprobs, completion_logprobs


def test_native_tool_call_deltas_assemble_into_objects() -> None:
    """Argument strings streamed in pieces become objects, by index, with llama-server's ids."""
    calls = NativeToolCalls()
    calls.add([{"index": 0, "id": "abc", "type": "function", "function": {"name": "get", "arguments": ""}}])
    calls.add([{"index": 0, "function": {"arguments": '{"city": '}}])
    calls.add([{"index": 1, "id": "def", "function": {"name": "put", "arguments": "{}"}}])
    calls.add([{"index": 0, "function": {"arguments": '"Paris", "n": 2}'}}])
    assert calls.result() == [
        {"id": "abc", "function": {"index": 0, "name": "get", "arguments": {"city": "Paris", "n": 2}}},
        {"id": "def", "function": {"index": 1, "name": "put", "arguments": {}}},
    ]


def test_native_tool_call_bad_arguments() -> None:
    """Arguments that are not a JSON object are an error naming the tool."""
    calls = NativeToolCalls()
    calls.add([{"index": 0, "function": {"name": "get", "arguments": "{oops"}}])
    with pytest.raises(RunnerHTTPError, match='^llama-server returned invalid tool call arguments for "get": '):
        calls.result()


def test_logprobs_shapes() -> None:
    """Both llama-server shapes become Ollama's {token, logprob, top_logprobs}; bytes dropped; top cut to N."""
    entry = {"id": 5, "token": "a", "bytes": [97], "logprob": -0.5,
             "top_logprobs": [{"id": 5, "token": "a", "bytes": [97], "logprob": -0.5}, {"id": 6, "token": "b", "logprob": -1.0}]}  # fmt: skip
    assert completion_logprobs({"completion_probabilities": [entry]}, 1) == [
        {"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "a", "logprob": -0.5}]}
    ]
    assert chat_logprobs({"logprobs": {"content": [entry]}}, 0) == [{"token": "a", "logprob": -0.5}]
    assert completion_logprobs({"content": "x"}, 2) == []


def test_collect_gathers_everything() -> None:
    """A non-streamed reply concatenates content and thinking and gathers tool calls and logprobs."""
    lp = [{"token": "a", "logprob": -1.0}]
    chunks = [
        {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "hm"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "a", "tool_calls": [{"function": {"index": 0, "name": "f", "arguments": {}}}]}, "done": False, "logprobs": lp},
        {"model": "m", "message": {"role": "assistant", "content": "b"}, "done": False, "logprobs": lp},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    ]  # fmt: skip
    final = collect(chunks)
    assert final["message"] == {"role": "assistant", "content": "ab", "thinking": "hm", "tool_calls": [{"function": {"index": 0, "name": "f", "arguments": {}}}]}  # fmt: skip
    assert final["logprobs"] == lp + lp and final["done"] is True
    gen = collect([{"model": "m", "response": "x", "thinking": "t", "done": False}, {"model": "m", "response": "", "done": True}])
    assert list(gen) == ["model", "response", "thinking", "done"] and gen["response"] == "x" and gen["thinking"] == "t"
