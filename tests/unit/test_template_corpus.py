"""Golden renderings of a corpus of Ollama-style Go chat templates.

Every ``tests/data/templates/<family>/`` holds a ``template.gotmpl`` written from that model family's
documented chat format, and cases ``<case>.json`` (``{"messages", "tools", "think"}`` as an Ollama
``/api/chat`` request carries them) with ``<case>.expected``: the exact prompt, derived by hand from
Go ``text/template`` semantics and Ollama's execution rules (reference/ollama-api.md §11), not
captured from the renderer. A mismatch is a bug in the renderer unless the golden is shown wrong.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from supervisor.protocol.ollama_requests import Message, parse_think
from supervisor.templates import parse_ollama_template
from supervisor.templates.capabilities import template_capabilities

CORPUS = Path(__file__).resolve().parent.parent / "data" / "templates"

# What each family's template should give a model (Ollama's order: tools, insert, thinking).
CAPABILITIES: dict[str, list[str]] = {
    "chatml-qwen2.5": ["tools"],
    "command-r": ["tools"],
    "deepseek-r1": ["thinking"],
    "gemma": [],
    "legacy-chatml": [],
    "legacy-orca": [],
    "llama3": ["tools"],
    "mistral": ["tools"],
    "phi3": [],
}


def _families() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_dir())


def _cases() -> list[tuple[Path, str]]:
    return [(family, case.stem) for family in _families() for case in sorted(family.glob("*.json"))]


def _read(path: Path) -> str:
    # Bytes as stored: no newline translation, so the comparison is byte for byte.
    return path.read_bytes().decode("utf-8")


def _explain(expected: str, got: str) -> str:
    """A unified diff with line ends made visible, and the first differing offset."""
    pairs = enumerate(zip(expected, got, strict=False))
    offset = next((i for i, (a, b) in pairs if a != b), min(len(expected), len(got)))
    diff = difflib.unified_diff(
        [repr(line) + "\n" for line in expected.splitlines(keepends=True)],
        [repr(line) + "\n" for line in got.splitlines(keepends=True)],
        fromfile="expected",
        tofile="rendered",
        lineterm="\n",
    )
    return (
        f"first difference at character {offset} "
        f"(expected {expected[offset:offset + 40]!r}, rendered {got[offset:offset + 40]!r}); "
        f"lengths {len(expected)} vs {len(got)}\n" + "".join(diff)
    )


def test_corpus_is_complete() -> None:
    families = _families()
    assert families, f"no template families under {CORPUS}"
    for family in families:
        assert (family / "template.gotmpl").is_file(), f"{family.name}: no template.gotmpl"
        cases = sorted(family.glob("*.json"))
        assert cases, f"{family.name}: no cases"
        for case in cases:
            assert case.with_suffix(".expected").is_file(), f"{family.name}/{case.stem}: no .expected"
    assert sorted(CAPABILITIES) == [f.name for f in families], "every family declares its capabilities"


@pytest.mark.parametrize("family", [f.name for f in _families()])
def test_template_parses_with_expected_capabilities(family: str) -> None:
    source = _read(CORPUS / family / "template.gotmpl")
    parse_ollama_template(source)  # raises TemplateSyntaxError on a bad template
    assert template_capabilities(source) == CAPABILITIES[family]


@pytest.mark.parametrize(
    ("family", "case"), [(f, c) for f, c in _cases()], ids=[f"{f.name}/{c}" for f, c in _cases()]
)
def test_golden_rendering(family: Path, case: str) -> None:
    from supervisor.templates.prompt import render_messages  # needs the executor modules

    spec = json.loads(_read(family / f"{case}.json"))
    tset = parse_ollama_template(_read(family / "template.gotmpl"))
    messages = [Message.from_json(m) for m in spec["messages"]]
    got = render_messages(tset, messages, spec.get("tools") or [], parse_think(spec.get("think")))
    expected = _read(family / f"{case}.expected")
    assert got == expected, _explain(expected, got)
