"""The tables ``ollama list``, ``ollama ps`` and ``ollama show`` print, byte for byte (pure).

Ollama renders them with github.com/olekukonko/tablewriter v0.0.5, borderless, left-aligned, with
``SetNoWhiteSpace(true)`` and four spaces of ``SetTablePadding``. That renderer has quirks scripts
see, so they are reproduced rather than tidied: every data cell (the last one included) is followed
by the four spaces, so data lines end in trailing blanks; the header line's last cell is followed by
one space instead; headers go through tablewriter's ``Title`` (upper case, ``_`` to a space); cells
wider than the column limit (30, or 100 where ``show`` asks) are re-wrapped at spaces by
tablewriter's minimum-raggedness algorithm, and the other cells of such a row get two-space filler
lines. Widths are terminal columns (East Asian wide characters count two, combining marks none).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .humanize import go_round, human_bytes, human_time, parse_go_time, since

PADDING = "    "
COL_WIDTH = 30
_PENALTY = 100_000
_MAX_INT32 = 2**31 - 1
_ANSI = re.compile("\033\\[(?:[0-9]{1,3}(?:;[0-9]{1,3})*)?[m|K]")
_ZERO_WIDTH = frozenset(
    [*range(0x200B, 0x2010), *range(0x2028, 0x202F), *range(0x2060, 0x2065), *range(0x206A, 0x2070), 0xFEFF]
)


def rune_width(ch: str) -> int:
    """Terminal columns of one character, as go-runewidth counts them (not East Asian locale)."""
    cp = ord(ch)
    if cp < 0x20 or 0x7F <= cp <= 0x9F or cp == 0xAD:
        return 0
    if cp < 0x300:
        return 1
    if cp in _ZERO_WIDTH or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def string_width(s: str) -> int:
    """Terminal columns of a string (``runewidth.StringWidth``)."""
    return sum(rune_width(ch) for ch in s)


def display_width(s: str) -> int:
    """Terminal columns ignoring colour escapes (tablewriter's ``DisplayWidth``)."""
    return string_width(_ANSI.sub("", s))


def title(name: str) -> str:
    """tablewriter's header formatting: ``_`` and non-numeric ``.`` become spaces, trimmed, upper
    case; a header of only such characters keeps one space."""
    chars = list(name)
    for i, ch in enumerate(chars):
        if ch == "_":
            chars[i] = " "
        elif ch == ".":
            before = i != 0 and not _num_or_space(chars[i - 1])
            after = i != len(chars) - 1 and not _num_or_space(chars[i + 1])
            if before or after:
                chars[i] = " "
    out = "".join(chars).strip(" \t\n\v\f\r\x85\xa0")
    if not out and name:
        out = " "
    return out.upper()


def _num_or_space(ch: str) -> bool:
    return "0" <= ch <= "9" or ch == " "


def _pad_right(s: str, width: int) -> str:
    return s + " " * max(0, width - display_width(s))


def wrap_words(words: Sequence[str], limit: int) -> list[list[str]]:
    """tablewriter's ``WrapWords``: break ``words`` (one space apart) into lines of at most
    ``limit`` columns minimising the sum of squared slack, lines too long paying a penalty.

    ``limit`` must be at least the widest word (``wrap_string`` sees to it): Go loops forever when
    the last word is wider."""
    n = len(words)
    prefix = [0]
    for word in words:
        prefix.append(prefix[-1] + string_width(word))
    if any(prefix[i + 1] - prefix[i] > limit for i in range(n)):
        raise ValueError("a word is wider than the limit")

    def length(i: int, j: int) -> int:  # columns of words[i..j] inclusive, one space apart
        return prefix[j + 1] - prefix[i] + (j - i)

    breaks = [0] * n
    cost = [_MAX_INT32] * n
    for i in range(n - 1, -1, -1):
        if length(i, n - 1) <= limit:
            cost[i], breaks[i] = 0, n
            continue
        for j in range(i + 1, n):
            d = limit - length(i, j - 1)
            over = length(i, j - 1) > limit
            if over and _PENALTY + d * d >= cost[i]:
                break  # every later break is longer still, so never cheaper
            c = d * d + cost[j] + (_PENALTY if over else 0)
            if c < cost[i]:
                cost[i], breaks[i] = c, j
    lines = []
    i = 0
    while i < n:
        lines.append(list(words[i : breaks[i]]))
        i = breaks[i]
    return lines


def wrap_string(s: str, limit: int) -> tuple[list[str], int]:
    """tablewriter's ``WrapString``: the lines of ``s`` re-wrapped at single spaces, and the limit
    raised to the widest word."""
    words = s.replace("\n", " ").split(" ")
    for word in words:
        limit = max(limit, string_width(word))
    return [" ".join(line) for line in wrap_words(words, limit)], limit


class _Layout:
    """Column widths and row heights, updated cell by cell as tablewriter's ``parseDimension``."""

    def __init__(self, col_width: int) -> None:
        self.col_width = col_width
        self.widths: dict[int, int] = {}
        self.heights: dict[int, int] = {}

    def cell(self, text: str, col: int, row: int) -> list[str]:
        raw = text.split("\n")
        width = min(max(display_width(line) for line in raw), self.col_width)
        lines: list[str] = []
        for line in wrap_string(" ".join(raw), width)[0]:
            width = max(width, display_width(line))
            lines.append(line)
        known = self.widths.get(col)
        if known is None or known < width or known == 0:
            self.widths[col] = width
        height = self.heights.get(row)
        if height is None or height < len(lines) or height == 0:
            self.heights[row] = len(lines)
        return lines


def table(header: Sequence[str], rows: Sequence[Sequence[str]], col_width: int = COL_WIDTH) -> str:
    """Render as Ollama's CLI does (see the module docstring); an empty ``header`` prints no header
    line, as ``show``'s sections have none."""
    layout = _Layout(col_width)
    headers = [layout.cell(h, i, -1) for i, h in enumerate(header)]
    cells = [[layout.cell(v, i, n) for i, v in enumerate(row)] for n, row in enumerate(rows)]
    out: list[str] = []
    if headers:
        end = len(layout.widths) - 1
        for x in range(layout.heights.get(-1, 0)):
            for y in range(end + 1):
                h = headers[y][x] if y < len(headers) and x < len(headers[y]) else ""
                out.append(_pad_right(title(h), layout.widths.get(y, 0)) + (" " if y == end else PADDING))
            out.append("\n")
    for n, columns in enumerate(cells):
        height = layout.heights.get(n, 0)
        filled = [column + ["  "] * (height - len(column)) for column in columns]
        for x in range(height):
            for y, column in enumerate(filled):
                out.append(_pad_right(column[x], layout.widths.get(y, 0)) + PADDING)
            out.append("\n")
    return "".join(out)


def _text(m: Mapping[str, Any], key: str) -> str:
    value = m.get(key)
    return value if isinstance(value, str) else ""


def _int(m: Mapping[str, Any], key: str) -> int:
    value = m.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def list_table(models: Sequence[Mapping[str, Any]], prefix: str | None, now: datetime) -> str:
    """``ollama list [prefix]`` from ``/api/tags``' ``models``: NAME, ID (first 12 hex digits of the
    digest), SIZE (``-`` for a remote model), MODIFIED; the prefix matches names case-insensitively."""
    rows = []
    for m in models:
        name = _text(m, "name")
        if prefix is not None and not name.lower().startswith(prefix.lower()):
            continue
        size = "-" if _text(m, "remote_model") else human_bytes(_int(m, "size"))
        modified = human_time(parse_go_time(m.get("modified_at")), "Never", now)
        rows.append([name, _text(m, "digest")[:12], size, modified])
    return table(["NAME", "ID", "SIZE", "MODIFIED"], rows)


def processor(size: int, size_vram: int) -> str:
    """Where a loaded model sits, as ``ollama ps`` says it: ``100% GPU``, ``100% CPU``,
    ``48%/52% CPU/GPU`` (CPU share rounded half away from zero), or ``Unknown``."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = go_round(float(size - size_vram) / float(size) * 100)
    return f"{int(cpu)}%/{int(100 - cpu)}% CPU/GPU"


def until(expires_at: object, now: datetime) -> str:
    """The UNTIL column: ``Stopping...`` once the expiry has passed (or is missing), else
    ``4 minutes from now`` / ``Forever``."""
    expires = parse_go_time(expires_at)
    if expires is None or since(expires, now) > 0:
        return "Stopping..."
    return human_time(expires, "Never", now)


def ps_table(models: Sequence[Mapping[str, Any]], prefix: str | None, now: datetime) -> str:
    """``ollama ps [prefix]`` from ``/api/ps``' ``models``: NAME, ID, SIZE, PROCESSOR, CONTEXT,
    UNTIL; the prefix matches names case-sensitively (unlike ``list``)."""
    rows = []
    for m in models:
        name = _text(m, "name")
        if prefix is not None and not name.startswith(prefix):
            continue
        size = _int(m, "size")
        rows.append(
            [
                name,
                _text(m, "digest")[:12],
                human_bytes(size),
                processor(size, _int(m, "size_vram")),
                str(_int(m, "context_length")),
                until(m.get("expires_at"), now),
            ]
        )
    return table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows)
