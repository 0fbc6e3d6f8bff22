"""Go text/template execution: Go's semantics, fmt printing, builtins, error texts, Ollama's data."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from supervisor.templates import (
    OLLAMA_FUNCTIONS,
    GoFunc,
    OrderedGoMap,
    ParamKind,
    TemplateExecError,
    TemplateValues,
    execute,
    message_value,
    parse_ollama_template,
    parse_template,
    render,
    tool_call_value,
    tools_value,
)
from supervisor.templates.goexec import DEFAULT_MAX_OUTPUT, DEFAULT_MAX_STEPS
from supervisor.templates.gofmt import sprint, sprintf, sprintln
from supervisor.templates.gomarshal import MarshalError, json_float, marshal_json
from supervisor.templates.gotemplate import OLLAMA_FUNCS
from supervisor.templates.ollama_values import PropertyType, ToolProperty, property_value, to_typescript_type
from tests.go_structs import Broken, Celsius, Person


def run(
    source: str,
    data: object = None,
    funcs: dict[str, Callable[..., object]] | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> str:
    """Parse with Ollama's functions plus ``funcs``, execute with both."""
    extra = funcs or {}
    tset = parse_template(source, funcs=OLLAMA_FUNCS | frozenset(extra))
    return execute(tset, data, funcs={**OLLAMA_FUNCTIONS, **extra}, max_output=max_output, max_steps=max_steps)


def run_error(source: str, data: object = None, **options: Any) -> str:
    with pytest.raises(TemplateExecError) as info:
        run(source, data, **options)
    return str(info.value)


# -- text, actions and %v printing -----------------------------------------------------------------

PRINTING: list[tuple[str, str, object, str]] = [
    ("text", "hello", None, "hello"),
    ("string", "{{.}}", "x<y", "x<y"),
    ("int", "{{.}}", -42, "-42"),
    ("bool", "{{.}} {{not .}}", True, "true false"),
    ("float shortest", "{{.}}", 0.1, "0.1"),
    ("float integral", "{{.}}", 3.0, "3"),
    ("float exponent from 1e21", "{{.}}", 1e21, "1e+21"),
    ("float exponent from 1e6", "{{.}}", 1234567.0, "1.234567e+06"),
    ("float fixed below 1e6", "{{.}}", 123456.5, "123456.5"),
    ("float exponent below 1e-4", "{{.}}", 0.00001, "1e-05"),
    ("float fixed at 1e-4", "{{.}}", 0.0001, "0.0001"),
    ("negative zero", "{{.}}", -0.0, "-0"),
    ("infinity", "{{.}}", float("inf"), "+Inf"),
    ("nan", "{{.}}", float("nan"), "NaN"),
    ("complex", "{{.}}", 1.5 - 2j, "(1.5-2i)"),
    ("slice", "{{.}}", [1, "a", None, [2.5, True]], "[1 a <nil> [2.5 true]]"),
    ("map sorted", "{{.}}", {"b": 1, "a": [1], "c": None}, "map[a:[1] b:1 c:<nil>]"),
    ("bytes", "{{.}}", b"hi", "[104 105]"),
    ("struct", "{{.}}", Person(Tags=[]), "{Ann 30 [] <nil> s}"),
    ("nested stringer", "{{.}}", [Celsius(), Celsius(-3.0)], "[21.5°C -3.0°C]"),
    ("stringer", "{{.}}", Celsius(), "21.5°C"),
    ("stringer panic", "{{.}}", Broken(), "%!v(PANIC=String method: no)"),
    ("nil data", "{{.}}", None, "<no value>"),
    ("empty template", "", {"a": 1}, ""),
]


@pytest.mark.parametrize(("source", "data", "expected"), [p[1:] for p in PRINTING], ids=[p[0] for p in PRINTING])
def test_actions_print_values_with_fmt_v(source: str, data: object, expected: str) -> None:
    """An action prints its value as fmt.Fprint (%v) would, Stringers through String()."""
    assert run(source, data) == expected


def test_printing_a_function_is_an_error() -> None:
    """Go refuses to print a func value: `can't print {{.F}} of type func…`."""
    assert "at <{{.F}}>: can't print {{.F}} of type func" in run_error("{{.F}}", {"F": len})


# -- missingkey=zero and nil ------------------------------------------------------------------------

MISSING: list[tuple[str, str, object, str]] = [
    ("missing key prints no value", "{{.Nope}}", {}, "<no value>"),
    ("nil value prints no value", "{{.X}}", {"X": None}, "<no value>"),
    ("missing key is false", "{{if .Nope}}y{{else}}n{{end}}", {}, "n"),
    ("print shows nil", "{{print .Nope}}", {}, "<nil>"),
    ("pipeline nil to print", "{{.Nope | print}}", {}, "<nil>"),
    ("html shows no value", "{{html .Nope}}", {}, "&lt;no value&gt;"),
    ("field of no value", "{{$x := .Nope}}{{$x.Y}}", {}, "<no value>"),
    ("nil data has no fields", "{{.A.B}}", None, "<no value>"),
    ("eq nil is false", "{{eq .Nope \"x\"}} {{eq .Nope .Nope}}", {}, "false true"),
    ("index of missing key", "{{index . \"k\"}}", {"a": 1}, "<no value>"),
    ("range over nil runs else", "{{range .Nope}}x{{else}}none{{end}}", {}, "none"),
    ("nil slice element", "{{range .}}[{{.}}]{{end}}", [None, 1], "[<no value>][1]"),
]


@pytest.mark.parametrize(("source", "data", "expected"), [m[1:] for m in MISSING], ids=[m[0] for m in MISSING])
def test_missing_keys_and_nil_follow_missingkey_zero(source: str, data: object, expected: str) -> None:
    """Ollama's missingkey=zero: absent keys are nil interfaces, which print <no value>."""
    assert run(source, data) == expected


def test_field_of_nil_interface_is_an_error() -> None:
    """`.Missing.Field` dereferences a nil interface: Go's `nil pointer evaluating` error."""
    assert run_error("{{.Missing.Field}}", {}) == (
        'template: :1:10: executing "" at <.Missing.Field>: nil pointer evaluating interface {}.Field'
    )


def test_len_of_missing_key_is_a_nil_pointer() -> None:
    """len of a nil interface is Go's `len of nil pointer` error."""
    assert run_error("{{len .X}}", {}).endswith("error calling len: len of nil pointer")


# -- variables -------------------------------------------------------------------------------------

VARIABLES: list[tuple[str, str, object, str]] = [
    ("dollar is data", "{{$}} {{$.A}}", {"A": 1}, "map[A:1] 1"),
    ("declare prints nothing", "{{$x := 5}}[{{$x}}]", None, "[5]"),
    ("assign in if changes outer", "{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", None, "2"),
    ("declare in if is scoped", "{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", None, "21"),
    ("with declares", "{{with $v := .A}}{{$v}}{{.}}{{end}}", {"A": 7}, "77"),
    ("range index and element", "{{range $i, $e := .}}{{$i}}{{$e}},{{end}}", ["a", "b"], "0a,1b,"),
    ("range key and value", "{{range $k, $v := .}}{{$k}}={{$v}};{{end}}", {"z": 1, "a": 2}, "a=2;z=1;"),
    ("range single var is element", "{{range $e := .}}{{$e}}{{end}}", [3, 4], "34"),
    ("range assign", "{{$i := 0}}{{$e := 0}}{{range $i, $e = .}}{{end}}{{$i}}{{$e}}", ["x", "y"], "1y"),
    ("dollar inside range", "{{range .L}}{{$.N}}{{end}}", {"L": [1, 2], "N": "n"}, "nn"),
    ("variable fields", "{{$p := .}}{{$p.Name}}", Person(), "Ann"),
]


@pytest.mark.parametrize(("source", "data", "expected"), [v[1:] for v in VARIABLES], ids=[v[0] for v in VARIABLES])
def test_variables_are_declared_assigned_and_scoped_as_in_go(source: str, data: object, expected: str) -> None:
    """`:=` declares until the enclosing {{end}}, `=` assigns the nearest declaration."""
    assert run(source, data) == expected


# -- control structures ----------------------------------------------------------------------------

CONTROL: list[tuple[str, str, object, str]] = [
    ("if else if else", "{{if .A}}a{{else if .B}}b{{else}}c{{end}}", {"B": 1}, "b"),
    ("if falls to else", "{{if .A}}a{{else if .B}}b{{else}}c{{end}}", {}, "c"),
    ("truth of empties", "{{if 0}}x{{end}}{{if \"\"}}x{{end}}{{if .L}}x{{end}}{{if .M}}x{{end}}", {"L": [], "M": {}}, ""),
    ("truth of values", "{{if 1.5}}a{{end}}{{if \"0\"}}b{{end}}{{if .L}}c{{end}}", {"L": [0]}, "abc"),
    ("structs are true", "{{if .}}t{{end}}", Person(), "t"),
    ("with sets dot", "{{with .A}}{{.}}{{end}}", {"A": "x"}, "x"),
    ("with else with", "{{with .A}}a{{else with .B}}b{{.}}{{else}}c{{end}}", {"B": 2}, "b2"),
    ("with else", "{{with .A}}a{{else}}none{{end}}", {"A": 0}, "none"),
    ("range slice", "{{range .}}<{{.}}>{{end}}", [1, 2], "<1><2>"),
    ("range map sorted", "{{range .}}{{.}}{{end}}", {"b": 2, "a": 1, "c": 3}, "123"),
    ("range ordered map", "{{range $k, $v := .}}{{$k}}{{end}}", OrderedGoMap(z=1, a=2), "za"),
    ("range empty else", "{{range .}}x{{else}}empty{{end}}", [], "empty"),
    ("range int", "{{range 3}}{{.}}{{end}}", None, "012"),
    ("range zero int else", "{{range 0}}x{{else}}none{{end}}", None, "none"),
    ("break", "{{range .}}{{if eq . 3}}{{break}}{{end}}{{.}}{{end}}", [1, 2, 3, 4], "12"),
    ("continue", "{{range .}}{{if eq . 2}}{{continue}}{{end}}{{.}}{{end}}", [1, 2, 3], "13"),
    ("nested range", "{{range .}}{{range .}}{{.}}{{end}};{{end}}", [[1, 2], [3]], "12;3;"),
    ("define and template", '{{define "T"}}<{{.}}>{{end}}{{template "T" .A}}', {"A": 1}, "<1>"),
    ("template without arg", '{{define "T"}}<{{.}}>{{end}}{{template "T"}}', {"A": 1}, "<<no value>>"),
    ("block", '{{block "B" .}}[{{.}}]{{end}}', "x", "[x]"),
    ("template sees no variables", '{{define "T"}}{{$}}{{end}}{{$x := 1}}{{template "T" 2}}', None, "2"),
    ("trim and comments", "a  {{- /* c */ -}}  b {{- 1 -}} \n c", None, "ab1c"),
]


@pytest.mark.parametrize(("source", "data", "expected"), [c[1:] for c in CONTROL], ids=[c[0] for c in CONTROL])
def test_control_structures_behave_as_in_go(source: str, data: object, expected: str) -> None:
    """if/with/range/else chains, break/continue, define/template/block, with Go's truthiness."""
    assert run(source, data) == expected


def test_range_over_a_string_is_an_error() -> None:
    """Go does not range over strings: `range can't iterate over hello`."""
    assert run_error("{{range .}}{{end}}", "hello").endswith("range can't iterate over hello")


def test_range_over_an_int_takes_one_variable() -> None:
    """Ranging over an integer with two variables is Go's error."""
    assert run_error("{{range $i, $e := 3}}{{end}}").endswith("can't use 3 to iterate over more than one variable")


def test_undefined_template_is_an_error() -> None:
    """{{template "x"}} of an undefined name fails at execution, as in Go."""
    assert run_error('{{template "x"}}') == 'template: :1:11: executing "" at <{{template "x"}}>: template "x" not defined'


def test_errors_name_the_executing_template() -> None:
    """Inside a defined template the message says `executing "T"`; the location keeps the file name."""
    message = run_error('{{define "T"}}{{.X.Y}}{{end}}{{template "T" .}}', {})
    assert message == 'template: :1:18: executing "T" at <.X.Y>: nil pointer evaluating interface {}.Y'


def test_error_columns_count_bytes_on_the_line() -> None:
    """Go reports line:col with the column in bytes from the start of the line."""
    message = run_error("x\né {{ .A.B }}", {})  # é is two bytes; a chain sits at its last field
    assert message.startswith('template: :2:8: executing "" at <.A.B>:')


def test_named_execution_and_unknown_names() -> None:
    """execute(name=) runs a defined template; an unknown name is Go's ExecuteTemplate error."""
    tset = parse_template('{{define "T"}}t{{.}}{{end}}main')
    assert execute(tset, 1, name="T") == "t1"
    with pytest.raises(TemplateExecError, match='template: no template "U" associated with template ""'):
        execute(tset, 1, name="U")


# -- fields and methods ------------------------------------------------------------------------------

FIELDS: list[tuple[str, str, object, str]] = [
    ("struct field", "{{.Name}} {{.Age}}", Person(), "Ann 30"),
    ("chained fields", "{{.Boss.Name}}", Person(Boss=Person(Name="Bo")), "Bo"),
    ("method with argument", '{{.Greet "Bob"}}', Person(), "Ann greets Bob"),
    ("method with pipeline argument", '{{"Cy" | .Greet}}', Person(), "Ann greets Cy"),
    ("chain on pipeline", "{{(index . 1).Name}}", [Person(), Person(Name="Zed")], "Zed"),
    ("map field", "{{.a.b}}", {"a": {"b": 5}}, "5"),
    ("String method", "{{.String}}", Celsius(), "21.5°C"),
]


@pytest.mark.parametrize(("source", "data", "expected"), [f[1:] for f in FIELDS], ids=[f[0] for f in FIELDS])
def test_fields_and_methods_are_resolved_as_in_go(source: str, data: object, expected: str) -> None:
    """Exported fields by exact name, map keys, and methods called with arguments."""
    assert run(source, data) == expected


FIELD_ERRORS: list[tuple[str, str, object, str]] = [
    ("missing field", "{{.Nope}}", Person(), "can't evaluate field Nope in type main.Person"),
    ("unexported field", "{{.secret}}", Person(), "secret is an unexported field of struct type main.Person"),
    ("field with args", "{{.Name 1}}", Person(), "Name has arguments but cannot be invoked as function"),
    ("map key with args", "{{.A 1}}", {"A": 1}, "A is not a method but has arguments"),
    ("field of a string", "{{.A}}", "s", "can't evaluate field A in type string"),
    ("field of nil struct field", "{{.Boss.Name}}", Person(), "nil pointer evaluating interface {}.Name"),
    ("method arity", "{{.Greet}}", Person(), "wrong number of args for Greet: want 1 got 0"),
    ("method raises", "{{.Fail}}", Person(), "error calling Fail: it broke"),
    ("argument to non-function", "{{3 4}}", None, "can't give argument to non-function 3"),
    ("nil command", "{{nil}}", None, "nil is not a command"),
    ("variable with argument", "{{$ 1}}", None, "can't give argument to non-function $"),
]


@pytest.mark.parametrize(("source", "data", "detail"), [f[1:] for f in FIELD_ERRORS], ids=[f[0] for f in FIELD_ERRORS])
def test_field_and_command_errors_use_gos_words(source: str, data: object, detail: str) -> None:
    """Evaluation errors end with Go's detail text."""
    assert run_error(source, data).endswith(": " + detail)


# -- builtins --------------------------------------------------------------------------------------

BUILTINS = [
    ("and returns first false", "{{and 1 0 2}}", "0"),
    ("and returns last", "{{and 1 2 3}}", "3"),
    ("or returns first true", '{{or 0 "" "x" 1}}', "x"),
    ("or returns last", "{{or 0 false}}", "false"),
    ("and short-circuits", "{{and false (index .L 9)}}", "false"),
    ("or short-circuits", "{{or true (index .L 9)}}", "true"),
    ("and with pipeline", "{{1 | and 2}}", "1"),
    ("not", "{{not 0}} {{not .L}}", "true false"),
    ("len string counts bytes", '{{len "héllo"}}', "6"),
    ("len slice and map", "{{len .L}} {{len .M}}", "3 1"),
    ("index slice", "{{index .L 1}}", "b"),
    ("index nested", "{{index .N 1 0}}", "3"),
    ("index map", '{{index .M "k"}}', "v"),
    ("index string is a byte", '{{index "abc" 1}}', "98"),
    ("slice slice", "{{slice .L 1}} {{slice .L 0 2}} {{slice .L}}", "[b c] [a b] [a b c]"),
    ("slice three indexes", "{{slice .L 0 1 2}}", "[a]"),
    ("slice string by bytes", '{{slice "hello" 1 3}}', "el"),
    ("eq several", '{{eq 2 1 2}} {{eq "a" "b"}}', "true false"),
    ("ne", "{{ne 1 2}} {{ne .S .S}}", "true false"),
    ("lt le gt ge ints", "{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2 3}}", "true true false false"),
    ("compare strings", '{{lt "a" "b"}} {{gt "b" "a"}}', "true true"),
    ("compare floats", "{{lt 1.5 2.5}}", "true"),
    ("print spacing", '{{print 1 2 "a" "b" 3 .S}}', "1 2ab3s"),
    ("println", '{{println 1 "a"}}', "1 a\n"),
    ("printf", '{{printf "%s-%d-%v" "x" 3 .L}}', "x-3-[a b c]"),
    ("printf piped", '{{3 | printf "%03d"}}', "003"),
    ("html", "{{html \"<a href='x'>&\\\"\\x00\"}}", "&lt;a href=&#39;x&#39;&gt;&amp;&#34;\ufffd"),
    ("html of several", "{{html 1 2 \"<\"}}", "1 2&lt;"),
    ("js", "{{js \"it's <b>=\\\"\\\\\\n\\u2028é\"}}", "it\\'s \\u003Cb\\u003E\\u003D\\\"\\\\\\u000A\\u2028é"),
    ("urlquery", '{{urlquery "a b&c=d/é~_.-"}}', "a+b%26c%3Dd%2F%C3%A9~_.-"),
    ("call", '{{call .F "x" 2}}', "x2"),
    ("call variadic", "{{call .G}} {{call .G 1 2}}", "0 2"),
]

BUILTIN_DATA = {
    "L": ["a", "b", "c"],
    "M": {"k": "v"},
    "N": [[1], [3, 4]],
    "S": "s",
    "F": lambda a, b: f"{a}{b}",
    "G": lambda *a: len(a),
}


@pytest.mark.parametrize(("source", "expected"), [b[1:] for b in BUILTINS], ids=[b[0] for b in BUILTINS])
def test_builtin_functions_match_go(source: str, expected: str) -> None:
    """Go's predefined functions: results, short-circuiting, byte-wise strings."""
    assert run(source, BUILTIN_DATA) == expected


BUILTIN_ERRORS = [
    ("eq int float", "{{eq 1 1.0}}", "error calling eq: incompatible types for comparison: int and float64"),
    ("lt int float", "{{lt 1 1.5}}", "error calling lt: incompatible types for comparison: int and float64"),
    ("eq string int", '{{eq "1" 1}}', "error calling eq: incompatible types for comparison: string and int"),
    ("eq slices", "{{eq .L .L}}", "error calling eq: non-comparable type [a b c]: []interface {}"),
    ("eq slice map", "{{eq .L .M}}", "error calling eq: non-comparable types [a b c]: []interface {}, map[string]interface {}: map[k:v]"),
    ("lt bools", "{{lt true false}}", "error calling lt: invalid type for comparison"),
    ("lt nil", "{{lt .Nope 1}}", "error calling lt: invalid type for comparison"),
    ("eq one argument", "{{eq 1}}", "error calling eq: missing argument for comparison"),
    ("ne arity", "{{ne 1}}", "wrong number of args for ne: want 2 got 1"),
    ("and arity", "{{and}}", "wrong number of args for and: want at least 1 got 0"),
    ("not arity", "{{not 1 2}}", "wrong number of args for not: want 1 got 2"),
    ("index out of range", "{{index .L 5}}", "error calling index: index out of range: 5"),
    ("index at length", "{{index .L 3}}", "error calling index: reflect: slice index out of range"),
    ("index negative", "{{index .L -1}}", "error calling index: index out of range: -1"),
    ("index with string", '{{index .L "a"}}', "error calling index: cannot index slice/array with type string"),
    ("index map with int", "{{index .M 1}}", "error calling index: value has type int; should be string"),
    ("index of int", "{{index 1 1}}", "error calling index: can't index item of type int"),
    ("index of nil", "{{index nil 1}}", "error calling index: index of untyped nil"),
    ("slice too many", "{{slice .L 0 1 2 3}}", "error calling slice: too many slice indexes: 4"),
    ("slice reversed", "{{slice .L 2 1}}", "error calling slice: invalid slice index: 2 > 1"),
    ("slice string 3", '{{slice "abc" 0 1 2}}', "error calling slice: cannot 3-index slice a string"),
    ("slice beyond", "{{slice .L 0 4}}", "error calling slice: index out of range: 4"),
    ("len of int", "{{len 3}}", "error calling len: len of type int"),
    ("printf format type", "{{printf 1}}", "expected string; found 1"),
    ("printf format value", "{{printf .L}}", "wrong type for value; expected string; got []interface {}"),
    ("printf nil format", "{{printf .Nope}}", "wrong type for value; expected string; got interface {}"),
    ("call nil", "{{call .Nope}}", "error calling call: call of nil"),
    ("call non-function", "{{call .S}}", "error calling call: non-function .S of type string"),
    ("call arity", "{{call .F 1}}", "error calling call: wrong number of args for .F: got 1 want 2"),
]


@pytest.mark.parametrize(("source", "detail"), [b[1:] for b in BUILTIN_ERRORS], ids=[b[0] for b in BUILTIN_ERRORS])
def test_builtin_errors_match_go(source: str, detail: str) -> None:
    """Builtin failures read `error calling NAME: …` with Go's texts, arity errors as Go's."""
    assert run_error(source, BUILTIN_DATA).endswith(": " + detail)


def test_function_known_to_the_parser_but_not_supplied() -> None:
    """A name the parser accepted but execution lacks is Go's `"f" is not a defined function`."""
    tset = parse_template("{{nosuch 1}}", funcs=OLLAMA_FUNCS | {"nosuch"})
    with pytest.raises(TemplateExecError, match='at <nosuch>: "nosuch" is not a defined function$'):
        execute(tset, None)


def test_builtin_error_context_is_the_command() -> None:
    """A failing call is reported at the whole command, with its column."""
    assert run_error("ab{{ index .L 7 }}", BUILTIN_DATA) == (
        'template: :1:5: executing "" at <index .L 7>: error calling index: index out of range: 7'
    )


def test_user_functions_take_go_signatures() -> None:
    """A plain callable gets interface{} parameters from its signature; GoFunc keeps declared kinds."""
    funcs: dict[str, Callable[..., object]] = {
        "twice": lambda x: [x, x],
        "upper": GoFunc(str.upper, (ParamKind.STRING,)),
    }
    assert run('{{twice 1}} {{upper "a"}}', None, funcs=funcs) == "[1 1] A"
    assert run_error("{{twice}}", None, funcs=funcs).endswith("wrong number of args for twice: want 1 got 0")
    assert run_error("{{upper 1}}", None, funcs=funcs).endswith("expected string; found 1")
    assert run_error("{{upper .}}", 1, funcs=funcs).endswith("wrong type for value; expected string; got int")


def test_panicking_user_function_is_an_error_calling() -> None:
    """Go recovers a panicking function; the error is `error calling NAME: <panic>`."""

    def boom() -> str:
        raise KeyError("k")

    assert run_error("{{boom}}", None, funcs={"boom": boom}).endswith("error calling boom: 'k'")


# -- number constants ------------------------------------------------------------------------------

NUMBERS = [
    ("decimal int", "42", "int 42"),
    ("float literal", "1.0", "float64 1"),
    ("exponent is float", "1e3", "float64 1000"),
    ("hex int", "0x1E", "int 30"),
    ("negative hex reads as float", "-0x1E", "float64 -30"),
    ("hex float", "0x1p4", "float64 16"),
    ("char constant", "'a'", "int 97"),
    ("underscores", "1_000", "int 1000"),
    ("octal", "017", "int 15"),
    ("imaginary", "2i", "complex128 (0+2i)"),
]


@pytest.mark.parametrize(("literal", "expected"), [n[1:] for n in NUMBERS], ids=[n[0] for n in NUMBERS])
def test_number_constants_become_int_or_float64_as_in_go(literal: str, expected: str) -> None:
    """Untyped constants: int for integer literals, float64 when written with . e or p."""
    assert run(f'{{{{printf "%T" {literal}}}}} {{{{{literal}}}}}') == expected


def test_unsigned_only_constant_overflows_int() -> None:
    """A constant that fits only uint64 cannot be an int: `… overflows int`."""
    assert run_error("{{18446744073709551615}}").endswith("18446744073709551615 overflows int")


# -- fmt ---------------------------------------------------------------------------------------------

PRINTF = [
    ("%d %5d %-5d| %05d %+d", [42, 42, 42, -42, 7], "42    42 42   | -0042 +7"),
    ("%x %X %#x %o %#o %O %b %#b", [255, 255, 255, 8, 8, 8, 5, 5], "ff FF 0xff 10 010 0o10 101 0b101"),
    ("%.3d|%.0d|%6.3d", [7, 0, -7], "007||  -007"),
    ("%c %q %U %#U", [0x263A, 97, 0x1F600, 65], "☺ 'a' U+1F600 U+0041 'A'"),
    ("%s|%q|%x|% x|%X", ["hé", 'a"b\n', "hi", "hi", "hi"], 'hé|"a\\"b\\n"|6869|68 69|6869'),
    ("%5s|%-5s|%.2s|%5.1s", ["ab", "ab", "héllo", "xyz"], "   ab|ab   |hé|    x"),
    ("%#q %+q %q", ["back", "é", "\x01"], '`back` "\\u00e9" "\\x01"'),
    ("%t %v", [True, False], "true false"),
    ("%f %.2f %8.3f %-8.3f| %+.1f % .1f %08.3f", [1.5, 3.14159, 3.14159, 3.14159, 2.0, 2.0, -3.14159],
     "1.500000 3.14    3.142 3.142   | +2.0  2.0 -003.142"),
    ("%e %E %.2e %g %G %.3g %g", [123456.0, 1e-7, 1234.5, 1e-7, 1e20, 1234.5, 100000.0],
     "1.234560e+05 1.000000E-07 1.23e+03 1e-07 1E+20 1.23e+03 100000"),
    ("%#g %#.3g %#.0f %#.0e", [1.0, 2.0, 3.0, 4.0], "1.00000 2.00 3. 4.e+00"),
    ("%b %x %X", [1.0, 1.5, -0.5], "4503599627370496p-52 0x1.8p+00 -0X1P-01"),
    ("%v %.1f %d %5.1f|%-6v|%06v", [float("nan"), float("inf"), float("nan"), float("-inf"), float("nan"), float("inf")],
     "NaN +Inf %!d(float64=NaN)  -Inf|NaN   |  +Inf"),
    ("%v %+v", [Person(Tags=[]), Person(Tags=[], Boss=1)], "{Ann 30 [] <nil> s} {Name:Ann Age:30 Tags:[] Boss:1 secret:s}"),
    ("%d %s", [[1, 2], ["a", 1]], "[1 2] [a %!s(int=1)]"),
    ("%x %s %q", [b"hi", b"hi", b"hi"], '6869 hi "hi"'),
    ("%v %s %d", [Celsius(), Celsius(), Celsius()], "21.5°C 21.5°C {%!d(float64=21.5)}"),
    ("%T %T %T %T %T %T %T", [1, "s", 1.5, [1], {"a": 1}, None, Person()],
     "int string float64 []interface {} map[string]interface {} <nil> main.Person"),
    ("%d", ["x"], "%!d(string=x)"),
    ("%s %d", [None, None], "%!s(<nil>) %!d(<nil>)"),
    ("%d %d", [1], "1 %!d(MISSING)"),
    ("%d", [1, 2, "a", None], "1%!(EXTRA int=2, string=a, <nil>)"),
    ("%!", [], "%!!(MISSING)"),
    ("100%%", [], "100%"),
    ("%", [], "%!(NOVERB)"),
    ("%[2]d %[1]d", [1, 2], "2 1"),
    ("%[3]d", [1], "%!d(BADINDEX)"),
    ("%*d|%-*d|%.*f", [5, 1, 5, 1, 2, 3.14159], "    1|1    |3.14"),
    ("%*d", ["x", 1], "%!(BADWIDTH)1"),
    ("%z", [1], "%!z(int=1)"),
]


@pytest.mark.parametrize(("fmt", "args", "expected"), PRINTF, ids=[p[0] for p in PRINTF])
def test_printf_verbs_flags_and_mistakes_match_go(fmt: str, args: list[object], expected: str) -> None:
    """fmt.Sprintf: verbs, flags, width, precision, indexes, and Go's %!verb(…) mistake texts."""
    assert sprintf(fmt, args) == expected


def test_sprint_spaces_only_between_non_strings() -> None:
    """fmt.Sprint adds a space between operands when neither is a string; Sprintln always does."""
    assert sprint([1, 2, "a", "b", 3, None, 4.5]) == "1 2ab3 <nil> 4.5"
    assert sprintln([1, "a", "b"]) == "1 a b\n"


# -- limits ----------------------------------------------------------------------------------------


def test_template_recursion_is_bounded() -> None:
    """Runaway {{template}} recursion stops with Go's `exceeded maximum template depth`."""
    message = run_error('{{define "R"}}{{template "R" .}}{{end}}{{template "R" 1}}')
    assert message.endswith("exceeded maximum template depth (100)")


def test_deep_nesting_in_recursive_templates_is_bounded() -> None:
    """Python's stack running out under deep nesting in recursive calls is the same depth error."""
    nested = "{{if true}}" * 90 + '{{template "R" .}}' + "{{end}}" * 90
    message = run_error('{{define "R"}}' + nested + '{{end}}{{template "R" 1}}')
    assert message.endswith('executing "R" at <{{template "R" .}}>: exceeded maximum template depth (100)')


def test_output_size_is_bounded() -> None:
    """Output past max_output is an execution error, not a huge string."""
    message = run_error("{{range 100}}0123456789{{end}}", max_output=500)
    assert message.endswith("output exceeds the limit of 500 characters")


def test_strings_built_by_functions_are_bounded() -> None:
    """A string doubling itself in a loop is stopped by the same limit."""
    message = run_error('{{$x := "ab"}}{{range 64}}{{$x = print $x $x}}{{end}}', max_output=1000)
    assert "error calling print: output exceeds the limit of 1000 characters" in message
    assert "output exceeds" in run_error('{{printf "%900000d" 1}}', max_output=1000)


def test_loops_are_bounded() -> None:
    """An empty loop over a huge range stops at max_steps."""
    message = run_error("{{range 1000000000000}}{{end}}", max_steps=1000)
    assert message.endswith("execution exceeds the limit of 1000 steps")


# -- JSON (Go's json.Marshal) -------------------------------------------------------------------------

FLOATS = [(1.0, "1"), (0.1, "0.1"), (-2.5, "-2.5"), (1e20, "100000000000000000000"), (1e21, "1e+21"),
          (1e-6, "0.000001"), (1e-7, "1e-7"), (1.5e-10, "1.5e-10"), (-0.0, "-0"), (123456789.0, "123456789")]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), FLOATS, ids=[e for _, e in FLOATS])
def test_json_floats_are_written_as_go_writes_them(value: float, expected: str) -> None:
    """Go's JSON floats: shortest digits, fixed notation between 1e-6 and 1e21."""
    assert json_float(value) == expected


def test_json_marshal_matches_go() -> None:
    """Compact, map keys sorted, < > & escaped, bytes as base64, structs by field name."""
    value = {"b": [1, 2.0, None, True], "a": "<&>", "c": b"hi", "d": Person(Tags=[])}
    assert marshal_json(value) == (
        '{"a":"\\u003c\\u0026\\u003e","b":[1,2,null,true],"c":"aGk=",'
        '"d":{"Name":"Ann","Age":30,"Tags":[],"Boss":null}}'
    )
    assert marshal_json(OrderedGoMap(z=1, a=2)) == '{"z":1,"a":2}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1j, len], ids=["nan", "inf", "complex", "func"])
def test_json_of_unsupported_values_fails_and_json_prints_nothing(value: object) -> None:
    """Go's Marshal refuses NaN, infinities, complex and funcs; Ollama's json then yields ""."""
    with pytest.raises(MarshalError, match="^json: unsupported"):
        marshal_json(value)
    assert run("[{{json .}}]", value) == "[]"


# -- Ollama's values and functions -------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather <now>",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "days": {"type": "integer", "items": {"z": 1, "a": 2}},
            },
        },
    },
}
WEATHER_JSON = (
    '{"type":"function","function":{"name":"get_weather","description":"Weather \\u003cnow\\u003e",'
    '"parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string",'
    '"description":"City name"},"unit":{"type":["string","null"],"enum":["c","f"]},'
    '"days":{"type":"integer","items":{"a":2,"z":1}}}}}}'
)


def test_tools_print_as_ollamas_json() -> None:
    """{{.Tools}}, {{json .Tools}}, a tool and its function print as Ollama's api JSON."""
    values = TemplateValues(Tools=tools_value([WEATHER_TOOL]))
    function_json = WEATHER_JSON[len('{"type":"function","function":') : -1]
    source = "{{.Tools}}\n{{json .Tools}}\n{{range .Tools}}{{.}}\n{{.Function}}{{end}}"
    assert render(parse_template(source), values) == f"[{WEATHER_JSON}]\n[{WEATHER_JSON}]\n{WEATHER_JSON}\n{function_json}"


def test_tool_json_omits_empty_fields_as_ollama() -> None:
    """description, $defs, items and required are omitempty; properties is always written."""
    tool = tools_value([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert marshal_json(tool) == '[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":null}}}]'
    assert run("{{.}}|{{len .}}", tools_value(None)) == "null|0"
    assert run("{{.}}", tools_value([])) == "[]"


def test_properties_range_in_declared_order_with_their_types() -> None:
    """Properties keep the tool's order; toTypeScriptType gives Ollama's TypeScript types."""
    values = TemplateValues(Tools=tools_value([WEATHER_TOOL]))
    source = "{{range .Tools}}{{range $n, $p := .Function.Parameters.Properties}}{{$n}}:{{toTypeScriptType $p}};{{end}}{{end}}"
    assert render(parse_template(source), values) == "city:string;unit:string | null;days:number;"


TYPESCRIPT = [
    ({"type": "string"}, "string"),
    ({"type": "integer"}, "number"),
    ({"type": "number"}, "number"),
    ({"type": "boolean"}, "boolean"),
    ({"type": "array", "items": {"type": "string"}}, "any[]"),
    ({"type": "object"}, "Record<string, any>"),
    ({"type": "null"}, "null"),
    ({"type": "date"}, "any"),
    ({}, "any"),
    ({"type": ["string", "integer", "null"]}, "string | number | null"),
    ({"anyOf": [{"type": "string"}, {"type": ["array", "null"]}], "type": "object"}, "string | any[] | null"),
    ({"type": "string", "enum": ["a", "b"]}, "string"),
]


@pytest.mark.parametrize(("prop", "expected"), TYPESCRIPT, ids=[e for _, e in TYPESCRIPT])
def test_to_typescript_type_follows_ollama(prop: dict[str, object], expected: str) -> None:
    """anyOf and type lists join with ` | `; JSON types map to TypeScript; enums are ignored."""
    assert to_typescript_type(property_value(prop)) == expected


def test_to_typescript_type_of_anything_else_is_any() -> None:
    """Anything but a tool property is `any`, as in Ollama."""
    assert run("{{toTypeScriptType .}} {{toTypeScriptType 1}}", "string") == "any any"


def test_property_type_prints_and_encodes_as_ollama() -> None:
    """PropertyType: `string` / `[string null]` in %v, a string or an array in JSON."""
    assert sprint([PropertyType(("string",)), PropertyType(("string", "null"))]) == "string [string null]"
    assert marshal_json(ToolProperty(Type=PropertyType(("a",)))) == '{"type":"a"}'
    message = run_error('{{eq .Type "string"}}', ToolProperty(Type=PropertyType(("string",))))
    assert message.endswith("incompatible types for comparison: api.PropertyType and string")  # a slice


def test_tool_call_arguments_print_as_ordered_json_and_index_as_a_map() -> None:
    """Arguments print as compact JSON in the order sent; index/range reach the values."""
    call = tool_call_value({"function": {"name": "f", "arguments": {"z": 1, "a": "<b>", "o": {"y": 1, "x": 2}}}}, 3)
    values = TemplateValues(Messages=[message_value({"role": "assistant", "tool_calls": [WEATHER_CALL]})])
    assert run("{{.Function.Index}} {{.Function.Arguments}}", call) == '3 {"z":1,"a":"\\u003cb\\u003e","o":{"x":2,"y":1}}'
    assert run('{{index .Function.Arguments "a"}} {{range $k, $v := .Function.Arguments}}{{$k}}{{end}}', call) == "<b> zao"
    source = "{{range .Messages}}{{range .ToolCalls}}{{.ID}} {{.Function.Name}} {{.Function.Arguments}}{{end}}{{end}}"
    assert render(parse_template(source), values) == 'call_1 get_weather {"city":"Paris"}'


WEATHER_CALL = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def test_json_numbers_are_float64_as_in_go() -> None:
    """Arguments decoded as Go's any: numbers are float64, so comparing with an int constant fails."""
    call = tool_call_value({"function": {"name": "f", "arguments": {"n": 1}}})
    assert run("{{printf \"%T\" .Function.Arguments.n}} {{eq .Function.Arguments.n 1.0}}", call) == "float64 true"
    assert run_error("{{eq .Function.Arguments.n 1}}", call).endswith("incompatible types for comparison: float64 and int")


def test_message_value_reads_ollama_chat_messages() -> None:
    """Role is lower-cased, images decoded from base64, tool calls indexed, JSON as api.Message."""
    message = message_value(
        {"role": "Assistant", "content": "hi", "images": ["aGk="], "tool_calls": [WEATHER_CALL, WEATHER_CALL]}
    )
    assert (message.Role, message.Images, [c.Function.Index for c in message.ToolCalls]) == ("assistant", (b"hi",), [0, 1])
    assert run("{{json .}}", message_value({"role": "tool", "content": "", "tool_name": "f"})) == (
        '{"role":"tool","content":"","tool_name":"f"}'
    )
    assert run("{{.}}", message_value({"role": "user", "content": "x"})) == "{user x  [] []  }"


def test_malformed_request_values_are_refused() -> None:
    """Wrongly typed request fields raise ValueError naming the field."""
    with pytest.raises(ValueError, match="content"):
        message_value({"role": "user", "content": 3})
    with pytest.raises(ValueError, match="arguments"):
        tool_call_value({"function": {"name": "f", "arguments": "{}"}})


def test_template_values_are_a_map_of_the_present_fields() -> None:
    """Fields left None are missing keys: they print <no value>, like Ollama's per-mode maps."""
    values = TemplateValues(System="s", Messages=[], Response="", Think=False, ThinkLevel="", IsThinkSet=False)
    tset = parse_ollama_template("{{.System}}|{{.Prompt}}|{{.Messages}}|{{.Think}}|{{range $k, $_ := .}}{{$k}},{{end}}")
    assert render(tset, values) == "s|<no value>|[]|false|IsThinkSet,Messages,Response,System,Think,ThinkLevel,"
    assert values.data() == {"System": "s", "Messages": [], "Response": "", "Think": False, "ThinkLevel": "", "IsThinkSet": False}


def test_template_values_execute_directly_as_the_map() -> None:
    """execute() given TemplateValues sees Ollama's map: absent fields are missing keys, not errors."""
    tset = parse_template("{{.Suffix}}|{{.Prompt}}|{{json .}}")
    assert execute(tset, TemplateValues(Prompt="p<")) == '<no value>|p<|{"Prompt":"p\\u003c"}'


def test_legacy_templates_get_response_appended() -> None:
    """A template naming neither .Messages nor .Response prints the response at its end."""
    tset = parse_ollama_template("[INST] {{ .Prompt }} [/INST]")
    assert render(tset, TemplateValues(Prompt="hi", Response="ok")) == "[INST] hi [/INST]ok"


def test_current_and_yesterday_dates_ignore_string_arguments() -> None:
    """currentDate/yesterdayDate give local YYYY-MM-DD; their optional arguments must be strings."""
    today = datetime.date.today()
    expected = f"{today.isoformat()} {(today - datetime.timedelta(days=1)).isoformat()}"
    assert run('{{currentDate}} {{yesterdayDate "2006-01-02"}}') == expected
    assert run_error("{{currentDate 1}}").endswith("expected string; found 1")


def test_json_function_arity_and_values() -> None:
    """json takes exactly one argument; nil marshals to null, strings are quoted and escaped."""
    assert run('{{json .Nope}} {{json "a<b"}} {{json 1.5}}', {}) == 'null "a\\u003cb" 1.5'
    assert run_error("{{json}}").endswith("wrong number of args for json: want 1 got 0")
