"""Go's ``strconv`` spellings that ``fmt`` builds on: quoted strings and runes, float formats.

Separate from ``gofmt`` because these are pure text conversions with no printer state: Go's
``Quote``/``QuoteRune`` escapes (printable Unicode kept, ``\\x``/``\\u``/``\\U`` otherwise), and
``FormatFloat``'s ``%e %f %g %b %x`` with Go's shortest-digit rule — for the shortest ``%g`` (what
``%v`` prints) an exponent below 1e-4 and from 1e6 up, ``+Inf``, ``NaN``.
"""

from __future__ import annotations

import math
from typing import Final

from supervisor.templates.govalues import float_digits

__all__ = ["can_backquote", "format_float", "quote", "rune", "sharp_float"]

_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
                   "\\": "\\\\"}  # fmt: skip


def quote(s: str, q: str = '"', *, ascii_only: bool = False) -> str:
    """``strconv.Quote`` (``q='"'``) / ``QuoteRune`` (``q="'"``), ``…ToASCII`` with ``ascii_only``."""
    out = [q]
    for c in s:
        if c == q:
            out.append("\\" + c)
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c.isprintable() and (c < "\x80" or not ascii_only):
            out.append(c)
        elif "\ud800" <= c <= "\udfff":
            out.append("\\ufffd")
        elif c < "\x80":
            out.append(f"\\x{ord(c):02x}")
        elif c < "\U00010000":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append(q)
    return "".join(out)


def can_backquote(s: str) -> bool:
    return not any((c < " " and c != "\t") or c in "`\x7f\ufeff" or "\ud800" <= c <= "\udfff" for c in s)


def _shortest(value: float, verb: str) -> str:
    """``strconv.FormatFloat(abs(value), verb, -1, 64)`` for finite values (e, f or g)."""
    if value == 0:
        digits, dp = "0", 1
    else:
        digits, dp = float_digits(value)
    if verb == "g":
        exp = dp - 1 if value != 0 else 0
        verb = "e" if exp < -4 or exp >= 6 else "f"
    if verb == "e":
        exp = dp - 1 if value != 0 else 0
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def _binary(value: float) -> str:
    """``strconv``'s ``%b``: decimal mantissa and binary exponent, ``4503599627370496p-52``."""
    if value == 0:
        return "0p-1074"
    mantissa, exp = math.frexp(abs(value))
    m, e = int(mantissa * (1 << 53)), exp - 53
    if e < -1074:
        m, e = m >> (-1074 - e), -1074
    return f"{m}p{'+' if e >= 0 else '-'}{abs(e)}"


def _hex_float(value: float, prec: int) -> str:
    """``strconv``'s ``%x`` for floats: ``0x1.8p+01``."""
    if prec >= 0:
        text = float.hex(abs(value)) if prec >= 13 else _round_hex(abs(value), prec)
    else:
        text = float.hex(abs(value))
    mantissa, _, exp = text[2:].partition("p")
    whole, _, frac = mantissa.partition(".")
    frac = frac.rstrip("0") if prec < 0 else frac.ljust(prec, "0")[:prec]
    number = int(exp)
    return f"0x{whole}{'.' + frac if frac else ''}p{'+' if number >= 0 else '-'}{abs(number):02d}"


def _round_hex(value: float, prec: int) -> str:
    if value == 0:
        return "0x0." + "0" * prec + "p+0"
    mantissa, exp = math.frexp(value)  # value = mantissa * 2**exp, 0.5 <= mantissa < 1
    scaled = round(mantissa * 2 * (1 << (4 * prec)))  # 1.xxx with prec hex digits
    exp -= 1
    if scaled >= (2 << (4 * prec)):
        scaled >>= 1
        exp += 1
    whole, frac = divmod(scaled, 1 << (4 * prec))
    return f"0x{whole}.{frac:0{prec}x}p{exp:+d}" if prec else f"0x{whole}p{exp:+d}"


def format_float(value: float, verb: str, prec: int) -> str:
    """``strconv.AppendFloat`` with Go's spelling of signs, infinities and NaN (``+Inf``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    negative = str(value).startswith("-")
    upper = verb in "EGX"
    lower = verb.lower()
    if lower == "b":
        body = _binary(value)
    elif lower == "x":
        body = _hex_float(value, prec)
    elif prec < 0:
        body = _shortest(value, lower)
    else:
        body = format(abs(value), f".{max(prec, 1) if lower == 'g' else prec}{lower}")
    if upper:
        body = body.upper()
    return ("-" if negative else "") + body


def rune(value: int) -> str:
    if 0 <= value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
        return chr(value)
    return "\ufffd"


def sharp_float(num: str, verb: str, prec: int) -> str:
    """The ``#`` flag: always a decimal point; ``%g`` keeps trailing zeros to its precision."""
    digits = (6 if prec == -1 else prec) if verb in "gGx" else 0
    body, tail = num, ""
    for i, c in enumerate(num[1:], 1):
        if c in "pP" or (c in "eE" and verb not in "xX"):
            body, tail = num[:i], num[i:]
            break
    seen_nonzero = False
    for c in body[1:]:
        if c == ".":
            continue
        if c != "0":
            seen_nonzero = True
        if seen_nonzero:
            digits -= 1
    if "." not in body:
        if body[1:] == "0":
            digits -= 1
        body += "."
    return body + "0" * max(digits, 0) + tail
