"""``fmt.Sprintf``'s reading of a format string: verbs, flags, width, precision, ``[n]`` indexes.

The printer (``gofmt.Printer``) formats one operand for one verb; this module walks the format
string and decides which operand, with which flags, and writes Go's texts for the mistakes a
template can make: ``%!v(MISSING)``, ``%!d(BADINDEX)``, ``%!(BADWIDTH)``, ``%!(BADPREC)``,
``%!(NOVERB)``, ``%!(EXTRA int=2)``. As in Go, numbers in a format string above a million are
refused (``%!(NOVERB)``), which also bounds the padding a format can ask for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from supervisor.templates.govalues import Kind, kind_of

if TYPE_CHECKING:
    from supervisor.templates.gofmt import Printer

__all__ = ["Formatter"]

_MAX_NUM: Final = 1_000_000  # fmt's tooLarge: widths, precisions and [n] indexes beyond are bad


class Formatter:
    """The ``Sprintf`` loop: verbs, flags, width, precision and argument indexes."""

    def __init__(self, p: Printer, fmt: str, args: Sequence[object]) -> None:
        self.p, self.fmt, self.args = p, fmt, args
        self.i = 0
        self.arg_num = 0
        self.reordered = False
        self.good_arg_num = True

    def _num(self, end: int) -> tuple[int, bool]:
        num, found = 0, False
        while self.i < end and "0" <= self.fmt[self.i] <= "9":
            if num > _MAX_NUM:
                self.i = end
                return 0, False
            num = num * 10 + ord(self.fmt[self.i]) - 48
            found = True
            self.i += 1
        return num, found

    def _arg_index(self) -> bool:
        """``[n]`` before a width, precision or verb; returns whether one was found."""
        fmt = self.fmt
        if self.i >= len(fmt) or fmt[self.i] != "[":
            return False
        self.reordered = True
        close = fmt.find("]", self.i + 1)
        if len(fmt) - self.i < 3 or close < 0:
            self.i += 1
            self.good_arg_num = False
            return False
        self.i += 1
        index, ok = self._num(close)
        ok = ok and self.i == close
        self.i = close + 1
        if ok and 1 <= index <= len(self.args):
            self.arg_num = index - 1
            return True
        self.good_arg_num = False
        return ok

    def _int_arg(self) -> tuple[int, bool]:
        if self.arg_num >= len(self.args):
            return 0, False
        arg = self.args[self.arg_num]
        self.arg_num += 1
        if kind_of(arg) is Kind.INT and abs(int(arg)) <= _MAX_NUM:  # type: ignore[call-overload]
            return int(arg), True  # type: ignore[call-overload]
        return 0, False

    def run(self) -> None:
        p, fmt, f = self.p, self.fmt, self.p.f
        end = len(fmt)
        while self.i < end:
            self.good_arg_num = True
            start = self.i
            self.i = fmt.find("%", start)
            if self.i < 0:
                self.i = end
            if self.i > start:
                p.write(fmt[start : self.i])
            if self.i >= end:
                break
            self.i += 1
            f.clear()
            while self.i < end and fmt[self.i] in "#0+- ":
                c = fmt[self.i]
                if c == "#":
                    f.sharp = True
                elif c == "0":
                    f.zero = not f.minus
                elif c == "+":
                    f.plus = True
                elif c == "-":
                    f.minus, f.zero = True, False
                else:
                    f.space = True
                self.i += 1
            after_index = self._arg_index()
            if self.i < end and fmt[self.i] == "*":
                self.i += 1
                f.wid, f.has_wid = self._int_arg()
                if not f.has_wid:
                    p.write("%!(BADWIDTH)")
                if f.wid < 0:
                    f.wid, f.minus, f.zero = -f.wid, True, False
                after_index = False
            else:
                f.wid, f.has_wid = self._num(end)
                if after_index and f.has_wid:
                    self.good_arg_num = False
            if self.i + 1 < end and fmt[self.i] == ".":
                self.i += 1
                if after_index:
                    self.good_arg_num = False
                after_index = self._arg_index()
                if self.i < end and fmt[self.i] == "*":
                    self.i += 1
                    f.prec, f.has_prec = self._int_arg()
                    if f.prec < 0:
                        f.prec, f.has_prec = 0, False
                    if not f.has_prec:
                        p.write("%!(BADPREC)")
                    after_index = False
                else:
                    f.prec, _ = self._num(end)
                    f.has_prec = True
            if not after_index:
                after_index = self._arg_index()
            if self.i >= end:
                p.write("%!(NOVERB)")
                break
            verb = fmt[self.i]
            self.i += 1
            if verb == "%":
                p.write("%")
            elif not self.good_arg_num:
                p.write(f"%!{verb}(BADINDEX)")
            elif self.arg_num >= len(self.args):
                p.write(f"%!{verb}(MISSING)")
            else:
                if verb == "v":
                    f.sharp_v, f.sharp = f.sharp, False
                    f.plus_v, f.plus = f.plus, False
                p.print_arg(self.args[self.arg_num], verb)
                self.arg_num += 1
        if not self.reordered and self.arg_num < len(self.args):
            f.clear()
            p.write("%!(EXTRA ")
            for n, arg in enumerate(self.args[self.arg_num :]):
                if n:
                    p.write(", ")
                p.print_typed(arg)
            p.write(")")
