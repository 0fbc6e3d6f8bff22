"""Evaluation of pipelines — Go's expressions — with Go's semantics and error texts.

``Evaluator`` holds what an execution carries (the template set, the functions, the variable
stack, the node being evaluated for error messages, the limits) and evaluates everything inside
``{{ }}``: commands, fields and map keys, methods and functions with their arguments converted to
Go parameter types, constants, variables, chains. ``goexec`` walks the tree on top of it.

Go's rules followed here and easy to get wrong: a nil interface (``None``) unwraps to *no value*
after every pipeline stage (``{{.Missing}}`` prints ``<no value>``) but stays nil when passed as an
argument (``{{print .Missing}}`` prints ``<nil>``); fields of no value are no value
(``missingkey=zero``) while fields of a nil interface are an error (``nil pointer evaluating
interface {}.X``); methods are found before fields; an untyped constant becomes ``int`` unless it
is written like a float; errors from a function are reported at the whole command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, NoReturn

from supervisor.templates.gofmt import OutputLimitExceeded, sprint
from supervisor.templates.gofuncs import GoFunc, ParamKind, builtin_funcs, call_function, go_func
from supervisor.templates.gotemplate_lex import go_quote
from supervisor.templates.gotemplate_nodes import (
    BoolNode,
    ChainNode,
    CommandNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    NilNode,
    Node,
    NumberNode,
    Operand,
    PipeNode,
    StringNode,
    TemplateSet,
    VariableNode,
)
from supervisor.templates.govalues import (
    NO_VALUE,
    Kind,
    find_method,
    is_exported,
    is_true,
    kind_of,
    struct_field,
    type_name,
)

__all__ = ["MISSING", "Evaluator", "TemplateExecError"]


class TemplateExecError(ValueError):
    """A failed execution; ``str()`` is Go's text. ``detail`` is the part after the context,
    ``template`` the name of the template executing, ``location`` Go's ``name:line:col``."""

    def __init__(self, message: str, *, detail: str, template: str, location: str = "") -> None:
        super().__init__(message)
        self.detail = detail
        self.template = template
        self.location = location


class _Missing:
    """No final value: the command is the first of its pipeline (Go's ``missingVal``)."""


MISSING: Final = _Missing()


def _is_hex_int(text: str) -> bool:
    return len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(c in text for c in "pP")


class Evaluator:
    """An execution's state and the evaluation of pipelines (see the module doc)."""

    def __init__(self, tset: TemplateSet, funcs: Mapping[str, GoFunc], max_output: int, max_steps: int) -> None:
        self.tset = tset
        self.builtins = builtin_funcs(max_output)
        self.funcs = funcs
        self.max_output = max_output
        self.max_steps = max_steps
        self.steps = 0
        self.out: list[str] = []
        self.size = 0
        self.name = tset.name
        self.node: Node | None = None
        self.vars: list[list[object]] = []
        self.depth = 0

    # -- errors and output -----------------------------------------------------------------------

    def errorf(self, detail: str) -> NoReturn:
        if self.node is None:
            raise TemplateExecError(f"template: {self.name}: {detail}", detail=detail, template=self.name)
        location, context = self.tset.error_context(self.node)
        message = f"template: {location}: executing {go_quote(self.name)} at <{context}>: {detail}"
        raise TemplateExecError(message, detail=detail, template=self.name, location=location)

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.max_output:
            self.errorf(f"output exceeds the limit of {self.max_output} characters")
        self.out.append(text)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            self.errorf(f"execution exceeds the limit of {self.max_steps} steps")

    # -- variables -------------------------------------------------------------------------------

    def var_value(self, name: str) -> object:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.errorf(f"undefined variable: {name}")

    def set_var(self, name: str, value: object) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.errorf(f"undefined variable: {name}")

    # -- pipelines ---------------------------------------------------------------------------------

    def eval_pipeline(self, dot: object, pipe: PipeNode) -> object:
        self.node = pipe
        value: object = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:  # a nil interface unwraps to no value at all
                value = NO_VALUE
        if value is MISSING:
            value = NO_VALUE
        for variable in pipe.decl:
            if pipe.is_assign:
                self.set_var(variable.ident[0], value)
            else:
                self.vars.append([variable.ident[0], value])
        return value

    def not_a_function(self, args: Sequence[Operand], final: object) -> None:
        if len(args) > 1 or final is not MISSING:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: object, cmd: CommandNode, final: object) -> object:
        self.tick()
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            self.errorf("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        self.errorf(f"can't evaluate command {go_quote(str(first))}")

    def ideal_constant(self, node: NumberNode) -> object:
        """An untyped constant passed as ``interface{}``: Go picks int unless the literal
        looks like a float (a ``.``, an exponent), complex when it is one."""
        self.node = node
        number, text = node.value, node.text
        if number.is_complex:
            return number.complex128
        if number.is_float and not _is_hex_int(text) and not text.startswith("'") and any(c in text for c in ".eEpP"):
            return number.float64
        if number.is_int:
            return number.int64
        if number.is_uint:
            self.errorf(f"{text} overflows int")
        return NO_VALUE

    def eval_field_node(self, dot: object, field: FieldNode, args: Sequence[Operand], final: object) -> object:
        self.node = field
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain(self, dot: object, chain: ChainNode, args: Sequence[Operand], final: object) -> object:
        self.node = chain
        if isinstance(chain.node, NilNode):
            self.errorf(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.field, args, final)

    def eval_variable(self, dot: object, variable: VariableNode, args: Sequence[Operand], final: object) -> object:
        self.node = variable
        value = self.var_value(variable.ident[0])
        if len(variable.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.ident[1:], args, final)

    def eval_field_chain(
        self, dot: object, receiver: object, node: Node, ident: Sequence[str], args: Sequence[Operand], final: object
    ) -> object:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, (), MISSING, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_field(
        self, dot: object, name: str, node: Node, args: Sequence[Operand], final: object, receiver: object
    ) -> object:
        if receiver is NO_VALUE:
            return NO_VALUE  # missingkey=zero: no value has no fields, quietly
        if receiver is None:
            self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        method = find_method(receiver, name)
        if method is not None:
            return self.eval_call(dot, go_func(method), False, node, name, args, final)
        has_args = len(args) > 1 or final is not MISSING
        kind = kind_of(receiver)
        if kind is Kind.STRUCT:
            found, value = struct_field(receiver, name)
            if found:
                if not is_exported(name):
                    self.errorf(f"{name} is an unexported field of struct type {type_name(receiver)}")
                if has_args:
                    self.errorf(f"{name} has arguments but cannot be invoked as function")
                return value
        elif kind is Kind.MAP:
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            assert isinstance(receiver, Mapping)
            return receiver.get(name)  # absent: the zero value of interface{}, nil
        self.errorf(f"can't evaluate field {name} in type {type_name(receiver)}")

    def eval_function(
        self, dot: object, ident: IdentifierNode, cmd: Node, args: Sequence[Operand], final: object
    ) -> object:
        self.node = ident
        fn = self.funcs.get(ident.name)
        is_builtin = fn is None
        if fn is None:
            fn = self.builtins.get(ident.name)
        if fn is None:
            self.errorf(f"{go_quote(ident.name)} is not a defined function")
        return self.eval_call(dot, fn, is_builtin, cmd, ident.name, args, final)

    def eval_call(
        self, dot: object, fn: GoFunc, is_builtin: bool, node: Node, name: str, args: Sequence[Operand], final: object
    ) -> object:
        args = args[1:]  # the zeroth is the function's own name
        num_in = len(args) + (final is not MISSING)
        fixed = len(fn.params)
        if fn.variadic is not None:
            if num_in < fixed:
                self.errorf(f"wrong number of args for {name}: want at least {fixed} got {len(args)}")
        elif num_in != fixed:
            self.errorf(f"wrong number of args for {name}: want {fixed} got {num_in}")
        if is_builtin and name in ("and", "or"):
            value: object = NO_VALUE
            for arg in args:
                value = self.eval_arg(dot, ParamKind.VALUE, arg)
                if is_true(value) == (name == "or"):
                    return value
            return value if final is MISSING else final
        argv = [self.eval_arg(dot, fn.params[i] if i < fixed else fn.variadic, arg) for i, arg in enumerate(args)]
        if final is not MISSING:
            last = fn.params[num_in - 1] if num_in - 1 < fixed else fn.variadic
            argv.append(self.validate(final, last))
        self.node = node
        try:
            if is_builtin and name == "call":
                result = call_function(str(args[0]) if args else sprint([final]), *argv)
            else:
                result = fn.fn(*argv)
        except TemplateExecError:
            raise
        except OutputLimitExceeded:
            self.errorf(f"error calling {name}: output exceeds the limit of {self.max_output} characters")
        except Exception as exc:  # GoFuncError, or a panic in a user function (Go recovers those)
            self.errorf(f"error calling {name}: {exc}")
        if isinstance(result, str) and len(result) > self.max_output:
            self.errorf(f"error calling {name}: output exceeds the limit of {self.max_output} characters")
        return result

    def eval_arg(self, dot: object, kind: ParamKind | None, node: Operand) -> object:
        """An argument converted to its parameter type (``None`` for a chain's receiver)."""
        self.node = node
        if isinstance(node, DotNode):
            return self.validate(dot, kind)
        if isinstance(node, NilNode):
            if kind is ParamKind.STRING:
                self.errorf("cannot assign nil to string")
            return None if kind is ParamKind.ANY else NO_VALUE
        if isinstance(node, FieldNode):
            return self.validate(self.eval_field_node(dot, node, (node,), MISSING), kind)
        if isinstance(node, VariableNode):
            return self.validate(self.eval_variable(dot, node, (), MISSING), kind)
        if isinstance(node, PipeNode):
            return self.validate(self.eval_pipeline(dot, node), kind)
        if isinstance(node, IdentifierNode):
            return self.validate(self.eval_function(dot, node, node, (), MISSING), kind)
        if isinstance(node, ChainNode):
            return self.validate(self.eval_chain(dot, node, (), MISSING), kind)
        if kind is ParamKind.STRING:
            if isinstance(node, StringNode):
                return node.text
            self.errorf(f"expected string; found {node}")
        if isinstance(node, BoolNode):
            return node.value
        if isinstance(node, NumberNode):
            return self.ideal_constant(node)
        if isinstance(node, StringNode):
            return node.text
        self.errorf(f"can't handle {node} for arg of type {kind.value if kind else 'nil'}")

    def validate(self, value: object, kind: ParamKind | None) -> object:
        """Go's ``validateType`` for the parameter kinds this engine knows."""
        if kind is ParamKind.ANY:
            return None if value is NO_VALUE else value
        if kind is ParamKind.STRING:
            if value is NO_VALUE:
                self.errorf("invalid value; expected string")
            if isinstance(value, str):
                return str(value)
            got = "interface {}" if value is None else type_name(value)
            self.errorf(f"wrong type for value; expected string; got {got}")
        return value
