"""Executes a parsed Go ``text/template`` with Go's semantics and Go's error texts.

The walk follows Go's ``text/template/exec.go`` decision by decision, because templates written
for Ollama depend on its corners: ``missingkey=zero`` (Ollama's option; a missing key of a
``map[string]any`` is a nil interface, which prints ``<no value>`` and is false), a nil interface
turning into *no value* between pipeline stages, ``and``/``or`` returning the deciding operand,
comparisons that refuse ``int`` against ``float64``, variables that live until the ``{{end}}`` of
the block that declared them, ``{{template}}`` calls that see only their argument.

Errors raise ``TemplateExecError`` whose text is Go's:
``template: NAME:LINE:COL: executing "NAME" at <NODE>: DETAIL`` (``NAME`` is ``""`` for
Ollama's templates; ``COL`` is the byte column of the node). This module walks the statements;
``goeval`` evaluates pipelines (and holds the execution's state); how values map to Go is in
``govalues``; printing is ``gofmt``; the builtins are ``gofuncs``.

Guards against hostile templates (not in Go, which trusts its templates): ``{{template}}`` nests
at most ``MAX_TEMPLATE_DEPTH`` deep (Go allows 100000, Python's stack far less), the output and
every string a function builds are limited to ``max_output`` characters, and the walk to
``max_steps`` nodes and loop iterations — so no input can hang the server or exhaust its memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from supervisor.templates.goeval import Evaluator, TemplateExecError
from supervisor.templates.gofmt import OutputLimitExceeded, sprint
from supervisor.templates.gofuncs import go_func
from supervisor.templates.gotemplate_lex import go_quote
from supervisor.templates.gotemplate_nodes import (
    ActionNode,
    BreakNode,
    CommentNode,
    ContinueNode,
    IfNode,
    ListNode,
    Node,
    RangeNode,
    TemplateNode,
    TemplateSet,
    TextNode,
    WithNode,
)
from supervisor.templates.govalues import NO_VALUE, Kind, is_true, kind_of, range_items, type_name

__all__ = ["DEFAULT_MAX_OUTPUT", "DEFAULT_MAX_STEPS", "MAX_TEMPLATE_DEPTH", "TemplateExecError", "execute"]

MAX_TEMPLATE_DEPTH: Final = 100
DEFAULT_MAX_OUTPUT: Final = 16 * 1024 * 1024
DEFAULT_MAX_STEPS: Final = 10_000_000


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Walker(Evaluator):
    """Executes the tree: text, actions, control structures, template calls."""

    def walk(self, dot: object, node: Node) -> None:
        self.tick()
        self.node = node
        if isinstance(node, TextNode):
            self.write(node.text)
        elif isinstance(node, ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:  # declarations print nothing, and their variables persist
                self.print_value(node, value)
        elif isinstance(node, (IfNode, WithNode)):
            self.walk_if_or_with(dot, node)
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        elif not isinstance(node, CommentNode):
            self.errorf(f"unknown node: {node}")

    def print_value(self, node: Node, value: object) -> None:
        self.node = node
        if value is NO_VALUE or value is None:
            self.write("<no value>")
            return
        if kind_of(value) is Kind.FUNC:
            self.errorf(f"can't print {node} of type {type_name(value)}")
        try:
            text = sprint([value], self.max_output - self.size)
        except OutputLimitExceeded:
            self.errorf(f"output exceeds the limit of {self.max_output} characters")
        self.write(text)

    def walk_if_or_with(self, dot: object, node: IfNode | WithNode) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if is_true(value):
                self.walk(value if isinstance(node, WithNode) else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: object, node: RangeNode) -> None:
        self.node = node
        outer = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            mark = len(self.vars)
            decl, assign = node.pipe.decl, node.pipe.is_assign

            def one(index: object, elem: object) -> None:
                self.tick()
                if decl:
                    if assign:
                        self.set_var(decl[0].ident[0], index if len(decl) > 1 else elem)
                    else:
                        self.vars[-1][1] = elem
                if len(decl) > 1:
                    if assign:
                        self.set_var(decl[1].ident[0], elem)
                    else:
                        self.vars[-2][1] = index
                try:
                    self.walk(elem, node.body)
                except _Continue:
                    pass
                finally:
                    del self.vars[mark:]

            if not self.range_over(value, node, one) and node.else_body is not None:
                self.walk(dot, node.else_body)
        except _Break:
            pass
        finally:
            del self.vars[outer:]

    def range_over(self, value: object, node: RangeNode, one: Callable[[object, object], None]) -> bool:
        """Runs the body for each element; False when there were none (the ``{{else}}`` runs)."""
        kind = kind_of(value)
        if isinstance(value, (list, tuple, bytes, bytearray)):
            for i, elem in enumerate(value):
                one(i, elem)
            return len(value) > 0
        if isinstance(value, Mapping):
            items = range_items(value)
            for key, elem in items:
                one(key, elem)
            return bool(items)
        if kind is Kind.INT and isinstance(value, int):
            if len(node.pipe.decl) > 1:
                self.node = node
                self.errorf(f"can't use {sprint([value])} to iterate over more than one variable")
            for i in range(value):
                one(NO_VALUE, i)
            return value > 0
        if kind is Kind.INVALID:
            return False
        self.node = node
        self.errorf(f"range can't iterate over {sprint([value])}")

    def walk_template(self, dot: object, node: TemplateNode) -> None:
        self.node = node
        tree = self.tset.trees.get(node.name)
        if tree is None:
            self.errorf(f"template {go_quote(node.name)} not defined")
        if self.depth >= MAX_TEMPLATE_DEPTH:
            self.errorf(f"exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})")
        new_dot = NO_VALUE if node.pipe is None else self.eval_pipeline(dot, node.pipe)
        saved = self.name, self.vars
        self.name, self.vars = node.name, [["$", new_dot]]
        self.depth += 1
        try:
            self.walk(new_dot, tree.root)
        except RecursionError:  # deep nesting in each of many calls: Python's stack ran out first
            self.node = node
            self.errorf(f"exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})")
        finally:
            self.name, self.vars = saved
            self.depth -= 1


def execute(
    tset: TemplateSet,
    data: object,
    *,
    funcs: Mapping[str, Callable[..., object]] | None = None,
    name: str | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> str:
    """Execute template ``name`` (default: the main one) of ``tset`` with ``data`` as dot.

    ``funcs`` are the functions besides Go's builtins (default: Ollama's ``json``,
    ``currentDate``, ``yesterdayDate``, ``toTypeScriptType``); a ``GoFunc`` keeps its declared
    parameter types, any other callable takes ``interface{}`` arguments. Raises
    ``TemplateExecError``.
    """
    if funcs is None:
        from supervisor.templates.ollama_values import OLLAMA_FUNCTIONS

        funcs = OLLAMA_FUNCTIONS
    target = tset.name if name is None else name
    tree = tset.trees.get(target)
    if tree is None:
        detail = f"no template {go_quote(target)} associated with template {go_quote(tset.name)}"
        raise TemplateExecError(f"template: {detail}", detail=detail, template=target)
    state = _Walker(tset, {k: go_func(f) for k, f in funcs.items()}, max_output, max_steps)
    state.name = target
    dot = NO_VALUE if data is None else data
    state.vars.append(["$", dot])
    try:
        state.walk(dot, tree.root)
    except RecursionError:  # the caller's own stack was already deep
        state.errorf(f"exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})")
    except (_Break, _Continue):  # pragma: no cover - the parser allows them only inside range
        state.errorf("break or continue outside range")
    return "".join(state.out)
