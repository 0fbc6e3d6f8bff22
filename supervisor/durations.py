"""Go ``time.ParseDuration``, as Ollama applies it to ``keep_alive`` and ``OLLAMA_KEEP_ALIVE``.

Pure; the error texts are Go's, because clients show them verbatim.
"""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


class DurationError(ValueError):
    """A string that Go's ParseDuration rejects; ``str()`` is Go's message."""


def parse_go_duration(text: str) -> float:
    """Seconds for a Go duration string such as ``"5m"``, ``"1h30m"``, ``"-1m"`` or ``"0"``."""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    s = text
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise DurationError(f"time: invalid duration {quoted}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or m.end() == pos:
            raise DurationError(f"time: invalid duration {quoted}")
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            raise DurationError(f"time: invalid duration {quoted}")
        if not unit:
            raise DurationError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise DurationError(f'time: unknown unit "{unit}" in duration {quoted}')
        value = float(f"{whole or '0'}.{frac or '0'}")
        total += value * _UNITS[unit]
        pos = m.end()
    return sign * total
