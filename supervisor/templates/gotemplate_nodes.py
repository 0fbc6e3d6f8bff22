"""The parse tree of a Go ``text/template``: node types, trees, the set of named templates, the error.

The shapes mirror Go's ``text/template/parse`` because the executor (built on this tree) must give
Go's results and Go's error texts, and because Ollama inspects templates structurally (which fields
a template names, ``.Thinking`` inside a ``range .Messages``) the way it inspects Go's tree.

Nodes are frozen dataclasses with tuple children: a parsed template is cached and shared by every
request for a model, so nothing may mutate it; rewrites (Ollama appends ``{{ .Response }}``) build
new nodes with ``dataclasses.replace``. Every node has ``pos`` — Go's byte offset into the source,
used for ``name:line:col`` in execution errors — and the 1-based ``line`` it starts on.

``str(node)`` is Go's ``String()``: the node printed back as template source (text verbatim,
``{{if .X}}…{{else}}…{{end}}``, ``else if`` printed as a nested ``if``). Tests assert shapes with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

from supervisor.templates.gotemplate_lex import go_quote
from supervisor.templates.gotemplate_literals import NumberValue

__all__ = [
    "ActionNode",
    "BoolNode",
    "BranchNode",
    "BreakNode",
    "ChainNode",
    "CommandNode",
    "CommentNode",
    "ContinueNode",
    "DotNode",
    "FieldNode",
    "IdentifierNode",
    "IfNode",
    "ListNode",
    "NilNode",
    "Node",
    "NumberNode",
    "Operand",
    "PipeNode",
    "RangeNode",
    "StringNode",
    "TemplateNode",
    "TemplateSet",
    "TemplateSyntaxError",
    "TextNode",
    "Tree",
    "VariableNode",
    "WithNode",
]


class TemplateSyntaxError(ValueError):
    """A template that Go's ``text/template`` (or Ollama's check after it) refuses.

    ``str(error)`` is Go's text, e.g. ``template: :1: function "foo" not defined``; Ollama's create
    answers ``template error: `` followed by it. ``line`` is the line Go reports (0 when the error
    is not tied to one), ``offset`` the byte offset of the token the parser stopped at, and
    ``detail`` the message without the ``template: name:line:`` prefix.
    """

    def __init__(self, message: str, *, detail: str | None = None, line: int = 0, offset: int = 0) -> None:
        super().__init__(message)
        self.detail = message if detail is None else detail
        self.line = line
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Node:
    """Base of every node: where it starts in the source."""

    pos: int  # byte offset (Go's Pos)
    line: int

    def __str__(self) -> str:
        out: list[str] = []
        _write(self, out)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class TextNode(Node):
    """Literal text between actions, after trim markers removed their white space."""

    text: str


@dataclass(frozen=True, slots=True)
class CommentNode(Node):
    """``{{/* … */}}``; only in trees parsed with ``keep_comments`` (Go's ParseComments mode)."""

    text: str  # including the /* */ markers


@dataclass(frozen=True, slots=True)
class DotNode(Node):
    """``.`` — the cursor."""


@dataclass(frozen=True, slots=True)
class NilNode(Node):
    """The untyped ``nil`` (only valid as a function argument at execution)."""


@dataclass(frozen=True, slots=True)
class BoolNode(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class NumberNode(Node):
    """A numeric constant with every representation it has, as Go's ideal constants.

    ``1`` is int, uint and float at once; ``-1`` is int and float; ``1.5`` only float; ``'a'`` is
    97 in all three; ``2i`` only complex. The executor picks the one the context needs.
    """

    text: str
    value: NumberValue


@dataclass(frozen=True, slots=True)
class StringNode(Node):
    quoted: str  # as written, with quotes
    text: str  # after Go's unquoting


@dataclass(frozen=True, slots=True)
class FieldNode(Node):
    """``.A.B`` → ``ident == ("A", "B")``: a field or map key path from dot."""

    ident: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VariableNode(Node):
    """``$`` or ``$x`` with optional fields: ``$x.A`` → ``ident == ("$x", "A")``."""

    ident: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdentifierNode(Node):
    """A function name (checked against the known functions at parse time)."""

    name: str


@dataclass(frozen=True, slots=True)
class ChainNode(Node):
    """Fields applied to something that is not dot or a variable, e.g. ``(index .M 0).Content``."""

    node: Operand
    field: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommandNode(Node):
    """One stage of a pipeline: a function/method call or a single value, with its arguments."""

    args: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class PipeNode(Node):
    """``$x, $y := cmd | cmd``; ``is_assign`` for ``=`` (assignment) instead of ``:=``."""

    is_assign: bool
    decl: tuple[VariableNode, ...]
    cmds: tuple[CommandNode, ...]


@dataclass(frozen=True, slots=True)
class ActionNode(Node):
    """``{{pipeline}}``: evaluated and printed unless it declares or assigns variables."""

    pipe: PipeNode


@dataclass(frozen=True, slots=True)
class ListNode(Node):
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class BranchNode(Node):
    """Common shape of if/range/with; ``else_body`` holds the ``{{else}}`` part (or a chained
    ``{{else if}}``/``{{else with}}`` as a single nested node), ``None`` when there is none."""

    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None


@dataclass(frozen=True, slots=True)
class IfNode(BranchNode):
    pass


@dataclass(frozen=True, slots=True)
class RangeNode(BranchNode):
    pass


@dataclass(frozen=True, slots=True)
class WithNode(BranchNode):
    pass


@dataclass(frozen=True, slots=True)
class TemplateNode(Node):
    """``{{template "name" pipeline}}`` (also what ``{{block}}`` leaves in place)."""

    name: str
    pipe: PipeNode | None


@dataclass(frozen=True, slots=True)
class BreakNode(Node):
    pass


@dataclass(frozen=True, slots=True)
class ContinueNode(Node):
    pass


Operand = Union[
    FieldNode,
    VariableNode,
    IdentifierNode,
    ChainNode,
    DotNode,
    NilNode,
    BoolNode,
    NumberNode,
    StringNode,
    PipeNode,
]


@dataclass(frozen=True, slots=True)
class Tree:
    """One named template."""

    name: str
    root: ListNode


@dataclass(frozen=True, slots=True)
class TemplateSet:
    """The result of parsing one source: the main template and every ``define``/``block``.

    ``trees`` always contains ``name`` (the main template). Names are looked up at execution by
    ``{{template}}``; a missing one is an execution error, as in Go.
    """

    name: str
    source: str
    trees: Mapping[str, Tree]

    @property
    def main(self) -> Tree:
        return self.trees[self.name]

    def error_context(self, node: Node) -> tuple[str, str]:
        """Go's ``ErrorContext``: (``name:line:col``, the node's source form) for messages.

        The column is a byte count from the start of the line, as in Go.
        """
        before = self.source.encode("utf-8", "surrogatepass")[: node.pos]
        newline = before.rfind(b"\n")
        col = node.pos if newline < 0 else node.pos - newline - 1
        line = 1 + before.count(b"\n")
        return f"{self.name}:{line}:{col}", str(node)


# -- Go's String() -------------------------------------------------------------------------------


def _write(node: Node, out: list[str]) -> None:
    if isinstance(node, TextNode):
        out.append(node.text)
    elif isinstance(node, ListNode):
        for child in node.nodes:
            _write(child, out)
    elif isinstance(node, ActionNode):
        out.append("{{")
        _write(node.pipe, out)
        out.append("}}")
    elif isinstance(node, PipeNode):
        if node.decl:
            out.append(", ".join(str(v) for v in node.decl))
            out.append(" = " if node.is_assign else " := ")
        for i, cmd in enumerate(node.cmds):
            if i:
                out.append(" | ")
            _write(cmd, out)
    elif isinstance(node, CommandNode):
        for i, arg in enumerate(node.args):
            if i:
                out.append(" ")
            if isinstance(arg, PipeNode):
                out.append("(")
                _write(arg, out)
                out.append(")")
            else:
                _write(arg, out)
    elif isinstance(node, BranchNode):
        keyword = "if" if isinstance(node, IfNode) else "range" if isinstance(node, RangeNode) else "with"
        out.append("{{" + keyword + " ")
        _write(node.pipe, out)
        out.append("}}")
        _write(node.body, out)
        if node.else_body is not None:
            out.append("{{else}}")
            _write(node.else_body, out)
        out.append("{{end}}")
    elif isinstance(node, TemplateNode):
        out.append("{{template " + go_quote(node.name))
        if node.pipe is not None:
            out.append(" ")
            _write(node.pipe, out)
        out.append("}}")
    elif isinstance(node, FieldNode):
        out.append("".join("." + part for part in node.ident))
    elif isinstance(node, VariableNode):
        out.append(".".join(node.ident))
    elif isinstance(node, ChainNode):
        if isinstance(node.node, PipeNode):
            out.append("(")
            _write(node.node, out)
            out.append(")")
        else:
            _write(node.node, out)
        out.append("".join("." + part for part in node.field))
    elif isinstance(node, IdentifierNode):
        out.append(node.name)
    elif isinstance(node, NumberNode):
        out.append(node.text)
    elif isinstance(node, StringNode):
        out.append(node.quoted)
    elif isinstance(node, BoolNode):
        out.append("true" if node.value else "false")
    elif isinstance(node, DotNode):
        out.append(".")
    elif isinstance(node, NilNode):
        out.append("nil")
    elif isinstance(node, CommentNode):
        out.append("{{" + node.text + "}}")
    elif isinstance(node, BreakNode):
        out.append("{{break}}")
    elif isinstance(node, ContinueNode):
        out.append("{{continue}}")
    else:  # pragma: no cover - every node type is listed above
        raise TypeError(f"unknown node {type(node).__name__}")
