"""Go's ``json.Marshal`` for template values (the ``json`` template function, ``Tools`` printing).

Templates print JSON straight into prompts (``{{ json .Tools }}``, ``{{ .Function.Arguments }}``),
so the bytes must be Go's, not Python's: compact, ``<``/``>``/``&`` escaped (``supervisor.gojson``),
floats in Go's shortest form (``1`` not ``1.0``; exponents only below 1e-6 or from 1e21 up, as
``1e-7`` / ``1e+21``), ``[]byte`` as base64, map keys sorted — except for ``OrderedGoMap`` and the
dicts a ``go_json()`` returns, which keep their order (struct fields, ordered maps). NaN, ±Inf,
complex numbers and functions are errors, as in Go (the ``json`` function then yields ``""``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Final

import orjson

from supervisor import gojson
from supervisor.templates.govalues import (
    NO_VALUE,
    Kind,
    OrderedGoMap,
    float_digits,
    is_exported,
    kind_of,
    sorted_items,
    struct_fields,
    type_name,
)

__all__ = ["MarshalError", "json_float", "marshal_json", "to_json_value"]

_MAX_DEPTH: Final = 200  # Go reports a cycle after 1000 levels; Python's stack is smaller
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_INT64: Final = 1 << 63


class MarshalError(ValueError):
    """What Go's ``json.Marshal`` would return as an error (its text, e.g. ``json: unsupported
    value: NaN``)."""


def json_float(value: float) -> str:
    """Go's float64 JSON encoding: shortest digits, ``%f`` style unless tiny or huge."""
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    digits, dp = float_digits(value)
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        exp = dp - 1
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}".replace("e-0", "e-")
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _go_float_text(value: float) -> str:
    return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")


def to_json_value(value: object, depth: int = 0) -> object:
    """``value`` as a structure ``orjson`` writes the way Go would (floats and big integers as
    pre-rendered fragments). Raises ``MarshalError`` where Go's encoder fails."""
    if depth > _MAX_DEPTH:
        raise MarshalError(f"json: unsupported value: encountered a cycle via {type_name(value)}")
    if value is None or value is NO_VALUE:
        return None
    marshal = getattr(type(value), "go_json", None)
    if marshal is not None and callable(marshal):
        encoded = value.go_json()  # type: ignore[attr-defined]
        if type(encoded) is dict:  # a struct's fields or an ordered map: keep the given order
            return {str(k): to_json_value(v, depth + 1) for k, v in encoded.items()}
        return to_json_value(encoded, depth + 1)
    kind = kind_of(value)
    if kind is Kind.BOOL:
        return bool(value)
    if kind is Kind.INT:
        number = int(value)  # type: ignore[call-overload]
        return number if -_INT64 <= number < _INT64 else orjson.Fragment(str(number))
    if kind is Kind.FLOAT:
        number = float(value)  # type: ignore[arg-type]
        if number != number or number in (float("inf"), float("-inf")):
            raise MarshalError(f"json: unsupported value: {_go_float_text(number)}")
        return orjson.Fragment(json_float(number))
    if kind is Kind.STRING:
        text = str(value)
        return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text
    if kind is Kind.BYTES:
        return base64.b64encode(bytes(value)).decode("ascii")  # type: ignore[call-overload]
    if kind is Kind.SLICE:
        return [to_json_value(item, depth + 1) for item in value]  # type: ignore[attr-defined]
    if kind is Kind.MAP:
        assert isinstance(value, Mapping)
        items = list(value.items()) if isinstance(value, OrderedGoMap) else sorted_items(value)
        return {str(k): to_json_value(v, depth + 1) for k, v in items}
    if kind is Kind.STRUCT:
        return {k: to_json_value(v, depth + 1) for k, v in struct_fields(value) if is_exported(k)}
    raise MarshalError(f"json: unsupported type: {type_name(value)}")


def marshal_json(value: object) -> str:
    """Go's ``json.Marshal(value)`` as text."""
    return gojson.dumps(to_json_value(value)).decode("utf-8")
