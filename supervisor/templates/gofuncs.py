"""Go ``text/template``'s predefined functions, and the ``GoFunc`` wrapper for all functions.

A template function in Go has a typed signature, and the executor converts each argument to its
parameter type *before* the call — which is where many of Go's error messages come from
(``wrong type for value; expected string; got int``, ``wrong number of args for json: want 1
got 0``). ``GoFunc`` records the three parameter types that matter here (``ParamKind``):
``ANY`` (``interface{}``: a nil becomes ``None``), ``STRING`` and ``VALUE`` (``reflect.Value``:
the value as it is, ``NO_VALUE`` included — the comparison and indexing builtins rely on that).
A plain Python callable becomes a ``GoFunc`` of ``ANY`` parameters read from its signature.

A function reports failure by raising ``GoFuncError(text)``; the executor prefixes
``error calling NAME:`` as Go does. ``and``, ``or`` (short-circuit) and ``call`` (which needs
the callee's name) are evaluated by the executor itself; they appear here so that arity checks
and name lookup treat them like every other builtin.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping, Sized
from typing import Any
from typing import Final
from urllib.parse import quote_plus

from supervisor.templates.gofmt import sprint, sprintf, sprintln
from supervisor.templates.govalues import NO_VALUE, Kind, is_true, kind_of, type_name

__all__ = [
    "GoFunc",
    "GoFuncError",
    "ParamKind",
    "builtin_funcs",
    "call_function",
    "go_func",
    "html_escape",
    "js_escape",
    "url_query_escape",
]


class GoFuncError(Exception):
    """A function's error result; ``str()`` is Go's error text (without ``error calling …:``)."""


class ParamKind(enum.Enum):
    ANY = "interface {}"
    STRING = "string"
    VALUE = "reflect.Value"


class GoFunc:
    """A callable with a Go signature: fixed parameters, then an optional variadic one."""

    __slots__ = ("fn", "params", "variadic")

    def __init__(
        self, fn: Callable[..., object], params: tuple[ParamKind, ...] = (), variadic: ParamKind | None = None
    ) -> None:
        self.fn = fn
        self.params = params
        self.variadic = variadic

    def __call__(self, *args: object) -> object:
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"GoFunc({getattr(self.fn, '__name__', self.fn)!r})"


def go_func(fn: Callable[..., object]) -> GoFunc:
    """``fn`` as a ``GoFunc``: positional parameters without defaults are fixed ``ANY``
    parameters; defaults or ``*args`` make it variadic."""
    if isinstance(fn, GoFunc):
        return fn
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return GoFunc(fn, (), ParamKind.ANY)
    fixed = 0
    variadic = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL or param.default is not param.empty:
            variadic = True
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and not variadic:
            fixed += 1
    return GoFunc(fn, (ParamKind.ANY,) * fixed, ParamKind.ANY if variadic else None)


def _indirect(value: object) -> object:
    """Go's ``indirectInterface``: a nil interface is no value at all."""
    return NO_VALUE if value is None else value


# -- comparisons ---------------------------------------------------------------------------------

_BASIC: Final = {Kind.BOOL, Kind.INT, Kind.FLOAT, Kind.COMPLEX, Kind.STRING}
_BAD_COMPARISON_TYPE: Final = "invalid type for comparison"


def _basic(value: object) -> Kind | None:
    kind = kind_of(value)
    return kind if kind in _BASIC else None


def _incompatible(a: object, b: object) -> GoFuncError:
    return GoFuncError(f"incompatible types for comparison: {type_name(a)} and {type_name(b)}")


def _equal_non_basic(a: object, b: object) -> bool:
    """Both operands are nil or of non-basic kinds: nil equals only nil, slices, maps and
    functions are not comparable, structs compare field by field."""
    if a is NO_VALUE or b is NO_VALUE:
        return a is b
    ka, kb = kind_of(a), kind_of(b)
    if ka is not kb:
        shown_a, shown_b = sprintf("%s", [a]), sprintf("%s", [b])
        raise GoFuncError(f"non-comparable types {shown_a}: {type_name(a)}, {type_name(b)}: {shown_b}")
    if ka in (Kind.SLICE, Kind.MAP, Kind.FUNC, Kind.BYTES):
        raise GoFuncError(f"non-comparable type {sprintf('%s', [b])}: {type_name(b)}")
    return a == b


def eq(arg1: object, *arg2: object) -> bool:
    """``eq a b c`` is ``a == b || a == c``; basic kinds only compare with the same kind."""
    arg1 = _indirect(arg1)
    if not arg2:
        raise GoFuncError("missing argument for comparison")
    k1 = _basic(arg1)
    for arg in arg2:
        arg = _indirect(arg)
        k2 = _basic(arg)
        if k1 != k2:
            if arg1 is not NO_VALUE and arg is not NO_VALUE:
                raise _incompatible(arg1, arg)
            truth = False
        elif k1 is None:
            truth = _equal_non_basic(arg1, arg)
        else:
            truth = arg1 == arg
        if truth:
            return True
    return False


def ne(arg1: object, arg2: object) -> bool:
    return not eq(arg1, arg2)


def lt(arg1: object, arg2: object) -> bool:
    arg1, arg2 = _indirect(arg1), _indirect(arg2)
    k1, k2 = _basic(arg1), _basic(arg2)
    if k1 is None or k2 is None:
        raise GoFuncError(_BAD_COMPARISON_TYPE)
    if k1 != k2:
        raise _incompatible(arg1, arg2)
    if k1 in (Kind.BOOL, Kind.COMPLEX):
        raise GoFuncError(_BAD_COMPARISON_TYPE)
    return bool(arg1 < arg2)  # type: ignore[operator]


def le(arg1: object, arg2: object) -> bool:
    return lt(arg1, arg2) or eq(arg1, arg2)


def gt(arg1: object, arg2: object) -> bool:
    return not le(arg1, arg2)


def ge(arg1: object, arg2: object) -> bool:
    return not lt(arg1, arg2)


# -- len, index, slice -----------------------------------------------------------------------------


def _byte_string(item: object) -> bytes:
    """A string as Go measures, indexes and slices it: its UTF-8 bytes."""
    return str(item).encode("utf-8", "surrogatepass")


def length(item: object) -> int:
    if item is NO_VALUE:  # Go asks a zero reflect.Value for its type, which panics
        raise GoFuncError("reflect: call of reflect.Value.Type on zero Value")
    if item is None:
        raise GoFuncError("len of nil pointer")
    kind = kind_of(item)
    if kind is Kind.STRING:
        return len(_byte_string(item))
    if isinstance(item, Sized) and kind in (Kind.BYTES, Kind.SLICE, Kind.MAP):
        return len(item)
    raise GoFuncError(f"len of type {type_name(item)}")


def _index_arg(index: object, cap: int) -> int:
    kind = kind_of(index)
    if kind is Kind.INVALID:
        raise GoFuncError("cannot index slice/array with nil")
    if kind is not Kind.INT or not isinstance(index, int):
        raise GoFuncError(f"cannot index slice/array with type {type_name(index)}")
    x = int(index)
    if x < 0 or x > cap:
        raise GoFuncError(f"index out of range: {x}")
    return x


def _operand(item: object, func: str) -> object:
    """``index``'s and ``slice``'s first argument, indirected; untyped nil is an error."""
    item = _indirect(item)
    if item is NO_VALUE:
        raise GoFuncError(f"{func} of untyped nil")
    return item


def index(item: object, *indexes: object) -> object:
    """``index x 1 2`` is ``x[1][2]``: slices, strings (a byte) and maps (zero value if absent)."""
    item = _operand(item, "index")
    for raw in indexes:
        idx = _indirect(raw)
        if item is None:
            raise GoFuncError("index of nil pointer")
        kind = kind_of(item)
        if kind in (Kind.SLICE, Kind.BYTES, Kind.STRING):
            seq = _byte_string(item) if kind is Kind.STRING else item
            x = _index_arg(idx, len(seq))  # type: ignore[arg-type]
            if x == len(seq):  # type: ignore[arg-type]
                where = "string" if kind is Kind.STRING else "slice"
                raise GoFuncError(f"reflect: {where} index out of range")
            item = seq[x]  # type: ignore[index]
        elif kind is Kind.MAP:
            if idx is NO_VALUE:
                raise GoFuncError("value is nil; should be of type string")
            if kind_of(idx) is not Kind.STRING:
                raise GoFuncError(f"value has type {type_name(idx)}; should be string")
            assert isinstance(item, Mapping)
            item = item.get(idx)
        else:
            raise GoFuncError(f"can't index item of type {type_name(item)}")
    return item


def slice_(item: object, *indexes: object) -> object:
    """``slice x 1 2`` is ``x[1:2]``; strings are sliced by bytes, as in Go."""
    item = _operand(item, "slice")
    if len(indexes) > 3:
        raise GoFuncError(f"too many slice indexes: {len(indexes)}")
    kind = kind_of(item)
    if kind is Kind.STRING:
        if len(indexes) == 3:
            raise GoFuncError("cannot 3-index slice a string")
        data: object = _byte_string(item)
    elif kind in (Kind.SLICE, Kind.BYTES):
        data = item
    else:
        raise GoFuncError(f"can't slice item of type {type_name(item)}")
    size = len(data)  # type: ignore[arg-type]
    idx = [0, size, size]
    for i, raw in enumerate(indexes):
        idx[i] = _index_arg(raw, size)
    if idx[0] > idx[1]:
        raise GoFuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise GoFuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    part = data[idx[0] : idx[1]]  # type: ignore[index]
    if kind is Kind.STRING:
        return bytes(part).decode("utf-8", "replace")
    if type(item) not in (list, tuple, bytes):  # keep a named slice type (and its String method)
        named: Any = type(item)
        try:
            return named(part)
        except Exception:
            return part
    return part


# -- call ----------------------------------------------------------------------------------------


def call_function(callee: str, fn: object, *args: object) -> object:
    """The ``call`` builtin: ``call .F 1 2`` calls the function value ``.F`` (named ``callee`` in
    messages, as Go names it by its source text)."""
    fn = _indirect(fn)
    if fn is NO_VALUE:
        raise GoFuncError("call of nil")
    if kind_of(fn) is not Kind.FUNC or not callable(fn):
        raise GoFuncError(f"non-function {callee} of type {type_name(fn)}")
    signature = go_func(fn)
    fixed = len(signature.params)
    if signature.variadic is not None and len(args) < fixed:
        raise GoFuncError(f"wrong number of args for {callee}: got {len(args)} want at least {fixed}")
    if signature.variadic is None and len(args) != fixed:
        raise GoFuncError(f"wrong number of args for {callee}: got {len(args)} want {fixed}")
    return signature.fn(*(None if a is NO_VALUE else a for a in args))


# -- escaping --------------------------------------------------------------------------------------

_HTML: Final = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
_JS: Final = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def html_escape(s: str) -> str:
    """Go's ``template.HTMLEscapeString``."""
    return "".join(_HTML.get(c, c) for c in s) if any(c in _HTML for c in s) else s


def js_escape(s: str) -> str:
    """Go's ``template.JSEscapeString``: quotes, ``\\ < > & =``, controls and unprintable runes."""
    out = []
    for c in s:
        if c in _JS:
            out.append(_JS[c])
        elif c < " ":
            out.append(f"\\u00{ord(c):02X}")
        elif c < "\x80" or c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04X}")
    return "".join(out)


def url_query_escape(s: str) -> str:
    """Go's ``url.QueryEscape``."""
    return quote_plus(s.encode("utf-8", "surrogatepass"), safe="")


def _eval_args(args: tuple[object, ...], limit: int | None) -> str:
    """Go's ``evalArgs``: one string as is; otherwise ``fmt.Sprint``, nil shown as ``<no value>``."""
    if len(args) == 1 and type(args[0]) is str:
        return args[0]
    return sprint(["<no value>" if a is None or a is NO_VALUE else a for a in args], limit)


# -- the table -------------------------------------------------------------------------------------

A, S, V = ParamKind.ANY, ParamKind.STRING, ParamKind.VALUE


def _not(arg: object) -> bool:
    return not is_true(arg)


def _unavailable(*_args: object) -> object:  # pragma: no cover - the executor evaluates these
    raise GoFuncError("evaluated by the executor")


def builtin_funcs(limit: int | None = None) -> dict[str, GoFunc]:
    """The predefined functions; ``limit`` bounds the strings the printing functions build."""

    def print_(*args: object) -> str:
        return sprint(args, limit)

    def printf(fmt: str, *args: object) -> str:
        return sprintf(fmt, args, limit)

    def println(*args: object) -> str:
        return sprintln(args, limit)

    def html(*args: object) -> str:
        return html_escape(_eval_args(args, limit))

    def js(*args: object) -> str:
        return js_escape(_eval_args(args, limit))

    def urlquery(*args: object) -> str:
        return url_query_escape(_eval_args(args, limit))

    return {
        "and": GoFunc(_unavailable, (V,), V),
        "or": GoFunc(_unavailable, (V,), V),
        "call": GoFunc(_unavailable, (V,), V),
        "not": GoFunc(_not, (V,)),
        "len": GoFunc(length, (V,)),
        "index": GoFunc(index, (V,), V),
        "slice": GoFunc(slice_, (V,), V),
        "eq": GoFunc(eq, (V,), V),
        "ne": GoFunc(ne, (V, V)),
        "lt": GoFunc(lt, (V, V)),
        "le": GoFunc(le, (V, V)),
        "gt": GoFunc(gt, (V, V)),
        "ge": GoFunc(ge, (V, V)),
        "print": GoFunc(print_, (), A),
        "printf": GoFunc(printf, (S,), A),
        "println": GoFunc(println, (), A),
        "html": GoFunc(html, (), A),
        "js": GoFunc(js, (), A),
        "urlquery": GoFunc(urlquery, (), A),
    }
