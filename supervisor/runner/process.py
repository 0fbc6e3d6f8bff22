"""One llama-server child process: spawn, readiness, stop.

Invariants:

* A ``RunnerProcess`` is owned by exactly one pool entry, and only its own methods change its state.
* The child runs in its own process group (``setsid``) and, on Linux, with ``PR_SET_PDEATHSIG=SIGKILL``
  set before exec, so it dies with the supervisor even when the supervisor is SIGKILLed.
* One pump task reads the child's merged stdout/stderr for its whole life: every line goes to structlog,
  the last ``TAIL_LINES`` are kept for failure messages, each line counts as load progress, and until
  the runner is ready each line goes to ``memory`` (``MemoryLog``: the buffer sizes it allocated).
* The child listens on its own Unix socket (no TCP port to race for, and no Nagle/delayed-ACK stalls:
  llama-server does not set TCP_NODELAY). The process owns the HTTP session bound to that socket and
  closes it when the child is stopped.
* ``wait_ready`` races three things: ``/health`` answering 200, the child exiting, and a stall deadline
  that restarts on every line of progress.
* ``stop`` is idempotent, group-wide and bounded: SIGTERM to the group, a grace period, SIGKILL to the
  group, and the child is always reaped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import structlog

from ..errors import RunnerStartError
from .client import RunnerClient
from .memlog import MemoryLog

TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1
# "--log-prefix" lines: optional "M.ss.mmm.uuu " timestamp, then a level letter.
_PREFIX = re.compile(r"^(?:[\d.]+ )?([IWEDT]) ")
_LEVELS = {"E": "error", "W": "warning"}
# warnings llama-server prints in normal operation (a prompt already fully cached re-evaluates its
# last token): logged at debug, or every repeated prompt would leave two warnings in the log
_ROUTINE = ("need to evaluate at least 1 token for each active slot", "n_past was set to")

log = structlog.get_logger("supervisor.runner")


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGKILL when the supervisor dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class RunnerProcess:
    """A llama-server child process, from spawn to reaping."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        name: str,
        socket_path: Path,
        load_timeout: float | None,
        stop_grace: float,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.name = name
        self.socket_path = socket_path
        self.base_url = "http://llama-server"  # the host part is unused on a Unix socket
        self.session: aiohttp.ClientSession | None = None
        self.client = RunnerClient(socket_path)  # API calls; ``session`` is for health checks
        self.load_timeout = load_timeout
        self.stop_grace = stop_grace
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.memory = MemoryLog()
        self.ready = False
        self.started_at = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._exit: asyncio.Task[int] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._last_progress = 0.0
        self._stop_lock = asyncio.Lock()
        self._stopping = False
        self._log = log.bind(model=name)

    # -- state --------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def exited(self) -> bool:
        return self._exit is not None and self._exit.done()

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called: an exit after that is expected, not a crash."""
        return self._stopping

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the child; raises ``RunnerStartError`` if it cannot be executed at all."""
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
                limit=1 << 20,
            )
        except OSError as e:
            raise RunnerStartError(f"could not start llama-server {self.argv[0]}: {e}") from e
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket_path), limit=0), auto_decompress=False
        )
        self.started_at = time.monotonic()
        self._last_progress = self.started_at
        self._exit = asyncio.create_task(self._proc.wait(), name=f"runner-exit-{self._proc.pid}")
        self._pump = asyncio.create_task(self._pump_output(), name=f"runner-log-{self._proc.pid}")
        self._log.info("runner starting", pid=self._proc.pid, argv=" ".join(self.argv))

    async def _pump_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        pid = self._proc.pid
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: drop it, keep reading
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._last_progress = time.monotonic()
            self.tail.append(line)
            if not self.ready:
                self.memory.feed(line)
            m = _PREFIX.match(line)
            level = _LEVELS.get(m.group(1), "debug") if m else "debug"
            if level == "warning" and any(r in line for r in _ROUTINE):
                level = "debug"
            getattr(self._log, level)("runner output", pid=pid, line=line)

    async def wait_ready(self, poll_interval: float = 0.02) -> None:
        """Return once ``/health`` answers 200; raise ``RunnerStartError`` on exit or stall."""
        assert self._exit is not None and self.session is not None
        session = self.session
        url = self.base_url + "/health"
        timeout = aiohttp.ClientTimeout(total=2.0)
        while True:
            if self._exit.done():
                raise RunnerStartError(f"llama-server process has terminated: {await self.exit_detail()}")
            if self.load_timeout is not None and time.monotonic() - self._last_progress > self.load_timeout:
                detail = self.tail[-1] if self.tail else "no output"
                await self.stop()
                raise RunnerStartError(
                    f"timed out waiting for llama-server to start after {self.load_timeout:g}s without progress"
                    f" - {detail}"
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                async with session.get(url, timeout=timeout) as resp:
                    if resp.status == 200:
                        self.ready = True
                        self._log.info("runner ready", pid=self.pid, seconds=round(time.monotonic() - self.started_at, 3))
                        return
            await asyncio.wait({self._exit}, timeout=poll_interval)

    async def wait_exit(self, timeout: float | None = None) -> int | None:
        """The exit status once the child has exited, or None if it is still running after ``timeout``."""
        if self._exit is None:
            return None
        done, _ = await asyncio.wait({self._exit}, timeout=timeout)
        return self._exit.result() if done else None

    async def exit_detail(self) -> str:
        """``exit status N`` (or ``signal: NAME``) and the output tail, once the output is drained."""
        code = await self.wait_exit(timeout=5.0)
        if self._pump is not None:
            await asyncio.wait({self._pump}, timeout=1.0)
        if code is None:
            status = "still running"
        elif code < 0:
            status = f"signal: {signal.Signals(-code).name}"
        else:
            status = f"exit status {code}"
        tail = " | ".join(list(self.tail)[-8:])
        return f"{status}: {tail}" if tail else status

    async def health(self, timeout: float) -> bool:
        """Whether ``/health`` answers 200 within ``timeout`` seconds."""
        if self.session is None or self.session.closed or self.exited:
            return False
        try:
            async with self.session.get(self.base_url + "/health", timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop the whole process group: SIGTERM, grace, SIGKILL; always reap. A no-op when stopped.

        ``grace=0`` kills at once (a hung runner would not act on SIGTERM anyway).
        """
        self._stopping = True
        async with self._stop_lock:
            if self._proc is None or self._exit is None:
                return
            pgid = self._proc.pid
            if not self._exit.done():
                self._signal_group(pgid, signal.SIGTERM if grace != 0 else signal.SIGKILL)
                if await self.wait_exit(self.stop_grace if grace is None else grace) is None:
                    self._log.warning("runner ignored SIGTERM, killing", pid=pgid, grace=self.stop_grace)
                    self._signal_group(pgid, signal.SIGKILL)
                    await self.wait_exit()
                self._log.info("runner stopped", pid=pgid, status=self.returncode)
            # Anything the child left in its group goes too.
            self._signal_group(pgid, signal.SIGKILL)
            if self._pump is not None:
                await asyncio.wait({self._pump}, timeout=1.0)
                self._pump.cancel()
            self.client.close()
            if self.session is not None:
                await self.session.close()
            self.socket_path.unlink(missing_ok=True)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
