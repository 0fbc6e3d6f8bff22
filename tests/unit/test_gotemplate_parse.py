"""Go text/template parsing: tree shapes, trimming, literals, Go's error texts, Ollama's checks."""

from __future__ import annotations

import random
import re

import pytest

from supervisor.templates import TemplateSyntaxError, gotemplate_lex
from supervisor.templates.gotemplate import (
    field_in_range_over,
    fields_in_range_over,
    infer_thinking_tags,
    ollama_vars,
    parse_ollama_template,
    parse_template,
    referenced_fields,
    walk,
)
from supervisor.templates.gotemplate_nodes import (
    ActionNode,
    BreakNode,
    ChainNode,
    CommentNode,
    ContinueNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
)

CHATML_TOOLS = """{{- if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>
{{ end }}{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

LLAMA3 = """{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}
{{- range $i, $m := .Messages }}<|start_header_id|>{{ $m.Role }}<|end_header_id|>

{{ $m.Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

"""


def canonical(source: str) -> str:
    return str(parse_template(source).main.root)


# -- valid templates: shapes as Go's String() prints them ----------------------------------------

VALID = [
    # (source, Go's String() of the main tree)
    ("", ""),
    ("some text", "some text"),
    (" \t\n", " \t\n"),
    ("{{/*\n\n\n*/}}", ""),
    ("{{.X}}", "{{.X}}"),
    ("{{printf}}", "{{printf}}"),
    ("{{$}}", "{{$}}"),
    ("{{with $x := 3}}{{$x 23}}{{end}}", "{{with $x := 3}}{{$x 23}}{{end}}"),
    ("{{$.I}}", "{{$.I}}"),
    ("{{printf `%d` 23}}", "{{printf `%d` 23}}"),
    ("{{.X|.Y}}", "{{.X | .Y}}"),
    ("{{$x := .X|.Y}}", "{{$x := .X | .Y}}"),
    ("{{.X (.Y .Z) (.A | .B .C) (.E)}}", "{{.X (.Y .Z) (.A | .B .C) (.E)}}"),
    ("{{(.Y .Z).Field}}", "{{(.Y .Z).Field}}"),
    ("{{if .X}}hello{{end}}", "{{if .X}}hello{{end}}"),
    ("{{if .X}}true{{else}}false{{end}}", "{{if .X}}true{{else}}false{{end}}"),
    ("{{if .X}}true{{else if .Y}}false{{end}}", "{{if .X}}true{{else}}{{if .Y}}false{{end}}{{end}}"),
    (
        "+{{if .X}}X{{else if .Y}}Y{{else if .Z}}Z{{end}}+",
        "+{{if .X}}X{{else}}{{if .Y}}Y{{else}}{{if .Z}}Z{{end}}{{end}}{{end}}+",
    ),
    ("{{if .X}}a{{else if .Y}}b{{else}}c{{end}}", "{{if .X}}a{{else}}{{if .Y}}b{{else}}c{{end}}{{end}}"),
    ("{{range .X}}hello{{end}}", "{{range .X}}hello{{end}}"),
    ("{{range .X.Y.Z}}hello{{end}}", "{{range .X.Y.Z}}hello{{end}}"),
    ("{{range .X}}hello{{range .Y}}goodbye{{end}}{{end}}", "{{range .X}}hello{{range .Y}}goodbye{{end}}{{end}}"),
    ("{{range .X}}true{{else}}false{{end}}", "{{range .X}}true{{else}}false{{end}}"),
    ("{{range .X|.M}}true{{else}}false{{end}}", "{{range .X | .M}}true{{else}}false{{end}}"),
    ("{{range $x := .SI}}{{.}}{{end}}", "{{range $x := .SI}}{{.}}{{end}}"),
    ("{{range $x, $y := .SI}}{{.}}{{end}}", "{{range $x, $y := .SI}}{{.}}{{end}}"),
    ("{{range .SI}}{{.}}{{break}}{{end}}", "{{range .SI}}{{.}}{{break}}{{end}}"),
    ("{{range .SI}}{{.}}{{ continue }}{{end}}", "{{range .SI}}{{.}}{{continue}}{{end}}"),
    ("{{range .SI}}{{if .}}{{break}}{{end}}{{end}}", "{{range .SI}}{{if .}}{{break}}{{end}}{{end}}"),
    (
        "{{range .SI 1 -3.2i true false 'a' nil}}{{end}}",
        "{{range .SI 1 -3.2i true false 'a' nil}}{{end}}",
    ),
    ("{{template `x`}}", '{{template "x"}}'),
    ("{{template `x` .Y}}", '{{template "x" .Y}}'),
    ("{{with .X}}hello{{else}}goodbye{{end}}", "{{with .X}}hello{{else}}goodbye{{end}}"),
    (
        "{{with .X}}X{{else with .Y}}Y{{else with .Z}}Z{{end}}",
        "{{with .X}}X{{else}}{{with .Y}}Y{{else}}{{with .Z}}Z{{end}}{{end}}{{end}}",
    ),
    ('{{block "foo" .}}hello{{end}}', '{{template "foo" .}}'),
    ("{{ $x \n := \n 1 \n }}", "{{$x := 1}}"),
    ('{{\n"x"\n|\nprintf\n}}', '{{"x" | printf}}'),
    ("{{$x:=.}}{{$x +2}}", "{{$x := .}}{{$x +2}}"),
    ("{{range $x := 0}}{{$x}}{{end}}", "{{range $x := 0}}{{$x}}{{end}}"),
    ("{{range $x = 0}}{{$x}}{{end}}", "{{range $x = 0}}{{$x}}{{end}}"),
    ("{{$x := 1}}{{if .}}{{$x = 2}}{{end}}{{$x}}", "{{$x := 1}}{{if .}}{{$x = 2}}{{end}}{{$x}}"),
    ("{{ if and .X (not .Y) }}x{{ end }}", "{{if and .X (not .Y)}}x{{end}}"),
    ("{{ (( 1 )) }}", "{{((1))}}"),
    ("{{ .A.B.C }}", "{{.A.B.C}}"),
    ("{{ (index .M 0).Content }}", "{{(index .M 0).Content}}"),
    ('{{ json .Tools }}{{ currentDate }}{{ toTypeScriptType . }}', "{{json .Tools}}{{currentDate}}{{toTypeScriptType .}}"),
    ("{{ . }}}", "{{.}}}"),  # "}" after the action is text
    ("{{.A |}}", "{{.A}}"),  # Go accepts a trailing pipe
    ("a{{/* c */}}b", "ab"),
    ("{{ printf \"%s\" \"\\u00e9\\x41\\101\\t\" }}", '{{printf "%s" "\\u00e9\\x41\\101\\t"}}'),
]


@pytest.mark.parametrize(("source", "expected"), VALID)
def test_valid_templates_parse_to_gos_tree(source: str, expected: str) -> None:
    """Valid templates parse, and print back as Go's String() prints them."""
    assert canonical(source) == expected


@pytest.mark.parametrize(("source", "expected"), VALID)
def test_printed_tree_reparses_to_itself(source: str, expected: str) -> None:
    """The printed form of a parsed tree is itself a template with the same tree."""
    assert canonical(expected) == expected


TRIMS = [
    ("x \r\n\t{{- 3}}", ["x", "{{3}}"]),
    ("{{3 -}}\n\n\ty", ["{{3}}", "y"]),
    ("x \r\n\t{{- 3 -}}\n\n\ty", ["x", "{{3}}", "y"]),
    ("x\n{{-  3   -}}\ny", ["x", "{{3}}", "y"]),
    ("x \r\n\t{{- /* hi */}}", ["x"]),
    ("{{/* hi */ -}}\n\n\ty", ["y"]),
    ("x \r\n\t{{- /* */ -}}\n\n\ty", ["x", "y"]),
    ("{{-\n/*\nhello\n*/\n-}}", []),
    ("  {{-3}}  ", ["  ", "{{-3}}", "  "]),  # "{{-3}}" is minus three, not a trim marker
    ("a \n{{- if .X -}}\n b \n{{- end -}}\n c", ["a", "{{if .X}}b{{end}}", "c"]),
    ("\n\n{{- /* only a comment */ -}}\n\n", []),
]


@pytest.mark.parametrize(("source", "nodes"), TRIMS)
def test_trim_markers_remove_adjacent_white_space(source: str, nodes: list[str]) -> None:
    """`{{- ` and ` -}}` remove spaces, tabs, CRs and newlines next to them, and nothing else."""
    root = parse_template(source).main.root
    assert [str(node) for node in root.nodes] == nodes


def test_chatml_template_with_tools_has_expected_structure() -> None:
    """A ChatML/Qwen template with tools parses into an if/else around a range over messages."""
    tset = parse_template(CHATML_TOOLS)
    top = tset.main.root.nodes
    assert len(top) == 3  # {{if .Messages}}…{{else}}…{{end}}, {{.Response}}, {{if .Response}}…{{end}}
    outer = top[0]
    assert isinstance(outer, IfNode) and str(outer.pipe) == ".Messages"
    assert outer.else_body is not None
    ranges = [n for n in outer.body.nodes if isinstance(n, RangeNode)]
    assert len(ranges) == 1
    (loop,) = ranges
    assert [v.ident for v in loop.pipe.decl] == [("$i",), ("$_",)]
    assert str(loop.pipe) == "$i, $_ := .Messages"
    last = loop.body.nodes[0]
    assert isinstance(last, ActionNode) and str(last.pipe) == "$last := eq (len (slice $.Messages $i)) 1"
    # "{{- $last := … -}}" then "{{- if …": no white space survives between them.
    assert isinstance(loop.body.nodes[1], IfNode)
    assert isinstance(top[1], ActionNode) and str(top[1]) == "{{.Response}}"


def test_chatml_else_if_chain_is_nested_ifs() -> None:
    """`{{else if}}` chains become an IfNode inside the else list, one level per `else if`."""
    tset = parse_template(CHATML_TOOLS)
    outer = tset.main.root.nodes[0]
    assert isinstance(outer, IfNode)
    loop = next(n for n in outer.body.nodes if isinstance(n, RangeNode))
    by_role = loop.body.nodes[1]
    assert isinstance(by_role, IfNode) and str(by_role.pipe) == 'eq .Role "user"'
    assert by_role.else_body is not None
    assistant = by_role.else_body.nodes[0]
    assert isinstance(assistant, IfNode) and str(assistant.pipe) == 'eq .Role "assistant"'
    assert assistant.else_body is not None
    tool = assistant.else_body.nodes[0]
    assert isinstance(tool, IfNode) and str(tool.pipe) == 'eq .Role "tool"' and tool.else_body is None


def test_llama3_template_trims_and_declares_range_variables() -> None:
    """Llama 3 style: `{{- if .System }}` trims, `range $i, $m := .Messages` declares two variables."""
    root = parse_template(LLAMA3).main.root
    first = root.nodes[0]
    assert isinstance(first, IfNode) and str(first.pipe) == ".System"
    assert isinstance(first.body.nodes[0], TextNode)
    assert first.body.nodes[0].text == "<|start_header_id|>system<|end_header_id|>\n\n"
    assert str(first.body.nodes[-1]) == "<|eot_id|>"  # the "\n" before "{{- end" is gone
    loop = root.nodes[1]
    assert isinstance(loop, RangeNode)
    assert [v.ident[0] for v in loop.pipe.decl] == ["$i", "$m"] and not loop.pipe.is_assign
    role = loop.body.nodes[1]
    assert isinstance(role, ActionNode)
    arg = role.pipe.cmds[0].args[0]
    assert isinstance(arg, VariableNode) and arg.ident == ("$m", "Role")
    assert isinstance(root.nodes[2], TextNode)
    assert root.nodes[2].text == "<|start_header_id|>assistant<|end_header_id|>\n\n"


def test_define_and_template_collect_named_trees() -> None:
    """`{{define}}` adds a named tree; `{{template "t" .}}` refers to it by name."""
    tset = parse_template('{{define "t"}}T{{.}}{{end}}\n{{template "t" .}}')
    assert set(tset.trees) == {"", "t"}
    assert str(tset.trees["t"].root) == "T{{.}}"
    call = tset.main.root.nodes[1]
    assert isinstance(call, TemplateNode) and call.name == "t" and str(call.pipe) == "."


def test_block_defines_a_template_and_calls_it() -> None:
    """`{{block "x" .}}body{{end}}` defines x and leaves `{{template "x" .}}` in place."""
    tset = parse_template('a{{ block "inner" . }}bar{{.}}baz{{ end }}b')
    assert str(tset.main.root) == 'a{{template "inner" .}}b'
    assert str(tset.trees["inner"].root) == "bar{{.}}baz"


def test_empty_definition_may_be_redefined() -> None:
    """A definition with only white space may be replaced; the non-empty one wins either way."""
    tset = parse_template('{{define "a"}} {{end}}{{define "a"}}x{{end}}{{define "a"}}\n{{end}}')
    assert str(tset.trees["a"].root) == "x"


def test_main_template_is_the_definition_when_named_like_it() -> None:
    """A `define` of the main template's name supplies its body when the main text is empty."""
    tset = parse_template('{{define "m"}}body{{end}}\n', name="m")
    assert str(tset.main.root) == "body"


def test_comments_are_kept_only_on_request() -> None:
    """Comments are dropped, unless keep_comments (Go's ParseComments) asks for CommentNodes."""
    source = "x \r\n\t{{- /* hi */ -}}\n\n\ty"
    assert [type(n) for n in parse_template(source).main.root.nodes] == [TextNode, TextNode]
    kept = parse_template(source, keep_comments=True).main.root.nodes
    assert [str(n) for n in kept] == ["x", "{{/* hi */}}", "y"]
    assert isinstance(kept[1], CommentNode) and kept[1].text == "/* hi */"


def test_operand_kinds_are_typed_nodes() -> None:
    """Fields, variables, functions, chains, strings and numbers become their own node types."""
    tset = parse_template('{{ $x := 1 }}{{ printf "%v" .A.B $x.C (len .D).E `raw` 0x10 nil true . }}')
    action = tset.main.root.nodes[1]
    assert isinstance(action, ActionNode)
    args = action.pipe.cmds[0].args
    assert isinstance(args[0], IdentifierNode) and args[0].name == "printf"
    assert isinstance(args[1], StringNode) and args[1].text == "%v" and args[1].quoted == '"%v"'
    assert isinstance(args[2], FieldNode) and args[2].ident == ("A", "B")
    assert isinstance(args[3], VariableNode) and args[3].ident == ("$x", "C")
    assert isinstance(args[4], ChainNode) and isinstance(args[4].node, PipeNode) and args[4].field == ("E",)
    assert isinstance(args[5], StringNode) and args[5].text == "raw"
    assert isinstance(args[6], NumberNode) and args[6].value.int64 == 16
    assert [type(a).__name__ for a in args[7:]] == ["NilNode", "BoolNode", "DotNode"]


def test_break_and_continue_nodes_inside_range() -> None:
    """`{{break}}` and `{{continue}}` inside a range body become Break/Continue nodes."""
    loop = parse_template("{{range .}}{{break}}{{continue}}{{end}}").main.root.nodes[0]
    assert isinstance(loop, RangeNode)
    assert [type(n) for n in loop.body.nodes] == [BreakNode, ContinueNode]


def test_break_is_a_function_when_one_is_defined() -> None:
    """With a function named break, `{{break 20}}` is a call, as in Go."""
    tset = parse_template("{{range .X}}{{break 20}}{{end}}", funcs=frozenset({"break"}))
    assert str(tset.main.root) == "{{range .X}}{{break 20}}{{end}}"
    with pytest.raises(TemplateSyntaxError, match="unexpected \"20\" in {{break}}"):
        parse_template("{{range .X}}{{break 20}}{{end}}")


def test_with_else_with_chain_is_nested_withs() -> None:
    """`{{else with}}` chains nest like `{{else if}}`."""
    node = parse_template("{{with .X}}X{{else with .Y}}Y{{end}}").main.root.nodes[0]
    assert isinstance(node, WithNode) and node.else_body is not None
    assert isinstance(node.else_body.nodes[0], WithNode)


# -- literals -------------------------------------------------------------------------------------

NUMBERS = [
    # text, is_int, is_uint, is_float, is_complex, int64, uint64, float64, complex128
    ("0", True, True, True, False, 0, 0, 0.0, 0j),
    ("-0", True, True, True, False, 0, 0, 0.0, 0j),
    ("73", True, True, True, False, 73, 73, 73.0, 0j),
    ("7_3", True, True, True, False, 73, 73, 73.0, 0j),
    ("0b10_010_01", True, True, True, False, 73, 73, 73.0, 0j),
    ("073", True, True, True, False, 59, 59, 59.0, 0j),
    ("0o73", True, True, True, False, 59, 59, 59.0, 0j),
    ("0x73", True, True, True, False, 115, 115, 115.0, 0j),
    ("0x7_3", True, True, True, False, 115, 115, 115.0, 0j),
    ("-73", True, False, True, False, -73, 0, -73.0, 0j),
    ("+73", True, False, True, False, 73, 0, 73.0, 0j),
    ("1e9", True, True, True, False, 10**9, 10**9, 1e9, 0j),
    ("-1.2", False, False, True, False, 0, 0, -1.2, 0j),
    ("1e19", False, True, True, False, 0, 10**19, 1e19, 0j),
    ("1e1_9", False, True, True, False, 0, 10**19, 1e19, 0j),
    ("-1e19", False, False, True, False, 0, 0, -1e19, 0j),
    ("0x_1p4", True, True, True, False, 16, 16, 16.0, 0j),
    ("0x_1p-4", False, False, True, False, 0, 0, 1 / 16, 0j),
    ("4i", False, False, False, True, 0, 0, 0.0, 4j),
    ("-1.2+4.2i", False, False, False, True, 0, 0, 0.0, complex(-1.2, 4.2)),
    ("073i", False, False, False, True, 0, 0, 0.0, 73j),
    ("0i", True, True, True, True, 0, 0, 0.0, 0j),
    ("-12+0i", True, False, True, True, -12, 0, -12.0, complex(-12, 0)),
    ("0xdeadbeef", True, True, True, False, 0xDEADBEEF, 0xDEADBEEF, float(0xDEADBEEF), 0j),
    ("18446744073709551615", False, True, True, False, 0, 2**64 - 1, float(2**64 - 1), 0j),
    ("-9223372036854775808", True, False, True, False, -(2**63), 0, -(2.0**63), 0j),
    ("'a'", True, True, True, False, 97, 97, 97.0, 0j),
    ("'\\n'", True, True, True, False, 10, 10, 10.0, 0j),
    ("'\\''", True, True, True, False, 39, 39, 39.0, 0j),
    ("'\\xFF'", True, True, True, False, 255, 255, 255.0, 0j),
    ("'パ'", True, True, True, False, 0x30D1, 0x30D1, float(0x30D1), 0j),
    ("'\\U000030d1'", True, True, True, False, 0x30D1, 0x30D1, float(0x30D1), 0j),
]


@pytest.mark.parametrize(("text", "is_int", "is_uint", "is_float", "is_complex", "i", "u", "f", "c"), NUMBERS)
def test_number_constants_have_gos_representations(
    text: str, is_int: bool, is_uint: bool, is_float: bool, is_complex: bool, i: int, u: int, f: float, c: complex
) -> None:
    """Number constants are int/uint/float/complex exactly when Go's ideal constants are."""
    action = parse_template("{{print " + text + "}}").main.root.nodes[0]
    assert isinstance(action, ActionNode)
    node = action.pipe.cmds[0].args[1]
    assert isinstance(node, NumberNode) and node.text == text
    assert (node.value.is_int, node.value.is_uint, node.value.is_float, node.value.is_complex) == (is_int, is_uint, is_float, is_complex)
    assert (node.value.int64, node.value.uint64, node.value.float64, node.value.complex128) == (i, u, f, c)


STRINGS = [
    ('"plain"', "plain"),
    ('"\\a\\b\\f\\n\\r\\t\\v\\\\\\""', "\a\b\f\n\r\t\v\\\""),
    ('"\\x41\\101\\u00e9\\U0001F600"', "AAé😀"),
    ('"é\\xc3\\xa9"', "éé"),  # \x escapes are bytes, here forming UTF-8
    ('"\\xff"', "\ufffd"),  # an invalid byte reaches the prompt as U+FFFD, as via Go's JSON
    ("`a\\n\r\nb`", "a\\n\nb"),  # raw: no escapes, carriage returns dropped
]


@pytest.mark.parametrize(("literal", "value"), STRINGS)
def test_string_constants_are_unquoted_as_go_does(literal: str, value: str) -> None:
    """String constants follow Go's escapes; raw strings keep backslashes and drop CRs."""
    action = parse_template("{{print " + literal + "}}").main.root.nodes[0]
    assert isinstance(action, ActionNode)
    node = action.pipe.cmds[0].args[1]
    assert isinstance(node, StringNode) and node.text == value and node.quoted == literal


def test_nodes_record_byte_offsets_and_lines() -> None:
    """Nodes carry Go's byte offset (multi-byte characters count as their UTF-8 length) and line."""
    tset = parse_template("é\n{{ .X }}\n{{ if $.Y }}z{{ end }}")
    text, action, _, branch = tset.main.root.nodes
    assert isinstance(text, TextNode) and (text.pos, text.line) == (0, 1)
    assert isinstance(action, ActionNode) and (action.pos, action.line) == (6, 2)  # "é" is 2 bytes
    assert isinstance(branch, IfNode) and (branch.pos, branch.line) == (18, 3)
    assert tset.error_context(action) == (":2:3", "{{.X}}")


# -- invalid templates: Go's exact messages -------------------------------------------------------

INVALID = [
    # lexer errors
    ("hello{{range", "template: :1: unclosed action"),
    ("{{ .Bad", "template: :1: unclosed action"),
    ("line1\n{{", "template: :2: unclosed action"),
    ('line1\n{{"x"\n"y"\n', "template: :4: unclosed action started at :2"),
    ("{{\n\n\n\n\n", "template: :6: unclosed action started at :1"),
    ("{{ $v := `\n` }} {{", "template: :2: unclosed action"),
    ("{{(.X 1 2 3", "template: :1: unclosed action"),
    ("{{/*}}", "template: :1: unclosed comment"),
    ("{{/*\nhello\n}}", "template: :1: unclosed comment"),
    ("{{if .}}\n{{/* x", "template: :2: unclosed comment in action started at :1"),
    ("{{/* c */ x}}", "template: :1: comment ends before closing delimiter"),
    ("{{.X (1 2 3}}", "template: :1: unclosed left paren"),
    ("{{.X 1 2 3 ) }}", "template: :1: unexpected right paren"),
    ('{{"a}}', "template: :1: unterminated quoted string"),
    ("{{`a}}", "template: :1: unterminated raw quoted string"),
    ("{{'a}}", "template: :1: unterminated character constant"),
    ("{{a#}}", "template: :1: bad character U+0023 '#'"),
    ("{{$x:=.}}{{$x+2}}", "template: :1: bad character U+002B '+'"),
    ("{{ .X-}}", "template: :1: bad character U+002D '-'"),
    ("{{ \x01 }}", "template: :1: unrecognized character in action: U+0001"),
    ("{{ .x : 1 }}", "template: :1: expected :="),
    ("{{1+2}}", 'template: :1: bad number syntax: "1+2"'),
    ("{{0b2}}", 'template: :1: bad number syntax: "0b2"'),
    # literal errors
    ("{{0xi}}", 'template: :1: illegal number syntax: "0xi"'),
    ("{{1.E}}", 'template: :1: illegal number syntax: "1.E"'),
    ("{{1e400}}", 'template: :1: illegal number syntax: "1e400"'),
    ("{{ 089 }}", 'template: :1: integer overflow: "089"'),
    ("{{ 99999999999999999999 }}", 'template: :1: integer overflow: "99999999999999999999"'),
    ("{{ 'ab' }}", "template: :1: malformed character constant: 'ab'"),
    ("{{ '\\q' }}", "template: :1: invalid syntax"),
    ('{{ "\\q" }}', "template: :1: invalid syntax"),
    ('{{ "\\uD800" }}', "template: :1: invalid syntax"),
    # structure
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{if .X}}hello{{end}}{{else}}", "template: :1: unexpected {{else}}"),
    ("{{if .X}}a{{else if .Y}}b{{end}}{{end}}", "template: :1: unexpected {{end}}"),
    ("{{if .X}}1{{else}}2{{else}}3{{end}}", "template: :1: expected end; found {{else}}"),
    ("{{range .}}{{else if .}}{{end}}", "template: :1: unexpected <if> in input"),
    ("hello{{range .x}}", "template: :1: unexpected EOF"),
    ("{{range .X}}\n{{else}}\n", "template: :3: unexpected EOF"),
    ("{{ if .X }}\n{{ end }}\n{{ end }}", "template: :3: unexpected {{end}}"),
    ("{{ end .X }}", 'template: :1: unexpected ".X" in end'),
    ("{{ else .X }}", 'template: :1: unexpected ".X" in else'),
    ('{{define "x"}}{{else}}{{end}}', "template: :1: unexpected {{else}} in define clause"),
    ('{{block "x" .}}\na\n{{else}}', "template: :1: unexpected {{else}} in block clause"),
    ("{{define x}}{{end}}", 'template: :1: unexpected "x" in define clause'),
    ("{{if .}}{{define `x`}}{{end}}{{end}}", "template: :1: unexpected <define> in command"),
    ("{{define `a`}}a{{end}}{{define `a`}}b{{end}}", 'template: :1: template: multiple definition of template "a"'),
    ("{{template .X}}", 'template: :1: unexpected ".X" in template clause'),
    ("{{template $v}}", 'template: :1: unexpected "$v" in template clause'),
    ('{{block "foo"}}hello{{end}}', "template: :1: missing value for block clause"),
    ("{{range .}}{{end}} {{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{range .}}{{end}} {{continue}}", "template: :1: {{continue}} outside {{range}}"),
    ("{{range .}}{{else}}{{break}}{{end}}", "template: :1: {{break}} outside {{range}}"),
    ('{{range .}}{{block "b" .}}{{break}}{{end}}{{end}}', "template: :1: {{break}} outside {{range}}"),
    # pipelines and operands
    ("{{}}", "template: :1: missing value for command"),
    ("{{\n}}", "template: :2: missing value for command"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
    ("{{ range }}{{end}}", "template: :1: missing value for range"),
    ("{{ ( ) }}", "template: :1: missing value for parenthesized pipeline"),
    ("{{range $k,}}{{end}}", "template: :1: missing value for range"),
    ("{{range $k, .}}{{end}}", "template: :1: range can only initialize variables"),
    ("{{range $u, $v, $w := 3}}{{end}}", "template: :1: too many declarations in range"),
    ("{{with $v, $u := 3}}{{end}}", "template: :1: too many declarations in with"),
    ("{{$a,$b,$c := 23}}", "template: :1: too many declarations in command"),
    ("{{ | .A }}", 'template: :1: unexpected "|" in command'),
    ("{{ } }}", 'template: :1: unexpected "}" in command'),
    ("{{ /* c */ }}", 'template: :1: unexpected "/" in command'),
    ("{{printf 3, 4}}", 'template: :1: unexpected "," in operand'),
    ("{{`x`3}}", 'template: :1: unexpected "3" in operand'),
    ("{{printf (printf .).}}", "template: :1: unexpected <.> in operand"),
    ("{{$x := 23}}{{with $x.y := 3}}{{end}}", 'template: :1: unexpected ":=" in operand'),
    ("{{ .X := 1 }}", 'template: :1: unexpected ":=" in operand'),
    ('{{ printf "%s" "abcdefghijkl" ) }}', "template: :1: unexpected right paren"),
    ('{{ "abcdefghijkl" "x" | "y" }}', "template: :1: non executable command in pipeline stage 2"),
    ("{{ 'abcdefghijkl }}", "template: :1: unterminated character constant"),
    ('{{ print ("abcdefghijklm" }}', "template: :1: unclosed left paren"),
    ('{{ template "x" . "abcdefghijklm" | }}{{ end }}', "template: :1: unexpected {{end}}"),
    ('{{ print "abcdefghijklm" ) }}', "template: :1: unexpected right paren"),
    ('{{ define "abcdefghijklm" . }}', 'template: :1: unexpected <.> in define clause'),
    ('{{ template "x" "abcdefghijklm" := }}', 'template: :1: unexpected ":=" in operand'),
    ('{{ if "abcdefghijklm" "abcdefghijklm"`x` }}', 'template: :1: unexpected "`x`" in operand'),
    ('{{ print "abc"`abcdefghijklm` }}', 'template: :1: unexpected "`abcdefghi"... in operand'),
    ("{{12|.}}", "template: :1: non executable command in pipeline stage 2"),
    ('{{.|printf|"error"}}', "template: :1: non executable command in pipeline stage 3"),
    ("{{'c'|nil}}", "template: :1: non executable command in pipeline stage 2"),
    ("{{true.any}}", 'template: :1: unexpected . after term "true"'),
    ('{{"hello".guys}}', 'template: :1: unexpected . after term "\\"hello\\""'),
    ("{{0.1.E}}", 'template: :1: unexpected . after term "0.1"'),
    ("{{..E}}", 'template: :1: unexpected . after term "."'),
    ("{{nil.E}}", 'template: :1: unexpected . after term "nil"'),
    # names
    ("hello{{undefined}}", 'template: :1: function "undefined" not defined'),
    ("line1\n{{\nx\n}}", 'template: :3: function "x" not defined'),
    ("{{ range .Messages }}{{ foo .Content }}{{ end }}", 'template: :1: function "foo" not defined'),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{with $x := 4}}{{end}}{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{range $k, $v}}{{end}}", 'template: :1: undefined variable "$v"'),
    ('{{$x := 1}}{{define "d"}}{{$x}}{{end}}', 'template: :1: undefined variable "$x"'),
    ('{{$x := 1}}{{block "b" .}}{{$x}}{{end}}', 'template: :1: undefined variable "$x"'),
    ("{{ if .A }}{{ $y := 1 }}{{ end }}\n{{ $y }}", 'template: :2: undefined variable "$y"'),
]


@pytest.mark.parametrize(("source", "message"), INVALID)
def test_invalid_templates_fail_with_gos_message(source: str, message: str) -> None:
    """Invalid templates raise TemplateSyntaxError whose text is Go's, line included."""
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_template(source)
    assert str(caught.value) == message
    assert caught.value.detail == message.split(": ", 1)[1].split(": ", 1)[1]


def test_error_carries_line_and_offset() -> None:
    """The error's line and byte offset point at the token where Go's parser stopped."""
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_template("ok\n{{ nope }}")
    assert caught.value.line == 2 and caught.value.offset == 6


def test_template_name_appears_in_errors() -> None:
    """A named template's errors name it, as Go's `template: <name>:<line>:` does."""
    with pytest.raises(TemplateSyntaxError, match=r"^template: chat:1: unexpected EOF$"):
        parse_template("{{ if .X }}", name="chat")


def test_nesting_depth_is_bounded_with_gos_messages() -> None:
    """Deep nesting is refused with Go's depth messages instead of exhausting Python's stack."""
    parse_template("{{if .}}" * 90 + "{{end}}" * 90)
    with pytest.raises(TemplateSyntaxError, match="max control structure depth exceeded"):
        parse_template("{{if .}}" * 500 + "{{end}}" * 500)
    with pytest.raises(TemplateSyntaxError, match="max expression depth exceeded"):
        parse_template("{{" + "(" * 500 + "1" + ")" * 500 + "}}")
    with pytest.raises(TemplateSyntaxError, match="max control structure depth exceeded"):
        parse_template("{{if .}}{{else if .}}" * 200 + "{{end}}")


# -- Ollama's view of a template ----------------------------------------------------------------


def test_ollama_parse_appends_response_to_legacy_templates() -> None:
    """Templates naming neither .Messages nor .Response get `{{ .Response }}` appended."""
    legacy = parse_ollama_template("{{ .System }} {{ .Prompt }}")
    assert str(legacy.main.root) == "{{.System}} {{.Prompt}}{{.Response}}"
    assert str(parse_ollama_template("{{ .Prompt }}{{ .Response }}").main.root) == "{{.Prompt}}{{.Response}}"
    assert str(parse_ollama_template(LLAMA3).main.root) == canonical(LLAMA3)


def test_ollama_refuses_template_call_without_pipeline() -> None:
    """Ollama refuses `{{template "x"}}` without an argument: "undefined template specified"."""
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_ollama_template('{{define "x"}}{{template "x"}}{{end}}{{template "x" .}}')
    assert str(caught.value) == "undefined template specified"
    parse_template('{{template "x"}}')  # plain Go accepts it


def test_ollama_vars_lists_lowercased_names_from_every_template() -> None:
    """ollama_vars lists field and variable names in all trees, lower-cased, as Ollama's Vars()."""
    tset = parse_template('{{ range $m := .Messages }}{{ $m.Content }}{{ end }}{{ define "t" }}{{ .Tools }}{{ end }}')
    assert ollama_vars(tset) == ["$m", "content", "messages", "tools"]
    assert "suffix" in ollama_vars(parse_template("{{ .Prompt }}{{ if .Suffix }}<fim>{{ .Suffix }}{{ end }}"))


def test_referenced_fields_lists_paths_as_written() -> None:
    """referenced_fields gives field paths as written, variables keeping their name."""
    tset = parse_template(CHATML_TOOLS)
    fields = referenced_fields(tset)
    assert {("Messages",), ("Tools",), ("System",), ("Function", "Name"), ("$", "Messages")} <= fields
    assert ("Suffix",) not in fields


def test_thinking_inside_range_over_messages_is_found() -> None:
    """`.Thinking` inside a `range .Messages` is found, with its ancestors; elsewhere it is not."""
    tset = parse_template(CHATML_TOOLS)
    assert field_in_range_over(tset)
    *_, (node, ancestors) = fields_in_range_over(tset)  # the last one found is the one Ollama keeps
    assert node.ident == ("Thinking",)
    lists = [a for a in ancestors if isinstance(a, ListNode)]
    nearest = lists[-1]
    assert [str(n) for n in nearest.nodes] == ["<think>", "{{.Thinking}}", "</think>\n"]
    assert not field_in_range_over(parse_template("{{ .Thinking }}{{ range .Tools }}{{ .Thinking }}{{ end }}"))
    assert field_in_range_over(parse_template("{{ range $i, $m := .Messages }}{{ .Thinking }}{{ end }}"))


def test_thinking_tags_are_the_text_around_thinking() -> None:
    """infer_thinking_tags takes the trimmed text that opens and closes the list around .Thinking."""
    assert infer_thinking_tags(parse_template(CHATML_TOOLS)) == ("<think>", "</think>")
    qwen3 = "{{ range .Messages }}{{ if .Thinking }}\n<think>\n{{ .Thinking }}\n</think>\n{{ end }}{{ end }}"
    assert infer_thinking_tags(parse_template(qwen3)) == ("<think>", "</think>")
    assert infer_thinking_tags(parse_template("{{ range .Messages }}{{ .Thinking }}{{ end }}")) == ("", "")
    assert infer_thinking_tags(parse_template("{{ .Thinking }}")) == ("", "")
    chained = "{{ range .Messages }}<t>{{ (.Thinking).X }}</t>{{ end }}"
    assert infer_thinking_tags(parse_template(chained)) == ("", "")  # Ollama does not look inside chains


def test_walk_visits_every_node_in_source_order() -> None:
    """walk yields each node once, parents before children, in source order."""
    root = parse_template("a{{ if .X }}{{ .Y | print }}{{ end }}").main.root
    kinds = [type(node).__name__ for node, _ in walk(root)]
    assert kinds == [
        "ListNode", "TextNode", "IfNode", "PipeNode", "CommandNode", "FieldNode", "ListNode",
        "ActionNode", "PipeNode", "CommandNode", "FieldNode", "CommandNode", "IdentifierNode",
    ]  # fmt: skip


# -- robustness -----------------------------------------------------------------------------------

_PIECES = [
    "{{", "}}", "{{- ", " -}}", "/*", "*/", " ", "\n", "\t", ".", "$", "$x", ":=", "=", "|", "(", ")",
    '"', "`", "'", ",", "if", "else", "end", "range", "with", "define", "block", "template", "break",
    "continue", "nil", "true", "0x1F", "1e3", "-", "+", "i", "_", "a", ".Messages", "printf", "\\",
    "é", "\x00", "}", "{", "0", "9", "#", "\u2028", "²", '"x"', "$.A",
]  # fmt: skip


def test_random_input_only_ever_raises_template_syntax_error() -> None:
    """Random bytes, printable text and template fragments parse or raise TemplateSyntaxError only."""
    rng = random.Random(20260824)
    for i in range(4000):
        kind = i % 4
        if kind == 0:
            source = bytes(rng.randrange(256) for _ in range(rng.randint(0, 30))).decode("latin-1")
        elif kind == 1:
            source = "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randint(0, 30)))
        else:
            source = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 30)))
        try:
            tset = parse_template(source)
        except TemplateSyntaxError as e:
            assert str(e).startswith("template: :"), source
            continue
        str(tset.main.root)
        referenced_fields(tset)
        field_in_range_over(tset)


def _tokens(source: str) -> list[tuple[object, ...]]:
    lexer = gotemplate_lex.Lexer(source, break_ok=True, continue_ok=False, emit_comments=True)
    out: list[tuple[object, ...]] = []
    while not out or out[-1][0] is not gotemplate_lex.TokenType.EOF:
        out.append(tuple(lexer.next_token()))
    return out


def test_fast_lexing_path_agrees_with_the_careful_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-regex scan of common tokens yields exactly the tokens of the rune-by-rune rules."""
    rng = random.Random(99)
    sources = ["{{" + "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 20))) for _ in range(2000)]
    sources += [CHATML_TOOLS, LLAMA3]
    fast = [_tokens(source) for source in sources]
    monkeypatch.setattr(gotemplate_lex, "_ACTION_TOKEN_RE", re.compile(r"(?!)"))
    careful = [_tokens(source) for source in sources]
    for source, got, want in zip(sources, fast, careful):
        assert got == want, source
