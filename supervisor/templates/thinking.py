"""Split a model's streamed output into ``thinking`` and ``content`` (the Go-template chat path).

When llamasup renders a model's Go ``TEMPLATE`` itself, llama-server returns raw text, and the
reasoning arrives inline between the tags the template shows around ``.Thinking`` (inferred by
``gotemplate.infer_thinking_tags``, e.g. ``<think>``/``</think>``). Ollama splits it with a small
streaming parser; this is the same behaviour (reference/ollama-api.md §11.4, §12):

- Leading white space is looked past. Output that then starts with the opening tag is thinking up
  to the closing tag; anything else means the model is not thinking, and *all* of the output
  (its leading white space included) is content — a tag later in the text is just text.
- White space right after the opening tag and right after the closing tag is dropped; white space
  at the end of the thinking is kept (Ollama gives ``"internal "`` for ``<think> internal </think>``).
- Only the first thinking block counts: ``<think>a</think><think>b</think>`` thinks ``a``.
- Text is released as soon as it cannot be part of a tag. A possible partial tag at the end of
  what has arrived is held back until the next piece decides it; tokens split tags anywhere.
- A closing tag that never comes leaves everything as thinking.

Beyond Ollama, ``finish`` releases what is still held when the stream ends (a partial tag, or
white space that never met a tag), so nothing the model wrote is lost.

The parser decides only from the text, never from where the pieces were cut: feeding the output
whole or in any split gives the same concatenated thinking and content. Each character is looked
at a bounded number of times (the held-back part is shorter than a tag), so a long output costs
linear time.
"""

from __future__ import annotations

import enum

from supervisor.templates.gotemplate_literals import GO_SPACE_CHARS

__all__ = ["ThinkingParser", "prompt_opens_thinking"]


def _lstrip(text: str) -> str:
    """Go's ``strings.TrimLeftFunc(s, unicode.IsSpace)``; Python's ``isspace`` differs (``\\x1c``)."""
    return text.lstrip(GO_SPACE_CHARS)


def _tag_prefix_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is the start of ``tag`` (a tag maybe under way)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def prompt_opens_thinking(prompt: str, opening: str, closing: str) -> bool:
    """Whether a rendered prompt leaves the model inside its thinking block.

    True when the prompt's last opening tag is followed by nothing but white space — a template
    that pre-fills ``<think>\\n`` — so the output starts as thinking without an opening tag. This is
    Ollama's test (the trimmed prompt ends with the opening tag). A prompt whose last opening tag is
    followed by other text is not counted, even without a closing tag after it: that tag is most
    likely quoted in a message (``what does <think> mean?``), and believing it would turn the
    whole answer into thinking. ``closing`` is accepted for the callers' symmetry; a closing tag
    after the opening one is already "other text".
    """
    del closing  # the rule above never needs it
    if not opening:
        return False
    return prompt.rstrip(GO_SPACE_CHARS).endswith(opening)


class _State(enum.Enum):
    LOOKING = enum.auto()  # nothing but white space (or a partial opening tag) so far
    STARTED = enum.auto()  # opening tag seen; dropping white space before the thinking
    THINKING = enum.auto()  # inside the block, waiting for the closing tag
    CLOSED = enum.auto()  # closing tag seen; dropping white space before the content
    CONTENT = enum.auto()  # everything from here on is content


class ThinkingParser:
    """Streaming thinking/content splitter for one response.

    ``feed`` returns the ``(thinking, content)`` text that can be released now; ``finish`` returns
    what was held back at the end. ``started=True`` is for a prompt that already ends with the
    opening tag (see ``prompt_opens_thinking``): the output begins inside the thinking block.
    """

    def __init__(self, opening: str = "<think>", closing: str = "</think>", *, started: bool = False) -> None:
        if not opening or not closing:
            raise ValueError("thinking tags must not be empty")
        self.opening = opening
        self.closing = closing
        self._state = _State.STARTED if started else _State.LOOKING
        self._held = ""  # text not released yet; always short (see the module docstring)

    @property
    def in_thinking(self) -> bool:
        """Whether the output so far is inside the thinking block (not yet closed)."""
        return self._state in (_State.STARTED, _State.THINKING)

    def feed(self, text: str) -> tuple[str, str]:
        """Add the next piece of output; returns ``(thinking, content)`` releasable now."""
        thinking: list[str] = []
        content: list[str] = []
        buf = self._held + text
        self._held = ""
        while True:
            if self._state is _State.LOOKING:
                trimmed = _lstrip(buf)
                if trimmed.startswith(self.opening):
                    buf = _lstrip(trimmed[len(self.opening) :])
                    self._state = _State.THINKING if buf else _State.STARTED
                    continue
                if self.opening.startswith(trimmed):  # white space only, or a partial tag
                    self._held = buf
                else:
                    self._state = _State.CONTENT
                    content.append(buf)
                break
            if self._state is _State.STARTED:
                buf = _lstrip(buf)
                if buf:
                    self._state = _State.THINKING
                    continue
                break
            if self._state is _State.THINKING:
                at = buf.find(self.closing)
                if at >= 0:
                    thinking.append(buf[:at])
                    rest = _lstrip(buf[at + len(self.closing) :])
                    self._state = _State.CONTENT if rest else _State.CLOSED
                    content.append(rest)
                else:
                    keep = _tag_prefix_suffix(buf, self.closing)
                    thinking.append(buf[: len(buf) - keep])
                    self._held = buf[len(buf) - keep :]
                break
            if self._state is _State.CLOSED:
                buf = _lstrip(buf)
                if buf:
                    self._state = _State.CONTENT
                    content.append(buf)
                break
            content.append(buf)  # CONTENT
            break
        return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        """The end of the output: release what was held back (a partial tag is just text then).

        Held text before any tag is content; a partial closing tag inside the block is thinking.
        """
        held, self._held = self._held, ""
        if self._state is _State.LOOKING:
            self._state = _State.CONTENT
            return "", held
        if self._state is _State.THINKING:
            return held, ""
        return "", ""
