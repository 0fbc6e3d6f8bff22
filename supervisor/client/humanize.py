"""Numbers, sizes, times and durations the way the ``ollama`` command prints them (pure).

Scripts parse ``ollama list`` / ``ollama ps`` / ``ollama run --verbose`` output, so llamasup's command
has to print the same bytes. The rules follow Ollama's ``format`` package (``HumanBytes``,
``HumanNumber``, ``HumanTime``), ``api.Metrics.Summary`` and Go's ``time.Duration.String``, including
Go's arithmetic where it differs from Python's: integer division and float-to-int conversion truncate
toward zero, ``math.Round`` rounds halves away from zero, and time differences saturate at the range
of a 64-bit count of nanoseconds. Nothing here reads the clock: callers pass ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND
_NS_PER_HOUR = 60 * _NS_PER_MINUTE
_MAX_DURATION = 2**63 - 1
_MIN_DURATION = -(2**63)
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)


def go_quo(a: int, b: int) -> int:
    """Go's integer ``a / b``: the quotient truncated toward zero (Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def go_round(x: float) -> float:
    """Go's ``math.Round``: the nearest integer, halves away from zero (Python's ``round`` is even)."""
    t = float(math.trunc(x))
    if abs(x - t) >= 0.5:
        t += math.copysign(1.0, x)
    return t


def human_bytes(n: int) -> str:
    """Decimal units (``format.HumanBytes``): ``20 B``, ``1.5 KB``, ``4.7 GB``; whole numbers and
    values of 10 or more (truncated) print without a decimal: ``986 MB``, ``26 GB``, ``2 GB``."""
    for size, unit in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "KB")):
        if n >= size:
            value = float(n) / size
            break
    else:
        return f"{n} B"
    if value >= 10 or value == math.trunc(value):
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


def human_number(n: int) -> str:
    """Counts as ``format.HumanNumber`` abbreviates them: ``8B``, ``3.2B``, ``125M``, ``500.50M``,
    ``8K`` (thousands always rounded to a whole number), ``999``."""
    if n >= 10**9:
        value = float(n) / 10**9
        return f"{value:.0f}B" if value == math.floor(value) else f"{value:.1f}B"
    if n >= 10**6:
        value = float(n) / 10**6
        return f"{value:.0f}M" if value == math.floor(value) else f"{value:.2f}M"
    if n >= 10**3:
        return f"{float(n) / 10**3:.0f}K"
    return str(n)


def _frac(v: int, prec: int) -> tuple[str, int]:
    """The low ``prec`` decimal digits of ``v`` as ``.ddd`` without trailing zeros (empty when
    they are all zero), and ``v`` without them: Go's ``fmtFrac``."""
    digits = ""
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def go_duration(ns: int) -> str:
    """``time.Duration(ns).String()``: ``0s``, ``650µs``, ``12.3ms``, ``1.234567891s``, ``1m5s``,
    ``2h0m0s``."""
    u = abs(ns)
    sign = "-" if ns < 0 else ""
    if u == 0:
        return "0s"
    if u < _NS_PER_SECOND:
        if u < 1_000:
            return f"{sign}{u}ns"
        prec, unit = (3, "µs") if u < 1_000_000 else (6, "ms")
        frac, whole = _frac(u, prec)
        return f"{sign}{whole}{frac}{unit}"
    frac, u = _frac(u, 9)
    text = f"{u % 60}{frac}s"
    u //= 60
    if u > 0:
        text = f"{u % 60}m{text}"
        u //= 60
        if u > 0:
            text = f"{u}h{text}"
    return sign + text


def _seconds(ns: int) -> float:
    """``Duration.Seconds()``: whole seconds plus the remainder, as Go computes it."""
    whole = go_quo(ns, _NS_PER_SECOND)
    return float(whole) + float(ns - whole * _NS_PER_SECOND) / 1e9


def _minutes(ns: int) -> float:
    """``Duration.Minutes()``."""
    whole = go_quo(ns, _NS_PER_MINUTE)
    return float(whole) + float(ns - whole * _NS_PER_MINUTE) / (60 * 1e9)


def _hours(ns: int) -> float:
    """``Duration.Hours()``."""
    whole = go_quo(ns, _NS_PER_HOUR)
    return float(whole) + float(ns - whole * _NS_PER_HOUR) / (60 * 60 * 1e9)


def parse_go_time(value: object) -> datetime | None:
    """A JSON time (RFC 3339, up to nanoseconds, ``Z`` or an offset) as an aware datetime; ``None``
    when absent, unreadable or Go's zero time (``0001-01-01T00:00:00Z``)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return None if t == _GO_ZERO_TIME else t


def since(t: datetime, now: datetime) -> int:
    """``now.Sub(t)`` in nanoseconds (``time.Since``), saturated to Go's duration range."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    delta = now - t
    ns = (delta.days * 86_400 + delta.seconds) * _NS_PER_SECOND + delta.microseconds * 1_000
    return max(_MIN_DURATION, min(_MAX_DURATION, ns))


def _human_duration(ns: int) -> str:
    """Ollama's ``humanDuration``: the coarse phrase for a non-negative span."""
    seconds = int(_seconds(ns))
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(_minutes(ns))
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(go_round(_hours(ns)))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(_hours(ns)) // 24 // 365} years"


def human_time(t: datetime | None, zero: str, now: datetime) -> str:
    """``format.HumanTime``: ``2 days ago``, ``4 minutes from now``, ``Forever`` beyond twenty years
    ahead, and ``zero`` for a missing or zero time."""
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    if t is None or t == _GO_ZERO_TIME:
        return zero
    delta = since(t, now)
    if go_quo(go_quo(int(_hours(delta)), 24), 365) < -20:
        return "Forever"
    if delta < 0:
        return _human_duration(-delta) + " from now"
    return _human_duration(delta) + " ago"


def _count(metrics: Mapping[str, Any], key: str) -> int:
    value = metrics.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def verbose_stats(metrics: Mapping[str, Any]) -> str:
    """What ``ollama run --verbose`` prints after an answer (``Metrics.Summary``), from the final
    ``/api/chat`` or ``/api/generate`` object: one line per non-zero metric, rates to two decimals."""
    total, load = _count(metrics, "total_duration"), _count(metrics, "load_duration")
    prompt_count, prompt_ns = _count(metrics, "prompt_eval_count"), _count(metrics, "prompt_eval_duration")
    eval_count, eval_ns = _count(metrics, "eval_count"), _count(metrics, "eval_duration")
    lines = []
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if prompt_count > 0:
        lines.append(f"prompt eval count:    {prompt_count} token(s)")
    if prompt_ns > 0:
        lines.append(f"prompt eval duration: {go_duration(prompt_ns)}")
        lines.append(f"prompt eval rate:     {float(prompt_count) / _seconds(prompt_ns):.2f} tokens/s")
    if eval_count > 0:
        lines.append(f"eval count:           {eval_count} token(s)")
    if eval_ns > 0:
        lines.append(f"eval duration:        {go_duration(eval_ns)}")
        lines.append(f"eval rate:            {float(eval_count) / _seconds(eval_ns):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)
