"""The data Ollama gives its prompt templates, Ollama's extra template functions, and ``render``.

Ollama (≥ 0.14) executes a template with a ``map[string]any`` — not a struct — holding only the
keys of the current mode (§11.3 of the reference): messages mode ``System, Messages, Tools,
Response, Think, ThinkLevel, IsThinkSet``; legacy mode ``System, Prompt, Response`` and the think
keys; suffix mode ``Prompt, Suffix, Response`` and the think keys. A key the mode lacks is a
*missing key*: ``{{ .Prompt }}`` prints ``<no value>`` in messages mode. ``TemplateValues`` holds
all nine fields and *is* that map (a ``Mapping``): the fields left ``None`` are not among its keys,
so ``execute``/``render`` given a ``TemplateValues`` behave as Ollama's per-mode maps do.

Messages are converted for templates (Ollama's ``templateMessage``): plain fields ``Role,
Content, Thinking, Images, ToolCalls, ToolName, ToolCallID``; a tool call is ``ID`` and
``Function`` (``Index, Name, Arguments``). Arguments print as compact JSON and range/index like a
map; tools print as their JSON (``{{ .Tools }}``, ``{{ . }}`` of a tool, ``{{ .Function }}``).
The JSON follows Ollama's ``api`` types: field names and ``omitempty`` rules (``description``,
``$defs``, ``items``, ``required`` omitted when empty; ``properties`` always, ``null`` when
absent; a property's ``type`` a string when it has one element), Go's escaping of ``< > &``.

Two deliberate differences from Ollama at the time of writing, both Ollama bugs reported
upstream: Ollama ≥ 0.14 prints ``{{ .Function }}`` and ``{{ .Function.Parameters }}`` of a tool
as Go structs (issue #14601), here they print as JSON as they did before; and it converts
arguments and top-level properties to Go maps, so their JSON and ``range`` come out key-sorted,
where here they keep the order the client sent (what the model saw and will see again).

JSON values inside tools and arguments become what Go's decoder makes of ``any``: every number a
``float64`` (so ``eq .Function.Arguments.n 1`` is a type error, as in Ollama), objects maps.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Final

from supervisor.templates.goexec import DEFAULT_MAX_OUTPUT, DEFAULT_MAX_STEPS, execute
from supervisor.templates.gofuncs import GoFunc, ParamKind
from supervisor.templates.gomarshal import MarshalError, marshal_json
from supervisor.templates.gotemplate_nodes import TemplateSet
from supervisor.templates.govalues import OrderedGoMap

__all__ = [
    "OLLAMA_FUNCTIONS",
    "Message",
    "PropertyType",
    "TemplateValues",
    "Tool",
    "ToolCall",
    "ToolCallArguments",
    "ToolCallFunction",
    "ToolFunction",
    "ToolFunctionParameters",
    "ToolList",
    "ToolProperties",
    "ToolProperty",
    "json_any",
    "message_value",
    "render",
    "to_typescript_type",
    "tool_call_value",
    "tool_value",
    "tools_value",
]


def json_any(value: object) -> object:
    """A decoded JSON value as Go's ``encoding/json`` fills an ``any``: numbers are float64."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): json_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_any(v) for v in value]
    raise ValueError(f"not a JSON value: {type(value).__name__}")


class _JSONStringer:
    """Prints as its own JSON (Go types whose ``String()`` is ``json.Marshal``)."""

    def go_string(self) -> str:
        return marshal_json(self)


class _JSONMap(_JSONStringer, OrderedGoMap):
    """An ordered map that prints as its compact JSON."""

    def go_json(self) -> object:
        return dict(self)


class ToolCallArguments(_JSONMap):
    """A tool call's arguments, in the order the model (or client) wrote them."""

    GO_TYPE: ClassVar[str] = "template.templateArgs"


class PropertyType(tuple[str, ...]):
    """A property's ``type``: JSON ``"string"`` or ``["string", "null"]``; prints as ``string`` or
    ``[string null]``."""

    GO_TYPE: ClassVar[str] = "api.PropertyType"

    def go_string(self) -> str:
        return "" if not self else self[0] if len(self) == 1 else "[" + " ".join(self) + "]"

    def go_json(self) -> object:
        return self[0] if len(self) == 1 else list(self)


class ToolProperties(_JSONMap):
    """Property name → ``ToolProperty``, in the order the tool declared them."""

    GO_TYPE: ClassVar[str] = "template.templateProperties"


class _Omit(enum.Enum):
    """When a struct field is left out of its JSON (Go's ``omitempty``)."""

    NEVER = "never"
    EMPTY = "empty"  # omitempty on a string, slice or map: left out when empty
    NIL = "nil"  # omitempty on an interface or pointer: left out only when nil


def _tag(name: str, omit: _Omit = _Omit.NEVER) -> dict[str, object]:
    """A field's ``json:"name[,omitempty]"`` tag, as dataclass field metadata."""
    return {"json": (name, omit)}


class _GoStruct:
    """A Go struct whose ``json.Marshal`` follows its fields' tags (`_tag`), in declaration order."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[object]]]  # subclasses are dataclasses

    def go_json(self) -> object:
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            name, omit = f.metadata["json"]
            value = getattr(self, f.name)
            if (omit is _Omit.EMPTY and not value) or (omit is _Omit.NIL and value is None):
                continue
            out[name] = value
        return out


@dataclass(frozen=True)
class ToolProperty(_GoStruct):
    GO_TYPE: ClassVar[str] = "api.ToolProperty"

    AnyOf: tuple[ToolProperty, ...] = field(default=(), metadata=_tag("anyOf", _Omit.EMPTY))
    Type: PropertyType = field(default=PropertyType(), metadata=_tag("type", _Omit.EMPTY))
    Items: object = field(default=None, metadata=_tag("items", _Omit.NIL))
    Description: str = field(default="", metadata=_tag("description", _Omit.EMPTY))
    Enum: tuple[object, ...] = field(default=(), metadata=_tag("enum", _Omit.EMPTY))
    Properties: ToolProperties | None = field(default=None, metadata=_tag("properties", _Omit.NIL))
    Required: tuple[str, ...] = field(default=(), metadata=_tag("required", _Omit.EMPTY))


@dataclass(frozen=True)
class ToolFunctionParameters(_GoStruct, _JSONStringer):
    GO_TYPE: ClassVar[str] = "template.templateToolFunctionParameters"

    Type: str = field(default="", metadata=_tag("type"))
    Defs: object = field(default=None, metadata=_tag("$defs", _Omit.NIL))
    Items: object = field(default=None, metadata=_tag("items", _Omit.NIL))
    Required: tuple[str, ...] = field(default=(), metadata=_tag("required", _Omit.EMPTY))
    Properties: ToolProperties | None = field(default=None, metadata=_tag("properties"))


@dataclass(frozen=True)
class ToolFunction(_GoStruct, _JSONStringer):
    GO_TYPE: ClassVar[str] = "template.templateToolFunction"

    Name: str = field(default="", metadata=_tag("name"))
    Description: str = field(default="", metadata=_tag("description", _Omit.EMPTY))
    Parameters: ToolFunctionParameters = field(default=ToolFunctionParameters(), metadata=_tag("parameters"))


@dataclass(frozen=True)
class Tool(_GoStruct, _JSONStringer):
    GO_TYPE: ClassVar[str] = "template.templateTool"

    Type: str = field(default="", metadata=_tag("type"))
    Items: object = field(default=None, metadata=_tag("items", _Omit.NIL))
    Function: ToolFunction = field(default=ToolFunction(), metadata=_tag("function"))


class ToolList(_JSONStringer, tuple[Tool, ...]):
    """The request's tools; prints as their JSON array (``null`` when the request had none)."""

    GO_TYPE: ClassVar[str] = "template.templateTools"
    nil: ClassVar[bool] = False

    def go_json(self) -> object:
        return None if self.nil and not self else list(self)


class _NilToolList(ToolList):
    nil: ClassVar[bool] = True


@dataclass(frozen=True)
class ToolCallFunction(_GoStruct):
    GO_TYPE: ClassVar[str] = "template.templateToolCallFunction"

    Index: int = field(default=0, metadata=_tag("index"))
    Name: str = field(default="", metadata=_tag("name"))
    Arguments: ToolCallArguments = field(default_factory=ToolCallArguments, metadata=_tag("arguments"))


@dataclass(frozen=True)
class ToolCall(_GoStruct):
    GO_TYPE: ClassVar[str] = "template.templateToolCall"

    ID: str = field(default="", metadata=_tag("id", _Omit.EMPTY))
    Function: ToolCallFunction = field(default=ToolCallFunction(), metadata=_tag("function"))


@dataclass(frozen=True)
class Message(_GoStruct):
    """Its JSON is ``api.Message``'s: ``content`` always, the rest only when set."""

    GO_TYPE: ClassVar[str] = "*template.templateMessage"

    Role: str = field(default="", metadata=_tag("role"))
    Content: str = field(default="", metadata=_tag("content"))
    Thinking: str = field(default="", metadata=_tag("thinking", _Omit.EMPTY))
    Images: tuple[bytes, ...] = field(default=(), metadata=_tag("images", _Omit.EMPTY))
    ToolCalls: tuple[ToolCall, ...] = field(default=(), metadata=_tag("tool_calls", _Omit.EMPTY))
    ToolName: str = field(default="", metadata=_tag("tool_name", _Omit.EMPTY))
    ToolCallID: str = field(default="", metadata=_tag("tool_call_id", _Omit.EMPTY))


@dataclass(frozen=True)
class TemplateValues(Mapping[str, object]):
    """What a template sees as dot: Go's ``map[string]any`` whose keys are the fields that are
    not ``None`` (see the module doc). Being a ``Mapping`` is what gives it map semantics in the
    executor: an absent key prints ``<no value>``, ``range`` visits keys sorted."""

    System: str | None = None
    Prompt: str | None = None
    Suffix: str | None = None
    Response: str | None = None
    Messages: Sequence[Message] | None = None
    Tools: ToolList | None = None
    Think: bool | None = None
    ThinkLevel: str | None = None
    IsThinkSet: bool | None = None

    def _present(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str) -> object:
        value = getattr(self, key, None) if key in _VALUE_FIELDS else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._present())

    def __len__(self) -> int:
        return len(self._present())

    def data(self) -> dict[str, object]:
        """The map as a plain dict."""
        return {name: getattr(self, name) for name in self._present()}


_VALUE_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(TemplateValues))


# -- construction from Ollama request JSON ---------------------------------------------------------


def _str(obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _strings(obj: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected an array of strings")
    return tuple(value)


def _object(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected an object, got {type(value).__name__}")
    return value


def _image(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if not isinstance(data, str):
        raise ValueError("images: expected base64 strings")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return data.encode("utf-8")


def tool_call_value(call: Mapping[str, object], index: int = 0) -> ToolCall:
    """An Ollama ``tool_calls`` entry; ``index`` is used when ``function.index`` is absent."""
    function = _object(call.get("function") or {}, "function")
    arguments = function.get("arguments")
    args = ToolCallArguments()
    if arguments is not None:
        for key, value in _object(arguments, "arguments").items():
            args[str(key)] = json_any(value)
    raw_index = function.get("index", index)
    if not isinstance(raw_index, int) or isinstance(raw_index, bool):
        raise ValueError("function.index: expected an integer")
    return ToolCall(_str(call, "id"), ToolCallFunction(raw_index, _str(function, "name"), args))


def message_value(message: Mapping[str, object]) -> Message:
    """An Ollama chat message (``role`` lower-cased, as Ollama's decoder does)."""
    images = message.get("images") or []
    calls = message.get("tool_calls") or []
    if not isinstance(images, (list, tuple)) or not isinstance(calls, (list, tuple)):
        raise ValueError("images and tool_calls must be arrays")
    return Message(
        Role=_str(message, "role").lower(),
        Content=_str(message, "content"),
        Thinking=_str(message, "thinking"),
        Images=tuple(_image(i) for i in images),
        ToolCalls=tuple(tool_call_value(_object(c, "tool_calls"), i) for i, c in enumerate(calls)),
        ToolName=_str(message, "tool_name"),
        ToolCallID=_str(message, "tool_call_id"),
    )


def _properties(value: object) -> ToolProperties | None:
    if value is None:
        return None
    return ToolProperties((str(k), property_value(_object(v, str(k)))) for k, v in _object(value, "properties").items())


def property_value(prop: Mapping[str, object]) -> ToolProperty:
    """One JSON-schema property of a tool's parameters."""
    raw_type = prop.get("type")
    if raw_type is None:
        kinds = PropertyType()
    elif isinstance(raw_type, str):
        kinds = PropertyType((raw_type,))
    else:
        kinds = PropertyType(_strings(prop, "type"))
    any_of = prop.get("anyOf") or []
    enum = prop.get("enum") or []
    if not isinstance(any_of, (list, tuple)) or not isinstance(enum, (list, tuple)):
        raise ValueError("anyOf and enum must be arrays")
    return ToolProperty(
        AnyOf=tuple(property_value(_object(p, "anyOf")) for p in any_of),
        Type=kinds,
        Items=json_any(prop.get("items")),
        Description=_str(prop, "description"),
        Enum=tuple(json_any(e) for e in enum),
        Properties=_properties(prop.get("properties")),
        Required=_strings(prop, "required"),
    )


def tool_value(tool: Mapping[str, object]) -> Tool:
    """One entry of an Ollama request's ``tools``."""
    function = _object(tool.get("function") or {}, "function")
    params = _object(function.get("parameters") or {}, "parameters")
    parameters = ToolFunctionParameters(
        Type=_str(params, "type"),
        Defs=json_any(params.get("$defs")),
        Items=json_any(params.get("items")),
        Required=_strings(params, "required"),
        Properties=_properties(params.get("properties")),
    )
    return Tool(
        Type=_str(tool, "type"),
        Items=json_any(tool.get("items")),
        Function=ToolFunction(_str(function, "name"), _str(function, "description"), parameters),
    )


def tools_value(tools: Sequence[Mapping[str, object]] | None) -> ToolList:
    """An Ollama request's ``tools`` (``None``: the request had none, printed as ``null``)."""
    if tools is None:
        return _NilToolList()
    return ToolList(tool_value(_object(t, "tools")) for t in tools)


# -- Ollama's template functions -------------------------------------------------------------------

_TS_TYPES: Final = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
                    "array": "any[]", "object": "Record<string, any>", "null": "null"}  # fmt: skip


def to_typescript_type(value: object) -> str:
    """Ollama's ``toTypeScriptType``: a property's TypeScript type. ``anyOf`` alternatives and
    type lists are joined with `` | ``; no type is ``any``; anything but a property is ``any``.
    (Enums and array item types are not consulted, as in Ollama.)"""
    if not isinstance(value, ToolProperty):
        return "any"
    if value.AnyOf:
        return " | ".join(to_typescript_type(p) for p in value.AnyOf)
    if not value.Type:
        return "any"
    return " | ".join(_TS_TYPES.get(t, "any") for t in value.Type)


def _json(value: object) -> str:
    try:
        return marshal_json(value)
    except MarshalError:
        return ""  # Ollama ignores the error and prints the empty result


def _current_date(*_format: str) -> str:
    return datetime.date.today().isoformat()


def _yesterday_date(*_format: str) -> str:
    return (datetime.date.today() - datetime.timedelta(days=1)).isoformat()


OLLAMA_FUNCTIONS: Final[Mapping[str, GoFunc]] = MappingProxyType(
    {
        "json": GoFunc(_json, (ParamKind.ANY,)),
        "currentDate": GoFunc(_current_date, (), ParamKind.STRING),
        "yesterdayDate": GoFunc(_yesterday_date, (), ParamKind.STRING),
        "toTypeScriptType": GoFunc(to_typescript_type, (ParamKind.ANY,)),
    }
)
"""The functions Ollama adds to every template, with their Go signatures (``currentDate`` takes
optional *string* arguments, which it ignores)."""


def render(
    tset: TemplateSet,
    values: Mapping[str, object],
    *,
    max_output: int = DEFAULT_MAX_OUTPUT,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> str:
    """Execute ``tset``'s main template with Ollama's functions and ``values`` (a
    ``TemplateValues`` or any map) as dot."""
    return execute(tset, values, funcs=OLLAMA_FUNCTIONS, max_output=max_output, max_steps=max_steps)
