"""Go literal semantics for template constants: string unquoting and number conversion.

Go's template parser hands literals to ``strconv`` (``Unquote``, ``UnquoteChar``, ``ParseUint``,
``ParseInt``, ``ParseFloat``) and reports *their* verdicts, so what counts as a valid constant —
and the message when it is not — is strconv's, which differs from Python's in many corners: ``073``
is octal, ``089`` is "integer overflow" (it parses only as a float), underscores must sit between
digits, a hex float needs a ``p`` exponent, ``\\x`` escapes produce bytes, ``\\u`` must be a valid
rune. This module implements those rules; it raises ``LiteralError`` carrying Go's message.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from supervisor.templates.gotemplate_lex import go_quote, scan_number

__all__ = [
    "GO_SPACE_CHARS",
    "LiteralError",
    "NumberValue",
    "number_from_char",
    "parse_char_constant",
    "parse_number",
    "unquote",
]

GO_SPACE_CHARS = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
"""Go's ``unicode.IsSpace`` (what ``strings.TrimSpace`` removes); Python's ``str.strip()`` would also
remove U+001C…U+001F."""

_INT64_LIMIT = 1 << 63
_UINT64_LIMIT = 1 << 64
_DEC_FLOAT_RE = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT_RE = re.compile(r"(?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}
_INVALID_SYNTAX = "invalid syntax"  # strconv.ErrSyntax, which the parser reports bare


class LiteralError(ValueError):
    """A constant Go's strconv rejects; ``str()`` is the message the template error carries."""


class NumberValue(NamedTuple):
    is_int: bool
    is_uint: bool
    is_float: bool
    is_complex: bool
    int64: int
    uint64: int
    float64: float
    complex128: complex


# -- strings -------------------------------------------------------------------------------------


def _unquote_char(s: str, i: int, quote: str) -> tuple[int, bool, int]:
    """Go's ``UnquoteChar`` on ``s[i:]``: (value, whether it is a rune rather than a byte, next i)."""
    c = s[i]
    if c == quote and quote in "'\"":
        raise LiteralError(_INVALID_SYNTAX)
    if ord(c) >= 0x80:
        return ord(c), True, i + 1
    if c != "\\":
        return ord(c), False, i + 1
    if i + 1 >= len(s):
        raise LiteralError(_INVALID_SYNTAX)
    c = s[i + 1]
    i += 2
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], False, i
    if c in _HEX_LENGTHS:
        digits = s[i : i + _HEX_LENGTHS[c]]
        if len(digits) < _HEX_LENGTHS[c] or not all(d in "0123456789abcdefABCDEF" for d in digits):
            raise LiteralError(_INVALID_SYNTAX)
        value = int(digits, 16)
        if c == "x":
            return value, False, i + 2
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise LiteralError(_INVALID_SYNTAX)
        return value, True, i + len(digits)
    if "0" <= c <= "7":
        digits = c + s[i : i + 2]
        if len(digits) < 3 or not all("0" <= d <= "7" for d in digits):
            raise LiteralError(_INVALID_SYNTAX)
        value = int(digits, 8)
        if value > 255:
            raise LiteralError(_INVALID_SYNTAX)
        return value, False, i + 2
    if c in "'\"":
        if c != quote:
            raise LiteralError(_INVALID_SYNTAX)
        return ord(c), False, i
    raise LiteralError(_INVALID_SYNTAX)


def unquote(quoted: str) -> str:
    """Go's ``strconv.Unquote`` for a lexed ``"…"`` or ```…``` string.

    ``\\x``/octal escapes are bytes; the result is decoded as UTF-8 with invalid bytes replaced by
    U+FFFD — what Go's JSON encoder does to them on the way to the runner anyway.
    """
    if quoted.startswith("`"):
        return quoted[1:-1].replace("\r", "")  # Go drops carriage returns from raw strings
    body = quoted[1:-1]
    if "\\" not in body:
        if '"' in body:
            raise LiteralError(_INVALID_SYNTAX)
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        value, is_rune, i = _unquote_char(body, i, '"')
        if is_rune and value >= 0x80:
            out += chr(value).encode("utf-8", "surrogatepass")
        else:
            out.append(value)
    return out.decode("utf-8", "replace")


def parse_char_constant(text: str) -> int:
    """The rune value of a character constant such as ``'a'`` or ``'\\n'``."""
    value, _, end = _unquote_char(text, 1, "'")
    if text[end:] != "'":
        raise LiteralError(f"malformed character constant: {text}")
    return value


# -- numbers -------------------------------------------------------------------------------------


def _underscore_ok(s: str) -> bool:
    """strconv's rule: ``_`` only between digits, or between a base prefix and a digit."""
    if s[:1] in ("+", "-"):
        s = s[1:]
    saw = "^"  # ^ start, 0 digit or prefix, _ underscore, ! anything else
    i = 0
    is_hex = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i, saw, is_hex = 2, "0", s[1] in "xX"
    for c in s[i:]:
        if "0" <= c <= "9" or (is_hex and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _parse_uint(s: str) -> int | None:
    """Go's ``ParseUint(s, 0, 64)``, or None where it fails (no sign allowed)."""
    if not s:
        return None
    base, digits = 10, s
    if s[0] == "0":
        if len(s) >= 3 and s[1] in "bBoOxX":
            base, digits = {"b": 2, "o": 8, "x": 16}[s[1].lower()], s[2:]
        else:
            base, digits = 8, s[1:]
    value = 0
    for c in digits:
        if c == "_":
            continue
        d = int(c, 36) if c.isascii() and c.isalnum() else 99
        value = value * base + d
        if d >= base or value >= _UINT64_LIMIT:  # syntax or range error: either way, not a uint64
            return None
    if "_" in s and not _underscore_ok(s):
        return None
    return value


def _parse_int(s: str) -> int | None:
    """Go's ``ParseInt(s, 0, 64)``, or None."""
    negative = s[:1] == "-"
    magnitude = _parse_uint(s[1:] if s[:1] in ("+", "-") else s)
    if magnitude is None:
        return None
    if negative:
        return -magnitude if magnitude <= _INT64_LIMIT else None
    return magnitude if magnitude < _INT64_LIMIT else None


def _parse_float(s: str) -> float | None:
    """Go's ``ParseFloat(s, 64)`` for what the lexer can produce, or None (syntax or range)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if "_" in body:
        if not _underscore_ok(s):
            return None
        body = body.replace("_", "")
    try:
        if len(body) > 2 and body[0] == "0" and body[1] in "xX":
            if not _HEX_FLOAT_RE.fullmatch(body, 2):
                return None
            value = float.fromhex(body)
        else:
            if not _DEC_FLOAT_RE.fullmatch(body):
                return None
            value = float(body)
    except (OverflowError, ValueError):
        return None
    if math.isinf(value):
        return None
    return -value if s[:1] == "-" else value


def _from_complex(value: complex) -> NumberValue:
    """Go's ``simplifyComplex``: a complex with zero imaginary part is also a float/int/uint."""
    if value.imag != 0:
        return NumberValue(False, False, False, True, 0, 0, 0.0, value)
    f = value.real
    is_int = f.is_integer() and -_INT64_LIMIT <= f < _INT64_LIMIT
    is_uint = f.is_integer() and 0 <= f < _UINT64_LIMIT
    return NumberValue(is_int, is_uint, True, True, int(f) if is_int else 0, int(f) if is_uint else 0, f, value)


def parse_number(text: str, *, is_complex_literal: bool = False) -> NumberValue:
    """Go's ``newNumber`` for a NUMBER (or, with the flag, a COMPLEX such as ``1+2i``) token."""
    if is_complex_literal:
        _, split = scan_number(text, 0)
        real, imag = _parse_float(text[:split]), _parse_float(text[split:-1])
        if real is None or imag is None:
            raise LiteralError(f"illegal number syntax: {go_quote(text)}")
        return _from_complex(complex(real, imag))
    if text.endswith("i"):
        imag = _parse_float(text[:-1])
        if imag is not None:
            return _from_complex(complex(0.0, imag))
    u = _parse_uint(text)
    i = _parse_int(text)
    is_uint, uint64 = u is not None, u or 0
    is_int, int64 = i is not None, i or 0
    if is_int and int64 == 0:
        is_uint = True  # "-0"
    if is_int:
        return NumberValue(True, is_uint, True, False, int64, uint64, float(int64), 0j)
    if is_uint:
        return NumberValue(False, True, True, False, 0, uint64, float(uint64), 0j)
    f = _parse_float(text)
    if f is None:
        raise LiteralError(f"illegal number syntax: {go_quote(text)}")
    if not any(c in text for c in ".eEpP"):
        # It parses as a float but looks like an integer: too big for 64 bits (or "089").
        raise LiteralError(f"integer overflow: {go_quote(text)}")
    as_int = f.is_integer() and -_INT64_LIMIT <= f < _INT64_LIMIT
    as_uint = f.is_integer() and 0 <= f < _UINT64_LIMIT
    return NumberValue(as_int, as_uint, True, False, int(f) if as_int else 0, int(f) if as_uint else 0, f, 0j)


def number_from_char(text: str) -> NumberValue:
    """A character constant is an int, a uint and a float, all equal to the rune value."""
    value = parse_char_constant(text)
    return NumberValue(True, True, True, False, value, value, float(value), 0j)
