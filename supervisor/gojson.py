"""JSON bytes as Go's ``encoding/json`` writes them (pure).

Ollama escapes ``<``, ``>`` and ``&`` (HTML safety) and U+2028/U+2029; clients parse either form, but
manifests and config blobs are content-addressed, so what llamasup writes must match byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson

_HTML_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"))
_SEPARATOR_ESCAPES = (("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def dumps(obj: Any) -> bytes:
    """Compact JSON with Go's escapes; other non-ASCII stays raw UTF-8."""
    data = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)  # float32 arrays print as Go's []float32
    for raw, escaped in _HTML_ESCAPES:  # one-byte searches: fast
        if raw in data:
            data = data.replace(raw, escaped)
    if not data.isascii():  # the three-byte searches cost more than the rest together: only when needed
        for raw, escaped in _SEPARATOR_ESCAPES:
            if raw in data:
                data = data.replace(raw, escaped)
    return data
