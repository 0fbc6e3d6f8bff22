"""Go duration parsing as Ollama applies it to keep_alive."""

from __future__ import annotations

import pytest

from supervisor.durations import DurationError, parse_go_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("-1m", -60.0), ("1.5s", 1.5), ("2h", 7200.0), ("10us", 1e-5), ("+3s", 3.0)],
)
def test_valid_durations(text: str, seconds: float) -> None:
    """Go duration strings give the right number of seconds."""
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("300", 'time: missing unit in duration "300"'),
        ("-1", 'time: missing unit in duration "-1"'),
        ("", 'time: invalid duration ""'),
        ("abc", 'time: invalid duration "abc"'),
        ("5x", 'time: unknown unit "x" in duration "5x"'),
        ("-", 'time: invalid duration "-"'),
    ],
)
def test_invalid_durations_use_go_messages(text: str, message: str) -> None:
    """Invalid strings raise with Go's exact error text."""
    with pytest.raises(DurationError) as e:
        parse_go_duration(text)
    assert str(e.value) == message
