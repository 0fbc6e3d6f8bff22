"""Go's ``fmt`` printing for template values: ``Sprint``, ``Sprintln``, ``Sprintf``.

Every ``{{ action }}`` prints its value with ``fmt.Fprint`` (that is ``%v``), and ``print``,
``printf``, ``println``, ``html``, ``js`` and ``urlquery`` format through ``fmt`` too, so prompts
contain fmt's spellings: ``<nil>``, ``[a b]``, ``map[k:v]``, ``{f1 f2}``, ``1e+06``, ``+Inf``,
and for mistakes ``%!d(string=x)``, ``%!v(MISSING)``, ``%!(EXTRA int=1)``. Floats use Go's
shortest form: ``%v`` switches to an exponent below 1e-4 and from 1e6 up (``strconv``'s rule for
the shortest ``%g``), which differs from both Python's ``str`` and JSON.

Verbs: ``%v %+v %#v(strings only) %T %% %t %d %b %o %O %x %X %c %q %U %e %E %f %F %g %G %s``,
flags ``+ - # 0 space``, width, precision, ``*`` and ``[n]`` argument indexes. ``%p`` and Go
syntax (``%#v`` of composite values) are not supported (``%p`` reports a bad verb).

``Printer(limit=n)`` raises ``OutputLimitExceeded`` as soon as the text passes ``n`` characters,
so a template cannot build an unbounded string before anyone measures it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from supervisor.templates.goprintf import Formatter
from supervisor.templates.gostrconv import can_backquote, format_float, quote, rune, sharp_float
from supervisor.templates.govalues import (
    NO_VALUE,
    Kind,
    go_string,
    has_stringer,
    is_exported,
    kind_of,
    sorted_items,
    struct_fields,
    type_name,
)

__all__ = ["OutputLimitExceeded", "Printer", "sprint", "sprintf", "sprintln"]

_PLAIN: Final = frozenset({bool, int, float, complex, str, bytes})


class OutputLimitExceeded(Exception):
    """The text being built passed the printer's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"output exceeds the limit of {limit} characters")
        self.limit = limit


class _Flags:
    __slots__ = ("plus", "minus", "sharp", "space", "zero", "plus_v", "sharp_v", "wid", "prec", "has_wid", "has_prec")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = self.has_wid = self.has_prec = False
        self.wid = self.prec = 0


class Printer:
    """One ``fmt`` print operation's buffer and flags (Go's ``pp``)."""

    def __init__(self, limit: int | None = None) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._limit = limit
        self.f = _Flags()
        self._erroring = False

    def text(self) -> str:
        return "".join(self._parts)

    def write(self, s: str) -> None:
        self._parts.append(s)
        self._size += len(s)
        if self._limit is not None and self._size > self._limit:
            raise OutputLimitExceeded(self._limit)

    # -- padding -------------------------------------------------------------------------------

    def _padding(self, n: int) -> None:
        if n > 0:
            self.write(("0" if self.f.zero else " ") * n)

    def _pad(self, s: str) -> None:
        f = self.f
        if not f.has_wid or f.wid <= len(s):
            self.write(s)
        elif f.minus:
            self.write(s)
            self._padding(f.wid - len(s))
        else:
            self._padding(f.wid - len(s))
            self.write(s)

    def _pad_no_zero(self, s: str) -> None:
        old, self.f.zero = self.f.zero, False
        self._pad(s)
        self.f.zero = old

    # -- scalars -------------------------------------------------------------------------------

    def _bad_verb(self, verb: str, value: object) -> None:
        self._erroring = True
        self.write("%!" + verb + "(")
        self.print_typed(value)
        self.write(")")
        self._erroring = False

    def print_typed(self, value: object) -> None:
        """``<nil>``, or the type and ``%v`` of ``value`` (``int=1``): how fmt shows an operand
        it could not use (a bad verb's, an extra argument)."""
        if value is None or value is NO_VALUE:
            self.write("<nil>")
        else:
            self.write(type_name(value) + "=")
            self.print_arg(value, "v")

    def _fmt_bool(self, value: bool, verb: str) -> None:
        if verb in "tv":
            self._pad("true" if value else "false")
        else:
            self._bad_verb(verb, value)

    def _fmt_integer(self, value: int, verb: str, original: object) -> None:
        bases = {"v": 10, "d": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}
        if verb in bases:
            self._integer(value, bases[verb], verb)
        elif verb == "c":
            self._pad(rune(value))
        elif verb == "q" and 0 <= value <= 0x10FFFF:
            self._pad(quote(rune(value), "'", ascii_only=self.f.plus))
        elif verb == "U":
            self._unicode(value)
        else:
            self._bad_verb(verb, original)

    def _integer(self, value: int, base: int, verb: str) -> None:
        f = self.f
        negative, magnitude = value < 0, abs(value)
        prec = 0
        if f.has_prec:
            prec = f.prec
            if prec == 0 and magnitude == 0:
                old, f.zero = f.zero, False
                self._padding(f.wid)
                f.zero = old
                return
        elif f.zero and not f.minus and f.has_wid:
            prec = f.wid - (1 if negative or f.plus or f.space else 0)
        digits = {2: f"{magnitude:b}", 8: f"{magnitude:o}", 10: str(magnitude), 16: f"{magnitude:x}"}[base]
        if verb == "X":
            digits = digits.upper()
        digits = digits.rjust(prec, "0")
        if f.sharp:
            if base == 2:
                digits = "0b" + digits
            elif base == 8 and not digits.startswith("0"):
                digits = "0" + digits
            elif base == 16:
                digits = ("0X" if verb == "X" else "0x") + digits
        if verb == "O":
            digits = "0o" + digits
        sign = "-" if negative else "+" if f.plus else " " if f.space else ""
        self._pad_no_zero(sign + digits)

    def _unicode(self, value: int) -> None:
        f = self.f
        u = value & 0xFFFFFFFFFFFFFFFF
        digits = f"{u:X}".rjust(max(4, f.prec if f.has_prec else 0), "0")
        text = "U+" + digits
        if f.sharp and u <= 0x10FFFF and rune(u).isprintable():
            text += " '" + rune(u) + "'"
        self._pad_no_zero(text)

    def _fmt_float(self, value: float, verb: str, original: object) -> None:
        defaults = {"v": ("g", -1), "b": ("b", -1), "g": ("g", -1), "G": ("G", -1), "x": ("x", -1),
                    "X": ("X", -1), "f": ("f", 6), "e": ("e", 6), "E": ("E", 6), "F": ("f", 6)}  # fmt: skip
        if verb not in defaults:
            self._bad_verb(verb, original)
            return
        fverb, prec = defaults[verb]
        f = self.f
        if f.has_prec:
            prec = f.prec
        num = format_float(value, fverb, prec)
        num = num if num[0] in "+-" else "+" + num
        if f.space and num[0] == "+" and not f.plus:
            num = " " + num[1:]
        if num[1] in "IN":  # Inf and NaN are never zero padded; NaN shows a sign only on request
            if num[1] == "N" and not f.space and not f.plus:
                num = num[1:]
            self._pad_no_zero(num)
            return
        if f.sharp and fverb != "b":
            num = sharp_float(num, fverb, prec)
        if f.plus or num[0] != "+":
            if f.zero and not f.minus and f.has_wid and f.wid > len(num):
                self.write(num[0])
                self._padding(f.wid - len(num))
                self.write(num[1:])
            else:
                self._pad(num)
            return
        self._pad(num[1:])

    def _fmt_complex(self, value: complex, verb: str) -> None:
        if verb not in "vbgGxXfFeE":
            self._bad_verb(verb, value)
            return
        old = self.f.plus
        self.write("(")
        self._fmt_float(value.real, verb, value)
        self.f.plus = True
        self._fmt_float(value.imag, verb, value)
        self.write("i)")
        self.f.plus = old

    def _truncate(self, s: str) -> str:
        return s[: self.f.prec] if self.f.has_prec else s

    def _fmt_string(self, s: str, verb: str, original: object) -> None:
        f = self.f
        if verb == "s" or (verb == "v" and not f.sharp_v):
            self._pad(self._truncate(s))
        elif verb in "xX":
            self._hex(self._truncate_bytes(s.encode("utf-8", "surrogateescape")), verb)
        elif verb == "q" or verb == "v":
            s = self._truncate(s)
            if f.sharp and can_backquote(s):
                self._pad("`" + s + "`")
            else:
                self._pad(quote(s, ascii_only=f.plus))
        else:
            self._bad_verb(verb, original)

    def _truncate_bytes(self, b: bytes) -> bytes:
        return b[: self.f.prec] if self.f.has_prec else b

    def _hex(self, b: bytes, verb: str) -> None:
        f = self.f
        digits = "0123456789ABCDEFX" if verb == "X" else "0123456789abcdefx"
        if not b:
            if f.has_wid:
                self._padding(f.wid)
            return
        pairs = [digits[c >> 4] + digits[c & 15] for c in b]
        prefix = "0" + digits[16] if f.sharp else ""
        text = (" " + prefix).join(pairs) if f.space else "".join(pairs)
        self._pad(prefix + text)

    def _fmt_bytes(self, b: bytes, verb: str) -> None:
        if verb in "vd":
            self.write("[")
            for i, c in enumerate(b):
                if i:
                    self.write(" ")
                self._integer(c, 10, verb)
            self.write("]")
        elif verb == "s":
            self._pad(self._truncate(b.decode("utf-8", "replace")))
        elif verb in "xX":
            self._hex(self._truncate_bytes(b), verb)
        elif verb == "q":
            self._fmt_string(b.decode("utf-8", "replace"), "q", b)
        else:
            self.print_value(list(b), verb, 0)

    # -- values --------------------------------------------------------------------------------

    def _handle_methods(self, value: object, verb: str) -> bool:
        if self._erroring or self.f.sharp_v or verb not in "vsxXq" or not has_stringer(value):
            return False
        try:
            text = go_string(value)
        except Exception as exc:  # fmt recovers a panicking String method and reports it inline
            self.write(f"%!{verb}(PANIC=String method: {exc})")
            return True
        self._fmt_string(text, verb, text)
        return True

    def print_arg(self, arg: object, verb: str) -> None:
        """Go's ``printArg``: one operand with one verb."""
        if arg is None or arg is NO_VALUE:
            if verb in "Tv":
                self._pad("<nil>")
            else:
                self._bad_verb(verb, None)
            return
        if verb == "T":
            self._pad(self._truncate(type_name(arg)))
            return
        if verb == "p":
            self._bad_verb(verb, arg)
            return
        if type(arg) in _PLAIN or not self._handle_methods(arg, verb):
            self.print_value(arg, verb, 0)

    def print_value(self, value: object, verb: str, depth: int, *, methods: bool = True) -> None:
        """Go's ``printValue``: composite values element by element."""
        if depth > 0 and methods and self._handle_methods(value, verb):
            return
        kind = kind_of(value)
        if kind is Kind.INVALID or kind is Kind.NIL:
            if depth == 0 and kind is Kind.INVALID:
                self.write("<invalid reflect.Value>")
            else:
                self.write("<nil>")
        elif isinstance(value, bool):
            self._fmt_bool(value, verb)
        elif isinstance(value, int):
            self._fmt_integer(int(value), verb, value)
        elif isinstance(value, float):
            self._fmt_float(float(value), verb, value)
        elif isinstance(value, complex):
            self._fmt_complex(complex(value), verb)
        elif isinstance(value, str):
            self._fmt_string(str(value), verb, value)
        elif isinstance(value, (bytes, bytearray)):
            self._fmt_bytes(bytes(value), verb)
        elif isinstance(value, (list, tuple)):
            self.write("[")
            for i, item in enumerate(value):
                if i:
                    self.write(" ")
                self.print_value(item, verb, depth + 1)
            self.write("]")
        elif isinstance(value, Mapping):
            self.write("map[")
            for i, (k, v) in enumerate(sorted_items(value)):
                if i:
                    self.write(" ")
                self.print_value(k, verb, depth + 1)
                self.write(":")
                self.print_value(v, verb, depth + 1)
            self.write("]")
        elif kind is Kind.STRUCT:
            self.write("{")
            for i, (name, v) in enumerate(struct_fields(value)):
                if i:
                    self.write(" ")
                if self.f.plus_v:
                    self.write(name + ":")
                self.print_value(v, verb, depth + 1, methods=is_exported(name))
            self.write("}")
        elif kind is Kind.FUNC:
            if verb == "v":
                self._pad(f"0x{id(value):x}")
            else:
                self._bad_verb(verb, value)
        else:
            self._fmt_string(str(value), verb, value)

    # -- the three entry points ----------------------------------------------------------------

    def do_print(self, args: Sequence[object], *, newline: bool = False) -> None:
        prev_string = False
        for i, arg in enumerate(args):
            is_string = kind_of(arg) is Kind.STRING
            if i and (newline or (not is_string and not prev_string)):
                self.write(" ")
            self.f.clear()
            self.print_arg(arg, "v")
            prev_string = is_string
        if newline:
            self.write("\n")

    def do_printf(self, fmt: str, args: Sequence[object]) -> None:
        Formatter(self, fmt, args).run()


def sprint(args: Sequence[object], limit: int | None = None) -> str:
    """``fmt.Sprint``: spaces between operands when neither side is a string."""
    p = Printer(limit)
    p.do_print(args)
    return p.text()


def sprintln(args: Sequence[object], limit: int | None = None) -> str:
    """``fmt.Sprintln``: spaces between all operands, and a newline."""
    p = Printer(limit)
    p.do_print(args, newline=True)
    return p.text()


def sprintf(fmt: str, args: Sequence[object], limit: int | None = None) -> str:
    """``fmt.Sprintf``."""
    p = Printer(limit)
    p.do_printf(fmt, args)
    return p.text()
