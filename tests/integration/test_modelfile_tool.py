"""The conversion-tool wait (``modelfile.tool.run_tool``) against scripted tools: stalls, failures, cancels."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import psutil
import pytest

from supervisor.errors import ConversionError
from supervisor.modelfile.tool import run_tool
from tests.conftest import wait_until

# A stand-in tool: writes part of its output, starts a grandchild in its group, reports, then behaves
# as told by argv[2]: "exit N" exits with N after a last line, "hang" never exits, "bar" prints a
# \r-redrawn progress bar and succeeds.
TOOL = """
import subprocess, sys, time
out, mode = sys.argv[1], sys.argv[2:]
open(out, "wb").write(b"partial")
if mode[0] == "bar":
    for i in range(1, 4):
        sys.stdout.write(f"\\rWriting: {i}/3")
        sys.stdout.flush()
    print()
    sys.exit(0)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
print("[   1/   3] first tensor", flush=True)
if mode[0] == "exit":
    print("error: the reason", flush=True)
    sys.exit(int(mode[1]))
time.sleep(3600)
"""


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    script = tmp_path / "fake_tool.py"
    script.write_text(TOOL)
    return script


def _family() -> list[psutil.Process]:
    """The fake tool and its grandchild, among this test process's descendants."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.cmdline())
            if "fake_tool.py" in cmdline or "sleep(3600)" in cmdline:
                found.append(proc)
    return found


def _dead(proc: psutil.Process) -> bool:
    """Exited: reaped, or a zombie waiting for whoever adopted it (an orphaned grandchild)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _assert_gone(procs: list[psutil.Process]) -> None:
    await wait_until(lambda: all(_dead(p) for p in procs), timeout=5, what="the tool's processes to exit")


async def test_nonzero_exit_reports_status_and_tail_and_removes_output(tool: Path, tmp_path: Path) -> None:
    """A failing tool raises with 'exit status N' and its last lines; the partial output is deleted."""
    out = tmp_path / "out.gguf"
    with pytest.raises(ConversionError) as err:
        await run_tool([sys.executable, str(tool), str(out), "exit", "3"], what="fake", output=out, stall_timeout=30)
    assert str(err.value) == "fake failed: exit status 3: [ 1/ 3] first tensor | error: the reason"
    assert not out.exists()


async def test_stall_kills_the_group(tool: Path, tmp_path: Path) -> None:
    """A tool that stops printing is killed with everything it started, after the stall timeout."""
    out = tmp_path / "out.gguf"
    family: list[psutil.Process] = []
    with pytest.raises(ConversionError) as err:
        await run_tool(
            [sys.executable, str(tool), str(out), "hang"],
            what="fake",
            output=out,
            on_line=lambda _: family.extend(_family()),
            stall_timeout=0.5,
        )
    assert str(err.value) == "fake made no progress for 0.5s and was stopped: signal: SIGKILL: [ 1/ 3] first tensor"
    assert len(family) == 2
    await _assert_gone(family)
    assert not out.exists()


async def test_cancel_kills_the_group_and_removes_output(tool: Path, tmp_path: Path) -> None:
    """Cancelling the caller kills the tool and its grandchild and deletes the partial output."""
    out = tmp_path / "out.gguf"
    family: list[psutil.Process] = []
    started = asyncio.Event()

    def on_line(_: str) -> None:
        family.extend(_family())
        started.set()

    task = asyncio.create_task(
        run_tool([sys.executable, str(tool), str(out), "hang"], what="fake", output=out, on_line=on_line, stall_timeout=30)
    )
    await started.wait()
    assert out.exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(family) == 2
    await _assert_gone(family)
    assert not out.exists()


async def test_failing_progress_callback_stops_the_tool(tool: Path, tmp_path: Path) -> None:
    """An exception from the progress callback propagates after the tool is killed and its output removed."""
    out = tmp_path / "out.gguf"
    family: list[psutil.Process] = []

    def on_line(_: str) -> None:
        family.extend(_family())
        raise RuntimeError("callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        await run_tool([sys.executable, str(tool), str(out), "hang"], what="fake", output=out, on_line=on_line, stall_timeout=30)
    await _assert_gone(family)
    assert not out.exists()


async def test_carriage_return_updates_are_lines(tool: Path, tmp_path: Path) -> None:
    """Each \\r redraw of a progress bar reaches the callback as its own line; success keeps the output."""
    out = tmp_path / "out.gguf"
    lines: list[str] = []
    await run_tool([sys.executable, str(tool), str(out), "bar"], what="fake", output=out, on_line=lines.append, stall_timeout=30)
    assert lines == ["Writing: 1/3", "Writing: 2/3", "Writing: 3/3"]
    assert out.read_bytes() == b"partial"


async def test_missing_executable_is_a_conversion_error(tmp_path: Path) -> None:
    """A tool that cannot be started is a ConversionError naming it."""
    out = tmp_path / "out.gguf"
    out.write_bytes(b"")
    with pytest.raises(ConversionError, match="^could not start fake: "):
        await run_tool([str(tmp_path / "nope")], what="fake", output=out, stall_timeout=30)
    assert not out.exists()
