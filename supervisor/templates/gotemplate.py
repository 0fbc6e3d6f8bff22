"""Go ``text/template`` for Ollama-style ``TEMPLATE``s: parsing, and the questions asked of a tree.

Parsing is Go's (see ``gotemplate_parse``): ``parse_template`` returns a ``TemplateSet`` or raises
``TemplateSyntaxError`` whose text is Go's, e.g. ``template: :1: unexpected "}" in operand``.

Ollama parses every template with ``template.New("")`` — the empty name, hence the ``:1:`` with
nothing before the colon — plus its extra functions, then walks the tree for the names it mentions
(``Vars``), which refuses ``{{template "x"}}`` without an argument (``undefined template
specified``), and appends ``{{ .Response }}`` when the template names neither ``.Messages`` nor
``.Response``. ``parse_ollama_template`` does all of that; ``/api/create`` reports its error as
``template error: <str(error)>``.

The queries are pure walks over the tree:

- ``ollama_vars`` — Ollama's ``Vars()``: every field/variable name anywhere, lower-cased, sorted.
  Capabilities come from it (``tools`` → tools, ``suffix`` → insert), and the choice between the
  messages and the legacy prompt/response execution modes.
- ``referenced_fields`` — the field paths as written (``.Tools`` → ``("Tools",)``,
  ``$.Messages`` → ``("$", "Messages")``), for finer questions.
- ``fields_in_range_over`` / ``field_in_range_over`` — Ollama's thinking-tag inference looks for
  ``.Thinking`` whose nearest enclosing ``range`` iterates over ``.Messages``.
- ``infer_thinking_tags`` — the tags around it (``<think>``, ``</think>``); Ollama gives a model the
  ``thinking`` capability only when both are found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from supervisor.templates.gotemplate_literals import GO_SPACE_CHARS
from supervisor.templates.gotemplate_nodes import (
    ActionNode,
    BranchNode,
    ChainNode,
    CommandNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    RangeNode,
    TemplateNode,
    TemplateSet,
    TemplateSyntaxError,
    TextNode,
    VariableNode,
)
from supervisor.templates.gotemplate_parse import parse_trees

__all__ = [
    "GO_BUILTIN_FUNCS",
    "OLLAMA_FUNCS",
    "field_in_range_over",
    "fields_in_range_over",
    "infer_thinking_tags",
    "ollama_vars",
    "parse_ollama_template",
    "parse_template",
    "referenced_fields",
    "walk",
]

GO_BUILTIN_FUNCS = frozenset(
    "and or not len index slice eq ne lt le gt ge print printf println html js urlquery call".split()
)
"""Functions every Go template knows (text/template's builtins)."""

OLLAMA_FUNCS = frozenset({"json", "currentDate", "yesterdayDate", "toTypeScriptType"})
"""The functions Ollama adds to its templates."""


def parse_template(
    source: str,
    *,
    name: str = "",
    funcs: frozenset[str] = OLLAMA_FUNCS,
    keep_comments: bool = False,
) -> TemplateSet:
    """Parse ``source`` as Go's ``template.New(name).Funcs(funcs).Parse(source)`` would.

    ``funcs`` are the names defined besides Go's built-ins (which are always known); a name
    ``break``/``continue`` among them turns that keyword into a function, as in Go.
    ``keep_comments`` keeps ``{{/* */}}`` as ``CommentNode`` (Go's ParseComments mode; Ollama
    does not use it, so comments are dropped by default).
    """
    trees = parse_trees(source, name=name, funcs=GO_BUILTIN_FUNCS | funcs, keep_comments=keep_comments)
    return TemplateSet(name=name, source=source, trees=trees)


def parse_ollama_template(source: str, *, funcs: frozenset[str] = OLLAMA_FUNCS) -> TemplateSet:
    """What Ollama's ``template.Parse`` accepts, and the tree it executes.

    Raises ``TemplateSyntaxError``: Go's parse errors, or ``undefined template specified``.
    """
    tset = parse_template(source, funcs=funcs)
    names = ollama_vars(tset)
    if "messages" in names or "response" in names:
        return tset
    # Ollama's touch-up: legacy templates always end by printing the response.
    response = ActionNode(
        0, 0, PipeNode(0, 0, False, (), (CommandNode(0, 0, (FieldNode(0, 0, ("Response",)),)),))
    )
    main = tset.main
    root = dataclasses.replace(main.root, nodes=(*main.root.nodes, response))
    trees = {**tset.trees, tset.name: dataclasses.replace(main, root=root)}
    return dataclasses.replace(tset, trees=trees)


def _identifiers(node: Node, out: set[str]) -> None:
    """Ollama's ``Identifiers``: the names of fields and variables, in the places it looks."""
    if isinstance(node, ListNode):
        for child in node.nodes:
            _identifiers(child, out)
    elif isinstance(node, TemplateNode):
        if node.pipe is None:
            raise TemplateSyntaxError("undefined template specified")
        _identifiers(node.pipe, out)
    elif isinstance(node, ActionNode):
        _identifiers(node.pipe, out)
    elif isinstance(node, BranchNode):
        _identifiers(node.pipe, out)
        _identifiers(node.body, out)
        if node.else_body is not None:
            _identifiers(node.else_body, out)
    elif isinstance(node, PipeNode):
        for cmd in node.cmds:
            for arg in cmd.args:
                _identifiers(arg, out)
    elif isinstance(node, (FieldNode, VariableNode)):
        out.update(part.lower() for part in node.ident)


def ollama_vars(tset: TemplateSet) -> list[str]:
    """Ollama's ``Template.Vars()``: names in every template of the set, lower-cased and sorted.

    ``{{ range $m := .Messages }}{{ $m.Content }}`` gives ``["$m", "content", "messages"]``.
    Raises ``TemplateSyntaxError("undefined template specified")`` for a ``{{template "x"}}``
    without a pipeline, which makes Ollama refuse the template.
    """
    names: set[str] = set()
    for tree in tset.trees.values():
        _identifiers(tree.root, names)
    return sorted(names)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, ListNode):
        yield from node.nodes
    elif isinstance(node, ActionNode):
        yield node.pipe
    elif isinstance(node, BranchNode):
        yield node.pipe
        yield node.body
        if node.else_body is not None:
            yield node.else_body
    elif isinstance(node, TemplateNode):
        if node.pipe is not None:
            yield node.pipe
    elif isinstance(node, PipeNode):
        yield from node.decl
        yield from node.cmds
    elif isinstance(node, CommandNode):
        yield from node.args
    elif isinstance(node, ChainNode):
        yield node.node


def walk(node: Node, ancestors: tuple[Node, ...] = ()) -> Iterator[tuple[Node, tuple[Node, ...]]]:
    """Every node under ``node`` (itself first), depth-first in source order, with its ancestors
    (outermost first). Iterative, so deep trees cannot exhaust the stack."""
    stack: list[tuple[Node, tuple[Node, ...]]] = [(node, ancestors)]
    while stack:
        current, above = stack.pop()
        yield current, above
        inner = (*above, current)
        stack.extend((child, inner) for child in reversed(tuple(_children(current))))


def _roots(target: TemplateSet | Node) -> list[Node]:
    return [tree.root for tree in target.trees.values()] if isinstance(target, TemplateSet) else [target]


def referenced_fields(target: TemplateSet | Node) -> frozenset[tuple[str, ...]]:
    """Field paths as written, relative to dot where they appear: ``.Tools`` → ``("Tools",)``,
    ``.Function.Name`` → ``("Function", "Name")``; variable paths keep their variable:
    ``$.Messages`` → ``("$", "Messages")``, ``$m.Content`` → ``("$m", "Content")``."""
    found: set[tuple[str, ...]] = set()
    for root in _roots(target):
        for node, _ in walk(root):
            if isinstance(node, FieldNode) or (isinstance(node, VariableNode) and len(node.ident) > 1):
                found.add(node.ident)
    return frozenset(found)


def _is_field(node: Node, ancestors: tuple[Node, ...], name: str) -> bool:
    """``.<name>…`` where Ollama's tree visitor sees it (it does not look inside chains)."""
    return (
        isinstance(node, FieldNode)
        and node.ident[0] == name
        and not any(isinstance(a, ChainNode) for a in ancestors)
    )


def _names_field(pipe: PipeNode, field: str) -> bool:
    return any(_is_field(node, above, field) for node, above in walk(pipe))


def fields_in_range_over(
    tset: TemplateSet, field: str = "Thinking", collection: str = "Messages"
) -> list[tuple[FieldNode, tuple[Node, ...]]]:
    """Each ``.<field>…`` in the main template whose nearest enclosing ``range`` has a pipeline
    naming ``.<collection>``, with its ancestors (the tag inference then looks at the nearest
    enclosing list's first and last text nodes). This is the test Ollama applies."""
    found: list[tuple[FieldNode, tuple[Node, ...]]] = []
    for node, ancestors in walk(tset.main.root):
        if not _is_field(node, ancestors, field):
            continue
        assert isinstance(node, FieldNode)
        ranges = [a for a in ancestors if isinstance(a, RangeNode)]
        if ranges and _names_field(ranges[-1].pipe, collection):
            found.append((node, ancestors))
    return found


def field_in_range_over(tset: TemplateSet, field: str = "Thinking", collection: str = "Messages") -> bool:
    """Whether ``.Thinking`` (by default) is used inside a ``range`` over ``.Messages``."""
    return bool(fields_in_range_over(tset, field, collection))


def infer_thinking_tags(tset: TemplateSet) -> tuple[str, str]:
    """Ollama's ``InferTags``: for each ``.Thinking`` inside a ``range`` over ``.Messages`` (in
    source order, later ones winning), the nearest enclosing list's first and last nodes, when they
    are text, give the opening and closing tags (white space trimmed). ``("", "")`` when none.

    ``{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}`` gives ``("<think>", "</think>")``.
    """
    opening = closing = ""
    for _, ancestors in fields_in_range_over(tset, "Thinking", "Messages"):
        nearest = next(a for a in reversed(ancestors) if isinstance(a, ListNode))
        first, last = nearest.nodes[0], nearest.nodes[-1]
        if isinstance(first, TextNode):
            opening = first.text.strip(GO_SPACE_CHARS)
        if isinstance(last, TextNode):
            closing = last.text.strip(GO_SPACE_CHARS)
    return opening, closing
