"""What ``ollama show MODEL`` prints from an ``/api/show`` response (pure).

The summary is a run of sections (Model, Capabilities, Projector, Parameters, with ``--verbose``
Metadata and Tensors, then System and License cut to two lines), each a two-space-indented title,
a header-less table whose first column is empty (so every row starts with four spaces) and a blank
line. Values print as Go prints the JSON-decoded ``map[string]any`` Ollama's command holds: every
number is a float64, so metadata shows ``%g`` (``8.030261248e+09``, ``1e-05``) while the Model
section shows plain decimals (``131072``); a missing or mistyped field drops its row, as Ollama's
type checks do, rather than failing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..modelfile.parser import go_float
from ..templates.gostrconv import format_float
from ..templates.gotemplate_literals import GO_SPACE_CHARS
from .humanize import human_number
from .tables import string_width, table

SHOW_FLAGS = ("license", "modelfile", "parameters", "system", "template")  # show's one-field flags
_GO_SPACE_RUN = re.compile(f"[{re.escape(GO_SPACE_CHARS)}]+")


def _number(v: object) -> float | None:
    """A JSON number as the float64 Go decodes it to; ``None`` for anything else (``true`` too)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def go_float_fixed(f: float) -> str:
    """``strconv.FormatFloat(f, 'f', -1, 64)``: shortest digits, never an exponent."""
    return format_float(f, "f", -1)


def go_value(v: object) -> str:
    """Go's ``%v`` of a JSON-decoded value (numbers are float64, objects ``map[string]any``)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    number = _number(v)
    if number is not None:
        return go_float(number)
    if isinstance(v, str):
        return v
    if isinstance(v, Sequence):
        return "[" + " ".join(go_value(item) for item in v) + "]"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _go_type(v: object) -> str:
    """Go's ``%T`` for the JSON-decoded types the metadata switch does not handle."""
    if v is None:
        return "<nil>"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    return type(v).__name__


def metadata_value(v: object) -> str:
    """One metadata value as ``show --verbose`` prints it; arrays keep as many items as fit in ten
    columns (at least one) and then say how many more: ``[<unk> ...+31999 more]``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    number = _number(v)
    if number is not None:
        return go_float(number)
    if isinstance(v, list):
        shown, width = 0, 1
        for i, item in enumerate(v):
            w = string_width(go_value(item)) + (2 if i > 0 else 0)
            if width + w > 10 and i > 0:
                break
            width += w
            shown += 1
        if shown < len(v):
            return go_value(v[:shown])[:-1] + f" ...+{len(v) - shown} more]"
        return go_value(v)
    return _go_type(v)


def go_fields(s: str) -> list[str]:
    """``strings.Fields``: the runs of non-white-space characters (Go's white space set)."""
    return [field for field in _GO_SPACE_RUN.split(s) if field]


def go_trim_space(s: str) -> str:
    """``strings.TrimSpace`` with Go's white space set."""
    return s.strip(GO_SPACE_CHARS)


def scan_lines(s: str) -> list[str]:
    """``bufio.ScanLines``: lines split at ``\\n``, one trailing ``\\r`` dropped from each, no empty
    last line after a final newline."""
    lines = s.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _head(s: str, n: int) -> list[list[str]]:
    """The first ``n`` non-blank lines, trimmed, then ``...`` if there were more."""
    lines = [t for t in (go_trim_space(line) for line in scan_lines(s)) if t]
    rows = [["", t] for t in lines[:n]]
    if len(lines) > n:
        rows.append(["", "..."])
    return rows


def _text(resp: Mapping[str, Any], key: str) -> str:
    value = resp.get(key)
    return value if isinstance(value, str) else ""


def _model_rows(resp: Mapping[str, Any]) -> list[list[str]]:
    details = resp.get("details")
    details = details if isinstance(details, Mapping) else {}
    rows = []
    if _text(resp, "remote_host"):
        rows.append(["", "Remote model", _text(resp, "remote_model")])
        rows.append(["", "Remote URL", _text(resp, "remote_host")])
    info = resp.get("model_info")
    if isinstance(info, Mapping):
        arch = info.get("general.architecture")
        arch = arch if isinstance(arch, str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        params = _text(details, "parameter_size")
        count = _number(info.get("general.parameter_count"))
        if not params and count is not None:
            params = human_number(max(0, int(count)))
        if params:
            rows.append(["", "parameters", params])
        for suffix, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            value = _number(info.get(f"{arch}.{suffix}"))
            if value is not None:
                rows.append(["", label, go_float_fixed(value)])
    else:
        rows.append(["", "architecture", _text(details, "family")])
        rows.append(["", "parameters", _text(details, "parameter_size")])
    rows.append(["", "quantization", _text(details, "quantization_level")])
    if _text(resp, "requires"):
        rows.append(["", "requires", _text(resp, "requires")])
    return rows


def _projector_rows(info: Mapping[str, Any]) -> list[list[str]]:
    arch = info.get("general.architecture")
    arch = arch if isinstance(arch, str) else ""
    rows = []
    if arch:
        rows.append(["", "architecture", arch])
    count = _number(info.get("general.parameter_count"))
    if count is not None:
        rows.append(["", "parameters", human_number(max(0, int(count)))])
    for suffix, label in (("embedding_length", "embedding length"), ("projection_dim", "dimensions")):
        for modality in ("vision", "audio"):
            value = _number(info.get(f"{arch}.{modality}.{suffix}"))
            if value is not None:
                rows.append(["", label, go_float_fixed(value)])
                break
    return rows


def _section(title: str, rows: list[list[str]]) -> str:
    width = 100 if title in ("Template", "System", "License") else 30
    return f"  {title}\n" + table([], rows, col_width=width) + "\n"


def show_info(resp: Mapping[str, Any], verbose: bool) -> str:
    """The default ``ollama show MODEL`` output (``--verbose`` adds Metadata and Tensors)."""
    out = [_section("Model", _model_rows(resp))]
    capabilities = resp.get("capabilities")
    if isinstance(capabilities, list) and capabilities:
        out.append(_section("Capabilities", [["", str(c)] for c in capabilities]))
    projector = resp.get("projector_info")
    if isinstance(projector, Mapping):
        out.append(_section("Projector", _projector_rows(projector)))
    parameters = _text(resp, "parameters")
    if parameters:
        out.append(_section("Parameters", [["", *go_fields(line)] for line in scan_lines(parameters) if line]))
    info = resp.get("model_info")
    if verbose and isinstance(info, Mapping):
        out.append(_section("Metadata", [["", k, metadata_value(info[k])] for k in sorted(info)]))
    tensors = resp.get("tensors")
    if verbose and isinstance(tensors, list) and tensors:
        rows = []
        for t in tensors:
            t = t if isinstance(t, Mapping) else {}
            shape = t.get("shape")
            dims = " ".join(str(int(d)) for d in shape) if isinstance(shape, list) else ""
            rows.append(["", _text(t, "name"), _text(t, "type"), f"[{dims}]"])
        out.append(_section("Tensors", rows))
    for key, title in (("system", "System"), ("license", "License")):
        if _text(resp, key):
            out.append(_section(title, _head(_text(resp, key), 2)))
    return "".join(out)


_FieldPrinter = Callable[[str], str]
_PRINTERS: dict[str, _FieldPrinter] = {
    "license": lambda s: s + "\n",  # fmt.Println
    "modelfile": lambda s: s + "\n",
    "parameters": lambda s: s + "\n",
    "system": lambda s: s,  # fmt.Print: no newline added
    "template": lambda s: s,
}


def show_field(resp: Mapping[str, Any], flag: str) -> str:
    """What ``ollama show --license|--modelfile|--parameters|--system|--template`` prints: the
    field, with a newline added for the first three only. ``flag`` may carry its dashes."""
    name = flag.lstrip("-")
    if name not in _PRINTERS:
        raise ValueError(f"unknown show flag {flag!r}; expected one of {', '.join(SHOW_FLAGS)}")
    return _PRINTERS[name](_text(resp, name))
