"""Modelfile text ⇄ commands, and the Go-flavoured text ``/api/show`` prints (pure; no I/O).

The grammar is Ollama's (reference §10.1): one ``INSTRUCTION value`` per line, ``#`` comment lines,
values that are the rest of the line unless they open a ``"…"`` or ``\"\"\"…\"\"\"`` quote. Quotes
have no escapes, so a quoted value ends at the first line end where the whole accumulated value,
trimmed, starts and ends with the same quote. Serialization (``quote_value``) picks the quoting that
survives exactly that rule, so ``parse(render(v)) == v`` for every value the parser can produce.

Deliberate differences from Ollama's parser, where its behaviour is accidental rather than specified:

* Line numbers in errors name the line the offending instruction is on. Ollama counts a line break
  before reporting, so an error found at a line's end says the next line, and CRLF counts twice.
* CR and CRLF are read as LF, also inside quoted values (Ollama keeps the CR there).
* Tabs and other non-printing characters in values are kept (Ollama silently drops them).
* Extra blanks between ``PARAMETER``/``MESSAGE`` and their name are skipped (Ollama reads an
  empty parameter name, then fails with ``unknown parameter ''``).
* An instruction cut short (no value, parameter without value, message without text) and an
  unterminated quote are ``(line N): unexpected EOF``, N being the instruction's line.
* PARAMETER values are typed while parsing, so their errors carry a line number too.
* A float must be a finite decimal (``inf``/``nan`` cannot travel in JSON).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import ModelfileError
from ..protocol.create import DEPRECATED_PARAMETERS
from ..protocol.ollama import BOOL_OPTIONS, FLOAT_OPTIONS, INT_OPTIONS

COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter",
            "message", "requires")  # fmt: skip
ROLES = ("system", "user", "assistant")
LIST_OPTIONS = frozenset({"stop"})
DEPRECATED_OPTIONS = DEPRECATED_PARAMETERS  # one list for the Modelfile and the JSON create

ERR_COMMAND = 'command must be one of "' + '", "'.join(COMMANDS[:-1]) + f'", or "{COMMANDS[-1]}"'
ERR_ROLE = 'message role must be one of "system", "user", or "assistant"'
ERR_NO_FROM = "no FROM line"
ERR_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"
ERR_EOF = "unexpected EOF"

# Go's unicode.IsSpace set: what strings.TrimSpace removes around a value.
_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
         "\u2028\u2029\u202f\u205f\u3000"  # fmt: skip
_BLANK = " \t"  # what separates an instruction from its value
_NAME = re.compile(r"[A-Za-z]+")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_NUM = r"(?:0|[1-9][0-9]*)"
_IDENT = r"(?:0|[1-9][0-9]*|[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*)"
# golang.org/x/mod/semver: vMAJOR[.MINOR[.PATCH[-pre][+build]]]; the "v" is optional here.
_SEMVER = re.compile(rf"v?{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_IDENT}(?:\.{_IDENT})*)?"
                     r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?")  # fmt: skip


@dataclass(frozen=True)
class Command:
    """One instruction. ``key`` is the PARAMETER name or the MESSAGE role, else empty.

    ``line`` is where the instruction starts; it is for messages only, so it takes no part in equality
    (a rendered Modelfile parses back to equal commands even though the lines moved).
    """

    name: str
    args: str
    key: str = ""
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Modelfile:
    """Parsed commands in file order, plus the typed PARAMETER values and deprecation warnings."""

    commands: tuple[Command, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def values(self, name: str) -> list[str]:
        """The arguments of every ``name`` instruction, in order."""
        return [c.args for c in self.commands if c.name == name]


# -- parsing ------------------------------------------------------------------------------------------


def _unquote(s: str) -> str | None:
    """The value inside its quotes, the bare value itself, or ``None`` while a quote is still open."""
    if s.startswith('"""'):
        return s[3:-3] if len(s) >= 6 and s.endswith('"""') else None
    if s.startswith('"'):
        return s[1:-1] if len(s) >= 2 and s.endswith('"') else None
    return s


def _split_word(rest: str) -> tuple[str, str]:
    """First blank-separated word of ``rest`` and what follows the blanks after it."""
    rest = rest.lstrip(_BLANK)
    end = len(rest)
    for i, ch in enumerate(rest):
        if ch in _BLANK:
            end = i
            break
    return rest[:end], rest[end:].lstrip(_BLANK)


def parse_modelfile(text: str) -> Modelfile:
    """Parse Modelfile text; raises ``ModelfileError`` with Ollama's messages."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i].lstrip(_BLANK)
        i += 1
        if not line or line.startswith("#"):
            continue
        m = _NAME.match(line)
        rest = line[m.end() :] if m else line
        if m is None or (rest and rest[0] not in _BLANK) or m.group().lower() not in COMMANDS:
            raise ModelfileError(ERR_COMMAND, line=lineno)
        name = m.group().lower()
        key = ""
        if name in ("parameter", "message"):
            key, rest = _split_word(rest)
            if name == "message" and key and key not in ROLES:
                raise ModelfileError(ERR_ROLE, line=lineno)
            if name == "parameter" and key and not _PARAM_NAME.fullmatch(key):
                raise ModelfileError(f"unknown parameter '{key}'", line=lineno)
            if not rest:
                raise ModelfileError(ERR_EOF, line=lineno)
        elif not rest:
            raise ModelfileError(ERR_EOF, line=lineno)
        buffer = rest
        while (value := _unquote(buffer.strip(_SPACE))) is None:
            if i >= len(lines):
                raise ModelfileError(ERR_EOF, line=lineno)
            buffer += "\n" + lines[i]
            i += 1
        if name == "requires" and not _SEMVER.fullmatch(value):
            raise ModelfileError(ERR_REQUIRES, line=lineno)
        commands.append(Command(name, value, key, lineno))
    if not any(c.name == "from" for c in commands):
        raise ModelfileError(ERR_NO_FROM)
    parameters, warnings = typed_parameters(commands)
    return Modelfile(tuple(commands), parameters, tuple(warnings))


def parse_bool(value: str) -> bool | None:
    """Go's ``strconv.ParseBool``; ``None`` when it would fail."""
    return True if value in _TRUE else False if value in _FALSE else None


def parse_parameter(name: str, value: str) -> Any:
    """One PARAMETER value as its option type; raises ``ModelfileError`` (without a line)."""
    if name in LIST_OPTIONS:
        return value
    if name in INT_OPTIONS:
        if _INT.fullmatch(value) and -(2**63) <= int(value) < 2**63:
            return int(value)
        raise ModelfileError(f"invalid int value [{value}]")
    if name in FLOAT_OPTIONS:
        if _FLOAT.fullmatch(value) and (f := float(value)) not in (float("inf"), float("-inf")):
            return f
        raise ModelfileError(f"invalid float value [{value}]")
    if name in BOOL_OPTIONS:
        if (b := parse_bool(value)) is not None:
            return b
        raise ModelfileError(f"invalid bool value [{value}]")
    raise ModelfileError(f"unknown parameter '{name}'")


def typed_parameters(commands: Iterable[Command]) -> tuple[dict[str, Any], list[str]]:
    """PARAMETER commands as typed options: ``stop`` accumulates, others last-wins, deprecated dropped."""
    params: dict[str, Any] = {}
    warnings: list[str] = []
    for cmd in commands:
        if cmd.name != "parameter":
            continue
        if cmd.key in DEPRECATED_OPTIONS:
            warnings.append(f"parameter '{cmd.key}' is deprecated and was ignored")
            continue
        try:
            value = parse_parameter(cmd.key, cmd.args)
        except ModelfileError as e:
            raise ModelfileError(e.detail, line=cmd.line) from None
        if cmd.key in LIST_OPTIONS:
            params.setdefault(cmd.key, []).append(value)
        else:
            params[cmd.key] = value
    return params, warnings


# -- serialization ------------------------------------------------------------------------------------


def quote_value(value: str) -> str:
    """``value`` as Modelfile text that parses back to exactly ``value``.

    Bare when that is unambiguous; ``"…"`` when the value spans lines, has outer blanks or opens
    with a quote; ``\"\"\"…\"\"\"`` when it also contains ``"`` (as Ollama does). A multi-line value
    with an inner line ending in ``\"\"\"`` has no spelling at all (no escapes exist); such values
    cannot come out of the parser, and get the triple quotes anyway, as from Ollama.
    """
    if value and "\n" not in value and value == value.strip(_SPACE) and not value.startswith('"'):
        return value
    if '"' not in value:
        return f'"{value}"'
    return f'"""{value}"""'


def _go_exponent(exp: int) -> str:
    return f"e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def go_float(value: float) -> str:
    """A float as Go's ``%v`` prints it: shortest digits, exponent form below 1e-4 or from 1e6 up."""
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    if value == 0:
        return "-0" if repr(value).startswith("-") else "0"
    sign, digits_t, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digits_t))
    point = len(digits) + exp  # digits before the decimal point
    x = point - 1
    if x < -4 or x >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = mant + _go_exponent(x)
    elif point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return ("-" if sign else "") + text


def go_quote(value: str) -> str:
    """A string as Go's ``%q``/``%#v``: double quotes, backslash escapes, printable runes kept."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_value(value: Any) -> str:
    """Go ``%v`` of a JSON-decoded scalar (ints stay ints: Python keeps what Go turns into float64)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def _param_arg(key: str, value: Any) -> str:
    """A parameter value as PARAMETER text; integral floats of int options print as ints so they parse."""
    if isinstance(value, float) and key in INT_OPTIONS and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else _go_value(value)


def _param_items(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(key, scalar)`` pairs sorted by key, a list value giving one pair per element."""
    items: list[tuple[str, Any]] = []
    for key in sorted(params):
        value = params[key]
        items.extend((key, v) for v in (value if isinstance(value, list) else [value]))
    return items


def format_parameters(params: Mapping[str, Any]) -> str:
    """``/api/show``'s ``parameters``: key padded to 30, Go-syntax value; sorted, as Go's order is random."""
    lines = []
    for key, value in _param_items(params):
        text = go_quote(value) if isinstance(value, str) else _go_value(value)
        lines.append(f"{key:<30} {text}")
    return "\n".join(lines)


def render_command(cmd: Command) -> str:
    """One command as a Modelfile line (or lines, for a multi-line quoted value)."""
    if cmd.name == "parameter":
        return f"PARAMETER {cmd.key} {quote_value(cmd.args)}"
    if cmd.name == "message":
        return f"MESSAGE {cmd.key} {quote_value(cmd.args)}"
    return f"{cmd.name.upper()} {quote_value(cmd.args)}"


def render_commands(commands: Iterable[Command]) -> str:
    """Commands as Modelfile text, one per line, each line ended by a newline."""
    return "".join(render_command(c) + "\n" for c in commands)


@dataclass(frozen=True)
class ModelfileSpec:
    """What ``/api/show`` knows about a model, to print as a Modelfile; empty fields are left out."""

    short_name: str
    model_path: str
    adapters: Sequence[str] = ()
    draft: str = ""
    projectors: Sequence[str] = ()
    template: str = ""
    system: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    licenses: Sequence[str] = ()
    messages: Sequence[Mapping[str, Any]] = ()


def spec_commands(spec: ModelfileSpec) -> list[Command]:
    """The commands of a spec, in the order ``ollama show --modelfile`` prints them."""
    cmds = [Command("from", spec.model_path)]
    cmds += [Command("adapter", a) for a in spec.adapters]
    if spec.draft:
        cmds.append(Command("draft", spec.draft))
    cmds += [Command("from", p) for p in spec.projectors]
    for name in ("template", "system", "renderer", "parser", "requires"):
        if value := getattr(spec, name):
            cmds.append(Command(name, value))
    cmds += [Command("parameter", _param_arg(k, v), k) for k, v in _param_items(spec.parameters)]
    cmds += [Command("license", text) for text in spec.licenses]
    cmds += [Command("message", str(m.get("content", "")), str(m.get("role", ""))) for m in spec.messages]
    return cmds


def render_modelfile(spec: ModelfileSpec) -> str:
    """``/api/show``'s ``modelfile`` text: three comment lines, a blank line, then the commands."""
    header = (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {spec.short_name}\n\n"
    )
    return header + render_commands(spec_commands(spec))
