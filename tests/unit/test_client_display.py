"""How ``llamasup run`` lays out a streamed answer: word wrap, the thinking block, tool calls."""

from __future__ import annotations

import re

from supervisor.client.display import (
    BOLD,
    GREY,
    RESET,
    AnswerView,
    WordWrap,
    thinking_end,
    thinking_start,
    tool_calls_text,
)

from supervisor.client.tables import rune_width

_MOVE_BACK = re.compile(r"\x1b\[(\d+)D")


def screen(text: str) -> list[str]:
    """What a terminal shows for ``text`` (cursor-left and erase-to-end-of-line only), line by line."""
    lines = [""]
    col = 0
    i = 0
    while i < len(text):
        if text.startswith("\x1b[K", i):
            lines[-1] = lines[-1][:col]
            i += 3
            continue
        m = _MOVE_BACK.match(text, i)
        if m:
            col -= int(m.group(1))
            i = m.end()
            continue
        ch = text[i]
        if ch == "\n":
            lines.append("")
            col = 0
        else:
            line = lines[-1]
            lines[-1] = line[:col] + ch + line[col + 1 :]
            col += 1
        i += 1
    return lines


def test_short_text_is_not_wrapped() -> None:
    """Text shorter than the line passes through unchanged."""
    assert WordWrap(40).feed("Hello there, friend.") == "Hello there, friend."


def test_word_that_overflows_moves_to_next_line() -> None:
    """A word crossing ``width - 5`` is taken back and written again at the start of the next line."""
    out = WordWrap(20).feed("aaaa bbbb cc dddd eeee")
    assert screen(out) == ["aaaa bbbb cc ", "dddd eeee"]
    assert "dd\x1b[2D\x1b[K\ndd" in out  # two characters of "dddd" had been written before the edge


def test_blank_at_the_edge_becomes_the_line_break() -> None:
    """A space that would overflow ends the line; the next word starts the new one."""
    out = WordWrap(20).feed("aaaaaaaaaaaaaaa bbb")  # 15 columns fill a 20-wide line (margin 5)
    assert out == "aaaaaaaaaaaaaaa\nbbb"


def test_wrapping_works_across_chunks() -> None:
    """The word being written is remembered between chunks, as tokens arrive one at a time."""
    wrap = WordWrap(20)
    out = "".join(wrap.feed(piece) for piece in ["aaaa bb", "bb cc", "cc dd", "dd eeee"])
    assert screen(out) == ["aaaa bbbb cccc ", "dddd eeee"]


def test_word_too_long_to_move_is_broken() -> None:
    """A word wider than ``width - 10`` cannot move to a new line, so it breaks at the edge."""
    out = WordWrap(20).feed("x" * 40)
    assert out == "x" * 15 + "\n" + "x" * 15 + "\n" + "x" * 10


def test_newline_resets_the_line() -> None:
    """A newline in the answer starts a fresh line count."""
    out = WordWrap(20).feed("aaaaaaaaaaaa\nbbbbbbbbbbbb")
    assert out == "aaaaaaaaaaaa\nbbbbbbbbbbbb"


def test_wide_characters_count_two_columns_and_break_anywhere() -> None:
    """CJK characters take two columns and end words, so a run of them breaks between characters."""
    assert rune_width("漢") == 2 and rune_width("a") == 1 and rune_width("\u0301") == 0
    out = WordWrap(20).feed("漢" * 10)
    assert out == "漢" * 7 + "\n" + "漢" * 3


def test_wrap_off_or_narrow_terminal_passes_through() -> None:
    """No wrapping when it is switched off (--nowordwrap) or the terminal is under 10 columns."""
    text = "aaaa bbbb cccc dddd eeee " * 4
    assert WordWrap(20, enabled=False).feed(text) == text
    assert WordWrap(9).feed(text) == text


def test_unknown_width_means_eighty_columns() -> None:
    """A width of 0 (not a terminal) is taken as 80 columns, as Ollama does."""
    assert WordWrap(0).width == 80


def test_thinking_block_plain() -> None:
    """Plain output: ``Thinking...``, the thinking, a line end, ``...done thinking.`` and a blank line."""
    view = AnswerView(width=80, wrap=False, plain=True, hide_thinking=False)
    out = view.chunk("Let me", "") + view.chunk(" see.", "") + view.chunk("", "The answer")
    out += view.chunk("", " is 4.")
    assert out == "Thinking...\nLet me see.\n...done thinking.\n\nThe answer is 4."
    assert (view.thinking, view.content) == ("Let me see.", "The answer is 4.")


def test_thinking_block_is_grey_on_a_terminal() -> None:
    """On a terminal the markers are bold grey, the thinking grey, and colours reset before the answer."""
    view = AnswerView(width=80, wrap=True, plain=False, hide_thinking=False)
    out = view.chunk("Hmm\n", "") + view.chunk("", "Yes.")
    assert thinking_start(False) == GREY + BOLD + "Thinking...\n" + RESET + GREY
    assert thinking_end(False) == GREY + BOLD + "...done thinking.\n\n" + RESET
    assert out == thinking_start(False) + "Hmm\n" + thinking_end(False) + "Yes."  # already ends a line


def test_hidden_thinking_is_kept_but_not_shown() -> None:
    """With --hidethinking nothing of the thinking is written, and it does not stop the spinner."""
    view = AnswerView(width=80, wrap=False, plain=True, hide_thinking=True)
    assert not view.shows("Hmm", "")
    assert view.chunk("Hmm", "") == ""
    assert view.shows("", "Yes.")
    assert view.chunk("", "Yes.") == "Yes."
    assert view.thinking == "Hmm" and view.wrote


def test_answer_wraps_afresh_after_thinking() -> None:
    """The answer's wrapping starts at column 0 after the thinking block, not where thinking ended."""
    view = AnswerView(width=20, wrap=True, plain=True, hide_thinking=False)
    view.chunk("aaaa bbbb cc", "")
    out = view.chunk("", "dddd eeee ffff")
    assert out.endswith("...done thinking.\n\ndddd eeee ffff")


def test_interrupt_resets_colour_and_ends_the_line() -> None:
    """Ctrl+C in the middle of grey thinking resets the colour and ends the line."""
    view = AnswerView(width=80, wrap=False, plain=False, hide_thinking=False)
    view.chunk("Hm", "")
    assert view.interrupted() == RESET + "\n"
    quiet = AnswerView(width=80, wrap=False, plain=True, hide_thinking=False)
    assert quiet.interrupted() == "\n"


def test_tool_calls_are_reported() -> None:
    """Tool calls (which run cannot answer) are listed with their JSON arguments."""
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]
    assert tool_calls_text(calls, plain=True) == (
        "  Model called a non-existent function 'get_weather()' with arguments: {\"city\":\"Paris\",\"days\":2}"
    )
    assert tool_calls_text(calls, plain=False).startswith(GREY + BOLD)
    assert tool_calls_text([], plain=True) == ""
