"""Ollama's wire format: request decoding with Go's error texts, options, timestamps, JSON (pure).

Ollama is written in Go, and clients show its error strings verbatim, so decoding reproduces
``encoding/json``'s messages for the cases clients hit (empty body, malformed JSON, a field of the wrong
type) and options are checked with Ollama's own wording (reference/ollama-api.md §2.0, §4, §5).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ..durations import DurationError, parse_go_duration
from ..gojson import dumps as dumps  # re-exported: the wire encoding
from ..errors import BadRequest, InvalidJSON, InvalidOption, MissingBody
from ..pool.placement import RunnerOptions

# -- JSON in ---------------------------------------------------------------------------------------

_GO_EXPECT = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
    "Expecting ':' delimiter": "after object key",
    "Expecting ',' delimiter": "after object key:value pair",
    "Extra data": "after top-level value",
}


def _go_json_error(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            return "unexpected EOF"
        ch = text[e.pos]
        context = _GO_EXPECT.get(e.msg, "looking for beginning of value")
        if e.msg == "Expecting ',' delimiter" and text.lstrip().startswith("["):
            context = "after array element"
        return f"invalid character {ch!r} {context}"
    return "invalid JSON"


def decode_body(raw: bytes) -> dict[str, Any]:
    """The request object, or the error Ollama gives for an empty or malformed body."""
    if not raw.strip():
        raise MissingBody()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJSON(_go_json_error(raw.decode("utf-8", "replace"))) from None
    if not isinstance(data, dict):
        raise InvalidJSON(f"json: cannot unmarshal {_json_kind(data)} into Go value of type api.Request")
    return data


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


# Go types of the request fields that clients get wrong; checked before use.
_FIELD_TYPES: dict[str, str] = {
    "model": "string",
    "name": "string",
    "prompt": "string",
    "suffix": "string",
    "system": "string",
    "template": "string",
    "context": "[]int",
    "stream": "bool",
    "raw": "bool",
    "images": "[]api.ImageData",
    "options": "map[string]interface {}",
    "messages": "[]api.Message",
    "tools": "[]api.Tool",
    "truncate": "bool",
    "_debug_render_only": "bool",
    "shift": "bool",
    "logprobs": "bool",
    "top_logprobs": "int",
}


def _type_ok(gotype: str, value: Any) -> bool:
    if gotype == "string":
        return isinstance(value, str)
    if gotype == "bool":
        return isinstance(value, bool)
    if gotype == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if gotype.startswith("map["):
        return isinstance(value, dict)
    return isinstance(value, list)


def go_type_error(struct: str, key: str, gotype: str, value: Any) -> InvalidJSON:
    """Go's ``UnmarshalTypeError`` text for field ``key`` of ``struct`` (numbers show their literal)."""
    shown = f"number {value}" if _json_kind(value) == "number" else _json_kind(value)
    return InvalidJSON(f"json: cannot unmarshal {shown} into Go struct field {struct}.{key} of type {gotype}")


def check_types(struct: str, data: dict[str, Any]) -> None:
    """Raise Go's ``cannot unmarshal`` error for the first field of the wrong JSON type."""
    for key, gotype in _FIELD_TYPES.items():
        value = data.get(key)
        if value is None:
            continue
        if not _type_ok(gotype, value):
            raise go_type_error(struct, key, gotype, value)
        if gotype == "[]int" and any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            bad = next(v for v in value if isinstance(v, bool) or not isinstance(v, int))
            raise InvalidJSON(f"json: cannot unmarshal {_json_kind(bad)} into Go struct field {struct}.{key} of type int")


# -- keep_alive ------------------------------------------------------------------------------------


def parse_keep_alive(value: Any, unset: object) -> float | None | object:
    """Seconds (None = forever) from a request's ``keep_alive``; ``unset`` when absent (§5)."""
    if value is None:
        return unset
    if isinstance(value, bool):
        raise BadRequest("Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except DurationError as e:
            raise BadRequest(str(e)) from None
        return None if seconds < 0 else seconds
    kind = "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
    raise BadRequest(f"Unsupported type: '{kind}'")


# -- options ---------------------------------------------------------------------------------------

# num_parallel is llamasup's own (slots for one model, Ollama #4894); it is taken from the model's
# parameters only, so one client cannot make a runner reload for everyone.
INT_OPTIONS = {"num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch", "num_gpu",
                "main_gpu", "num_thread", "draft_num_predict", "num_parallel"}  # fmt: skip
FLOAT_OPTIONS = {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                  "frequency_penalty"}  # fmt: skip
BOOL_OPTIONS = {"use_mmap"}
# Ollama's defaults (api.DefaultOptions at HEAD); sent explicitly so behaviour matches Ollama's.
DEFAULT_OPTIONS: dict[str, Any] = {
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
# Ollama option -> llama-server /completion field.
_SAMPLING_FIELDS = {
    "num_keep": "n_keep",
    "seed": "seed",
    "num_predict": "n_predict",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_last_n": "repeat_last_n",
    "temperature": "temperature",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "stop": "stop",
}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Known options with Ollama's types; unknown keys and nulls are dropped, wrong types rejected."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in INT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidOption(f'option "{key}" must be of type integer')
            out[key] = int(value)
        elif key in FLOAT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidOption(f'option "{key}" must be of type float32')
            out[key] = float(value)
        elif key in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise InvalidOption(f'option "{key}" must be of type boolean')
            out[key] = value
        elif key == "stop":
            if not isinstance(value, list):
                raise InvalidOption('option "stop" must be of type array')
            if not all(isinstance(s, str) for s in value):
                raise InvalidOption('option "stop" must be of an array of strings')
            out[key] = list(value)
    return out


@dataclass(frozen=True)
class ResolvedOptions:
    sampling: dict[str, Any]  # llama-server request fields
    runner: RunnerOptions  # launch-time options


def resolve_options(model_params: dict[str, Any], request_options: dict[str, Any]) -> ResolvedOptions:
    """Defaults < the model's params layer < the request (a request ``stop`` replaces the model's)."""
    merged = dict(DEFAULT_OPTIONS)
    from_model = check_options(model_params)
    merged.update(from_model)
    merged.update(check_options(request_options))
    sampling = {field: merged[key] for key, field in _SAMPLING_FIELDS.items() if key in merged}
    runner = RunnerOptions(
        num_ctx=merged.get("num_ctx"),
        num_batch=merged.get("num_batch"),
        num_gpu=merged.get("num_gpu"),
        num_thread=merged.get("num_thread"),
        main_gpu=merged.get("main_gpu"),
        use_mmap=merged.get("use_mmap"),
        num_parallel=from_model.get("num_parallel"),
    )
    return ResolvedOptions(sampling=sampling, runner=runner)


def bound_num_predict(n_predict: int, num_ctx: int) -> int:
    """Ollama caps an unbounded (negative) or oversized ``num_predict`` at 10 x num_ctx."""
    limit = 10 * num_ctx
    return limit if n_predict < 0 or n_predict > limit else n_predict


def format_fields(fmt: Any, *, chat: bool) -> dict[str, Any]:
    """llama-server fields for Ollama's ``format`` (``"json"`` or a JSON schema object)."""
    if fmt is None or fmt == "":
        return {}
    if fmt == "json":
        return {"response_format": {"type": "json_object"}} if chat else {"json_schema": {}}
    if isinstance(fmt, dict):
        return {"response_format": {"type": "json_object", "schema": fmt}} if chat else {"json_schema": fmt}
    quoted = json.dumps(orjson.dumps(fmt).decode())  # Go's %q of the raw JSON
    raise BadRequest(f'invalid format: {quoted}; expected "json" or a valid JSON Schema object', status=500)


# -- out -------------------------------------------------------------------------------------------

def _trim_fraction(ns: int) -> str:
    frac = f"{ns:09d}".rstrip("0")
    return f".{frac}" if frac else ""


@functools.lru_cache(maxsize=4)
def _utc_seconds(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))


def utc_now() -> str:
    """``time.Now().UTC()`` in Go's RFC3339Nano (trailing zeros of the fraction trimmed).

    Called once per streamed token, so the date part is formatted once per second.
    """
    secs, frac = divmod(time.time_ns(), 1_000_000_000)
    return _utc_seconds(secs) + _trim_fraction(frac) + "Z"


def format_local(dt: datetime) -> str:
    """An aware datetime as Go prints a local time: RFC3339 with the fraction trimmed."""
    dt = dt.astimezone()
    offset = dt.strftime("%z")
    offset = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _trim_fraction(dt.microsecond * 1000) + offset


def metrics(timings: dict[str, Any] | None, *, total_ns: int, load_ns: int) -> dict[str, int]:
    """The six duration/count fields of a final response, from llama-server ``timings`` (§3)."""
    t = timings or {}
    out = {
        "total_duration": total_ns,
        "load_duration": load_ns,
        "prompt_eval_count": int(t.get("cache_n", 0)) + int(t.get("prompt_n", 0)),
        "prompt_eval_duration": int(float(t.get("prompt_ms", 0.0)) * 1e6),
        "eval_count": int(t.get("predicted_n", 0)),
        "eval_duration": int(float(t.get("predicted_ms", 0.0)) * 1e6),
    }
    return {k: v for k, v in out.items() if v}  # Go's omitempty


def done_reason_from_stop_type(stop_type: str | None) -> str:
    return "length" if stop_type == "limit" else "stop"


def done_reason_from_finish(finish_reason: str | None) -> str:
    return "length" if finish_reason == "length" else "stop"
