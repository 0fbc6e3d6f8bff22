"""Tool calls on the Go-template path: the tag a template implies, and the streaming parser."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from typing import Any

import pytest

from supervisor.templates.gotemplate import parse_ollama_template
from supervisor.templates.tools import ParsedCall, ToolCallParser, call_id, tool_call_json, tool_call_tag
from tests.splits import splits

# -- tag inference, on templates written from each family's documented chat format ---------------

QWEN25 = """\
{{- if or .System .Tools }}<|im_start|>system
{{ if .System }}{{ .System }}{{ end }}
{{- if .Tools }}

# Tools

You may call one or more functions to assist with the user query.

<tools>
{{- range .Tools }}
{"type": "function", "function": {{ json .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<|im_start|>user
{{ $m.Content }}<|im_end|>
{{ else if eq $m.Role "assistant" }}<|im_start|>assistant
{{ if $m.Content }}{{ $m.Content }}
{{- else if $m.ToolCalls }}<tool_call>
{{ range $m.ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq $m.Role "tool" }}<|im_start|>user
<tool_response>
{{ $m.Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne $m.Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""

LLAMA31_JSON = """\
{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>
{{- if .System }}

{{ .System }}
{{- end }}
{{- if .Tools }}

You are a helpful assistant with tool calling capabilities.
{{- end }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>
{{- if and $.Tools $last }}

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.

{{ range $.Tools }}{{ json . }}
{{ end }}
{{- end }}

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>
{{- if .ToolCalls }}
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "parameters": {{ json .Function.Arguments }}}{{ end }}
{{- else }}

{{ .Content }}
{{- end }}{{ if not $last }}<|eot_id|>{{ end }}
{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- end }}"""

LLAMA3_PYTHON_TAG = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ if .ToolCalls }}<|python_tag|>{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "parameters": {{ json .Function.Arguments }}}{{ end }}<|eom_id|>
{{- else }}{{ .Content }}<|eot_id|>{{ end }}
{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}
{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}"""

MISTRAL = """\
{{- range $index, $_ := .Messages }}
{{- if eq .Role "user" }}
{{- if and (eq (len (slice $.Messages $index)) 1) $.Tools }}[AVAILABLE_TOOLS] {{ json $.Tools }}[/AVAILABLE_TOOLS]
{{- end }}[INST] {{ .Content }}[/INST]
{{- else if eq .Role "assistant" }}
{{- if .Content }} {{ .Content }}</s>
{{- else if .ToolCalls }}[TOOL_CALLS] [
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
{{- end }}]</s>
{{- end }}
{{- else if eq .Role "tool" }}[TOOL_RESULTS] {"content": {{ .Content }}}[/TOOL_RESULTS]
{{- end }}
{{- end }}"""

HERMES_PER_CALL = """\
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}
{{- range .ToolCalls }}<tool_call>
{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
</tool_call>
{{- end }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

MISTRAL_SEPARATED = """\
{{- range .Messages }}{{ if $.ToolCalls }}{{ end }}
{{- if .ToolCalls }}[TOOL_CALLS][{{ range $i, $c := .ToolCalls }}{{ if $i }}, {{ end }}{"name": "{{ $c.Function.Name }}", "arguments": {{ json $c.Function.Arguments }}}{{ end }}]
{{- else }}{{ .Content }}{{ end }}
{{- end }}"""

CONTENT_THEN_TAG = """\
{{- range .Messages }}{{ if .ToolCalls }}{{ if .Content }}{{ .Content }}

{{ end }}<function_calls>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
{{ end }}</function_calls>{{ else }}{{ .Content }}{{ end }}{{ end }}"""

PLAIN_CHATML = """\
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

TAGS: list[tuple[str, str, str | None]] = [
    ("qwen2.5-chatml", QWEN25, "<tool_call>"),
    ("llama3.1-json", LLAMA31_JSON, "{"),
    ("llama3-python-tag", LLAMA3_PYTHON_TAG, "<|python_tag|>"),
    ("mistral", MISTRAL, "[TOOL_CALLS]"),
    ("hermes-tag-per-call", HERMES_PER_CALL, "<tool_call>"),
    ("mistral-separator-between-calls", MISTRAL_SEPARATED, "[TOOL_CALLS]"),
    ("content-printed-before-tag", CONTENT_THEN_TAG, "<function_calls>"),
    ("no-tool-calls", PLAIN_CHATML, None),
    ("legacy-prompt", "{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}", None),
    ("whole-list-as-json", "{{ range .Messages }}{{ if .ToolCalls }}{{ json .ToolCalls }}{{ end }}{{ end }}", "{"),
    (
        "bare-array",
        '{{ range .Messages }}{{ if .ToolCalls }}[{{ range .ToolCalls }}{"name": "{{ .Function.Name }}"}{{ end }}]{{ end }}{{ end }}',
        "[",
    ),
    (
        "crlf-in-tag",
        '{{ range .Messages }}{{ if .ToolCalls }}\r\n<calls>\r\n<call>{{ range .ToolCalls }}{"name": "x"}{{ end }}{{ end }}{{ end }}',
        "<calls>\n<call>",
    ),
    (
        "with-over-tool-calls",
        "{{ range .Messages }}{{ with .ToolCalls }}<|tool_calls|>{{ json . }}{{ end }}{{ end }}",
        "<|tool_calls|>",
    ),
]


@pytest.mark.parametrize(("source", "tag"), [t[1:] for t in TAGS], ids=[t[0] for t in TAGS])
def test_tool_call_tag(source: str, tag: str | None) -> None:
    """The tag is the literal text the template writes before the first call's JSON."""
    assert tool_call_tag(parse_ollama_template(source)) == tag


# -- the streaming parser ------------------------------------------------------------------------

TOOLS = ["get_weather", "get_time", "get"]


Call = tuple[str, dict[str, Any]]


def run(tag: str | None, pieces: list[str], tools: list[str] = TOOLS) -> tuple[list[ParsedCall], str]:
    parser = ToolCallParser(tag, tools)
    calls: list[ParsedCall] = []
    content: list[str] = []
    for piece in pieces:
        got, text = parser.feed(piece)
        calls += got
        content.append(text)
    got, text = parser.finish()
    return calls + got, "".join(content) + text


def simple(calls: list[ParsedCall]) -> list[Call]:
    assert [c.index for c in calls] == list(range(len(calls)))
    return [(c.name, c.arguments) for c in calls]


W = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
PARIS: Call = ("get_weather", {"city": "Paris"})
ROME: Call = ("get_weather", {"city": "Rome"})



def text_only(name: str, tag: str | None, output: str) -> tuple[str, str | None, str, list[Call], str]:
    """A case whose output holds no call: all of it comes back as content."""
    return (name, tag, output, [], output)


def calls_only(name: str, tag: str | None, output: str, calls: list[Call]) -> tuple[str, str | None, str, list[Call], str]:
    """A case whose output is all calls (and what follows them, dropped): no content comes back."""
    return (name, tag, output, calls, "")


# (id, tag, output, expected calls, expected content)
CASES: list[tuple[str, str | None, str, list[Call], str]] = [
    text_only("plain-content", "<tool_call>", "Hello there, no tools today."),
    calls_only("qwen-one-call", "<tool_call>", f"<tool_call>\n{W}\n</tool_call>", [PARIS]),
    ("content-before-tag", "<tool_call>", f"Let me check.\n<tool_call>\n{W}\n</tool_call>", [PARIS], "Let me check.\n"),
    ("white-space-before-tag", "<tool_call>", f"\n\n<tool_call>{W}</tool_call>\n", [PARIS], "\n\n"),
    calls_only(
        "qwen-two-calls",
        "<tool_call>",
        f'<tool_call>\n{W}\n</tool_call>\n<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "Rome"}}}}\n</tool_call>',
        [PARIS, ROME],
    ),
    calls_only(
        "arguments-as-json-string",
        "<tool_call>",
        '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>',
        [PARIS],
    ),
    calls_only(
        "parameters-key",
        "<|python_tag|>",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
        [PARIS],
    ),
    ("llama-json-mode", "{", ' \n{"name": "get_weather", "parameters": {"city": "Paris"}}', [PARIS], " \n"),
    calls_only("json-mode-none-tag", None, f"{W}", [PARIS]),
    ("json-mode-prose-first", "{", f"Sure: {W}", [], f"Sure: {W}"),
    text_only("json-mode-not-a-call", "{", '{"answer": 42} is the result'),
    calls_only("json-mode-array", "{", f'[{W}, {{"name": "get_time", "parameters": {{}}}}]', [PARIS, ("get_time", {})]),
    calls_only(
        "json-mode-objects-in-a-row",
        "{",
        f'{W};\n{{"name": "get_weather", "parameters": {{"city": "Rome"}}}}',
        [PARIS, ROME],
    ),
    text_only("json-mode-plain-brackets", "[", "[1, 2, 3] counted"),
    calls_only(
        "mistral-array",
        "[TOOL_CALLS]",
        f'[TOOL_CALLS] [{W}, {{"name": "get_weather", "arguments": {{"city": "Rome"}}}}]',
        [PARIS, ROME],
    ),
    calls_only(
        "mistral-second-block",
        "[TOOL_CALLS]",
        f'[TOOL_CALLS][{W}][TOOL_CALLS][{{"name": "get_weather", "arguments": {{"city": "Rome"}}}}]</s>',
        [PARIS, ROME],
    ),
    text_only("unknown-name", "<tool_call>", '<tool_call>{"name": "launch", "arguments": {}}</tool_call>'),
    text_only("tag-then-prose", "<tool_call>", "I would use <tool_call> here."),
    text_only("invalid-json", "<tool_call>", '<tool_call>{"name": get_weather}</tool_call>'),
    text_only("unterminated-json", "<tool_call>", '<tool_call>{"name": "get_weather", "arguments": {"city"'),
    text_only("mismatched-bracket", "<tool_call>", '<tool_call>{"name": "x"] and on'),
    text_only("partial-tag-at-end", "<tool_call>", "hello <tool_"),
    text_only("partial-tag-fakeout", "<tool_call>", "a <tool_cal b"),
    text_only("missing-arguments", "<tool_call>", '<tool_call>{"name": "get_time"}'),
    text_only("arguments-not-an-object", "<tool_call>", '<tool_call>{"name": "get_time", "arguments": [1]}'),
    calls_only(
        "bad-arguments-then-parameters",
        "<tool_call>",
        '<tool_call>{"name": "get_time", "arguments": "nope", "parameters": {"tz": "UTC"}}',
        [("get_time", {"tz": "UTC"})],
    ),
    text_only("name-not-a-string", "<tool_call>", '<tool_call>{"name": 7, "arguments": {}}'),
    ("failed-tag-then-real-one", "<tool_call>", f"<tool_call>oops <tool_call>{W}", [PARIS], "<tool_call>oops "),
    ("repeated-tag", "<tool_call>", f"<tool_call><tool_call>{W}", [PARIS], "<tool_call>"),
    calls_only("text-after-call-dropped", "<tool_call>", f"<tool_call>{W}</tool_call> Done! {{not json}}", [PARIS]),
    (
        "array-non-call-first",
        "[TOOL_CALLS]",
        f'[TOOL_CALLS] [{{"name": "nope", "arguments": {{}}}}, {W}]',
        [],
        f'[TOOL_CALLS] [{{"name": "nope", "arguments": {{}}}}, {W}]',
    ),
    calls_only(
        "array-non-call-after-call-skipped",
        "[TOOL_CALLS]",
        f'[TOOL_CALLS] [{W}, {{"name": "nope"}}, {{"name": "get_weather", "arguments": {{"city": "Rome"}}}}]',
        [PARIS, ROME],
    ),
    calls_only(
        "brackets-and-quotes-in-strings",
        "<tool_call>",
        '<tool_call>{"name": "get_weather", "arguments": {"q": "a } ] \\" { [ \\\\", "n": [1, {"x": "}"}]}}',
        [("get_weather", {"q": 'a } ] " { [ \\', "n": [1, {"x": "}"}]})],
    ),
    calls_only("name-that-prefixes-another", "<tool_call>", '<tool_call>{"name": "get", "arguments": {}}', [("get", {})]),
    (
        "non-ascii",
        "<tool_call>",
        '¿Qué tiempo? <tool_call>{"name": "get_weather", "arguments": {"city": "Zürich 東京"}}',
        [("get_weather", {"city": "Zürich 東京"})],
        "¿Qué tiempo? ",
    ),
]


@pytest.mark.parametrize(("tag", "output", "calls", "content"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_whole_output(tag: str | None, output: str, calls: list[Call], content: str) -> None:
    """Fed whole, the output gives the expected calls and content."""
    got_calls, got_content = run(tag, [output])
    assert simple(got_calls) == calls
    assert got_content == content


@pytest.mark.parametrize(("tag", "output", "calls", "content"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_split_gives_the_same_result(tag: str | None, output: str, calls: list[Call], content: str) -> None:
    """Any way of cutting the output into pieces gives the same calls and content as whole."""
    for pieces in splits(output):
        got_calls, got_content = run(tag, pieces)
        assert (simple(got_calls), got_content) == (calls, content), pieces


@pytest.mark.parametrize(
    ("source", "output"),
    [(QWEN25, f"<tool_call>\n{W}\n</tool_call>"), (MISTRAL, f"[TOOL_CALLS] [{W}]"), (LLAMA31_JSON, W)],
)
def test_tag_from_template_finds_the_models_calls(source: str, output: str) -> None:
    """The tag inferred from a family's template is what finds that family's calls."""
    tag = tool_call_tag(parse_ollama_template(source))
    for pieces in splits(output):
        calls, content = run(tag, pieces)
        assert (simple(calls), content) == ([PARIS], "")


def test_arguments_keep_the_models_key_order() -> None:
    """Arguments come out in the order the model wrote the keys, nested objects included."""
    calls, _ = run("<tool_call>", ['<tool_call>{"name": "get", "arguments": {"z": 1, "a": {"y": 2, "b": 3}, "m": 0}}'])
    assert list(calls[0].arguments) == ["z", "a", "m"]
    assert list(calls[0].arguments["a"]) == ["y", "b"]


def test_call_is_emitted_as_soon_as_its_json_closes() -> None:
    """Each call comes out in the piece that completes it; content is withheld meanwhile."""
    parser = ToolCallParser("[TOOL_CALLS]", TOOLS)
    assert parser.feed("Sure. [TOOL_") == ([], "Sure. ")
    assert parser.feed('CALLS] [{"name": "get_weather", ') == ([], "")
    calls, content = parser.feed('"arguments": {"city": "Paris"}}, {"name"')
    assert (simple(calls), content) == ([PARIS], "")
    calls, content = parser.feed(': "get_time", "arguments": {}}')
    assert [(c.name, c.index) for c in calls] == [("get_time", 1)]
    assert parser.feed("]</s>") == ([], "")
    assert parser.finish() == ([], "")


# (id, tag, tools, [(piece fed, content released)], content released by finish)
RELEASES: list[tuple[str, str, list[str], list[tuple[str, str]], str]] = [
    # Text that cannot start the tag goes straight out; only a possible partial tag waits.
    (
        "released-while-no-tag-is-possible",
        "<tool_call>",
        TOOLS,
        [("The answer", "The answer"), (" is <", " is "), ("b>", "<b>"), (" <tool", " ")],
        "<tool",
    ),
    # In JSON mode, prose first means everything is content, released at once.
    ("json-mode-decides-on-the-first-character", "{", TOOLS, [("  ", "  "), ("It is", "It is"), (f" {W}", f" {W}")], ""),
    # Without tools in the request nothing can be a call, so nothing is held back.
    ("no-tools-means-plain-content", "<tool_call>", [], [(f"<tool_call>{W}", f"<tool_call>{W}")], ""),
]


@pytest.mark.parametrize(("tag", "tools", "steps", "rest"), [r[1:] for r in RELEASES], ids=[r[0] for r in RELEASES])
def test_content_is_released_as_soon_as_it_cannot_be_a_call(
    tag: str, tools: list[str], steps: list[tuple[str, str]], rest: str
) -> None:
    """Each piece releases at once all the content that can no longer turn out to be a call."""
    parser = ToolCallParser(tag, tools)
    assert [parser.feed(piece) for piece, _ in steps] == [([], released) for _, released in steps]
    assert parser.finish() == ([], rest)


def test_long_call_fed_one_character_at_a_time() -> None:
    """A long argument streamed character by character still parses into one call."""
    value = "x\\\"{[" * 20_000
    output = '<tool_call>{"name": "get", "arguments": {"text": "' + value + '"}}</tool_call>'
    parser = ToolCallParser("<tool_call>", TOOLS)
    calls: list[ParsedCall] = []
    for char in output:
        got, content = parser.feed(char)
        assert content == ""
        calls += got
    assert [c.arguments["text"] for c in calls] == [json.loads('"' + value + '"')]


def test_call_id_shape() -> None:
    """Ids are ``call_`` plus 8 characters of ``[a-z0-9]``, random per call."""
    ids = {call_id() for _ in range(50)}
    assert all(re.fullmatch(r"call_[a-z0-9]{8}", i) for i in ids)
    assert len(ids) > 1
    assert call_id(random.Random(1)) == call_id(random.Random(1))


def test_tool_call_json_is_ollamas_wire_shape() -> None:
    """The wire form nests index, name and arguments under ``function``, in Ollama's order."""
    call = ParsedCall(name="get_weather", arguments={"city": "Paris", "unit": "c"}, index=2)
    wire = tool_call_json(call, "call_abc12345")
    assert json.dumps(wire) == (
        '{"id": "call_abc12345", "function": {"index": 2, "name": "get_weather", '
        '"arguments": {"city": "Paris", "unit": "c"}}}'
    )


def test_parsed_call_is_frozen() -> None:
    """A parsed call cannot be changed after it was emitted."""
    call = ParsedCall(name="get", arguments={}, index=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.name = "other"  # type: ignore[misc]


FRAGMENTS = [
    "<tool_call>", "<tool_", "call>", "</tool_call>", "[TOOL_CALLS]", "{", "}", "[", "]", '"', "\\", ",", ":",
    " ", "\n", "x", '"name"', W, '{"name": "get", "arguments": {}}',
]  # fmt: skip


@pytest.mark.parametrize("tag", ["<tool_call>", "[TOOL_CALLS]", "{", None])
def test_random_outputs_split_anywhere(tag: str | None) -> None:
    """Seeded random mixes of tags, brackets, quotes and calls: every split agrees with the
    whole, and an output without calls comes back unchanged as content."""
    for seed in range(120):
        rng = random.Random(seed)
        output = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 10)))
        calls, content = run(tag, [output])
        if not calls:
            assert content == output
        for pieces in splits(output):
            got_calls, got_content = run(tag, pieces)
            assert (simple(got_calls), got_content) == (simple(calls), content), pieces
