"""ThinkingParser: Ollama's thinking/content split of streamed output, whatever the piece boundaries."""

from __future__ import annotations

import random

import pytest

from supervisor.templates.thinking import ThinkingParser, prompt_opens_thinking
from tests.splits import splits


def run(
    pieces: list[str], opening: str = "<think>", closing: str = "</think>", started: bool = False
) -> tuple[str, str]:
    parser = ThinkingParser(opening, closing, started=started)
    thinking, content = [], []
    for piece in pieces:
        t, c = parser.feed(piece)
        thinking.append(t)
        content.append(c)
    t, c = parser.finish()
    return "".join(thinking) + t, "".join(content) + c


# (id, output, started, expected thinking, expected content)
CASES: list[tuple[str, str, bool, str, str]] = [
    ("no-tag", "no think", False, "", "no think"),
    ("no-tag-keeps-leading-space", "  abc", False, "", "  abc"),
    ("simple", "<think>internal</think>world", False, "internal", "world"),
    ("space-after-tags-dropped", "<think> internal </think> world", False, "internal ", "world"),
    ("leading-space-before-tag", "  \n<think>abc</think>\n\ndef", False, "abc", "def"),
    ("only-first-block", "<think>a</think><think>b</think>c", False, "a", "<think>b</think>c"),
    ("content-first-nerfs-tag", "  abc <think>def</think> ghi", False, "", "  abc <think>def</think> ghi"),
    ("fake-closing-tag", "<think>abc</thing>def</think>jkl", False, "abc</thing>def", "jkl"),
    ("never-closed", "<think>still thinking</th", False, "still thinking</th", ""),
    ("empty-block", "<think>\n\n</think>\n\nHi there", False, "", "Hi there"),
    ("content-trailing-space-kept", "<think>x</think>def  ghi ", False, "x", "def  ghi "),
    ("partial-opening-at-end", "  <thi", False, "", "  <thi"),
    ("only-white-space", " \n\t", False, "", " \n\t"),
    ("opening-only", "<think>", False, "", ""),
    ("almost-opening", "<thinking>x", False, "", "<thinking>x"),
    ("started", "\n  I reason</think>\n\nAnswer", True, "I reason", "Answer"),
    ("started-never-closed", "I reason", True, "I reason", ""),
    ("started-opening-again-is-text", "<think>x</think>y", True, "<think>x", "y"),
    ("go-space-not-python-space", "\x1c<think>x</think>y", False, "", "\x1c<think>x</think>y"),
    ("unicode-space-skipped", "\u3000<think>\u00a0x</think>\u2028y", False, "x", "y"),
    ("non-ascii", "<think>ünïcödé 思考</think>答え", False, "ünïcödé 思考", "答え"),
]


CASE_ARGS = pytest.mark.parametrize(
    ("output", "started", "thinking", "content"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)


@CASE_ARGS
def test_whole_output(output: str, started: bool, thinking: str, content: str) -> None:
    """Fed whole, the output splits into the expected thinking and content."""
    assert run([output], started=started) == (thinking, content)


@CASE_ARGS
def test_every_split_gives_the_same_result(output: str, started: bool, thinking: str, content: str) -> None:
    """Any way of cutting the output into pieces gives the same thinking and content as whole."""
    for pieces in splits(output):
        assert run(pieces, started=started) == (thinking, content), pieces


# Each step: (piece, thinking released, content released); these pin what is held back and when.
STEPS: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("partial-opening-held", [("  <th", "", ""), ("in", "", ""), ("k>a", "a", "")]),
    ("partial-closing-held", [("<think>abc</th", "abc", ""), ("ink>def", "", "def")]),
    (
        "partial-closing-fakeout",
        [("<think>abc</th", "abc", ""), ("ing>def", "</thing>def", ""), ("ghi</thi", "ghi", ""), ("nk>jkl", "", "jkl")],
    ),
    (
        "token-by-token",
        [
            ("<think>", "", ""),
            ("\n", "", ""),
            ("</think>", "", ""),
            ("\n\n", "", ""),
            ("Hi", "", "Hi"),
            (" there", "", " there"),
        ],
    ),
    (
        "white-space-around-thinking",
        [
            ("  <think>   \t ", "", ""),
            ("  these are some ", "these are some ", ""),
            ("thoughts </think>  ", "thoughts ", ""),
            ("  more", "", "more"),
        ],
    ),
    ("no-tag-released-at-once", [("  abc", "", "  abc"), ("def", "", "def")]),
    ("white-space-held-until-decided", [("  ", "", ""), ("\n", "", ""), ("x", "", "  \nx")]),
    ("thinking-text-released-at-once", [("<think>a", "a", ""), ("bc", "bc", ""), ("<", "", ""), ("b>", "<b>", "")]),
]


@pytest.mark.parametrize("steps", [s[1] for s in STEPS], ids=[s[0] for s in STEPS])
def test_streaming_steps(steps: list[tuple[str, str, str]]) -> None:
    """Text is released as soon as it cannot be part of a tag, and a partial tag is held."""
    parser = ThinkingParser()
    for piece, thinking, content in steps:
        assert parser.feed(piece) == (thinking, content), piece


def test_finish_releases_held_partial_tag_as_thinking() -> None:
    """A partial closing tag still held at the end of the output is thinking, not lost."""
    parser = ThinkingParser()
    assert parser.feed("<think>abc</thi") == ("abc", "")
    assert parser.finish() == ("</thi", "")


def test_finish_after_closing_releases_nothing() -> None:
    """White space after the closing tag is dropped even when the output ends there."""
    parser = ThinkingParser()
    assert parser.feed("<think>a</think>\n\n") == ("a", "")
    assert parser.finish() == ("", "")


def test_in_thinking_tracks_the_block() -> None:
    """``in_thinking`` is true from the opening tag until the closing one."""
    parser = ThinkingParser()
    assert not parser.in_thinking
    parser.feed("<think>")
    assert parser.in_thinking
    parser.feed("x</think>")
    assert not parser.in_thinking
    assert ThinkingParser(started=True).in_thinking


def test_custom_tags() -> None:
    """Tags inferred from other templates work the same way."""
    output = " <|begin_of_thought|>\nhmm<|end_of_thought|>\nok"
    for pieces in splits(output):
        assert run(pieces, opening="<|begin_of_thought|>", closing="<|end_of_thought|>") == ("hmm", "ok")


def test_self_overlapping_closing_tag() -> None:
    """A closing tag whose start repeats inside it is found wherever the pieces are cut."""
    for pieces in splits("<t>xaaab-c"):
        assert run(pieces, opening="<t>", closing="aab") == ("xa", "-c")


def test_long_output_is_released_piece_by_piece() -> None:
    """Nothing accumulates: each token of a long thinking block comes straight back out."""
    parser = ThinkingParser()
    parser.feed("<think>")
    for _ in range(10_000):
        assert parser.feed("word ") == ("word ", "")


def test_empty_tags_are_refused() -> None:
    """A parser needs both tags; an empty one is a caller's mistake."""
    with pytest.raises(ValueError):
        ThinkingParser("", "</think>")
    with pytest.raises(ValueError):
        ThinkingParser("<think>", "")


# (id, prompt, expected)
PROMPTS: list[tuple[str, str, bool]] = [
    ("ends-with-opening", "<|im_start|>assistant\n<think>", True),
    ("ends-with-opening-and-space", "<|im_start|>assistant\n<think>\n\n", True),
    ("closed-prefill", "<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
    ("no-tag", "<|im_start|>assistant\n", False),
    ("tag-quoted-in-a-message", "user: what is <think>?\n<|im_start|>assistant\n", False),
    ("history-block-closed", "<think>a</think>b<|im_start|>assistant\n", False),
    ("empty-prompt", "", False),
]


@pytest.mark.parametrize(("prompt", "expected"), [p[1:] for p in PROMPTS], ids=[p[0] for p in PROMPTS])
def test_prompt_opens_thinking(prompt: str, expected: bool) -> None:
    """Only a prompt whose last opening tag is followed by nothing but white space opens thinking."""
    assert prompt_opens_thinking(prompt, "<think>", "</think>") is expected


FRAGMENTS = ["<think>", "</think>", "<th", "</th", "ink>", "<", "/", ">", " ", "\n", "a"]


def squeeze(text: str) -> str:
    return text.replace(" ", "").replace("\n", "")


def without_tags(output: str, started: bool) -> str:
    """The output less the tags the parser consumes: a leading opening tag, then the first closing."""
    if not started:
        if not output.lstrip(" \n").startswith("<think>"):
            return output
        output = output.lstrip(" \n")[len("<think>") :]
    return output.replace("</think>", "", 1)


@pytest.mark.parametrize("started", [False, True])
def test_random_outputs_split_anywhere(started: bool) -> None:
    """Seeded random mixes of tags, tag pieces and white space: every split agrees with the whole,
    and nothing but white space next to the tags disappears."""
    for seed in range(200):
        rng = random.Random(seed)
        output = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 12)))
        whole = run([output], started=started)
        assert squeeze("".join(whole)) == squeeze(without_tags(output, started))
        for pieces in splits(output):
            assert run(pieces, started=started) == whole, pieces
