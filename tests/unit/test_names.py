"""Model name grammar (Ollama's types/model/name.go)."""

from __future__ import annotations

import pytest

from supervisor.errors import InvalidModelName
from supervisor.store.names import ModelName, is_valid_part

VALID = [
    # text, host, namespace, model, tag
    ("llama3.2", "registry.ollama.ai", "library", "llama3.2", "latest"),
    ("llama3.2:1b", "registry.ollama.ai", "library", "llama3.2", "1b"),
    ("library/llama3.2", "registry.ollama.ai", "library", "llama3.2", "latest"),
    ("jmorgan/mistral:7b-q4", "registry.ollama.ai", "jmorgan", "mistral", "7b-q4"),
    ("hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M", "hf.co", "bartowski", "Llama-3.2-1B-GGUF", "Q4_K_M"),
    ("localhost:5000/ns/m", "localhost:5000", "ns", "m", "latest"),
    ("localhost:5000/ns/m:v1", "localhost:5000", "ns", "m", "v1"),
    ("https://example.com/ns/m:t", "example.com", "ns", "m", "t"),
    ("http://example.com/ns/m", "example.com", "ns", "m", "latest"),
    ("  llama3.2:1b \n", "registry.ollama.ai", "library", "llama3.2", "1b"),
    ("_x/_y:_z", "registry.ollama.ai", "_x", "_y", "_z"),
    ("a", "registry.ollama.ai", "library", "a", "latest"),
    ("m:1.5b.q4_K-m", "registry.ollama.ai", "library", "m", "1.5b.q4_K-m"),
    ("LLAMA3.2:LATEST", "registry.ollama.ai", "library", "LLAMA3.2", "LATEST"),
    ("h.a-b_c:1/n-s_/m", "h.a-b_c:1", "n-s_", "m", "latest"),
]

INVALID = [
    "",
    "   ",
    "bad name!",
    "model name",
    "ns/",
    "/model",
    "m:",
    ":tag",
    "host//m",
    "//m",
    "a/b/c/d",
    "a/b/c/d:e",
    "ns.dot/m",  # no '.' in a namespace
    "-model",
    ".model",
    "m:-tag",
    "m:.tag",
    "ns/-m",
    "-ns/m",
    "-host/ns/m",
    ".host/ns/m",
    "m:t:t2",  # ':' is not a tag character
    "m@sha256:" + "a" * 64,
    "m:latest@sha256-" + "a" * 64,
    "@sha256:" + "a" * 64,
    "mödel",
    "m:tæg",
    "m/",
    "ns/m:",
    "https://m",
    "scheme://ns/m",
    "host:5000/m:t",  # namespace "host:5000" has ':'
    "m+build",
    "ns/m$",
    "m\tx",
]


@pytest.mark.parametrize(("text", "host", "namespace", "model", "tag"), VALID)
def test_parse_valid(text: str, host: str, namespace: str, model: str, tag: str) -> None:
    """Valid names parse into their parts, with defaults filled and case preserved."""
    name = ModelName.parse(text)
    assert name.parts == (host, namespace, model, tag)


@pytest.mark.parametrize("text", INVALID)
def test_parse_invalid(text: str) -> None:
    """Malformed names raise InvalidModelName with Ollama's message."""
    with pytest.raises(InvalidModelName, match="^invalid model name$"):
        ModelName.parse(text)


@pytest.mark.parametrize("text", INVALID)
def test_try_parse_invalid_is_none(text: str) -> None:
    """try_parse returns None instead of raising."""
    assert ModelName.try_parse(text) is None


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:1b", "llama3.2:1b"),
        ("library/llama3.2", "llama3.2:latest"),
        ("registry.ollama.ai/library/llama3.2:1b", "llama3.2:1b"),
        ("REGISTRY.OLLAMA.AI/LIBRARY/Foo:Bar", "Foo:Bar"),
        ("jmorgan/m", "jmorgan/m:latest"),
        ("registry.ollama.ai/jmorgan/m:t", "jmorgan/m:t"),
        ("hf.co/library/m", "hf.co/library/m:latest"),
        ("hf.co/u/r:Q4_K_M", "hf.co/u/r:Q4_K_M"),
    ],
)
def test_display(text: str, display: str) -> None:
    """display is the shortest name, always with a tag, defaults compared ignoring case."""
    assert ModelName.parse(text).display == display


def test_str_is_fully_qualified() -> None:
    """str() is host/namespace/model:tag."""
    assert str(ModelName.parse("llama3.2")) == "registry.ollama.ai/library/llama3.2:latest"
    assert str(ModelName.parse("hf.co/u/r:q")) == "hf.co/u/r:q"


def test_casefold_key_ignores_case() -> None:
    """Names that differ only in case share a casefold_key but are not equal."""
    a = ModelName.parse("LLAMA3.2")
    b = ModelName.parse("llama3.2:latest")
    c = ModelName.parse("Registry.Ollama.AI/Library/Llama3.2:Latest")
    assert a.casefold_key == b.casefold_key == c.casefold_key
    assert a.equal_fold(b)
    assert a != b
    assert a.casefold_key != ModelName.parse("llama3.2:1b").casefold_key


def test_scheme_kept_but_not_identity() -> None:
    """The scheme is remembered for pulls but does not affect equality."""
    plain = ModelName.parse("example.com/ns/m")
    insecure = ModelName.parse("http://example.com/ns/m")
    assert plain.scheme == "https"
    assert insecure.scheme == "http"
    assert plain == insecure
    assert hash(plain) == hash(insecure)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("a" * 80, True),
        ("a" * 81, False),
        ("ns/" + "m" * 80, True),
        ("n" * 80 + "/m", True),
        ("n" * 81 + "/m", False),
        ("m:" + "t" * 80, True),
        ("m:" + "t" * 81, False),
        ("h" * 350 + "/ns/m", True),
        ("h" * 351 + "/ns/m", False),
    ],
)
def test_part_lengths(text: str, ok: bool) -> None:
    """Parts are limited to 80 characters (host: 350)."""
    assert (ModelName.try_parse(text) is not None) is ok


def test_constructor_validates() -> None:
    """Constructing a ModelName directly checks every part too."""
    assert ModelName("h", "n", "m", "t").display == "h/n/m:t"
    for parts in [("h", "n.x", "m", "t"), ("h", "n", "", "t"), ("h", "n", "m", ".."), ("h/x", "n", "m", "t")]:
        with pytest.raises(InvalidModelName):
            ModelName(*parts)


@pytest.mark.parametrize(
    ("kind", "text", "ok"),
    [
        ("host", "a.b:1-_", True),
        ("namespace", "a_b-c", True),
        ("namespace", "a.b", False),
        ("model", "a.b-c_d", True),
        ("model", "a:b", False),
        ("tag", "a/b", False),
        ("tag", "_", True),
        ("model", "", False),
    ],
)
def test_is_valid_part(kind: str, text: str, ok: bool) -> None:
    """Per-part character rules: first alnum/_, then the part's extra characters."""
    assert is_valid_part(kind, text) is ok  # type: ignore[arg-type]
