"""Running one llama.cpp conversion tool (``llama-quantize``, ``convert_hf_to_gguf.py``) to completion.

Invariants:

* The tool runs in its own process group (``setsid``) and, on Linux, dies with llamasup
  (``PR_SET_PDEATHSIG``), so neither it nor anything it spawned outlives a failed or cancelled create.
* The wait races three things (DESIGN rule 3): the tool's exit, its output (every line, including
  ``\\r``-terminated progress-bar updates, restarts the stall deadline) and that stall deadline.
* The exit is the process's own, reported by the event loop's child watcher, not the end of its
  output: a grandchild that inherited the pipe must not keep the wait going (``Process.wait()`` on
  Python 3.11 waits for both, hence the protocol below instead of ``create_subprocess_exec``).
* Whatever ends the run early (a non-zero exit, a stall, a failing progress callback, or
  ``asyncio.CancelledError``), the whole group is SIGKILLed, the tool is reaped and the output file
  is removed before the exception propagates. SIGKILL at once rather than SIGTERM and a grace
  period: the output is thrown away anyway, so there is nothing for the tool to finish cleanly.
  After a successful exit the group is SIGKILLed too: anything still in it is a leftover.
* Failure messages carry the exit status and the last lines of output, where tools print the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from ..errors import ConversionError
from ..runner.process import die_with_parent

TAIL_LINES = 40
MESSAGE_LINES = 8
_MAX_LINE = 1 << 16
_EOL = re.compile(rb"\r\n|\r|\n")

log = structlog.get_logger("supervisor.modelfile")


def exit_status(code: int | None) -> str:
    """``exit status N`` or ``signal: NAME``, the wording of Go's ``exec.ExitError`` that Ollama shows."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal: {signal.Signals(-code).name}"
        return f"signal: {-code}"
    return f"exit status {code}"


def split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (split on ``\\n``, ``\\r\\n`` or ``\\r``) and the unterminated rest."""
    *lines, rest = _EOL.split(buffer)
    return lines, rest


class _ToolProtocol(asyncio.SubprocessProtocol):
    """The tool's merged stdout/stderr and its exit, turned into futures that the wait races.

    The loop calls these methods; an exception from ``on_line`` cannot propagate through it, so it is
    kept in ``error`` and signalled through ``failed``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_line: Callable[[str], None] | None) -> None:
        self.on_line = on_line
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.last_progress = time.monotonic()
        self.error: Exception | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.failed: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._pending = b""

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        self.last_progress = time.monotonic()
        lines, self._pending = split_lines(self._pending + bytes(data))
        if len(self._pending) > _MAX_LINE:  # a runaway line: report what there is and go on
            lines.append(self._pending)
            self._pending = b""
        for raw in lines:
            self._line(raw)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._line(self._pending)
        self._pending = b""
        _resolve(self.output_closed)

    def process_exited(self) -> None:
        _resolve(self.exited)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        self.tail.append(text)
        if self.on_line is None or self.error is not None:
            return
        try:
            self.on_line(text)
        except Exception as e:  # noqa: BLE001 - re-raised by the wait, in the caller's task
            self.error = e
            _resolve(self.failed)

    def summary(self) -> str:
        """The last lines, whitespace runs collapsed (llama.cpp aligns its logs in wide columns)."""
        return " | ".join(" ".join(line.split()) for line in list(self.tail)[-MESSAGE_LINES:])


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run_tool(
    argv: Sequence[str],
    *,
    what: str,
    output: Path,
    on_line: Callable[[str], None] | None = None,
    stall_timeout: float,
) -> None:
    """Run ``argv`` until it exits 0 and leaves ``output``; otherwise raise with ``output`` removed.

    ``what`` names the tool in messages (``llama-quantize``). Raises ``ConversionError`` when the tool
    cannot start, exits non-zero, writes no ``output`` or prints nothing for ``stall_timeout`` seconds,
    and whatever ``on_line`` raised.
    """
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    protocol = _ToolProtocol(loop, on_line)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
    except OSError as e:
        output.unlink(missing_ok=True)
        raise ConversionError(f"could not start {what}: {e}") from e
    except BaseException:  # cancelled while spawning: asyncio kills a child it had already started
        output.unlink(missing_ok=True)
        raise
    pid = transport.get_pid()
    log.info("tool started", tool=what, pid=pid, argv=" ".join(argv))
    try:
        await _wait(protocol, transport, what=what, stall_timeout=stall_timeout, pgid=pid)
        _kill_group(pid)  # leftovers; once they are gone the output reaches its end
        await asyncio.wait({protocol.output_closed}, timeout=1.0)
        if protocol.error is not None:
            raise protocol.error
        code = transport.get_returncode()
        if code != 0:
            raise ConversionError(f"{what} failed: {exit_status(code)}: {protocol.summary()}")
        if not output.is_file() or output.stat().st_size == 0:
            raise ConversionError(f"{what} exited without writing {output.name}: {protocol.summary()}")
    except asyncio.CancelledError:
        _kill_group(pid)
        output.unlink(missing_ok=True)
        log.info("tool cancelled", tool=what, pid=pid)
        raise
    except BaseException as e:
        _kill_group(pid)
        output.unlink(missing_ok=True)
        log.warning("tool failed", tool=what, pid=pid, error=str(e))
        raise
    finally:
        _kill_group(pid)
        try:
            await asyncio.wait({protocol.exited}, timeout=5.0)  # SIGKILLed: reaped by the child watcher
        finally:
            transport.close()
    log.info("tool finished", tool=what, pid=pid, seconds=round(time.monotonic() - started, 3))


async def _wait(
    protocol: _ToolProtocol,
    transport: asyncio.SubprocessTransport,
    *,
    what: str,
    stall_timeout: float,
    pgid: int,
) -> None:
    """Return when the tool exits; raise when the progress callback fails or the output stalls."""
    watched: set[asyncio.Future[Any]] = {protocol.exited, protocol.failed}
    while not protocol.exited.done():
        if protocol.error is not None:
            raise protocol.error
        remaining = protocol.last_progress + stall_timeout - time.monotonic()
        if remaining <= 0:
            _kill_group(pgid)
            await asyncio.wait({protocol.exited}, timeout=5.0)
            raise ConversionError(
                f"{what} made no progress for {stall_timeout:g}s and was stopped: "
                f"{exit_status(transport.get_returncode())}: {protocol.summary()}"
            )
        await asyncio.wait(watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
