"""Lexer for Go ``text/template`` source: turns a template into a stream of tokens on demand.

Why a hand-written pull lexer that follows Go's state machine closely: Ollama rejects a bad
``TEMPLATE`` with Go's error text, including the line number, and both depend on *which* token the
parser had read when it gave up. So the token boundaries, the line each token is attributed to and
the moments the lexer reports an error must be Go's. Runs of text, words and quoted strings are
scanned with ``str.find``/regular expressions rather than rune by rune, which keeps a 10 KB template
well under a millisecond of lexing.

Language facts implemented here (all from Go's documentation of ``text/template``):

- Text runs up to ``{{``. ``{{- `` (dash then an ASCII space, tab, CR or LF) trims all trailing
  white space of the preceding text; `` -}}`` trims the leading white space of the following text.
  ``{{-3}}`` is the number -3, not a trim marker.
- ``{{/* … */}}`` is a comment; it must follow ``{{`` (or ``{{- ``) directly and end right before
  ``}}`` (or `` -}}``). Comments are dropped unless the caller keeps them.
- Inside an action: spaces (``' ' \\t \\r \\n``) separate arguments; ``|``, ``(``, ``)``, ``=``
  and ``:=`` are operators; ``"…"`` (Go escapes), ```…``` (raw) and ``'c'`` are literals;
  ``$name`` variables, ``.Name`` fields, identifiers (function names, keywords, ``true``/``false``)
  and Go numbers (decimal, ``0x``/``0o``/``0b``, floats, exponents, ``_`` separators, imaginary).
- ``break`` and ``continue`` are keywords only when no function of that name is defined.

Positions in tokens are *character* indexes into the source; the parser converts them to Go's byte
offsets when it builds nodes.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import NamedTuple

__all__ = ["Lexer", "Token", "TokenType", "format_rune", "go_quote", "is_go_alnum", "scan_number"]


class TokenType(enum.IntEnum):
    """Token kinds; every kind after ``KEYWORD`` is a keyword (Go prints those as ``<word>``)."""

    ERROR = 0  # val is the error message
    BOOL = enum.auto()
    CHAR = enum.auto()  # a printable ASCII character with no other meaning, e.g. ","
    CHAR_CONSTANT = enum.auto()
    COMMENT = enum.auto()
    COMPLEX = enum.auto()
    ASSIGN = enum.auto()
    DECLARE = enum.auto()
    EOF = enum.auto()
    FIELD = enum.auto()
    IDENTIFIER = enum.auto()
    LEFT_DELIM = enum.auto()
    LEFT_PAREN = enum.auto()
    NUMBER = enum.auto()
    PIPE = enum.auto()
    RAW_STRING = enum.auto()
    RIGHT_DELIM = enum.auto()
    RIGHT_PAREN = enum.auto()
    SPACE = enum.auto()
    STRING = enum.auto()
    TEXT = enum.auto()
    VARIABLE = enum.auto()
    KEYWORD = enum.auto()  # boundary marker only
    BLOCK = enum.auto()
    BREAK = enum.auto()
    CONTINUE = enum.auto()
    DOT = enum.auto()
    DEFINE = enum.auto()
    ELSE = enum.auto()
    END = enum.auto()
    IF = enum.auto()
    NIL = enum.auto()
    RANGE = enum.auto()
    TEMPLATE = enum.auto()
    WITH = enum.auto()


class Token(NamedTuple):
    typ: TokenType
    pos: int  # character index of the token's first character
    val: str
    line: int  # 1-based line of the token's first character

    def describe(self) -> str:
        """The token as Go's parser names it in ``unexpected … in …`` messages."""
        if self.typ is TokenType.EOF:
            return "EOF"
        if self.typ is TokenType.ERROR:
            return self.val
        if self.typ > TokenType.KEYWORD:
            return f"<{self.val}>"
        if len(self.val.encode("utf-8", "surrogatepass")) > 10:
            # Go's "%.10q...": the first ten runes, quoted, then an ellipsis.
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


_KEYWORDS: dict[str, TokenType] = {
    "block": TokenType.BLOCK,
    "break": TokenType.BREAK,
    "continue": TokenType.CONTINUE,
    "define": TokenType.DEFINE,
    "else": TokenType.ELSE,
    "end": TokenType.END,
    "if": TokenType.IF,
    "nil": TokenType.NIL,
    "range": TokenType.RANGE,
    "template": TokenType.TEMPLATE,
    "with": TokenType.WITH,
}

_SPACE = " \t\r\n"  # Go's isSpace inside actions, and what trim markers remove
_TERMINATORS = frozenset(_SPACE + ".,|:)(")
_SPACES_RE = re.compile(r"[ \t\r\n]*")
_WORD_RE = re.compile(r"\w*")
_QUOTED_RE = re.compile(r'"(?:[^"\\\n]|\\[^\n])*"')
_CHAR_RE = re.compile(r"'(?:[^'\\\n]|\\[^\n])*'")
_DEC_DIGITS = "0123456789_"
_HEX_DIGITS = "0123456789abcdefABCDEF_"
_OCT_DIGITS = "01234567_"
_BIN_DIGITS = "01_"
_new_token = tuple.__new__
# What may follow a word, field or variable (Go's atTerminator); "." at the very end is a number.
_TERM = r"(?=[ \t\r\n.,|:()]|\}\}|\Z)"
_ACTION_TOKEN_RE = re.compile(
    r"(?P<delim>\}\}|[ \t\r\n]-\}\})"
    r"|(?P<space>[ \t\r\n]+)"
    rf"|(?P<field>\.[A-Za-z_][A-Za-z0-9_]*){_TERM}"
    r"|(?P<dot>\.)(?=[ \t\r\n.,|:()]|\}\})"
    rf"|(?P<variable>\$[A-Za-z0-9_]*){_TERM}"
    rf"|(?P<word>[A-Za-z_][A-Za-z0-9_]*){_TERM}"
    r'|(?P<string>"(?:[^"\\\n]|\\[^\n])*")'
    r"|(?P<pipe>\|)|(?P<declare>:=)|(?P<assign>=)|(?P<paren>[()])"
)
_FAST_KINDS = {
    "field": TokenType.FIELD,
    "dot": TokenType.DOT,
    "variable": TokenType.VARIABLE,
    "string": TokenType.STRING,
    "pipe": TokenType.PIPE,
    "declare": TokenType.DECLARE,
    "assign": TokenType.ASSIGN,
}


def is_go_alnum(c: str) -> bool:
    """Go's ``isAlphaNumeric``: underscore, a Unicode letter, or a decimal digit (category Nd)."""
    return c == "_" or c.isalpha() or unicodedata.category(c) == "Nd"


def format_rune(c: str) -> str:
    """Go's ``%#U``: ``U+0023 '#'`` for printable runes, ``U+0007`` otherwise."""
    code = f"U+{ord(c):04X}"
    return f"{code} '{c}'" if c.isprintable() else code


_QUOTE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote`` (``%q``): printable runes kept, the rest escaped Go-style."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = ['"']
    for c in s:
        esc = _QUOTE_ESCAPES.get(c)
        if esc is not None:
            out.append(esc)
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


class Lexer:
    """Produces Go's token stream one token at a time (``next_token``), as the parser asks.

    Pull-based because the parser decides when a ``{{define}}`` or ``{{block}}`` body starts and,
    like Go's, only ever reads ahead a few tokens. After an error token it yields EOF forever.
    """

    def __init__(self, source: str, *, break_ok: bool, continue_ok: bool, emit_comments: bool) -> None:
        self._src = source
        self._n = len(source)
        self._pos = 0  # scanning position
        self._start = 0  # start of the token being scanned
        self._inside = False  # inside an action
        self._paren_depth = 0
        self._break_ok = break_ok
        self._continue_ok = continue_ok
        self._emit_comments = emit_comments
        self._failed = False
        self._ascii = source.isascii()
        self._queue: list[Token] = []  # tokens already scanned ahead, last one next
        # Token starts only move forward, so the line of each is found by counting newlines since
        # the previous one; that keeps line tracking linear in the size of the template.
        self._line_pos = 0
        self._line = 1

    # -- helpers ---------------------------------------------------------------------------------

    def _line_at(self, pos: int) -> int:
        if pos >= self._line_pos:
            self._line += self._src.count("\n", self._line_pos, pos)
            self._line_pos = pos
            return self._line
        return 1 + self._src.count("\n", 0, pos)

    def _token(self, typ: TokenType, end: int) -> Token:
        """The token from ``_start`` to ``end``; scanning continues at ``end``."""
        start = self._start
        src = self._src
        if start >= self._line_pos:  # _line_at, inlined: this runs once per token
            self._line += src.count("\n", self._line_pos, start)
            self._line_pos = start
            line = self._line
        else:
            line = self._line_at(start)
        self._pos = self._start = end
        return _new_token(Token, (typ, start, src[start:end], line))

    def _error(self, message: str) -> Token:
        self._failed = True
        return Token(TokenType.ERROR, self._start, message, self._line_at(self._start))

    def _has_left_trim(self, pos: int) -> bool:
        src = self._src
        return pos + 1 < self._n and src[pos] == "-" and src[pos + 1] in _SPACE

    def _at_right_delim(self, pos: int) -> tuple[bool, bool]:
        """(at ``}}`` possibly preceded by a trim marker, whether the marker is there)."""
        src = self._src
        if pos + 1 < self._n and src[pos] in _SPACE and src[pos + 1] == "-" and src.startswith("}}", pos + 2):
            return True, True
        if src.startswith("}}", pos):
            return True, False
        return False, False

    def _at_terminator(self, pos: int) -> bool:
        """Whether a word may end at ``pos``: Go's ``atTerminator``."""
        if pos >= self._n:
            return True
        return self._src[pos] in _TERMINATORS or self._src.startswith("}}", pos)

    def _word_end(self, pos: int) -> int:
        """End of the run of Go alphanumerics starting at ``pos``."""
        match = _WORD_RE.match(self._src, pos)
        end = match.end() if match else pos
        if not self._ascii:
            # Python's \w also accepts other numerics (², ½ …); Go does not.
            for i in range(pos, end):
                if not is_go_alnum(self._src[i]):
                    return i
        return end

    def _skip_spaces(self, pos: int) -> int:
        match = _SPACES_RE.match(self._src, pos)
        return match.end() if match else pos

    # -- the state machine -----------------------------------------------------------------------

    def next_token(self) -> Token:
        """The next token; EOF (repeatedly) at the end or after an error."""
        if self._queue:
            return self._queue.pop()
        if self._failed:
            return Token(TokenType.EOF, self._n, "", self._line_at(self._n))
        if self._inside:
            return self._lex_inside_action()
        while True:  # text, then a delimiter; loops over dropped comments
            src = self._src
            x = src.find("{{", self._pos)
            if x < 0:
                if self._n > self._start:
                    return self._token(TokenType.TEXT, self._n)
                return Token(TokenType.EOF, self._n, "", self._line_at(self._n))
            if x > self._pos:
                end = x
                if self._has_left_trim(x + 2):
                    end = self._start + len(src[self._start : x].rstrip(_SPACE))
                start = self._start
                self._pos = self._start = x
                if end > start:
                    return Token(TokenType.TEXT, start, src[start:end], self._line_at(start))
            tok = self._lex_left_delim()
            if tok is not None:
                return tok

    def _lex_left_delim(self) -> Token | None:
        """At ``{{``: a left delimiter token, or a comment (``None`` when comments are dropped)."""
        src = self._src
        after = self._pos + 2
        if self._has_left_trim(after):
            after += 2
        if src.startswith("/*", after):
            self._pos = self._start = after
            return self._lex_comment()
        tok = Token(TokenType.LEFT_DELIM, self._start, "{{", self._line_at(self._start))
        self._inside = True
        self._paren_depth = 0
        self._pos = self._start = after
        return tok

    def _lex_comment(self) -> Token | None:
        src = self._src
        close = src.find("*/", self._pos + 2)
        if close < 0:
            return self._error("unclosed comment")
        end = close + 2
        delim, trim = self._at_right_delim(end)
        if not delim:
            return self._error("comment ends before closing delimiter")
        tok = Token(TokenType.COMMENT, self._start, src[self._start : end], self._line_at(self._start))
        after = end + (4 if trim else 2)
        if trim:
            after = self._skip_spaces(after)
        self._pos = self._start = after
        return tok if self._emit_comments else None

    def _lex_right_delim(self) -> Token:
        _, trim = self._at_right_delim(self._pos)
        if trim:
            self._pos = self._start = self._pos + 2
        tok = self._token(TokenType.RIGHT_DELIM, self._pos + 2)
        if trim:
            self._pos = self._start = self._skip_spaces(self._pos)
        self._inside = False
        return tok

    def _lex_inside_action(self) -> Token:
        """Tokens inside an action. The common, well-formed ASCII tokens are scanned in one loop of
        regular-expression matches up to the closing delimiter and queued (the parser still sees
        them one at a time); the first token that is anything else — a number, a quote, non-ASCII,
        every error — stops the loop and is scanned the long way when its turn comes, so errors
        arrive in the same place of the stream as in Go."""
        src = self._src
        scanned: list[Token] = []
        append = scanned.append
        match_at = _ACTION_TOKEN_RE.match
        pos = self._pos
        while (match := match_at(src, pos)) is not None:
            kind = match.lastgroup
            end = match.end()
            if kind == "space":
                typ = TokenType.SPACE
                if src.startswith("-}}", end):
                    end -= 1  # that space belongs to the trim-marked delimiter
            elif kind == "word":
                word = match.group()
                found = _KEYWORDS.get(word)
                if found is None:
                    typ = TokenType.BOOL if word == "true" or word == "false" else TokenType.IDENTIFIER
                elif (found is TokenType.BREAK and not self._break_ok) or (
                    found is TokenType.CONTINUE and not self._continue_ok
                ):
                    typ = TokenType.IDENTIFIER
                else:
                    typ = found
            elif kind == "delim":
                self._pos = self._start = pos
                if self._paren_depth == 0:
                    append(self._lex_right_delim())
                break
            elif kind == "paren":
                if src[pos] == "(":
                    self._paren_depth += 1
                    typ = TokenType.LEFT_PAREN
                elif self._paren_depth > 0:
                    self._paren_depth -= 1
                    typ = TokenType.RIGHT_PAREN
                else:
                    self._pos = self._start = pos
                    break
            else:
                assert kind is not None
                typ = _FAST_KINDS[kind]
            if pos >= self._line_pos:  # _line_at, inlined
                self._line += src.count("\n", self._line_pos, pos)
                self._line_pos = pos
            append(_new_token(Token, (typ, pos, src[pos:end], self._line)))
            pos = end
        else:
            self._pos = self._start = pos
        if not scanned:
            return self._lex_inside_action_slowly()
        scanned.reverse()
        self._queue = scanned
        return scanned.pop()

    def _lex_inside_action_slowly(self) -> Token:
        """One token by Go's rules, character class by character class (and every lexing error)."""
        src = self._src
        pos = self._pos
        if pos >= self._n:
            return self._error("unclosed action")
        c = src[pos]
        # A right delimiter ("}}" or " -}}") comes first, as in Go; only "}" or a space can start one.
        if (c == "}" or c in _SPACE) and self._at_right_delim(pos)[0]:
            if self._paren_depth == 0:
                return self._lex_right_delim()
            return self._error("unclosed left paren")
        if c in _SPACE:
            return self._lex_space()
        if c == ".":
            if pos + 1 < self._n and not "0" <= src[pos + 1] <= "9":
                # ".5" is a number, and so is a "." at the very end of the input (Go's quirk).
                return self._lex_field_or_variable(TokenType.FIELD, pos + 1)
            return self._lex_number()
        if c == "=":
            return self._token(TokenType.ASSIGN, pos + 1)
        if c == ":":
            if not src.startswith("=", pos + 1):
                return self._error("expected :=")
            return self._token(TokenType.DECLARE, pos + 2)
        if c == "|":
            return self._token(TokenType.PIPE, pos + 1)
        if c == '"':
            match = _QUOTED_RE.match(src, pos)
            if match is None:
                return self._error("unterminated quoted string")
            return self._token(TokenType.STRING, match.end())
        if c == "`":
            close = src.find("`", pos + 1)
            if close < 0:
                return self._error("unterminated raw quoted string")
            return self._token(TokenType.RAW_STRING, close + 1)
        if c == "$":
            return self._lex_field_or_variable(TokenType.VARIABLE, pos + 1)
        if c == "'":
            match = _CHAR_RE.match(src, pos)
            if match is None:
                return self._error("unterminated character constant")
            return self._token(TokenType.CHAR_CONSTANT, match.end())
        if c in "+-0123456789":
            return self._lex_number()
        if is_go_alnum(c):
            return self._lex_identifier()
        if c == "(":
            self._paren_depth += 1
            return self._token(TokenType.LEFT_PAREN, pos + 1)
        if c == ")":
            self._paren_depth -= 1
            if self._paren_depth < 0:
                return self._error("unexpected right paren")
            return self._token(TokenType.RIGHT_PAREN, pos + 1)
        if c.isascii() and c.isprintable():
            return self._token(TokenType.CHAR, pos + 1)
        return self._error(f"unrecognized character in action: {format_rune(c)}")

    def _lex_space(self) -> Token:
        start = self._pos
        end = self._skip_spaces(start)
        # A trim-marked right delimiter starts with a space: leave that space to it. When the run
        # is a single space there is no space token at all (Go goes straight to the delimiter).
        src = self._src
        if src.startswith("-", end) and src.startswith("}}", end + 1):
            end -= 1
            if end == start:
                return self._lex_right_delim()
        return self._token(TokenType.SPACE, end)

    def _lex_identifier(self) -> Token:
        end = self._word_end(self._pos)
        if not self._at_terminator(end):
            return self._error(f"bad character {format_rune(self._src[end])}")
        word = self._src[self._start : end]
        typ = _KEYWORDS.get(word)
        if typ is not None:
            if (typ is TokenType.BREAK and not self._break_ok) or (
                typ is TokenType.CONTINUE and not self._continue_ok
            ):
                typ = TokenType.IDENTIFIER
        elif word in ("true", "false"):
            typ = TokenType.BOOL
        else:
            typ = TokenType.IDENTIFIER
        return self._token(typ, end)

    def _lex_field_or_variable(self, typ: TokenType, pos: int) -> Token:
        """``$`` or ``.`` has been seen (at ``pos - 1``); the name, if any, follows."""
        if self._at_terminator(pos):  # nothing follows: "$" alone, or "." (dot)
            return self._token(TokenType.VARIABLE if typ is TokenType.VARIABLE else TokenType.DOT, pos)
        end = self._word_end(pos)
        if not self._at_terminator(end):
            return self._error(f"bad character {format_rune(self._src[end])}")
        return self._token(typ, end)

    def _lex_number(self) -> Token:
        ok, end = scan_number(self._src, self._pos)
        if not ok:
            return self._error(f"bad number syntax: {go_quote(self._src[self._start : end])}")
        if end < self._n and self._src[end] in "+-":
            # A complex constant such as 1+2i: no spaces, and it must end in "i".
            ok, end = scan_number(self._src, end)
            if not ok or self._src[end - 1] != "i":
                return self._error(f"bad number syntax: {go_quote(self._src[self._start : end])}")
            return self._token(TokenType.COMPLEX, end)
        return self._token(TokenType.NUMBER, end)


def scan_number(src: str, pos: int) -> tuple[bool, int]:
    """Go's permissive number scan from ``pos``: (whether it ended cleanly, end index).

    It accepts things that are not numbers (``0x``, ``089``, ``1e``); the parser applies Go's
    strconv rules and reports ``illegal number syntax`` for those.
    """
    n = len(src)

    def run(p: int, chars: str) -> int:
        while p < n and src[p] in chars:
            p += 1
        return p

    def exponent(p: int) -> int:  # p is at the exponent letter
        p += 1
        if p < n and src[p] in "+-":
            p += 1
        return run(p, _DEC_DIGITS)

    if pos < n and src[pos] in "+-":
        pos += 1
    digits = _DEC_DIGITS
    if pos < n and src[pos] == "0":
        pos += 1
        if pos < n and src[pos] in "xX":
            pos, digits = pos + 1, _HEX_DIGITS
        elif pos < n and src[pos] in "oO":
            pos, digits = pos + 1, _OCT_DIGITS
        elif pos < n and src[pos] in "bB":
            pos, digits = pos + 1, _BIN_DIGITS
    pos = run(pos, digits)
    if pos < n and src[pos] == ".":
        pos = run(pos + 1, digits)
    if digits is _DEC_DIGITS and pos < n and src[pos] in "eE":
        pos = exponent(pos)
    if digits is _HEX_DIGITS and pos < n and src[pos] in "pP":
        pos = exponent(pos)
    if pos < n and src[pos] == "i":
        pos += 1
    if pos < n and is_go_alnum(src[pos]):
        return False, pos + 1
    return True, pos
