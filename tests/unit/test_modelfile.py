"""Modelfile parser and serializer: Ollama's grammar, errors, typed parameters and show's text."""

from __future__ import annotations

import random
from typing import Any

import pytest

from supervisor.errors import BadRequest, ModelfileError
from supervisor.modelfile.parser import (
    ERR_COMMAND,
    Command,
    ModelfileSpec,
    format_parameters,
    go_float,
    go_quote,
    parse_modelfile,
    quote_value,
    render_commands,
    render_modelfile,
    spec_commands,
)

F = Command("from", "m")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM llama3", [Command("from", "llama3")]),
        ("from llama3\n", [Command("from", "llama3")]),
        ("FrOm   llama3   \n", [Command("from", "llama3")]),
        ("\ufeffFROM m", [F]),
        ("# a comment\n\n   \nFROM m\n  # indented comment", [F]),
        ("FROM m\r\nSYSTEM hi\r\n", [F, Command("system", "hi")]),
        ("FROM m\rSYSTEM hi", [F, Command("system", "hi")]),
        ("FROM m\nSYSTEM hello # not a comment", [F, Command("system", "hello # not a comment")]),
        ("FROM m\nSYSTEM\t tabbed", [F, Command("system", "tabbed")]),
        ("FROM m\nSYSTEM a\tb", [F, Command("system", "a\tb")]),
        ("FROM m\nSYSTEM ", [F, Command("system", "")]),
        ('FROM m\nSYSTEM ""', [F, Command("system", "")]),
        ('FROM m\nSYSTEM """"""', [F, Command("system", "")]),
        ('FROM m\nSYSTEM "  padded  "', [F, Command("system", "  padded  ")]),
        ('FROM m\nSYSTEM say "hi"', [F, Command("system", 'say "hi"')]),
        ('FROM m\nSYSTEM "a" "b"', [F, Command("system", 'a" "b')]),
        ("FROM m\nSYSTEM 'single'", [F, Command("system", "'single'")]),
        ('FROM m\nSYSTEM "line one\nline two"', [F, Command("system", "line one\nline two")]),
        ('FROM m\nSYSTEM "one\r\ntwo"', [F, Command("system", "one\ntwo")]),
        ('FROM m\nTEMPLATE """\n{{ .Prompt }} "q"\n"""', [F, Command("template", '\n{{ .Prompt }} "q"\n')]),
        ('FROM m\nTEMPLATE """a\n"b"\nc"""  ', [F, Command("template", 'a\n"b"\nc')]),
        ('FROM m\nSYSTEM """x"""\nLICENSE MIT', [F, Command("system", "x"), Command("license", "MIT")]),
        ("FROM m\nLICENSE a\nLICENSE b", [F, Command("license", "a"), Command("license", "b")]),
        ("FROM m\nADAPTER ./lora.gguf\nDRAFT ./d.gguf", [F, Command("adapter", "./lora.gguf"), Command("draft", "./d.gguf")]),
        ("FROM m\nRENDERER qwen3\nPARSER qwen3", [F, Command("renderer", "qwen3"), Command("parser", "qwen3")]),
        ("FROM m\nREQUIRES 0.14.0\nrequires v1.2.3-rc.1+b5", [F, Command("requires", "0.14.0"), Command("requires", "v1.2.3-rc.1+b5")]),
        ("FROM m\nREQUIRES v1\nREQUIRES 1.2", [F, Command("requires", "v1"), Command("requires", "1.2")]),
        ("FROM m\nPARAMETER temperature 0.5", [F, Command("parameter", "0.5", "temperature")]),
        ("FROM m\nPARAMETER   stop   <|eot|>  ", [F, Command("parameter", "<|eot|>", "stop")]),
        ('FROM m\nPARAMETER stop "\n"', [F, Command("parameter", "\n", "stop")]),
        ("FROM m\nMESSAGE user hello there", [F, Command("message", "hello there", "user")]),
        ('FROM m\nMESSAGE assistant "two\nlines"', [F, Command("message", "two\nlines", "assistant")]),
        ("FROM a\nFROM ./mmproj.gguf", [Command("from", "a"), Command("from", "./mmproj.gguf")]),
    ],
)
def test_parse(text: str, expected: list[Command]) -> None:
    """Instructions are case-insensitive, values trimmed and unquoted, comments and blank lines skipped."""
    assert list(parse_modelfile(text).commands) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no FROM line"),
        ("# only a comment\nSYSTEM hi", "no FROM line"),
        ("FROM m\nBOGUS x", f"(line 2): {ERR_COMMAND}"),
        ("FROM m\nSYS-TEM x", f"(line 2): {ERR_COMMAND}"),
        ("FROM m\nFROM1 x", f"(line 2): {ERR_COMMAND}"),
        ("FROM m\n\n  ~tilde", f"(line 3): {ERR_COMMAND}"),
        ("FROM m\nMESSAGE tool hi", '(line 2): message role must be one of "system", "user", or "assistant"'),
        ("FROM m\nMESSAGE User hi", '(line 2): message role must be one of "system", "user", or "assistant"'),
        ("FROM m\nMESSAGE user", "(line 2): unexpected EOF"),
        ("FROM m\nMESSAGE user   \nSYSTEM x", "(line 2): unexpected EOF"),
        ("FROM m\nPARAMETER temperature", "(line 2): unexpected EOF"),
        ("FROM m\nPARAMETER", "(line 2): unexpected EOF"),
        ("FROM", "(line 1): unexpected EOF"),
        ("FROM m\nSYSTEM\nPARAMETER x 1", "(line 2): unexpected EOF"),
        ('FROM m\nSYSTEM "unterminated\nstill going', "(line 2): unexpected EOF"),
        ('FROM m\nSYSTEM """a\nb"', "(line 2): unexpected EOF"),
        ('FROM m\nSYSTEM """x"""  trailing', "(line 2): unexpected EOF"),
        ('FROM m\nSYSTEM "', "(line 2): unexpected EOF"),
        ("FROM m\nREQUIRES latest", "(line 2): requires must be a valid semver (e.g. 0.14.0)"),
        ("FROM m\nREQUIRES 01.2.3", "(line 2): requires must be a valid semver (e.g. 0.14.0)"),
        ("FROM m\nREQUIRES 1.2-rc1", "(line 2): requires must be a valid semver (e.g. 0.14.0)"),
        ("FROM m\nREQUIRES vv1.0.0", "(line 2): requires must be a valid semver (e.g. 0.14.0)"),
        ("FROM m\nPARAMETER top-k 5", "(line 2): unknown parameter 'top-k'"),
        ("FROM m\nPARAMETER foo 5", "(line 2): unknown parameter 'foo'"),
        ("FROM m\nPARAMETER Temperature 5", "(line 2): unknown parameter 'Temperature'"),
        ("FROM m\r\n\r\nPARAMETER num_ctx 4096.0", "(line 3): invalid int value [4096.0]"),
        ("FROM m\nPARAMETER num_ctx 1_000", "(line 2): invalid int value [1_000]"),
        ("FROM m\nPARAMETER seed 99999999999999999999", "(line 2): invalid int value [99999999999999999999]"),
        ("FROM m\nPARAMETER temperature hot", "(line 2): invalid float value [hot]"),
        ("FROM m\nPARAMETER temperature inf", "(line 2): invalid float value [inf]"),
        ("FROM m\nPARAMETER temperature 1e400", "(line 2): invalid float value [1e400]"),
        ("FROM m\nPARAMETER use_mmap yes", "(line 2): invalid bool value [yes]"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    """Malformed Modelfiles fail with Ollama's message, prefixed by the instruction's line."""
    with pytest.raises(ModelfileError) as exc:
        parse_modelfile(text)
    assert exc.value.message == message


def test_modelfile_error_is_a_bad_request() -> None:
    """A Modelfile error is a client error (400) in the one error tree."""
    with pytest.raises(BadRequest) as exc:
        parse_modelfile("SYSTEM x")
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["num_ctx 4096", "seed -1", "num_keep +3"], {"num_ctx": 4096, "seed": -1, "num_keep": 3}),
        (["temperature 0.6", "top_p 1", "min_p .05", "repeat_penalty 1e0"],
         {"temperature": 0.6, "top_p": 1.0, "min_p": 0.05, "repeat_penalty": 1.0}),
        (["use_mmap T"], {"use_mmap": True}),
        (["use_mmap 0"], {"use_mmap": False}),
        (["use_mmap FALSE"], {"use_mmap": False}),
        (["stop a", "stop b", 'stop "c d"'], {"stop": ["a", "b", "c d"]}),
        (["temperature 0.1", "temperature 0.9"], {"temperature": 0.9}),
        (['num_predict "128"'], {"num_predict": 128}),
    ],
)  # fmt: skip
def test_parameter_types(lines: list[str], expected: dict[str, Any]) -> None:
    """PARAMETER values get their option's type; stop accumulates, other repeats keep the last value."""
    text = "FROM m\n" + "".join(f"PARAMETER {line}\n" for line in lines)
    result = parse_modelfile(text).parameters
    assert result == expected
    assert all(type(result[k]) is type(v) for k, v in expected.items())


def test_deprecated_parameters_are_dropped_with_a_warning() -> None:
    """Deprecated parameter names are left out of the typed values and reported as warnings."""
    mf = parse_modelfile("FROM m\nPARAMETER mirostat 2\nPARAMETER use_mlock true\nPARAMETER top_k 20\n")
    assert mf.parameters == {"top_k": 20}
    assert mf.warnings == (
        "parameter 'mirostat' is deprecated and was ignored",
        "parameter 'use_mlock' is deprecated and was ignored",
    )
    assert [c.key for c in mf.commands if c.name == "parameter"] == ["mirostat", "use_mlock", "top_k"]


def test_command_line_numbers() -> None:
    """Each command remembers the line its instruction starts on (not part of equality)."""
    mf = parse_modelfile('# c\nFROM m\nSYSTEM """a\nb"""\nLICENSE x')
    assert [c.line for c in mf.commands] == [2, 3, 5]
    assert Command("from", "m", line=1) == Command("from", "m", line=9)


# -- serialization ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("has inner  spaces", "has inner  spaces"),
        ('say "hi"', 'say "hi"'),
        ("<|eot_id|>", "<|eot_id|>"),
        ("", '""'),
        (" lead", '" lead"'),
        ("trail\t", '"trail\t"'),
        ("two\nlines", '"two\nlines"'),
        ("\n", '"\n"'),
        ('"quoted"', '""""quoted""""'),
        ('"', '"""""""'),
        ('a "b"\nc', '"""a "b"\nc"""'),
        ('x """ y\nz', '"""x """ y\nz"""'),
    ],
)
def test_quote_value(value: str, expected: str) -> None:
    """Values are bare when unambiguous, else in "…", or in triple quotes when they contain a quote."""
    assert quote_value(value) == expected


_ALPHABET = ['"', '"""', "\n", " ", "\t", "a", "b", "#", "\r\n"]


def _random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 10))) for _ in range(count)]


def test_every_parsed_value_round_trips() -> None:
    """Any value the parser produces renders to text that parses back to the same value."""
    produced = 0
    for raw in _random_texts(seed=7, count=4000):
        try:
            cmds = parse_modelfile(f"FROM m\nSYSTEM {raw}\nLICENSE end").commands
        except ModelfileError:
            continue
        produced += 1
        assert parse_modelfile(render_commands(cmds)).commands == cmds, repr(raw)
    assert produced > 1000


@pytest.mark.parametrize(
    "value",
    ["", " ", '"', '""', '"""', '""""""', "\n", "\n\n", ' "\n', 'a"\nb', '""\nx', '"x"', '"""x"""', "\t\tx",
     'end with quote"', "multi\nline\nvalue\n", "#not comment", "MESSAGE user hi", 'a\n"""x'],
)  # fmt: skip
def test_tricky_values_round_trip(value: str) -> None:
    """Empty strings, quotes, newlines, blanks and embedded triple quotes survive render → parse."""
    for cmd in (Command("system", value), Command("parameter", value, "stop"), Command("message", value, "user")):
        parsed = parse_modelfile(render_commands([F, cmd])).commands
        assert parsed == (F, cmd)


def test_unrepresentable_value_is_the_only_failure() -> None:
    """Only a multi-line value with an inner line ending in three quotes fails to round-trip."""
    rng = random.Random(11)
    for _ in range(3000):
        value = "".join(rng.choice(['"', "\n", " ", "a"]) for _ in range(rng.randint(0, 8)))
        inner = value.split("\n")[:-1]
        unrepresentable = any(line.rstrip(" ").endswith('"""') for line in inner) and '"' in value
        try:
            ok = parse_modelfile(render_commands([F, Command("system", value)])).commands == (F, Command("system", value))
        except ModelfileError:
            ok = False
        assert ok != unrepresentable, repr(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.6, "0.6"), (1.0, "1"), (0.0, "0"), (-0.5, "-0.5"), (1e-05, "1e-05"), (0.0001, "0.0001"),
     (100000.0, "100000"), (1e6, "1e+06"), (1234567.0, "1.234567e+06"), (1e21, "1e+21"), (1.5e-7, "1.5e-07"),
     (0.1 + 0.2, "0.30000000000000004"), (123.456, "123.456"), (1e100, "1e+100")],
)  # fmt: skip
def test_go_float(value: float, expected: str) -> None:
    """Floats print as Go's %v: shortest digits, exponent form below 1e-4 and from 1e6."""
    assert go_float(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("<|eot_id|>", '"<|eot_id|>"'), ('say "x"', '"say \\"x\\""'), ("a\\b", '"a\\\\b"'), ("\n\t", '"\\n\\t"'),
     ("\x1b", '"\\x1b"'), ("\u00a0", '"\\u00a0"'), ("héllo ✓", '"héllo ✓"'), ("\U000e0001", '"\\U000e0001"')],
)  # fmt: skip
def test_go_quote(value: str, expected: str) -> None:
    """Strings print as Go's %q: escapes for quotes, backslashes and non-printing runes only."""
    assert go_quote(value) == expected


def test_format_parameters() -> None:
    """Show's parameters: key padded to 30 columns, Go value, list keys repeated, sorted by key."""
    text = format_parameters({"temperature": 0.6, "stop": ["<|im_start|>", "<|im_end|>"], "num_ctx": 4096, "use_mmap": False})
    assert text.split("\n") == [
        "num_ctx                        4096",
        'stop                           "<|im_start|>"',
        'stop                           "<|im_end|>"',
        "temperature                    0.6",
        "use_mmap                       false",
    ]
    assert format_parameters({}) == ""


_SPEC = ModelfileSpec(
    short_name="qwen:latest",
    model_path="/models/blobs/sha256-aaa",
    adapters=["/models/blobs/sha256-bbb"],
    draft="/models/blobs/sha256-ddd",
    projectors=["/models/blobs/sha256-ccc"],
    template='{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"{{ .Prompt }}"',
    system=" You are helpful. ",
    renderer="qwen3",
    parser="qwen3",
    parameters={"stop": ["<|im_end|>", "\n\n"], "temperature": 0.7, "num_ctx": 8192.0, "use_mmap": True},
    licenses=["MIT License\n\nCopyright", "Apache-2.0"],
    messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!\n"}],
)


def test_render_modelfile() -> None:
    """Show's modelfile: header comments, then FROM, ADAPTER, DRAFT, projectors, … MESSAGE, in order."""
    assert render_modelfile(_SPEC) == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM qwen:latest\n"
        "\n"
        "FROM /models/blobs/sha256-aaa\n"
        "ADAPTER /models/blobs/sha256-bbb\n"
        "DRAFT /models/blobs/sha256-ddd\n"
        "FROM /models/blobs/sha256-ccc\n"
        'TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"{{ .Prompt }}""""\n'
        'SYSTEM " You are helpful. "\n'
        "RENDERER qwen3\n"
        "PARSER qwen3\n"
        "PARAMETER num_ctx 8192\n"
        "PARAMETER stop <|im_end|>\n"
        'PARAMETER stop "\n\n"\n'
        "PARAMETER temperature 0.7\n"
        "PARAMETER use_mmap true\n"
        'LICENSE "MIT License\n\nCopyright"\n'
        "LICENSE Apache-2.0\n"
        "MESSAGE user hi\n"
        'MESSAGE assistant "hello!\n"\n'
    )


def test_render_modelfile_minimal() -> None:
    """Empty optional fields are left out."""
    text = render_modelfile(ModelfileSpec(short_name="m:latest", model_path="/b/sha256-1"))
    assert text.endswith("# FROM m:latest\n\nFROM /b/sha256-1\n")


def test_rendered_modelfile_parses_back() -> None:
    """Show's Modelfile parses back to the same commands and the same typed parameters."""
    mf = parse_modelfile(render_modelfile(_SPEC))
    assert mf.commands == tuple(spec_commands(_SPEC))
    assert mf.parameters == {"stop": ["<|im_end|>", "\n\n"], "temperature": 0.7, "num_ctx": 8192, "use_mmap": True}
    assert mf.values("system") == [" You are helpful. "]
    assert mf.values("template") == [_SPEC.template]
