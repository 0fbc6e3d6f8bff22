"""How Python values look to a Go template: kinds, type names, truth, fields, methods.

Go's ``text/template`` works on ``reflect.Value``s; the executor here works on plain Python
values and asks this module what Go would see. The mapping (the *value model*):

=================================  ==================================  ===========================
Python                             Go                                  ``{{.}}`` prints
=================================  ==================================  ===========================
``NO_VALUE``                       the invalid ``reflect.Value``       ``<no value>``
``None``                           a nil ``interface{}``               ``<no value>`` (``print``:
                                                                       ``<nil>``)
``bool`` ``int`` ``float``         ``bool`` ``int`` ``float64``        ``true`` ``42`` ``1e+06``
``complex`` ``str`` ``bytes``      ``complex128`` ``string`` ``[]byte``
``list`` / ``tuple``               ``[]interface{}`` (a slice)         ``[a b c]``
``dict`` (any ``Mapping``)         ``map[string]interface{}``          ``map[a:1 b:2]`` (sorted)
``OrderedGoMap``                   an insertion-ordered map            as a map; ranged in order
a dataclass instance               a struct; its fields are the        ``{f1 f2}``
                                   dataclass fields, *exported* when
                                   the name starts upper-case (Go's
                                   rule), so ``.Role`` reads ``Role``
any other callable                 a ``func``                          (an error, as in Go)
anything else                      an opaque value                     ``str(value)``
=================================  ==================================  ===========================

Optional protocols a class may implement (lower-case names, so a template can never reach them
as fields): ``go_string() -> str`` makes it a ``fmt.Stringer`` (used by ``%v``/``%s``, by
``{{.}}``, and reachable as the method ``.String``); ``go_json() -> object`` is its
``json.Marshal`` form (a dict is taken in its own key order); a class attribute ``GO_TYPE``
names its Go type in messages and ``%T``. An upper-case callable attribute of a struct's class
(``def Greet(self, name)``) is a method: ``{{.Greet "x"}}``.

Why ``None`` is a nil *interface*, not a nil pointer: template data is JSON-shaped
(``map[string]any``), where every absent or null value is an empty interface. Go unwraps
interfaces between pipeline stages, so a nil one becomes the invalid value — hence
``<no value>`` from ``{{.Missing}}`` but ``<nil>`` from ``{{print .Missing}}``; the executor
performs that unwrapping (``None`` → ``NO_VALUE``) at the same places Go does.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Final

__all__ = [
    "NO_VALUE",
    "Kind",
    "NoValue",
    "OrderedGoMap",
    "find_method",
    "float_digits",
    "go_string",
    "has_stringer",
    "is_exported",
    "is_true",
    "kind_of",
    "range_items",
    "sorted_items",
    "struct_field",
    "struct_fields",
    "type_name",
]


class NoValue:
    """The invalid ``reflect.Value``: what a nil interface becomes after a pipeline stage."""

    _instance: NoValue | None = None

    def __new__(cls) -> NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Final = NoValue()


class OrderedGoMap(dict[str, object]):
    """A map whose ``range`` and JSON keep insertion order (Go maps would sort the keys).

    Ollama's tool-call arguments and tool properties are such maps: the JSON a template prints
    for them keeps the order the client (or the model) wrote.
    """


class Kind(enum.Enum):
    INVALID = "invalid"
    NIL = "nil"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float64"
    COMPLEX = "complex128"
    STRING = "string"
    BYTES = "[]uint8"
    SLICE = "slice"
    MAP = "map"
    STRUCT = "struct"
    FUNC = "func"
    OTHER = "other"


_EXACT_KINDS: Final[dict[type, Kind]] = {
    bool: Kind.BOOL,
    int: Kind.INT,
    float: Kind.FLOAT,
    complex: Kind.COMPLEX,
    str: Kind.STRING,
    bytes: Kind.BYTES,
    list: Kind.SLICE,
    tuple: Kind.SLICE,
    dict: Kind.MAP,
}


def kind_of(value: object) -> Kind:
    """The Go kind of ``value`` (see the module table)."""
    kind = _EXACT_KINDS.get(type(value))
    if kind is not None:
        return kind
    if value is None:
        return Kind.NIL
    if value is NO_VALUE:
        return Kind.INVALID
    for base, kind in _EXACT_KINDS.items():  # subclasses: Tools(tuple), PropertyType(tuple)...
        if isinstance(value, base):
            return kind
    if isinstance(value, bytearray):
        return Kind.BYTES
    if isinstance(value, Mapping):
        return Kind.MAP
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return Kind.STRUCT
    if callable(value):
        return Kind.FUNC
    return Kind.OTHER


_TYPE_NAMES: Final = {
    Kind.SLICE: "[]interface {}",
    Kind.MAP: "map[string]interface {}",
    Kind.FUNC: "func(...) interface {}",
    Kind.NIL: "<nil>",
    Kind.INVALID: "<invalid Value>",
}


def type_name(value: object) -> str:
    """Go's ``%T`` / ``reflect.Type.String()`` for ``value``."""
    declared = getattr(type(value), "GO_TYPE", None)
    if isinstance(declared, str):
        return declared
    kind = kind_of(value)
    if kind in (Kind.STRUCT, Kind.OTHER):
        return type(value).__name__
    return _TYPE_NAMES.get(kind, str(kind.value))


def is_true(value: object) -> bool:
    """Go's ``isTrue`` after ``indirectInterface``: what ``if``, ``with``, ``and``, ``or``, ``not``
    decide on. Zero numbers, empty strings/slices/maps, nil and no value are false; structs,
    functions and other values are true."""
    kind = kind_of(value)
    if kind in (Kind.INVALID, Kind.NIL):
        return False
    if kind in (Kind.STRING, Kind.BYTES, Kind.SLICE, Kind.MAP):
        return len(value) > 0  # type: ignore[arg-type]
    if kind in (Kind.BOOL, Kind.INT, Kind.FLOAT, Kind.COMPLEX):
        return value != 0
    return True


def is_exported(name: str) -> bool:
    """Go's rule: an identifier is exported when its first character is an upper-case letter."""
    return bool(name) and name[0].isupper()


def struct_fields(value: object) -> list[tuple[str, object]]:
    """All fields of a struct (dataclass) value, in declaration order."""
    return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]  # type: ignore[arg-type]


def struct_field(value: object, name: str) -> tuple[bool, object]:
    """``(found, value)`` for field ``name`` of a struct value."""
    for f in dataclasses.fields(value):  # type: ignore[arg-type]
        if f.name == name:
            return True, getattr(value, name)
    return False, None


_NO_METHODS: Final = frozenset({bool, int, float, complex, str, bytes, list, tuple, dict, type(None)})


def has_stringer(value: object) -> bool:
    """Whether ``value`` is a ``fmt.Stringer`` (has ``go_string``)."""
    return type(value) not in _NO_METHODS and callable(getattr(type(value), "go_string", None))


def go_string(value: object) -> str:
    """Call the Stringer; a non-string result is a programming error in the value class."""
    result: object = value.go_string()  # type: ignore[attr-defined]
    if not isinstance(result, str):
        raise TypeError(f"{type(value).__name__}.go_string returned {type(result).__name__}")
    return result


def find_method(value: object, name: str) -> Callable[..., object] | None:
    """The method ``name`` of ``value`` as Go's ``MethodByName`` would find it, or None.

    Methods are upper-case callables defined on the class (never instance attributes or
    dataclass fields); ``String`` is the Stringer's ``go_string``.
    """
    cls = type(value)
    if cls in _NO_METHODS or not is_exported(name):
        return None
    if name == "String" and has_stringer(value):
        return value.go_string  # type: ignore[attr-defined,no-any-return]
    attr = getattr(cls, name, None)
    if attr is None or not callable(attr) or isinstance(attr, type):
        return None
    if dataclasses.is_dataclass(value) and any(f.name == name for f in dataclasses.fields(value)):
        return None
    method = getattr(value, name)
    return method if callable(method) else None


def _key_order(keys: Iterable[object]) -> list[object]:
    items = list(keys)
    try:
        return sorted(items)  # type: ignore[type-var]
    except TypeError:  # mixed key types: any fixed order will do
        return sorted(items, key=lambda k: (type(k).__name__, repr(k)))


def sorted_items(mapping: Mapping[object, object]) -> list[tuple[object, object]]:
    """A map's entries as Go's fmt prints them and ``range`` visits them: sorted by key."""
    return [(k, mapping[k]) for k in _key_order(mapping.keys())]


def range_items(mapping: Mapping[object, object]) -> list[tuple[object, object]]:
    """Entries in ``range`` order: sorted, except for ``OrderedGoMap`` (insertion order)."""
    if isinstance(mapping, OrderedGoMap):
        return list(mapping.items())
    return sorted_items(mapping)


def float_digits(value: float) -> tuple[str, int]:
    """Shortest decimal digits that round-trip ``value`` (finite, non-zero magnitude) and the
    decimal point position: ``value == 0.DIGITS × 10**dp``. Go's ``strconv`` and Python's
    ``repr`` both produce the shortest round-tripping digits, so they agree."""
    sign_digits_exp = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, sign_digits_exp.digits))
    exponent = int(sign_digits_exp.exponent)
    stripped = digits.rstrip("0") or "0"
    exponent += len(digits) - len(stripped)
    lead = len(stripped) - len(stripped.lstrip("0"))
    stripped = stripped[lead:] or "0"
    return stripped, len(stripped) + exponent
