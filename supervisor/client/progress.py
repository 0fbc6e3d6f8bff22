"""What ``llamasup pull``, ``push`` and ``create`` show while the server streams progress, and the
spinner shown while a model loads: Ollama's ``progress`` package as ``cmd/cmd.go`` drives it.

On a terminal, :class:`ProgressView` keeps one line per step: a spinner line for each status without
a digest, and a bar per digest (label, percent, ``▕██  ▏``, sizes, speed, time left). It redraws
every line in place. :class:`Spinner` is one spinner line that is wiped when the model answers.

Elsewhere (a pipe, a log file) nothing is redrawn and no escape sequence is written. The view writes
each new status once, a line when a layer starts (``pulling 6a0746a1ec1a: 4.7 GB``), and one when it
completes (``pulling 6a0746a1ec1a: 100% 4.7 GB``). The spinner writes nothing at all. That way
``echo hi | llamasup run m`` prints only the answer.

Time comes only from the clock given to the constructor (monotonic seconds). A repaint happens when an
update arrives, at most once per interval unless a line was added, or when :meth:`tick` is called
(which :meth:`run` does every interval). Tests can therefore drive everything with a fake clock and
read :meth:`render`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TextIO

from .humanize import human_bytes

Kind = Literal["pull", "push", "create"]
Clock = Callable[[], float]

FRAMES = ("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏")  # Ollama's spinner parts
REPAINT_INTERVAL = 0.1  # Ollama's render ticker and spinner ticker, 100 ms
RATE_SAMPLE_EVERY = 1.0  # a speed sample at most once a second...
RATE_SAMPLES = 10  # ...keeping the last ten, as Ollama's bar buckets
DEFAULT_SIZE = (80, 24)  # Ollama's width and height when the terminal's cannot be read

_SYNC_ON, _SYNC_OFF = "\x1b[?2026h", "\x1b[?2026l"  # synchronized output: no flicker where supported
_HIDE, _SHOW = "\x1b[?25l", "\x1b[?25h"
_UP, _COLUMN_1, _CLEAR_EOL, _CLEAR_BELOW, _CLEAR_LINE = "\x1b[A", "\x1b[1G", "\x1b[K", "\x1b[J", "\x1b[2K"


# -- formats ------------------------------------------------------------------------------------------


def format_duration(seconds: int) -> str:
    """Time left as Ollama's bar writes it: at most two units (``3s``, ``1m20s``, ``1m0s``, ``2h5m``,
    ``99h+``)."""
    seconds = max(int(seconds), 0)
    if seconds >= 100 * 3600:
        return "99h+"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds // 60 % 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds}s"


def spinner_frame(elapsed: float) -> str:
    """The braille frame a spinner shows ``elapsed`` seconds after it started (one step per 100 ms)."""
    steps = max(round(elapsed * 1000), 0) // round(REPAINT_INTERVAL * 1000)
    return FRAMES[steps % len(FRAMES)]


def spinner_line(message: str, elapsed: float | None) -> str:
    """A spinner's line as Ollama draws it: the message, then the frame while it spins
    (``pulling manifest ⠙ ``); ``elapsed`` None means stopped, and the frame is gone (``pulling manifest ``)."""
    text = message.strip()
    line = text + " " if text else ""
    if elapsed is not None:
        line += spinner_frame(elapsed) + " "
    return line


def _round_seconds(seconds: float) -> float:
    """Go's ``Duration.Round(time.Second)``: to the nearest second, halves away from zero."""
    return float(math.floor(seconds + 0.5)) if seconds >= 0 else -float(math.floor(-seconds + 0.5))


def _pad(text: str, width: int) -> str:
    return " " * (width - len(text)) + text


# -- lines --------------------------------------------------------------------------------------------


class _Status:
    """One spinner line: its message, when it started and, once stopped, when."""

    def __init__(self, message: str, started: float) -> None:
        self.message = message
        self.started = started
        self.stopped: float | None = None

    def stop(self, now: float) -> None:
        if self.stopped is None:
            self.stopped = now

    def line(self, width: int, now: float) -> str:
        return spinner_line(self.message, None if self.stopped is not None else now - self.started)


class _Bar:
    """One layer's bar, as Ollama's ``progress.Bar``.

    A bar is done (stopped) once ``completed`` reaches ``total``. While it runs, its speed is the
    slope between the oldest and newest of the last ten samples, taken at most once a second. Once
    done, it is the average since the bar appeared, but then neither speed nor time left is shown."""

    def __init__(self, label: str, total: int, completed: int, now: float) -> None:
        self.label = label
        self.total = total
        self.initial = completed
        self.current = completed
        self.started = now
        self.stopped: float | None = now if completed >= total else None
        self.samples: deque[tuple[float, int]] = deque(maxlen=RATE_SAMPLES)

    @property
    def done(self) -> bool:
        return self.stopped is not None

    def set(self, value: int, now: float) -> None:
        value = min(value, self.total)
        self.current = value
        if value >= self.total:
            self.stopped = now
        if not self.samples or now - self.samples[-1][0] > RATE_SAMPLE_EVERY:
            self.samples.append((now, value))

    def percent(self) -> float:
        return self.current / self.total * 100 if self.total > 0 else 0.0

    def rate(self) -> float:
        """Bytes per second (0 when there is not yet a whole second to divide by)."""
        if self.stopped is not None:
            num, den = self.current - self.initial, _round_seconds(self.stopped - self.started)
        elif not self.samples:
            return 0.0
        elif len(self.samples) == 1:
            at, value = self.samples[0]
            num, den = value - self.initial, _round_seconds(at - self.started)
        else:
            (t0, v0), (t1, v1) = self.samples[0], self.samples[-1]
            num, den = v1 - v0, _round_seconds(t1 - t0)
        return num / den if den else 0.0

    def line(self, width: int, now: float) -> str:
        percent = self.percent()
        label = self.label.strip()
        pre = (label + " " if label else "") + f"{percent:3.0f}%"
        if self.stopped is None:
            suf = _pad(human_bytes(self.current), 6) + "/" + _pad(human_bytes(self.total), 6)
        else:
            suf = _pad(human_bytes(self.total), 6) + " " * 7
        rate = self.rate()
        if self.stopped is None and rate > 0:
            left = int((self.total - self.current) / rate)
            suf += "  " + _pad(human_bytes(int(rate)), 6) + "/s"
            suf += "  " + _pad(format_duration(left), 6)
        else:
            suf += " " * 10 + " " * 8
        room = width - len(pre) - len(suf) - 5  # 5: the bar's two ends and a space either side
        filled = int(room * percent / 100)
        bar = "█" * max(filled, 0) + " " * max(room - filled, 0)
        return f"{pre} ▕{bar}▏ {suf}"


_Line = _Status | _Bar


# -- the drawing surface shared by the view and the spinner -----------------------------------------------


def _rows(line: str, width: int) -> int:
    """Terminal rows a line takes once the terminal wraps it (a line exactly as wide takes one)."""
    return max(1, math.ceil(len(line) / width)) if width > 0 else 1


class _Display:
    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool | None,
        now: Clock,
        width: int | None,
        height: int | None,
        interval: float,
    ) -> None:
        self._out = out
        self._tty = out.isatty() if tty is None else tty
        self._now = now
        self._width = width
        self._height = height
        self._interval = interval
        self._rows = 0  # terminal rows the last paint covered; the cursor sits on the last of them
        self._painted_at: float | None = None
        self._stopped = False
        self._wake = asyncio.Event()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _lines(self) -> Sequence[_Line]:
        raise NotImplementedError

    def _size(self) -> tuple[int, int]:
        width, height = self._width, self._height
        if width is None or height is None:
            try:
                size = os.get_terminal_size(self._out.fileno())
                cols, rows = size.columns, size.lines
            except (AttributeError, OSError, ValueError):
                cols, rows = DEFAULT_SIZE
            width = width if width is not None else cols if cols > 0 else DEFAULT_SIZE[0]
            height = height if height is not None else rows if rows > 0 else DEFAULT_SIZE[1]
        return max(width, 1), max(height, 1)

    def _visible(self, now: float) -> list[str]:
        width, height = self._size()
        lines = self._lines()[-height:]  # as Ollama: only as many lines as the terminal is high
        return [line.line(width, now) for line in lines]

    def render(self) -> str:
        """The current frame, as the terminal would show it once painted: its lines joined by newlines,
        without escape sequences."""
        return "\n".join(self._visible(self._now()))

    def tick(self) -> None:
        """Repaint now (on a terminal, while not stopped, once there is something to show): what the
        100 ms ticker does, so spinners turn even while no update arrives."""
        if self._tty and not self._stopped and self._lines():
            self._paint(self._now())

    async def run(self) -> None:
        """Call :meth:`tick` every interval until :meth:`stop` (meant for ``asyncio.create_task``; it
        ends by itself once stopped, and cancelling it is harmless). Off a terminal it only waits."""
        while not self._stopped:
            if not self._tty:
                await self._wake.wait()
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                self.tick()

    def _paint(self, now: float) -> None:
        width, _ = self._size()
        lines = self._visible(now)
        parts = [_SYNC_ON, _HIDE, _UP * max(self._rows - 1, 0), _COLUMN_1]
        parts.append("\n".join(line + _CLEAR_EOL for line in lines))
        parts += [_CLEAR_BELOW, _SHOW, _SYNC_OFF]
        self._out.write("".join(parts))
        self._out.flush()
        self._rows = sum(_rows(line, width) for line in lines)
        self._painted_at = now

    def _finish(self) -> bool:
        """Mark stopped; False when it already was."""
        if self._stopped:
            return False
        self._stopped = True
        self._wake.set()
        return True

    def _final_paint(self) -> None:
        """Ollama's ``Stop``: spinners lose their frame, the last frame is drawn, and a newline ends it."""
        now = self._now()
        for line in self._lines():
            if isinstance(line, _Status):
                line.stop(now)
        if self._tty and self._lines():
            self._paint(now)
            self._out.write("\n")
            self._out.flush()

    def stop_and_clear(self) -> None:
        """Stop and wipe every line drawn so far, leaving the cursor where the first was (Ollama's
        ``StopAndClear``). Nothing is written when nothing was drawn."""
        if not self._finish():
            return
        if self._tty and self._rows:
            wipe = "".join((_UP if i else "") + _CLEAR_LINE + _COLUMN_1 for i in range(self._rows))
            self._out.write(_HIDE + wipe + _SHOW)
            self._out.flush()
            self._rows = 0


# -- pull / push / create ---------------------------------------------------------------------------------


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


class ProgressView(_Display):
    """The progress of one ``pull``, ``push`` or ``create`` stream, fed one NDJSON object at a time.

    ``kind`` picks how Ollama's command of that name reads the stream:

    - ``pull``: a bar per digest labelled ``pulling <first 12 hex>:``. Objects whose ``completed``
      is 0 or absent are skipped, so a bar appears only once its bytes start to flow (the server
      announces every layer with ``total`` alone first).
    - ``push``: a bar per digest labelled ``pushing <digest[7:19]>...``.
    - ``create``: a bar per digest labelled by the object's status (``quantizing F16 model to
      Q4_K_M``), or ``pulling <digest[7:19]>...`` when it has none. As in Ollama, a bar here does not
      stop the running spinner.

    An object without a digest whose status differs from the last such status stops the running
    spinner and starts a new spinner line. Repeating the same status changes nothing.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool | None = None,
        kind: Kind = "pull",
        now: Clock = time.monotonic,
        width: int | None = None,
        height: int | None = None,
        interval: float = REPAINT_INTERVAL,
    ) -> None:
        super().__init__(out, tty=tty, now=now, width=width, height=height, interval=interval)
        self._kind = kind
        self._items: list[_Line] = []
        self._bars: dict[str, _Bar] = {}
        self._status = ""
        self._spinner: _Status | None = None

    def _lines(self) -> Sequence[_Line]:
        return self._items

    def _label(self, status: str, digest: str) -> str:
        if self._kind == "pull":
            name, is_digest = (digest[7:], True) if digest.startswith("sha256:") else (digest, False)
            name = name.strip()
            return f"pulling {name[:12] if is_digest else name}:"
        if self._kind == "push":
            return f"pushing {digest[7:19]}..."
        return status or f"pulling {digest[7:19]}..."

    def _say(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def update(self, msg: Mapping[str, Any]) -> None:
        """Take one progress object (``status``, and for a layer ``digest``, ``total``, ``completed``).

        On a terminal the frame is repainted when a line was added, or when at least one interval has
        passed since the last paint. Elsewhere, new plain lines are written straight away. Objects
        that arrive after :meth:`stop` are ignored."""
        if self._stopped:
            return
        now = self._now()
        status = str(msg.get("status") or "")
        digest = str(msg.get("digest") or "")
        added = False
        if digest:
            completed = _count(msg.get("completed"))
            if self._kind == "pull" and completed == 0:
                return
            if self._kind != "create" and self._spinner is not None:
                self._spinner.stop(now)
            bar = self._bars.get(digest)
            if bar is None:
                bar = _Bar(self._label(status, digest), _count(msg.get("total")), completed, now)
                self._bars[digest] = bar
                self._items.append(bar)
                added = True
                if not self._tty and not bar.done:
                    self._say(f"{bar.label} {human_bytes(bar.total)}")
            was_done = bar.done and not added
            bar.set(completed, now)
            if not self._tty and bar.done and not was_done:
                self._say(f"{bar.label} 100% {human_bytes(bar.total)}")
        elif status and status != self._status:
            if self._spinner is not None:
                self._spinner.stop(now)
            self._status = status
            self._spinner = _Status(status, now)
            self._items.append(self._spinner)
            added = True
            if not self._tty:
                self._say(status)
        if self._tty and (added or self._painted_at is None or now - self._painted_at >= self._interval - 1e-9):
            self._paint(now)  # (the 1e-9: 0.15 - 0.05 is just under 0.1 in floating point)

    def stop(self) -> None:
        """Finish: spinners stop turning, the final frame is drawn and the cursor moves below it. Safe
        to call twice. Off a terminal it writes nothing (each line was already complete)."""
        if self._finish():
            self._final_paint()


# -- the loading spinner ----------------------------------------------------------------------------


class Spinner(_Display):
    """The spinner shown while a model loads or before the first token (``⠋ ``, or ``loading ⠙ ``
    with a message). Only on a terminal: elsewhere it never writes anything.

    Drive it with ``asyncio.create_task(spinner.run())`` and call :meth:`stop` when the answer starts.
    As with Ollama's ticker, the first paint comes one interval after ``run`` starts, so an answer
    that is already there never flashes a spinner."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool | None = None,
        message: str = "",
        now: Clock = time.monotonic,
        width: int | None = None,
        height: int | None = None,
        interval: float = REPAINT_INTERVAL,
    ) -> None:
        super().__init__(out, tty=tty, now=now, width=width, height=height, interval=interval)
        self._status = _Status(message, now())

    def _lines(self) -> Sequence[_Line]:
        return (self._status,)

    def set_message(self, message: str) -> None:
        """Change the text shown before the frame (from the next paint)."""
        self._status.message = message

    def stop(self, *, clear: bool = True) -> None:
        """Stop turning. With ``clear`` (the default, Ollama's ``StopAndClear``) the line is wiped, so
        the answer prints where the spinner was. Without it, the message stays and is ended by a
        newline, its frame removed. Safe to call twice."""
        if clear:
            self.stop_and_clear()
        elif self._finish():
            self._final_paint()


@asynccontextmanager
async def spinning(out: TextIO) -> AsyncIterator[Spinner]:
    """A :class:`Spinner` on ``out`` turning while the block runs, wiped when it ends."""
    spinner = Spinner(out)
    task = asyncio.create_task(spinner.run())
    try:
        yield spinner
    finally:
        spinner.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
