"""Finding and stopping llama-servers left behind by a supervisor that died.

Each runner carries ``LLAMASUP_RUNNER_OWNER=<pid>:<create time>`` in its environment. A process with
that mark whose owner no longer exists (or whose pid now belongs to a different process) is a stray.
"""

from __future__ import annotations

import contextlib
import os
import signal

import psutil
import structlog

from .command import OWNER_ENV

log = structlog.get_logger("supervisor.runner")


def owner_token(pid: int | None = None) -> str:
    """The mark this supervisor puts on its runners."""
    proc = psutil.Process(pid or os.getpid())
    return f"{proc.pid}:{proc.create_time():.3f}"


def _owner_alive(token: str) -> bool:
    pid_text, _, created = token.partition(":")
    try:
        proc = psutil.Process(int(pid_text))
        return f"{proc.create_time():.3f}" == created
    except (ValueError, psutil.Error):
        return False


def find_strays() -> list[psutil.Process]:
    """Marked processes whose supervisor is gone."""
    strays = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            token = proc.environ().get(OWNER_ENV)
        except (psutil.Error, OSError):
            continue
        if token and not _owner_alive(token):
            strays.append(proc)
    return strays


def stop_strays(timeout: float = 5.0) -> list[int]:
    """Stop every stray runner (and its process group); returns their pids."""
    strays = find_strays()
    for proc in strays:
        log.warning("stopping stray runner from an earlier supervisor", pid=proc.pid, cmdline=" ".join(proc.cmdline()[:3]))
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
    _, alive = psutil.wait_procs(strays, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    psutil.wait_procs(alive, timeout=timeout)
    return [p.pid for p in strays]
