"""What ``llamasup run`` puts on the screen: the streamed answer (word wrap, the dimmed thinking
block, the model's tool calls), the REPL's help texts and its ``/show`` answers, as Ollama's ``run``
shows them.

Pure: each call takes what arrived and returns the text to write, escape sequences included, so the
terminal behaviour is tested without a terminal. The width is given by the caller (read once per
answer), and "plain" means no colour: what a pipe or a file gets.

Word wrap works on a stream it cannot look ahead in. Characters are written as they come. When a
line reaches ``width - 5`` columns, the word being written is taken back (cursor left over it,
erase to the end of the line) and written again at the start of the next line; a blank that would
overflow becomes the line break itself. A word longer than ``width - 10`` columns cannot move, so it
is broken where it stands. Characters two columns wide (CJK) end a word, since those scripts break
anywhere. Nothing is wrapped below 10 columns.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from typing import Any

from .. import gojson
from .tables import rune_width, string_width

GREY = "\x1b[38;5;245m"
BOLD = "\x1b[1m"
RESET = "\x1b[0m"
DEFAULT_WIDTH = 80  # when the terminal's width cannot be read
MIN_WRAP_WIDTH = 10
RIGHT_MARGIN = 5  # a line is full this many columns before the terminal's edge
LONG_WORD = 10  # words longer than width - LONG_WORD are broken, not moved

THINKING_START = "Thinking...\n"
THINKING_END = "...done thinking.\n\n"


def terminal_width() -> int:
    """Columns of the terminal (80 when there is none), read at each answer: a resized window wraps
    the next answer to its new width."""
    return shutil.get_terminal_size((80, 24)).columns


class WordWrap:
    """The wrapping state of one block of streamed text (one per answer, and one per thinking block).

    ``feed`` returns what to write for the next piece. With ``enabled`` False, or a width under
    ``MIN_WRAP_WIDTH``, text passes through unchanged."""

    def __init__(self, width: int, *, enabled: bool = True) -> None:
        self.width = width if width > 0 else DEFAULT_WIDTH
        self.enabled = enabled and self.width >= MIN_WRAP_WIDTH
        self.column = 0  # columns written on the current line
        self.word = ""  # the current word, already written; moved to the next line if it overflows

    def feed(self, text: str) -> str:
        if not self.enabled:
            return text
        return "".join(self._char(ch) for ch in text)

    def _char(self, ch: str) -> str:
        if ch in "\n\r":
            self.column, self.word = 0, ""
            return ch
        w = rune_width(ch)
        out = ""
        if self.column + w > self.width - RIGHT_MARGIN:
            if ch in " \t":  # the word before it fits: the blank becomes the line break
                self.column, self.word = 0, ""
                return "\n"
            moved = string_width(self.word)
            if moved > self.width - LONG_WORD:
                out, self.column, self.word = "\n", 0, ""  # too long to move: break it here
            elif moved:
                out = f"\x1b[{moved}D\x1b[K\n" + self.word
                self.column = moved
            else:
                out, self.column = "\n", 0
        out += ch
        self.column += w
        if w >= 2 or ch in " \t":
            self.word = ""
        else:
            self.word += ch
        return out


def thinking_start(plain: bool) -> str:
    """The line that opens a thinking block; after it, the thinking text is grey (unless plain)."""
    return THINKING_START if plain else GREY + BOLD + THINKING_START + RESET + GREY


def thinking_end(plain: bool) -> str:
    """The line that closes a thinking block, then a blank line; colours are reset."""
    return THINKING_END if plain else GREY + BOLD + THINKING_END + RESET


def tool_calls_text(calls: Iterable[Mapping[str, Any]], plain: bool) -> str:
    """The tool calls a model made, which ``run`` cannot answer (it offers no tools), one per line."""
    label, value = ("", "") if plain else (GREY + BOLD, RESET)
    lines = []
    for call in calls:
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        args = gojson.dumps(function.get("arguments") or {}).decode()
        lines.append(
            f"  Model called a non-existent function '{value}{name}(){label}' with arguments: {value}{args}{label}"
        )
    if not lines:
        return ""
    return ("" if plain else label) + "\n".join(lines) + ("" if plain else RESET)


class AnswerView:
    """One streamed answer: the text to write for each chunk, and what was said (for the history).

    Thinking is written between ``Thinking...`` and ``...done thinking.``, greyed unless ``plain``,
    and is left out entirely with ``hide_thinking`` (it is still kept in ``thinking``). The block is
    closed when the first content or tool call arrives; the answer then starts on a fresh wrap."""

    def __init__(self, *, width: int, wrap: bool, plain: bool, hide_thinking: bool) -> None:
        self._width = width
        self._wrap_on = wrap
        self.plain = plain
        self.hide_thinking = hide_thinking
        self._wrap = WordWrap(width, enabled=wrap)
        self.thinking = ""
        self.content = ""
        self._in_thinking = False
        self.wrote = False  # anything written yet (the caller stops its spinner before the first write)

    def shows(self, thinking: str, content: str, tool_calls: list[Any] | None = None) -> bool:
        """Whether this chunk puts something on screen (the spinner keeps turning until one does)."""
        return bool(content or tool_calls or (thinking and not self.hide_thinking))

    def chunk(self, thinking: str, content: str, tool_calls: list[Any] | None = None) -> str:
        out: list[str] = []
        if thinking:
            self.thinking += thinking
            if not self.hide_thinking:
                if not self._in_thinking:
                    out.append(thinking_start(self.plain))
                    self._in_thinking = True
                out.append(self._wrap.feed(thinking))
        if self._in_thinking and (content or tool_calls):
            out.append(self._close_thinking())
        if content:
            self.content += content
            out.append(self._wrap.feed(content))
        if tool_calls:
            out.append(tool_calls_text(tool_calls, self.plain))
        text = "".join(out)
        self.wrote = self.wrote or bool(text)
        return text

    def _close_thinking(self) -> str:
        self._in_thinking = False
        self._wrap = WordWrap(self._width, enabled=self._wrap_on)
        newline = "" if self.thinking.endswith("\n") else "\n"
        return newline + thinking_end(self.plain)

    def interrupted(self) -> str:
        """What to write when the answer is cut short: the colour reset (if thinking was grey) and a
        line end, so the prompt starts on a line of its own (after the terminal's ``^C``)."""
        colour = RESET if self._in_thinking and not self.plain else ""
        self._in_thinking = False
        return colour + "\n"


# -- help (same commands as Ollama's, in our own words) -----------------------------------------------

HELP_SET = """Available Commands:
  /set parameter ...     Set a sampling or context parameter
  /set system <string>   Set the system message
  /set history           Save what you type to the history file
  /set nohistory         Stop saving to the history file
  /set wordwrap          Wrap answers at word boundaries
  /set nowordwrap        Print answers as they come
  /set format json       Ask for answers in JSON
  /set noformat          Stop asking for JSON
  /set verbose           Print timings after each answer
  /set quiet             Stop printing timings
  /set think [level]     Let the model think (level: low, medium or high)
  /set nothink           Ask the model not to think
  /set hidethinking      Keep the model's thinking off the screen
  /set showthinking      Show the model's thinking

"""

HELP_SHOW = """Available Commands:
  /show info         Details of this model
  /show license      The model's license
  /show modelfile    The Modelfile of this session
  /show parameters   Parameters of the model and of this session
  /show system       The system message
  /show template     The prompt template

"""

HELP_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Go to the start of the line (Home)
  Ctrl + e            Go to the end of the line (End)
   Alt + b            Go back one word
   Alt + f            Go forward one word
  Ctrl + k            Delete from the cursor to the end of the line
  Ctrl + u            Delete from the start of the line to the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the answer being written
  Ctrl + d            Leave (same as /bye)

"""

HELP_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random seed (the same seed gives the same answer)
  /set parameter num_predict <int>      Most tokens an answer may have
  /set parameter top_k <int>            Sample from the k likeliest tokens only
  /set parameter top_p <float>          Sample from the likeliest tokens up to this total probability
  /set parameter min_p <float>          Drop tokens below min_p times the likeliest token's probability
  /set parameter num_ctx <int>          Context size in tokens
  /set parameter temperature <float>    Randomness of the answer (0 picks the likeliest token)
  /set parameter repeat_penalty <float> How much repeated tokens are penalised
  /set parameter repeat_last_n <int>    How many recent tokens count as repeats
  /set parameter num_gpu <int>          Layers to put on the GPU
  /set parameter stop <string> <string> ...   Strings that end the answer

"""


def help_text(multimodal: bool) -> str:
    """``/?``: the commands, then how to write multi-line messages and attach files."""
    text = """Available Commands:
  /set            Change a setting of this session
  /show           Show something about the model
  /load <model>   Switch to another model (or a saved session)
  /save <model>   Save this session as a new model
  /clear          Forget the conversation so far
  /list           List the models on the server
  /bye            Leave
  /?, /help       Help for a command
  /? shortcuts    Keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""
    if multimodal:
        text += "Use /path/to/file to include .jpg, .png, .webp images, or .wav audio files.\n"
    return text + "\n"


def go_value(value: Any) -> str:
    """A parameter value as Go's ``%v`` prints it (``0.2``, ``40``, ``true``, ``[a b]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


# -- /show --------------------------------------------------------------------------------------------------


def show_text(topic: str, show: Mapping[str, Any], system: str, options: Mapping[str, Any]) -> str:
    """``/show <topic>`` (other than ``info``) from the session's ``/api/show`` answer, with the
    session's own system message and parameters (``options``)."""
    if topic == "license":
        return (show.get("license") or "No license was specified for this model.") + "\n"
    if topic == "modelfile":
        return str(show.get("modelfile") or "") + "\n"
    if topic == "parameters":
        text = "Model defined parameters:\n"
        params = str(show.get("parameters") or "")
        if not params:
            text += "  No additional parameters were specified for this model.\n"
        else:
            text += "".join(f"  {line}\n" for line in params.split("\n"))
        text += "\n"
        if options:
            text += "User defined parameters:\n"
            text += "".join(f"  {k:<30} {go_value(v)}\n" for k, v in options.items())
            text += "\n"
        return text
    if topic == "system":
        system = system or str(show.get("system") or "")
        return system + "\n\n" if system else "No system message was specified for this model.\n"
    if topic == "template":
        template = str(show.get("template") or "")
        return template + "\n" if template else "No prompt template was specified for this model.\n"
    return f"Unknown command '/show {topic}'. Type /? for help\n"
