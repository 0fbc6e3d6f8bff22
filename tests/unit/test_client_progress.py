"""The pull/push/create progress display and the loading spinner (supervisor/client/progress.py)."""

from __future__ import annotations

import asyncio
import io

import pytest

from supervisor.client.progress import (
    FRAMES,
    ProgressView,
    Spinner,
    format_duration,
    spinner_frame,
    spinner_line,
)

DIGEST = "sha256:6a0746a1ec1a" + "b" * 52
CONFIG = "sha256:4fa551d4f938" + "c" * 52
TOTAL = 4_683_073_184
ESC = "\x1b"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def layer(total: int, completed: int | None = None, digest: str = DIGEST, verb: str = "pulling") -> dict[str, object]:
    msg: dict[str, object] = {"status": f"{verb} {digest[7:19]}", "digest": digest, "total": total}
    if completed:
        msg["completed"] = completed
    return msg


def view(kind: str = "pull", *, tty: bool = True) -> tuple[ProgressView, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    return ProgressView(out, tty=tty, kind=kind, now=clock, width=80, height=24), out, clock  # type: ignore[arg-type]


# -- formats ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (3, "3s"), (59, "59s"), (60, "1m0s"), (80, "1m20s"), (3599, "59m59s"), (3600, "1h0m"), (7500, "2h5m"),
     (100 * 3600, "99h+")],
)
def test_time_left_uses_two_units_at_most(seconds: int, text: str) -> None:
    """Time left is written as Ollama's formatDuration: Go's duration text below an hour, h+m above, 99h+ past 100 h."""
    assert format_duration(seconds) == text


def test_spinner_frames_advance_every_100ms_and_wrap() -> None:
    """The braille frame is Ollama's, one step per 100 ms, back to the first after ten."""
    assert FRAMES == ("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏")
    assert [spinner_frame(i / 10) for i in range(11)] == [*FRAMES, FRAMES[0]]
    assert spinner_frame(0.3) == FRAMES[3]  # 0.3 / 0.1 is 2.999… in floating point
    assert spinner_frame(0.05) == FRAMES[0]


def test_spinner_line_puts_the_frame_after_the_message() -> None:
    """A spinner line is the message then the frame; stopped, the frame goes; with no message, only the frame."""
    assert spinner_line("pulling manifest", 0.0) == "pulling manifest ⠋ "
    assert spinner_line("pulling manifest", None) == "pulling manifest "
    assert spinner_line("", 0.25) == "⠹ "  # two ticks have passed at 250 ms
    assert spinner_line("", None) == ""


# -- not a terminal -----------------------------------------------------------------------------------


def test_pull_off_a_terminal_writes_plain_lines_once() -> None:
    """Off a terminal a pull reads as statuses once each, a line per layer start and one per completion, no escapes."""
    v, out, clock = view(tty=False)
    v.update({"status": "pulling manifest"})
    v.update(layer(TOTAL))  # announced with total only: skipped, as Ollama's pull does
    v.update(layer(412))
    v.update(layer(TOTAL, 1_048_576))
    v.update(layer(412, 412, digest=CONFIG))  # already complete when first seen: one line
    clock.t = 3.0
    v.update(layer(TOTAL, 2_000_000_000))
    v.update(layer(TOTAL, TOTAL))
    v.update(layer(TOTAL, TOTAL))
    v.update({"status": "verifying sha256 digest"})
    v.update({"status": "verifying sha256 digest"})
    v.update({"status": "writing manifest"})
    v.update({"status": "success"})
    v.stop()
    assert out.getvalue().splitlines() == [
        "pulling manifest",
        "pulling 6a0746a1ec1a: 4.7 GB",
        "pulling 4fa551d4f938: 100% 412 B",
        "pulling 6a0746a1ec1a: 100% 4.7 GB",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert ESC not in out.getvalue()


def test_push_and_create_off_a_terminal_use_their_labels() -> None:
    """Push bars are labelled "pushing <hex>..."; create bars by their status (quantizing), and status lines print as they come."""
    v, out, _ = view("push", tty=False)
    for msg in ({"status": "retrieving manifest"}, layer(TOTAL, verb="pushing"), layer(TOTAL, TOTAL, verb="pushing"),
                {"status": "pushing manifest"}, {"status": "success"}):
        v.update(msg)
    v.stop()
    assert out.getvalue().splitlines() == [
        "retrieving manifest", "pushing 6a0746a1ec1a... 4.7 GB", "pushing 6a0746a1ec1a... 100% 4.7 GB",
        "pushing manifest", "success",
    ]

    v, out, _ = view("create", tty=False)
    quantize = {"status": "quantizing F16 model to Q4_K_M", "digest": "0000000000000000000", "total": 2_000_000}
    for msg in ({"status": "parsing modelfile"}, {"status": f"using existing layer {DIGEST}"},
                {**quantize, "completed": 0}, {**quantize, "completed": 2_000_000},
                {"status": "writing manifest"}, {"status": "success"}):
        v.update(msg)
    v.stop()
    assert out.getvalue().splitlines() == [
        "parsing modelfile", f"using existing layer {DIGEST}", "quantizing F16 model to Q4_K_M 2 MB",
        "quantizing F16 model to Q4_K_M 100% 2 MB", "writing manifest", "success",
    ]


# -- on a terminal ------------------------------------------------------------------------------------


def test_terminal_frame_has_a_bar_per_digest_with_speed_and_time_left() -> None:
    """On a terminal each digest gets one bar line with percent, sizes, the speed over the sample window and time left."""
    v, _, clock = view()
    v.update({"status": "pulling manifest"})
    v.update(layer(TOTAL, 1_000_000))
    v.update(layer(412, 100, digest=CONFIG))
    clock.t = 0.5
    v.update(layer(TOTAL, 2_000_000))  # under a second since the last sample: not sampled
    clock.t = 1.5
    v.update(layer(TOTAL, 101_000_000))  # 100 MB over 1.5 s, rounded as Go does to 2 s: 50 MB/s
    frame = v.render().split("\n")
    assert frame == [
        "pulling manifest ",  # a bar stopped the spinner
        "pulling 6a0746a1ec1a:   2% ▕                  ▏ 101 MB/4.7 GB   50 MB/s   1m31s",
        "pulling 4fa551d4f938:  24% ▕████              ▏  100 B/ 412 B                  ",
    ]
    assert all(len(line) == 79 for line in frame[1:])  # a bar fills the width but the last column


def test_speed_is_taken_over_the_last_ten_samples() -> None:
    """Speed is the slope across the last ten samples (one a second at most), so a slow start stops counting."""
    v, _, clock = view()
    v.update(layer(TOTAL, 1))
    done = 1
    for second in range(1, 16):  # 1 MB/s for 5 s, then 10 MB/s
        clock.t = second + 0.01 * second
        done += 1_000_000 if second <= 5 else 10_000_000
        v.update(layer(TOTAL, done))
    assert "  10 MB/s" in v.render()


def test_completed_bar_shows_the_final_form() -> None:
    """A bar that reaches its total shows 100%, a full bar and the size alone: no speed, no time left."""
    v, _, clock = view()
    v.update(layer(TOTAL, 1_000_000))
    clock.t = 90.0
    v.update(layer(TOTAL, TOTAL + 5))  # clamped to the total
    assert v.render() == "pulling 6a0746a1ec1a: 100% ▕" + "█" * 18 + "▏ 4.7 GB" + " " * 25


def test_status_lines_spin_until_the_next_status() -> None:
    """Each new status without a digest adds a spinner line and stops the one before; a repeated status adds nothing."""
    v, out, clock = view("create")
    v.update({"status": "parsing modelfile"})
    clock.t = 0.25
    v.update({"status": "parsing modelfile"})
    assert v.render() == "parsing modelfile ⠹ "
    v.update({"status": f"using existing layer {DIGEST}"})
    clock.t = 0.35
    v.update({"status": "writing manifest"})
    assert v.render().split("\n") == ["parsing modelfile ", f"using existing layer {DIGEST} ", "writing manifest ⠋ "]
    v.stop()
    assert v.render().split("\n")[-1] == "writing manifest "
    assert out.getvalue().endswith("writing manifest " + ESC + "[K" + ESC + "[J" + ESC + "[?25h" + ESC + "[?2026l\n")


def test_create_bar_keeps_the_spinner_turning_as_ollama_does() -> None:
    """In create a digest line (quantizing) adds a bar labelled by its status without stopping the spinner."""
    v, _, _ = view("create")
    v.update({"status": "parsing GGUF"})
    v.update({"status": "quantizing F16 model to Q4_K_M", "digest": "0000000000000000000", "total": 100, "completed": 50})
    v.update({"digest": DIGEST, "total": 100, "completed": 1})
    lines = v.render().split("\n")
    assert lines[0] == "parsing GGUF ⠋ "
    assert lines[1].startswith("quantizing F16 model to Q4_K_M  50% ▕")
    assert lines[2].startswith("pulling 6a0746a1ec1a...   1% ▕")


def test_pull_skips_layers_until_bytes_flow() -> None:
    """A pull ignores a layer's announcement with no completed bytes, as Ollama's pull handler does."""
    v, out, _ = view()
    v.update(layer(TOTAL))
    v.update(layer(TOTAL, 0))
    assert v.render() == "" and out.getvalue() == ""
    v.update(layer(TOTAL, 5))
    assert v.render().startswith("pulling 6a0746a1ec1a:   0% ")


def test_repaints_are_throttled_to_the_interval_unless_a_line_is_added() -> None:
    """Updates repaint at most every 100 ms of the injected clock, but a new line is drawn at once."""
    v, out, clock = view()
    v.update(layer(TOTAL, 1))
    painted = out.getvalue()
    clock.t = 0.05
    v.update(layer(TOTAL, 2_000_000))
    assert out.getvalue() == painted
    v.update({"status": "verifying sha256 digest"})  # a new line
    assert out.getvalue() != painted
    painted = out.getvalue()
    clock.t = 0.14  # 90 ms after the last paint
    v.update({"status": "verifying sha256 digest"})
    assert out.getvalue() == painted
    clock.t = 0.15
    v.update({"status": "verifying sha256 digest"})
    assert out.getvalue() != painted


def test_repaint_moves_up_over_the_previous_frame_with_the_cursor_hidden() -> None:
    """Each repaint hides the cursor, goes back up over the lines it drew before, redraws each line, and shows the cursor."""
    v, out, _ = view("push")
    v.update({"status": "retrieving manifest"})
    first = out.getvalue()
    assert first == f"{ESC}[?2026h{ESC}[?25l{ESC}[1Gretrieving manifest ⠋ {ESC}[K{ESC}[J{ESC}[?25h{ESC}[?2026l"
    v.update(layer(TOTAL, 10, verb="pushing"))
    v.update(layer(412, 10, digest=CONFIG, verb="pushing"))
    second = out.getvalue()[len(first):]
    last = second.split(f"{ESC}[?2026l")[-2]  # the third paint, over a two-line frame
    assert last.startswith(f"{ESC}[?2026h{ESC}[?25l{ESC}[A{ESC}[1G")
    assert last.count("\n") == 2 and last.endswith(f"{ESC}[J{ESC}[?25h")


def test_wrapped_lines_are_counted_when_moving_up() -> None:
    """A status wider than the terminal wraps, and the next repaint moves up over all its rows."""
    out, clock = io.StringIO(), Clock()
    v = ProgressView(out, tty=True, kind="create", now=clock, width=40, height=24)
    v.update({"status": f"using existing layer {DIGEST}"})  # 94 columns: three rows of 40
    before = len(out.getvalue())
    v.update({"status": "writing manifest"})
    assert out.getvalue()[before:].startswith(f"{ESC}[?2026h{ESC}[?25l{ESC}[A{ESC}[A{ESC}[1G")


def test_only_as_many_lines_as_the_terminal_is_high() -> None:
    """When there are more lines than terminal rows, the frame keeps the last ones, as Ollama does."""
    out = io.StringIO()
    v = ProgressView(out, tty=True, kind="create", now=Clock(), width=80, height=2)
    for status in ("a", "b", "c"):
        v.update({"status": status})
    assert v.render() == "b \nc ⠋ "


def test_stop_is_idempotent_and_ignores_later_updates() -> None:
    """Stop draws the final frame and a newline once; updates after it write nothing."""
    v, out, _ = view()
    v.update({"status": "success"})
    v.stop()
    written = out.getvalue()
    assert written.endswith("\n")
    v.stop()
    v.update({"status": "pulling manifest"})
    assert out.getvalue() == written


def test_stop_without_any_progress_writes_nothing() -> None:
    """A view that never received a line writes nothing when stopped, on a terminal or not."""
    for tty in (True, False):
        v, out, _ = view(tty=tty)
        v.stop()
        assert out.getvalue() == ""


def test_tick_turns_the_spinner_on_the_clock() -> None:
    """tick repaints with the frame the clock says, so a status spins while nothing arrives."""
    v, out, clock = view()
    v.update({"status": "verifying sha256 digest"})
    clock.t = 0.42
    v.tick()
    assert out.getvalue().endswith(f"verifying sha256 digest {FRAMES[4]} {ESC}[K{ESC}[J{ESC}[?25h{ESC}[?2026l")


# -- the loading spinner -------------------------------------------------------------------------------


def test_spinner_off_a_terminal_writes_nothing() -> None:
    """Off a terminal the loading spinner never writes, so piped output stays clean."""
    out = io.StringIO()
    s = Spinner(out, tty=False, now=Clock())
    s.tick()
    s.stop()
    s.stop(clear=False)
    assert out.getvalue() == ""


def test_spinner_draws_frames_then_clears_its_line() -> None:
    """On a terminal tick draws the current frame in place and stop wipes the line."""
    out, clock = io.StringIO(), Clock()
    s = Spinner(out, tty=True, now=clock, width=80, height=24)
    assert s.render() == "⠋ "
    s.tick()
    clock.t = 0.1
    s.tick()
    assert s.render() == "⠙ "
    assert out.getvalue().count("⠋ ") == 1 and out.getvalue().count("⠙ ") == 1
    before = len(out.getvalue())
    s.stop()
    assert out.getvalue()[before:] == f"{ESC}[?25l{ESC}[2K{ESC}[1G{ESC}[?25h"
    s.tick()
    assert len(out.getvalue()) == before + len(f"{ESC}[?25l{ESC}[2K{ESC}[1G{ESC}[?25h")


def test_spinner_stop_without_clear_keeps_the_message() -> None:
    """stop(clear=False) leaves the message without its frame and ends the line."""
    out, clock = io.StringIO(), Clock()
    s = Spinner(out, tty=True, message="loading", now=clock, width=80, height=24)
    s.tick()
    s.set_message("loaded")
    s.stop(clear=False)
    assert s.render() == "loaded "
    assert out.getvalue().endswith(f"loaded {ESC}[K{ESC}[J{ESC}[?25h{ESC}[?2026l\n")


def test_spinner_that_never_painted_clears_nothing() -> None:
    """Stopped before its first paint, the spinner writes nothing at all."""
    out = io.StringIO()
    Spinner(out, tty=True, now=Clock()).stop()
    assert out.getvalue() == ""


async def test_spinner_run_ticks_and_ends_on_stop() -> None:
    """run ticks every interval and returns once stop is called."""
    out = io.StringIO()
    s = Spinner(out, tty=True, now=Clock(), width=80, height=24, interval=0)
    task = asyncio.create_task(s.run())
    while "⠋" not in out.getvalue():
        await asyncio.sleep(0)
    s.stop()
    await asyncio.wait_for(task, 5)
    assert task.done() and out.getvalue().endswith(f"{ESC}[2K{ESC}[1G{ESC}[?25h")


async def test_view_run_off_a_terminal_only_waits_for_stop() -> None:
    """Off a terminal the view's run writes nothing and ends when the view is stopped."""
    v, out, _ = view(tty=False)
    task = asyncio.create_task(v.run())
    await asyncio.sleep(0)
    v.stop()
    await asyncio.wait_for(task, 5)
    assert out.getvalue() == ""
