"""Ollama wire format: Go-compatible decoding errors, options, keep_alive, JSON and timestamps."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from supervisor.errors import BadRequest, InvalidJSON, InvalidOption, MissingBody
from supervisor.protocol import ollama as wire
from supervisor.protocol.ollama_requests import ChatRequest, GenerateRequest
from supervisor.service.output import collect

UNSET = object()


@pytest.mark.parametrize(
    ("body", "exc", "message"),
    [
        (b"", MissingBody, "missing request body"),
        (b"  \n", MissingBody, "missing request body"),
        (b"x", InvalidJSON, "invalid character 'x' looking for beginning of value"),
        (b"{", InvalidJSON, "unexpected EOF"),
        (b'{"model": "m",', InvalidJSON, "unexpected EOF"),
        (b'{"a" 1}', InvalidJSON, "invalid character '1' after object key"),
        (b'{"a": 1 "b": 2}', InvalidJSON, "invalid character '\"' after object key:value pair"),
    ],
)
def test_body_errors_match_go(body: bytes, exc: type[Exception], message: str) -> None:
    """Empty and malformed bodies get Go's encoding/json messages."""
    with pytest.raises(exc) as e:
        wire.decode_body(body)
    assert str(e.value) == message
    assert getattr(e.value, "status") == 400


def test_wrong_field_type_matches_go() -> None:
    """A field of the wrong JSON type names the Go struct field and type."""
    with pytest.raises(InvalidJSON) as e:
        GenerateRequest.from_json({"model": "m", "stream": "no"})
    assert str(e.value) == "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"
    with pytest.raises(InvalidJSON, match="GenerateRequest.context of type int"):
        GenerateRequest.from_json({"model": "m", "context": [1, "a"]})
    with pytest.raises(InvalidJSON, match="ChatRequest.messages of type"):
        ChatRequest.from_json({"model": "m", "messages": "hi"})


def test_top_logprobs_range() -> None:
    """top_logprobs outside 0..20 is rejected with Ollama's message."""
    with pytest.raises(BadRequest, match="^top_logprobs must be between 0 and 20$"):
        GenerateRequest.from_json({"model": "m", "top_logprobs": 21})


def test_chat_roles_are_lower_cased() -> None:
    """Message roles are lower-cased on decode, as Ollama does."""
    req = ChatRequest.from_json({"model": "m", "messages": [{"role": "USER", "content": "hi"}]})
    assert req.messages[0].role == "user" and req.stream is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, UNSET), (0, 0.0), (30, 30.0), (-1, None), ("5m", 300.0), ("0", 0.0), ("-1m", None), (1.5, 1.5)],
)
def test_keep_alive_values(value: object, expected: object) -> None:
    """keep_alive accepts numbers (seconds) and Go durations; negative means forever; absent is unset."""
    assert wire.parse_keep_alive(value, UNSET) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", 'time: missing unit in duration "-1"'),
        ("300", 'time: missing unit in duration "300"'),
        (True, "Unsupported type: 'bool'"),
        ({}, "Unsupported type: 'map[string]interface {}'"),
    ],
)
def test_keep_alive_errors(value: object, message: str) -> None:
    """Bad keep_alive values are 400s with Ollama's text."""
    with pytest.raises(BadRequest) as e:
        wire.parse_keep_alive(value, UNSET)
    assert str(e.value) == message and e.value.status == 400


def test_options_merge_and_map() -> None:
    """Defaults < model params < request; options map onto llama-server's field names."""
    resolved = wire.resolve_options(
        {"temperature": 0.6, "stop": ["<|eot|>"], "num_ctx": 2048},
        {"temperature": 0.1, "top_k": 5.9, "seed": 42, "stop": ["END"], "num_predict": 7, "num_keep": 2, "unknown": 1},
    )
    s = resolved.sampling
    assert s["temperature"] == 0.1 and s["top_k"] == 5 and s["seed"] == 42
    assert s["stop"] == ["END"]  # the request's stop replaces the model's
    assert s["n_predict"] == 7 and s["n_keep"] == 2
    assert s["top_p"] == 0.9 and s["min_p"] == 0.0 and s["repeat_penalty"] == 1.0  # Ollama's defaults
    assert "unknown" not in s
    assert resolved.runner.num_ctx == 2048


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"num_predict": "many"}, 'option "num_predict" must be of type integer'),
        ({"seed": True}, 'option "seed" must be of type integer'),
        ({"stop": "x"}, 'option "stop" must be of type array'),
        ({"stop": ["x", 1]}, 'option "stop" must be of an array of strings'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
    ],
)
def test_option_type_errors(options: dict[str, object], message: str) -> None:
    """Wrong option types are rejected with Ollama's text and status 500."""
    with pytest.raises(InvalidOption) as e:
        wire.resolve_options({}, options)
    assert str(e.value) == message and e.value.status == 500


def test_num_predict_is_bounded() -> None:
    """An unbounded or oversized num_predict is capped at 10 x num_ctx."""
    assert wire.bound_num_predict(-1, 4096) == 40960
    assert wire.bound_num_predict(10**9, 100) == 1000
    assert wire.bound_num_predict(12, 100) == 12


def test_format_fields() -> None:
    """format "json" and schema objects become llama-server constraints; other values are errors."""
    assert wire.format_fields("json", chat=False) == {"json_schema": {}}
    assert wire.format_fields({"type": "object"}, chat=True) == {"response_format": {"type": "json_object", "schema": {"type": "object"}}}
    assert wire.format_fields(None, chat=True) == {}
    with pytest.raises(BadRequest, match=r'^invalid format: "\\"yaml\\""; expected "json"'):
        wire.format_fields("yaml", chat=False)


def test_dumps_escapes_like_go() -> None:
    """<, >, & and U+2028 are escaped as Go's encoder does; other non-ASCII stays raw."""
    assert wire.dumps({"a": "<|eot|> & é\u2028"}) == b'{"a":"\\u003c|eot|\\u003e \\u0026 \xc3\xa9\\u2028"}'
    assert wire.dumps(["\u2029", "x"]) == b'["\\u2029","x"]'  # the separators alone make the output non-ASCII
    assert wire.dumps({"a": "<b>"}) == b'{"a":"\\u003cb\\u003e"}'  # ASCII output: the separator search is skipped


def test_timestamps() -> None:
    """created_at is UTC RFC3339Nano with trimmed zeros; local times carry their offset."""
    ts = wire.utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", ts)
    assert not re.search(r"\.\d*0Z$", ts)
    dt = datetime(2024, 6, 4, 14, 38, 31, 837530, tzinfo=timezone(timedelta(hours=-7)))
    formatted = wire.format_local(dt)
    assert datetime.fromisoformat(formatted) == dt
    assert ".83753" in formatted and not formatted.split(".")[1].startswith("837530")


def test_metrics_from_timings() -> None:
    """The six fields come from llama-server timings in nanoseconds; zero fields are omitted."""
    m = wire.metrics({"cache_n": 3, "prompt_n": 10, "prompt_ms": 1.5, "predicted_n": 20, "predicted_ms": 40.25}, total_ns=99, load_ns=0)
    assert m == {"total_duration": 99, "prompt_eval_count": 13, "prompt_eval_duration": 1_500_000, "eval_count": 20, "eval_duration": 40_250_000}


def test_collect_concatenates_stream() -> None:
    """A non-streamed reply is the last chunk with the text of all chunks."""
    chunks = [
        {"model": "m", "message": {"role": "assistant", "content": "a", "thinking": "t"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "b"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 2},
    ]
    assert collect(chunks)["message"] == {"role": "assistant", "content": "ab", "thinking": "t"}
    assert collect([{"response": "x", "done": False}, {"response": "", "done": True}])["response"] == "x"
