"""Random templates over random data: parsing and execution fail only with the engine's errors."""

from __future__ import annotations

import random
from collections.abc import Callable

from supervisor.templates import (
    OLLAMA_FUNCTIONS,
    TemplateExecError,
    TemplateSyntaxError,
    TemplateValues,
    execute,
    message_value,
    parse_template,
    tools_value,
)
from supervisor.templates.gotemplate import OLLAMA_FUNCS
from tests.go_structs import Broken, Celsius, Person
from tests.unit.test_gotemplate_parse import CHATML_TOOLS, LLAMA3

CASES = 3000
SEED = 20260806
FIELDS = ["Name", "Age", "Tags", "Boss", "M", "Role", "Content", "Messages", "Tools", "Function", "Arguments", "x", "secret"]
FUNCTIONS = sorted(
    "and or not len index slice eq ne lt le gt ge print printf println html js urlquery call json currentDate "
    "yesterdayDate toTypeScriptType boom echo".split()
)
KEYWORDS = ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "else if", "else with"]


def _boom(*args: object) -> object:
    if len(args) % 2:
        raise ValueError("boom")
    return args


FUNCS: dict[str, Callable[..., object]] = {**OLLAMA_FUNCTIONS, "boom": _boom, "echo": lambda x: x}
PARSE_FUNCS = OLLAMA_FUNCS | {"boom", "echo"}


class Gen:
    """Grammar-driven template and data generator (bounded sizes, so every case is small)."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    # -- data --

    def scalar(self) -> object:
        return self.r.choice(
            [None, True, False, 0, 1, -7, 2**40, 0.0, 1.5, -2.25e-7, 1e21, float("nan"), float("inf"), "",
             "x", "héllo <&>", "0", "\n\t\x00", b"by", 3j, len]  # fmt: skip
        )

    def data(self, depth: int = 0) -> object:
        roll = self.r.random()
        if depth > 3 or roll < 0.35:
            return self.scalar()
        if roll < 0.55:
            return [self.data(depth + 1) for _ in range(self.r.randint(0, 4))]
        if roll < 0.75:
            return {self.r.choice(FIELDS): self.data(depth + 1) for _ in range(self.r.randint(0, 5))}
        if roll < 0.85:
            return Person(Name="n", Tags=[self.data(depth + 1)], Boss=self.data(depth + 1))
        if roll < 0.9:
            return self.r.choice([Celsius(), Broken()])
        return self.ollama()

    def ollama(self) -> object:
        call = {"function": {"name": "f", "arguments": {"a": 1, "b": [1, {"c": None}]}}}
        msg = {"role": "assistant", "content": "c", "tool_calls": [call]}
        params = {"type": "object", "properties": {"p": {"type": ["string", "null"]}}}
        tool = {"type": "function", "function": {"name": "f", "parameters": params}}
        return TemplateValues(System="s", Messages=[message_value(msg)], Tools=tools_value([tool]), Think=True)

    # -- templates --

    def operand(self, depth: int) -> str:
        roll = self.r.random()
        if roll < 0.25:
            return "." + ".".join(self.r.choice(FIELDS) for _ in range(self.r.randint(1, 3)))
        if roll < 0.35:
            return self.r.choice([".", "$", "$x", "$v", "$.Boss", "$x.Name"])
        if roll < 0.55:
            return self.r.choice(['"s"', "`raw`", "1", "-3", "1.5", "1e3", "0x1F", "'a'", "2i", "true", "false",
                                  "nil", '"%d %s %v %!"', '"%[2]*.*f"', "99999999999", "18446744073709551615"])  # fmt: skip
        if roll < 0.75 and depth < 3:
            return "(" + self.pipeline(depth + 1) + ")"
        if roll < 0.85 and depth < 3:
            return "(" + self.pipeline(depth + 1) + ")." + self.r.choice(FIELDS)
        return self.r.choice(FUNCTIONS)

    def command(self, depth: int) -> str:
        if self.r.random() < 0.5:
            return " ".join([self.r.choice(FUNCTIONS)] + [self.operand(depth) for _ in range(self.r.randint(0, 3))])
        return self.operand(depth)

    def pipeline(self, depth: int = 0) -> str:
        cmds = [self.command(depth) for _ in range(self.r.randint(1, 3))]
        decl = self.r.choice(["", "", "", "$x := ", "$x = ", "$v := ", "$i, $v := "])
        return decl + " | ".join(cmds)

    def body(self, depth: int = 0) -> str:
        parts = []
        for _ in range(self.r.randint(0, 4)):
            roll = self.r.random()
            if roll < 0.2:
                parts.append(self.r.choice(["text ", "\n", " a{b}c ", "é", "{", "}"]))
            elif roll < 0.5 or depth > 2:
                parts.append("{{" + self.r.choice(["", "- "]) + self.pipeline() + self.r.choice(["", " -"]) + "}}")
            elif roll < 0.85:
                keyword = self.r.choice(["if", "range", "with"])
                other = "{{else}}" + self.body(depth + 1) if self.r.random() < 0.3 else ""
                inner = self.body(depth + 1)
                if keyword == "range" and self.r.random() < 0.3:
                    inner += self.r.choice(["{{break}}", "{{continue}}", "{{if .}}{{break}}{{end}}"])
                parts.append(f"{{{{{keyword} {self.pipeline()}}}}}{inner}{other}{{{{end}}}}")
            elif roll < 0.93:
                name = self.r.choice(["a", "b"])
                parts.append(f'{{{{define "{name}"}}}}{self.body(depth + 1)}{{{{end}}}}{{{{template "{name}" {self.operand(0)}}}}}')
            else:
                parts.append("{{/* c */}}" + self.r.choice(["{{" + self.r.choice(KEYWORDS) + "}}", "{{", "}}", ")", "(("]))
        return "".join(parts)

    def mutate(self, source: str) -> str:
        chars = list(source)
        for _ in range(self.r.randint(1, 4)):
            if not chars:
                break
            i = self.r.randrange(len(chars))
            op = self.r.random()
            if op < 0.4:
                del chars[i]
            elif op < 0.8:
                chars.insert(i, self.r.choice("{}().|$:=\"`' -/*ed\n"))
            else:
                chars[i:i] = list(self.r.choice(["{{end}}", "{{else}}", "{{range .}}", "{{template \"a\" .}}", "{{break}}"]))
        return "".join(chars)

    def template(self) -> str:
        roll = self.r.random()
        if roll < 0.15:
            return self.mutate(self.r.choice([CHATML_TOOLS, LLAMA3]))
        source = self.body()
        return self.mutate(source) if roll < 0.45 else source


def test_random_templates_raise_only_template_errors() -> None:
    """Random valid and broken templates over random data raise only the two template errors, in bounds."""
    gen = Gen(random.Random(SEED))
    outcomes = {"ok": 0, "syntax": 0, "exec": 0}
    for case in range(CASES):
        source = gen.template()
        try:
            tset = parse_template(source, funcs=PARSE_FUNCS)
        except TemplateSyntaxError:
            outcomes["syntax"] += 1
            continue
        data = gen.data()
        try:
            out = execute(tset, data, funcs=FUNCS, max_output=20_000, max_steps=5_000)
        except TemplateExecError:
            outcomes["exec"] += 1
            continue
        except Exception as exc:  # pragma: no cover - this is the failure being hunted
            raise AssertionError(f"case {case}: {type(exc).__name__}: {exc}\ntemplate: {source!r}\ndata: {data!r}") from exc
        assert isinstance(out, str) and len(out) <= 20_000
        outcomes["ok"] += 1
    # The generator must exercise all three outcomes substantially, or the test proves little.
    assert min(outcomes.values()) > CASES // 20, outcomes
