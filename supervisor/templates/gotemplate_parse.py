"""Parser for Go ``text/template``: tokens → a ``TemplateSet`` of trees, or Go's syntax error.

Why it follows Go's parser step by step (a recursive-descent parser with Go's three-token
look-ahead, per-template parser state, and the same checks at the same moments): the error that
Ollama returns for a bad ``TEMPLATE`` is whatever Go's parser reports first, prefixed with the line
of the *last token it had read*. Reproducing the text and the line means reading exactly as many
tokens as Go does before each check. The grammar, as Go documents it:

    template  := (text | comment | action | {{define "name"}} template {{end}})*
    action    := {{pipeline}}
               | {{if p}} T ({{else}} T | {{else if p}} …)? {{end}}
               | {{range p}} T ({{else}} T)? {{end}}
               | {{with p}} T ({{else}} T | {{else with p}} …)? {{end}}
               | {{template "name" p?}} | {{block "name" p}} T {{end}} | {{break}} | {{continue}}
    pipeline  := ($v (, $w)? (:= | =))? command (| command)*
    command   := operand (space operand)*
    operand   := term (.Field)*
    term      := literal | nil | . | .Field | $var | function | ( pipeline )

Checks made while parsing, as Go does: functions must be known, variables declared (``$`` always
is; a declaration lasts until the ``{{end}}`` of the enclosing control, ``define`` and ``block``
bodies start afresh), ``{{break}}``/``{{continue}}`` only inside a ``range`` body, only the first
command of a pipeline may be a constant, and a name may be defined only once with a non-empty body.

Nesting of control structures and parentheses shares one depth budget (``MAX_DEPTH``), reported
with Go's words (``max control structure depth exceeded`` / ``max expression depth exceeded``).
Go allows 10000; ours is lower so that a pathological template is refused before Python's own
recursion limit — no real chat template nests more than a handful of levels.
"""

from __future__ import annotations

import itertools
from typing import NoReturn

from supervisor.templates.gotemplate_lex import Lexer, Token, TokenType, go_quote
from supervisor.templates.gotemplate_literals import (
    GO_SPACE_CHARS,
    LiteralError,
    number_from_char,
    parse_number,
    unquote,
)
from supervisor.templates.gotemplate_nodes import (
    ActionNode,
    BoolNode,
    BreakNode,
    ChainNode,
    CommandNode,
    CommentNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    Operand,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TemplateSyntaxError,
    TextNode,
    Tree,
    VariableNode,
    WithNode,
)

__all__ = ["MAX_DEPTH", "parse_trees"]

MAX_DEPTH = 100
_MAX_PIPELINE_CMDS = 100_000  # Go's limit, "pipeline too long"

T = TokenType
_OPERAND_START = frozenset(
    {
        T.BOOL,
        T.CHAR_CONSTANT,
        T.COMPLEX,
        T.DOT,
        T.FIELD,
        T.IDENTIFIER,
        T.NUMBER,
        T.NIL,
        T.RAW_STRING,
        T.STRING,
        T.VARIABLE,
        T.LEFT_PAREN,
    }
)
_CONSTANTS = (BoolNode, DotNode, NilNode, NumberNode, StringNode)
_NO_TOKEN = Token(T.EOF, 0, "", 0)


class _Closer:
    """An action that closes an item list: ``{{else}}`` or ``{{end}}``; never part of a tree."""

    __slots__ = ("pos", "line")

    def __init__(self, pos: int, line: int) -> None:
        self.pos, self.line = pos, line


class _Else(_Closer):
    """``{{else}}``, or the ``else`` of ``{{else if …}}`` / ``{{else with …}}``."""

    __slots__ = ()

    def __str__(self) -> str:
        return "{{else}}"


class _End(_Closer):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


class _TreeState:
    """What Go keeps per ``parse.Tree`` while parsing: a ``define`` or ``block`` body is parsed by
    a fresh tree that shares the lexer, so it has its own look-ahead buffer (whose newest token
    gives error lines), its own variables, range depth and action line."""

    __slots__ = ("tokens", "peek_count", "vars", "range_depth", "action_line")

    def __init__(self) -> None:
        self.tokens = [_NO_TOKEN, _NO_TOKEN, _NO_TOKEN]
        self.peek_count = 0
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0


def _is_empty(node: Node) -> bool:
    """Go's ``IsEmptyTree``: only white space and comments (a redefinition may replace it)."""
    if isinstance(node, ListNode):
        return all(_is_empty(child) for child in node.nodes)
    if isinstance(node, TextNode):
        return not node.text.strip(GO_SPACE_CHARS)
    return isinstance(node, CommentNode)


def _byte_offsets(source: str) -> list[int]:
    """Byte offset of every character index (plus the end), for non-ASCII sources."""
    sizes = (1 if c < "\x80" else 2 if c < "\u0800" else 3 if c < "\U00010000" else 4 for c in source)
    return [0, *itertools.accumulate(sizes)]


class _Parser:
    def __init__(self, source: str, name: str, funcs: frozenset[str], keep_comments: bool) -> None:
        self._name = name
        self._funcs = funcs
        self._lex = Lexer(
            source,
            break_ok="break" not in funcs,
            continue_ok="continue" not in funcs,
            emit_comments=keep_comments,
        )
        self._offsets = None if source.isascii() else _byte_offsets(source)
        self._t = _TreeState()
        self._depth = 0
        self.trees: dict[str, Tree] = {}

    # -- token buffer (Go's next/backup/peek with three tokens of look-ahead) --------------------

    def _next(self) -> Token:
        t = self._t
        if t.peek_count > 0:
            t.peek_count -= 1
            return t.tokens[t.peek_count]
        tok = t.tokens[0] = self._lex.next_token()
        return tok

    def _backup(self) -> None:
        self._t.peek_count += 1

    def _backup2(self, t1: Token) -> None:
        self._t.tokens[1] = t1
        self._t.peek_count = 2

    def _backup3(self, t2: Token, t1: Token) -> None:
        self._t.tokens[1] = t1
        self._t.tokens[2] = t2
        self._t.peek_count = 3

    def _peek(self) -> Token:
        t = self._t
        if t.peek_count > 0:
            return t.tokens[t.peek_count - 1]
        t.peek_count = 1
        t.tokens[0] = self._lex.next_token()
        return t.tokens[0]

    def _next_non_space(self) -> Token:
        t = self._t
        while True:  # _next, inlined: the parser's hottest path
            if t.peek_count > 0:
                t.peek_count -= 1
                tok = t.tokens[t.peek_count]
            else:
                tok = t.tokens[0] = self._lex.next_token()
            if tok.typ is not T.SPACE:
                return tok

    def _peek_non_space(self) -> Token:
        tok = self._next_non_space()
        self._t.peek_count += 1
        return tok

    # -- errors ----------------------------------------------------------------------------------

    def _pos(self, tok: Token) -> int:
        return tok.pos if self._offsets is None else self._offsets[tok.pos]

    def _errorf(self, message: str) -> NoReturn:
        newest = self._t.tokens[0]
        raise TemplateSyntaxError(
            f"template: {self._name}:{newest.line}: {message}",
            detail=message,
            line=newest.line,
            offset=self._pos(newest),
        )

    def _unexpected(self, tok: Token, context: str) -> NoReturn:
        if tok.typ is T.ERROR:
            extra = ""
            started = self._t.action_line
            if started != 0 and started != tok.line:
                extra = f" in action started at {self._name}:{started}"
                if tok.val.endswith(" action"):
                    extra = extra[len(" in action") :]  # not "unclosed action in action …"
            self._errorf(tok.val + extra)
        self._errorf(f"unexpected {tok.describe()} in {context}")

    def _expect(self, typ: TokenType, context: str) -> Token:
        tok = self._next_non_space()
        if tok.typ is not typ:
            self._unexpected(tok, context)
        return tok

    def _enter_depth(self, message: str) -> None:
        if self._depth >= MAX_DEPTH:
            self._errorf(message)
        self._depth += 1

    # -- trees -----------------------------------------------------------------------------------

    def parse(self) -> dict[str, Tree]:
        first = self._peek()
        nodes: list[Node] = []
        while self._peek().typ is not T.EOF:
            if self._peek().typ is T.LEFT_DELIM:
                delim = self._next()
                if self._next_non_space().typ is T.DEFINE:
                    self._parse_definition()
                    continue
                self._backup2(delim)
            node = self._text_or_action()
            if isinstance(node, _Closer):
                self._errorf(f"unexpected {node}")
            nodes.append(node)
        self._add(self._name, ListNode(self._pos(first), first.line, tuple(nodes)))
        return self.trees

    def _add(self, name: str, root: ListNode) -> None:
        existing = self.trees.get(name)
        if existing is None or _is_empty(existing.root):
            self.trees[name] = Tree(name, root)
        elif not _is_empty(root):
            self._errorf(f"template: multiple definition of template {go_quote(name)}")

    def _parse_definition(self) -> None:
        context = "define clause"
        outer, self._t = self._t, _TreeState()
        tok = self._next_non_space()
        if tok.typ is not T.STRING and tok.typ is not T.RAW_STRING:
            self._unexpected(tok, context)
        name = self._unquote(tok)
        self._expect(T.RIGHT_DELIM, context)
        body, end = self._item_list()
        if not isinstance(end, _End):
            self._errorf(f"unexpected {end} in {context}")
        self._add(name, body)
        self._t = outer

    def _item_list(self) -> tuple[ListNode, _Closer]:
        """Nodes up to the ``{{end}}`` or ``{{else}}`` that closes them (returned separately)."""
        first = self._peek_non_space()
        nodes: list[Node] = []
        while self._peek_non_space().typ is not T.EOF:
            node = self._text_or_action()
            if isinstance(node, _Closer):
                return ListNode(self._pos(first), first.line, tuple(nodes)), node
            nodes.append(node)
        self._errorf("unexpected EOF")

    def _text_or_action(self) -> Node | _Closer:
        tok = self._next_non_space()
        if tok.typ is T.TEXT:
            return TextNode(self._pos(tok), tok.line, tok.val)
        if tok.typ is T.LEFT_DELIM:
            self._t.action_line = tok.line
            try:
                return self._action()
            finally:
                self._t.action_line = 0
        if tok.typ is T.COMMENT:
            return CommentNode(self._pos(tok), tok.line, tok.val)
        self._unexpected(tok, "input")

    # -- actions ---------------------------------------------------------------------------------

    def _action(self) -> Node | _Closer:
        tok = self._next_non_space()
        typ = tok.typ
        if typ is T.IF:
            return IfNode(*self._parse_control("if"))
        if typ is T.RANGE:
            return RangeNode(*self._parse_control("range"))
        if typ is T.WITH:
            return WithNode(*self._parse_control("with"))
        if typ is T.END:
            end = self._expect(T.RIGHT_DELIM, "end")
            return _End(end.pos, end.line)
        if typ is T.ELSE:
            return self._else_control()
        if typ is T.TEMPLATE:
            return self._template_control()
        if typ is T.BLOCK:
            return self._block_control()
        if typ is T.BREAK or typ is T.CONTINUE:
            word = "break" if typ is T.BREAK else "continue"
            after = self._next_non_space()
            if after.typ is not T.RIGHT_DELIM:
                self._unexpected(after, "{{" + word + "}}")
            if self._t.range_depth == 0:
                self._errorf("{{" + word + "}} outside {{range}}")
            cls = BreakNode if typ is T.BREAK else ContinueNode
            return cls(self._pos(tok), tok.line)
        self._backup()
        first = self._peek()
        return ActionNode(self._pos(first), first.line, self._pipeline("command", T.RIGHT_DELIM))

    def _parse_control(self, context: str) -> tuple[int, int, PipeNode, ListNode, ListNode | None]:
        """``if``/``range``/``with`` after the keyword; variables declared here end with it."""
        self._enter_depth("max control structure depth exceeded")
        declared = len(self._t.vars)
        pipe = self._pipeline(context, T.RIGHT_DELIM)
        if context == "range":
            self._t.range_depth += 1
        body, closer = self._item_list()
        if context == "range":
            self._t.range_depth -= 1  # {{break}} is not allowed in range's {{else}}
        else_body: ListNode | None = None
        if not isinstance(closer, _End):
            chained = self._peek().typ
            if (context == "if" and chained is T.IF) or (context == "with" and chained is T.WITH):
                # {{else if p}} … {{end}} is {{else}}{{if p}} … {{end}}{{end}}: one {{end}} closes both.
                self._next()
                nested = IfNode if chained is T.IF else WithNode
                pos = closer.pos if self._offsets is None else self._offsets[closer.pos]
                else_body = ListNode(pos, closer.line, (nested(*self._parse_control(context)),))
            else:
                else_body, end = self._item_list()
                if not isinstance(end, _End):
                    self._errorf(f"expected end; found {end}")
        del self._t.vars[declared:]
        self._depth -= 1
        return pipe.pos, pipe.line, pipe, body, else_body

    def _else_control(self) -> _Else:
        peek = self._peek_non_space()
        if peek.typ is T.IF or peek.typ is T.WITH:
            return _Else(peek.pos, peek.line)  # the if/with stays pending for _parse_control
        tok = self._expect(T.RIGHT_DELIM, "else")
        return _Else(tok.pos, tok.line)

    def _template_control(self) -> TemplateNode:
        tok = self._next_non_space()
        name = self._template_name(tok, "template clause")
        pipe = None
        if self._next_non_space().typ is not T.RIGHT_DELIM:
            self._backup()
            pipe = self._pipeline("template clause", T.RIGHT_DELIM)
        return TemplateNode(self._pos(tok), tok.line, name, pipe)

    def _block_control(self) -> TemplateNode:
        """``{{block "name" p}}body{{end}}`` defines ``name`` and leaves ``{{template "name" p}}``."""
        context = "block clause"
        tok = self._next_non_space()
        name = self._template_name(tok, context)
        pipe = self._pipeline(context, T.RIGHT_DELIM)
        self._enter_depth("max control structure depth exceeded")
        outer, self._t = self._t, _TreeState()
        body, end = self._item_list()
        if isinstance(end, _End):
            self._add(name, body)
        self._t = outer
        if not isinstance(end, _End):
            self._errorf(f"unexpected {end} in {context}")  # Go reports this one from the outer tree
        self._depth -= 1
        return TemplateNode(self._pos(tok), tok.line, name, pipe)

    def _template_name(self, tok: Token, context: str) -> str:
        if tok.typ is not T.STRING and tok.typ is not T.RAW_STRING:
            self._unexpected(tok, context)
        return self._unquote(tok)

    def _unquote(self, tok: Token) -> str:
        try:
            return unquote(tok.val)
        except LiteralError as e:
            self._errorf(str(e))

    # -- pipelines -------------------------------------------------------------------------------

    def _pipeline(self, context: str, end: TokenType) -> PipeNode:
        start = self._peek_non_space()
        decl: list[VariableNode] = []
        is_assign = False
        while (var := self._peek_non_space()).typ is T.VARIABLE:
            self._next()
            # "$x foo" is an argument, "$x := foo" a declaration: look past the space to decide,
            # and push back the variable and its space when it is an argument.
            after = self._peek()
            following = self._peek_non_space()
            if following.typ is T.ASSIGN or following.typ is T.DECLARE:
                is_assign = following.typ is T.ASSIGN
                self._next_non_space()
                decl.append(VariableNode(self._pos(var), var.line, (var.val,)))
                self._t.vars.append(var.val)
                break
            if following.typ is T.CHAR and following.val == ",":
                self._next_non_space()
                decl.append(VariableNode(self._pos(var), var.line, (var.val,)))
                self._t.vars.append(var.val)
                if context == "range" and len(decl) < 2:
                    if self._peek_non_space().typ in (T.VARIABLE, T.RIGHT_DELIM, T.RIGHT_PAREN):
                        continue  # the second variable of "range $i, $v :="
                    self._errorf("range can only initialize variables")
                self._errorf(f"too many declarations in {context}")
            if after.typ is T.SPACE:
                self._backup3(var, after)
            else:
                self._backup2(var)
            break
        cmds: list[CommandNode] = []
        while True:
            tok = self._next_non_space()
            if tok.typ is end:
                self._check_pipeline(cmds, context)
                return PipeNode(self._pos(start), start.line, is_assign, tuple(decl), tuple(cmds))
            if tok.typ not in _OPERAND_START:
                self._unexpected(tok, context)
            self._backup()
            cmds.append(self._command())
            if len(cmds) > _MAX_PIPELINE_CMDS:
                self._errorf("pipeline too long")

    def _check_pipeline(self, cmds: list[CommandNode], context: str) -> None:
        if not cmds:
            self._errorf(f"missing value for {context}")
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], _CONSTANTS):
                self._errorf(f"non executable command in pipeline stage {stage}")

    def _command(self) -> CommandNode:
        start = self._peek_non_space()
        args: list[Operand] = []
        while True:
            self._peek_non_space()
            operand = self._operand()
            if operand is not None:
                args.append(operand)
            tok = self._next()
            if tok.typ is T.SPACE:
                continue
            if tok.typ is T.RIGHT_DELIM or tok.typ is T.RIGHT_PAREN:
                self._backup()
            elif tok.typ is not T.PIPE:
                self._unexpected(tok, "operand")
            break
        if not args:
            self._errorf("empty command")
        return CommandNode(self._pos(start), start.line, tuple(args))

    def _operand(self) -> Operand | None:
        node = self._term()
        if node is None or self._peek().typ is not T.FIELD:
            return node
        first = self._peek()
        fields: list[str] = []
        while self._peek().typ is T.FIELD:
            fields.append(self._next().val[1:])
        # Like Go, fields after a field or a variable extend it (and the node takes the position
        # of the first extra field); after anything else they form a chain.
        pos = self._pos(first)
        if isinstance(node, FieldNode):
            return FieldNode(pos, first.line, node.ident + tuple(fields))
        if isinstance(node, VariableNode):
            return VariableNode(pos, first.line, node.ident + tuple(fields))
        if isinstance(node, _CONSTANTS):
            self._errorf(f"unexpected . after term {go_quote(str(node))}")
        return ChainNode(pos, first.line, node, tuple(fields))

    def _term(self) -> Operand | None:
        tok = self._next_non_space()
        typ = tok.typ
        if typ is T.IDENTIFIER:
            if tok.val not in self._funcs:
                self._errorf(f"function {go_quote(tok.val)} not defined")
            return IdentifierNode(self._pos(tok), tok.line, tok.val)
        if typ is T.FIELD:
            return FieldNode(self._pos(tok), tok.line, (tok.val[1:],))
        if typ is T.VARIABLE:
            if tok.val not in self._t.vars:
                self._errorf(f"undefined variable {go_quote(tok.val)}")
            return VariableNode(self._pos(tok), tok.line, (tok.val,))
        if typ is T.DOT:
            return DotNode(self._pos(tok), tok.line)
        if typ is T.STRING or typ is T.RAW_STRING:
            return StringNode(self._pos(tok), tok.line, tok.val, self._unquote(tok))
        if typ is T.NUMBER or typ is T.CHAR_CONSTANT or typ is T.COMPLEX:
            try:
                if typ is T.CHAR_CONSTANT:
                    value = number_from_char(tok.val)
                else:
                    value = parse_number(tok.val, is_complex_literal=typ is T.COMPLEX)
            except LiteralError as e:
                self._errorf(str(e))
            return NumberNode(self._pos(tok), tok.line, tok.val, value)
        if typ is T.BOOL:
            return BoolNode(self._pos(tok), tok.line, tok.val == "true")
        if typ is T.NIL:
            return NilNode(self._pos(tok), tok.line)
        if typ is T.LEFT_PAREN:
            self._enter_depth("max expression depth exceeded")
            pipe = self._pipeline("parenthesized pipeline", T.RIGHT_PAREN)
            self._depth -= 1
            return pipe
        self._backup()
        return None


def parse_trees(source: str, *, name: str, funcs: frozenset[str], keep_comments: bool) -> dict[str, Tree]:
    """Every template defined by ``source``, the main one under ``name``; ``funcs`` must already
    include Go's built-ins. Raises ``TemplateSyntaxError`` with Go's message."""
    parser = _Parser(source, name, funcs, keep_comments)
    try:
        return parser.parse()
    except RecursionError:  # only if the caller's own stack is already deep; MAX_DEPTH bounds ours
        raise TemplateSyntaxError(
            f"template: {name}:0: max expression depth exceeded", detail="max expression depth exceeded"
        ) from None
