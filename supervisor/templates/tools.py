"""Find tool calls in a model's streamed output (the Go-template chat path).

When llamasup renders a model's Go ``TEMPLATE`` itself, llama-server returns raw text and the tool
calls are inside it, written the way the template writes them in history. Ollama learns from the
template what a model writes before its calls (the *tag*) and parses the JSON after it
(reference/ollama-api.md §12). Two parts here, both pure:

``tool_call_tag`` reads the parse tree (never executes it). It finds the first ``if``/``range``/
``with`` over ``.ToolCalls`` (also ``$.ToolCalls``, ``$msg.ToolCalls``) and collects the literal
text the template writes before the JSON of the first call: ``<tool_call>`` (Qwen, Hermes),
``[TOOL_CALLS]`` (Mistral — the ``[`` that opens its JSON array is not part of the tag),
``<|python_tag|>``; ``{`` when the JSON starts right away (Llama 3.1), ``[`` when a bare array
does; ``None`` when the template never renders tool calls. Compared with Ollama, which takes the
first text node inside an ``if .ToolCalls``, this also follows ``range``/``$``-rooted fields, looks
past white-space-only text, skips conditional separators (``{{ if $i }}, {{ end }}``) and text
before other printed values (``{{ .Content }}``), and drops the ``[`` that opens a JSON array.

``ToolCallParser`` follows Ollama's streaming parser, with its loose ends tied:

- With a named tag, the tag is looked for anywhere in the output; content before it is released,
  and a possible partial tag at the end of what has arrived is held back. With ``{``/``[``/``None``
  (JSON mode) only output that starts (after white space) with a JSON object or array can be a
  call, as in Ollama; any other first character makes the rest plain content.
- After the tag, white space, then a JSON object or array; content is withheld while it is parsed.
  An object is a call when its ``name`` is a known tool and its ``arguments`` (else ``parameters``)
  is an object, or a string holding one; an array's objects are calls one by one. Each call is
  emitted as soon as its JSON closes (an array's first call does not wait for the ``]``).
- Text that turns out not to be a call — a tag followed by something that is not JSON, invalid
  JSON, an unknown name, missing arguments, JSON cut off by the end of the output — is released
  as content, the tag included, and the search for the tag goes on after it (JSON mode: the rest
  is content). Nothing is lost or released twice.
- Once a call has been emitted, the response is a tool-call response: further JSON values are
  still parsed (``</tool_call>\\n<tool_call>\\n{…}`` gives a second call; so does a second
  ``[TOOL_CALLS] […]``), and everything else after the first call is dropped, as Ollama does
  (closing tags, white space, trailing chatter).

Pieces may cut anywhere (inside the tag, a string, an escape): every decision depends only on the
text, so any split of the output gives the same calls and the same concatenated content as feeding
it whole. Scanning is linear: JSON is tracked by a bracket/string-aware scanner that jumps between
special characters, and each completed object is decoded once.
"""

from __future__ import annotations

import enum
import random
import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from supervisor.templates.gotemplate import walk
from supervisor.templates.gotemplate_literals import GO_SPACE_CHARS
from supervisor.templates.gotemplate_nodes import (
    ActionNode,
    BranchNode,
    BreakNode,
    ContinueNode,
    FieldNode,
    IfNode,
    ListNode,
    Node,
    RangeNode,
    TemplateNode,
    TemplateSet,
    TextNode,
    VariableNode,
)

__all__ = ["ParsedCall", "ToolCallParser", "call_id", "tool_call_json", "tool_call_tag"]

JSON_TAGS = frozenset({"{", "["})
"""Tags meaning "the call's JSON starts right away": only leading JSON can be a call."""


# -- the tag, from the template ------------------------------------------------------------------


def _names(node: Node, field: str) -> bool:
    """Whether ``node`` (a pipeline) mentions ``field`` in a field or variable path."""
    return any(
        isinstance(n, (FieldNode, VariableNode)) and field in n.ident[1 if isinstance(n, VariableNode) else 0 :]
        for n, _ in walk(node)
    )


def _lead_text(nodes: Sequence[Node], in_calls: bool, out: list[str]) -> bool:
    """Append to ``out`` the literal text written before the first call's JSON; True once that
    JSON (a ``{``, or an action printing the call) has been reached."""
    for node in nodes:
        if isinstance(node, TextNode):
            brace = node.text.find("{")
            out.append(node.text if brace < 0 else node.text[:brace])
            if brace >= 0:
                return True
        elif isinstance(node, ActionNode):
            if node.pipe.decl:
                continue  # {{ $x := … }} prints nothing
            if in_calls or _names(node.pipe, "ToolCalls") or _names(node.pipe, "Function"):
                return True  # the call itself is being printed
            out.clear()  # other output ({{ .Content }}): the tag can only come after it
        elif isinstance(node, RangeNode):
            if _lead_text(node.body.nodes, in_calls or _names(node.pipe, "ToolCalls"), out):
                return True
        elif isinstance(node, BranchNode):  # if / with
            inner: list[str] = list(out)
            if _lead_text(node.body.nodes, in_calls, inner):
                out[:] = inner
                return True
            # A conditional that does not reach the JSON is decoration (a separator between
            # calls, content printed before them): its text is not what precedes the first call.
        elif isinstance(node, (TemplateNode, BreakNode, ContinueNode)):
            return True
        elif isinstance(node, ListNode):
            if _lead_text(node.nodes, in_calls, out):
                return True
    return False


def _tool_call_nodes(tset: TemplateSet) -> Iterator[BranchNode]:
    for node, _ in walk(tset.main.root):
        if isinstance(node, BranchNode) and _names(node.pipe, "ToolCalls"):
            yield node


def tool_call_tag(tset: TemplateSet) -> str | None:
    """What the model writes before its tool calls, per the template; ``None`` if it has none.

    The first ``if``/``range``/``with`` over ``ToolCalls`` whose body reaches the JSON of a call
    decides (else simply the first one). Its leading literal text, with CRLF as LF, white space
    trimmed and a trailing ``[`` (a JSON array's opener) removed, is the tag; ``{`` when nothing is
    left, ``[`` when only the array opener was.
    """
    first: str | None = None
    for node in _tool_call_nodes(tset):
        out: list[str] = []
        # Inside a range or with over the calls, dot is a call: whatever is printed is its JSON.
        reached = _lead_text(node.body.nodes, not isinstance(node, IfNode), out)
        text = "".join(out).replace("\r\n", "\n").strip(GO_SPACE_CHARS)
        array = text.endswith("[")
        if array:
            text = text[:-1].strip(GO_SPACE_CHARS)
        tag = text or ("[" if array else "{")
        if reached:
            return tag
        if first is None:
            first = tag
    return first


# -- calls on the wire ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """One tool call found in the output; ``index`` counts calls within the response from 0."""

    name: str
    arguments: dict[str, Any]  # key order as the model wrote it
    index: int


_ID_ALPHABET = string.ascii_lowercase + string.digits


def call_id(rng: random.Random | None = None) -> str:
    """Ollama's id for a call it parsed itself: ``call_`` and 8 random ``[a-z0-9]``."""
    choose = (rng or random).choice
    return "call_" + "".join(choose(_ID_ALPHABET) for _ in range(8))


def tool_call_json(call: ParsedCall, id: str) -> dict[str, Any]:  # "id": the wire field's name
    """Ollama's wire shape: ``{"id", "function": {"index", "name", "arguments"}}``."""
    return {"id": id, "function": {"index": call.index, "name": call.name, "arguments": call.arguments}}


def _as_call(text: str, tools: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    """The (name, arguments) of a JSON object's text, or None if it is not a call to a known tool."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if not isinstance(name, str) or name not in tools:
        return None
    for key in ("arguments", "parameters"):
        value = obj.get(key)
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
        if isinstance(value, dict):
            return name, value
    return None


# -- scanning JSON incrementally ------------------------------------------------------------------


class _Event(enum.Enum):
    MORE = enum.auto()  # the text ran out
    OPEN = enum.auto()  # a "{" at depth 1 or 2 was consumed
    CLOSE = enum.auto()  # a "}" brought the depth back to 1
    END = enum.auto()  # the outermost value closed
    MISMATCH = enum.auto()  # a closer that does not match: not JSON


_OUTSIDE = re.compile(r'[{}\[\]"]')
_INSIDE = re.compile(r'["\\]')
_JSON_START = re.compile(r"[{\[]")


class _Scanner:
    """Brackets and strings of one JSON value, fed piece by piece.

    It does not validate (the decoder does, once per object); it only finds where objects start
    and end, jumping from one special character to the next.
    """

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.in_string = False
        self.escape = False

    def advance(self, text: str, pos: int) -> tuple[int, _Event]:
        """Consume ``text`` from ``pos`` up to and including the next event's character."""
        end = len(text)
        while pos < end:
            if self.escape:
                self.escape = False
                pos += 1
            elif self.in_string:
                m = _INSIDE.search(text, pos)
                if m is None:
                    return end, _Event.MORE
                pos = m.end()
                if m.group() == "\\":
                    self.escape = True
                else:
                    self.in_string = False
            else:
                m = _OUTSIDE.search(text, pos)
                if m is None:
                    return end, _Event.MORE
                pos = m.end()
                char = m.group()
                if char == '"':
                    self.in_string = True
                elif char in "{[":
                    self.stack.append(char)
                    if char == "{" and len(self.stack) <= 2:
                        return pos, _Event.OPEN
                else:
                    if not self.stack or self.stack[-1] != ("{" if char == "}" else "["):
                        return pos, _Event.MISMATCH
                    self.stack.pop()
                    if not self.stack:
                        return pos, _Event.END
                    if char == "}" and len(self.stack) == 1:
                        return pos, _Event.CLOSE
        return pos, _Event.MORE


# -- the parser ----------------------------------------------------------------------------------


class _State(enum.Enum):
    SCAN = enum.auto()  # named tag: looking for it
    LEAD = enum.auto()  # JSON mode: nothing but white space so far
    AFTER_TAG = enum.auto()  # tag seen: white space before the JSON
    VALUE = enum.auto()  # inside a JSON value that may hold calls
    AFTER_CALL = enum.auto()  # a call was emitted: only further JSON values matter
    PASS = enum.auto()  # JSON mode, output did not start with JSON: all content


class ToolCallParser:
    """Streaming tool-call parser for one response (see the module docstring for the rules).

    ``tag`` is ``tool_call_tag``'s answer; ``tools`` the names of the tools in the request.
    ``feed`` returns the calls completed in this piece and the content releasable now;
    ``finish`` what the end of the output settles.
    """

    def __init__(self, tag: str | None, tools: Sequence[str]) -> None:
        self.tag = tag or "{"
        self.json_mode = self.tag in JSON_TAGS
        self.tools = frozenset(tools)
        self._state = _State.LEAD if self.json_mode else _State.SCAN
        self._held = ""  # SCAN: a possible partial tag
        self._region: list[str] = []  # text since the tag (or JSON start), released if no call
        self._object: list[str] | None = None  # the object being collected, when one is
        self._scanner = _Scanner()
        self._value_calls = 0  # calls emitted from the current JSON value
        self._count = 0  # calls emitted in the response
        if not self.tools:
            self._state = _State.PASS  # no tool can be called: nothing to look for

    @property
    def called(self) -> bool:
        """Whether a call has been emitted (later text is then dropped)."""
        return self._count > 0

    def feed(self, text: str) -> tuple[list[ParsedCall], str]:
        """Add the next piece of output; returns (calls completed now, content releasable now)."""
        calls: list[ParsedCall] = []
        content: list[str] = []
        buf = self._held + text
        self._held = ""
        pos = 0
        while pos < len(buf):
            state = self._state
            if state is _State.PASS:
                content.append(buf[pos:])
                break
            if state is _State.SCAN:
                at = buf.find(self.tag, pos)
                if at < 0:
                    keep = _partial_tag(buf, pos, self.tag)
                    content.append(buf[pos : len(buf) - keep])
                    self._held = buf[len(buf) - keep :]
                    break
                content.append(buf[pos:at])
                pos = at + len(self.tag)
                self._region = [self.tag]
                self._state = _State.AFTER_TAG
            elif state is _State.LEAD or state is _State.AFTER_TAG:
                start = pos
                while pos < len(buf) and buf[pos] in GO_SPACE_CHARS:
                    pos += 1
                (content if state is _State.LEAD else self._region).append(buf[start:pos])
                if pos == len(buf):
                    break
                if buf[pos] in "{[":
                    self._start_value()
                elif state is _State.LEAD:
                    self._state = _State.PASS
                else:
                    self._reject(content)  # the tag was just text
            elif state is _State.AFTER_CALL:
                m = _JSON_START.search(buf, pos)
                if m is None:
                    break  # dropped
                pos = m.start()
                self._start_value()
            else:  # VALUE
                pos = self._scan(buf, pos, calls, content)
        return calls, "".join(content)

    def finish(self) -> tuple[list[ParsedCall], str]:
        """The end of the output: a partial tag or unfinished JSON is content (dropped after a call)."""
        content: list[str] = []
        if self._state is _State.SCAN:
            content.append(self._held)
        elif self._state in (_State.AFTER_TAG, _State.VALUE):
            self._reject(content)
        self._held = ""
        self._region = []
        self._object = None
        self._state = _State.AFTER_CALL if self.called else _State.PASS
        return [], "".join(content)

    # -- internals --

    def _start_value(self) -> None:
        self._state = _State.VALUE
        self._scanner = _Scanner()
        self._object = None
        self._value_calls = 0

    def _reject(self, content: list[str]) -> None:
        """The region is not a call: content before any call, dropped after one."""
        if not self.called:
            content.extend(self._region)
        self._region = []
        self._object = None
        if self.called:
            self._state = _State.AFTER_CALL
        else:
            self._state = _State.PASS if self.json_mode else _State.SCAN

    def _scan(self, buf: str, pos: int, calls: list[ParsedCall], content: list[str]) -> int:
        """Advance through a JSON value; returns where processing stopped."""
        scanner = self._scanner
        new, event = scanner.advance(buf, pos)
        piece = buf[pos:new]
        self._region.append(piece)
        if self._object is not None:
            self._object.append(piece)
        top = scanner.stack[0] if scanner.stack else None
        if event is _Event.OPEN:
            depth = len(scanner.stack)
            if (depth == 1 and top == "{") or (depth == 2 and top == "["):
                self._object = ["{"]
        elif event is _Event.END and self._object is not None:  # a top-level object closed
            found = self._take_object()
            if found is None:
                self._reject(content)
            else:
                calls.append(self._emit(*found))
                self._after_value()
        elif event is _Event.END:  # a top-level array closed
            if self._value_calls:
                self._after_value()
            else:
                self._reject(content)
        elif event is _Event.CLOSE and top == "[" and self._object is not None:
            found = self._take_object()
            if found is not None:
                calls.append(self._emit(*found))
            elif not self.called:
                self._reject(content)  # an array whose first object is not a call
            # after a call, an array element that is not one is skipped
        elif event is _Event.MISMATCH:
            self._reject(content)
        return new

    def _take_object(self) -> tuple[str, dict[str, Any]] | None:
        assert self._object is not None
        text = "".join(self._object)
        self._object = None
        return _as_call(text, self.tools)

    def _emit(self, name: str, arguments: dict[str, Any]) -> ParsedCall:
        call = ParsedCall(name=name, arguments=arguments, index=self._count)
        self._count += 1
        self._value_calls += 1
        return call

    def _after_value(self) -> None:
        self._region = []
        self._object = None
        self._state = _State.AFTER_CALL


def _partial_tag(buf: str, pos: int, tag: str) -> int:
    """Length of the longest end of ``buf[pos:]`` that is the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(buf) - pos), 0, -1):
        if buf.endswith(tag[:size]):
            return size
    return 0
