"""``llamasup plan MODEL [--ctx N] [--parallel N] [--json]``: ask the server what loading a model would do.

A client of ``POST /api/plan`` (``service/planning.py``), so it plans on the machine the server runs
on (``OLLAMA_HOST``). The answer is printed as a short report: context and slots, layers on GPU, the
predicted bytes per device next to what each device has for it, the runners that would be unloaded,
and, when the model does not fit, what did not fit and which changes would make it fit. Exit status
0 when it fits (now or after waiting for a busy runner), 1 when it does not or on any error.
"""

from __future__ import annotations

from typing import Any, TextIO

import aiohttp
import orjson

from ..pool.placement import human_bytes

_COLUMNS = ("weights", "kv_cache", "compute", "projector")


def _size(n: int | None) -> str:
    return "-" if not n else human_bytes(n)


def render(plan: dict[str, Any]) -> str:
    """The report for one ``/api/plan`` answer."""
    slots = plan["parallel"]
    lines = [
        f"model      {plan['model']}" + ("  (loaded with these parameters)" if plan.get("loaded") else ""),
        f"context    {plan['context_length']} tokens x {slots} slot{'s' if slots != 1 else ''}, KV cache {plan['kv_cache_type']}",
    ]
    if plan.get("gpu_layers") is not None and any(d["name"] != "CPU" for d in plan["devices"]):
        lines.append(f"layers     {plan['gpu_layers']}/{plan['total_layers']} on GPU")
    verdict = "yes" if plan["fits"] else ("after a busy model is idle" if plan["wait"] else "no")
    lines.append(f"fits       {verdict}")
    if plan["evict"]:
        lines.append("unloads    " + ", ".join(plan["evict"]))
    header = ["DEVICE", "WEIGHTS", "KV CACHE", "COMPUTE", "PROJECTOR", "TOTAL", "AVAILABLE"]
    rows = [header]
    for d in plan["devices"]:
        est = d.get("estimated") or {}
        rows.append([d["name"], *(_size(est.get(k)) for k in _COLUMNS), _size(est.get("total")), _size(d.get("available"))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines.append("")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for note in plan.get("notes") or []:
        lines.append(f"note: {note}")
    if plan.get("error"):
        lines += ["", f"Error: {plan['error']}"]
    if plan.get("suggestions"):
        lines.append("it would fit with:")
        lines += [f"  - {s}" for s in plan["suggestions"]]
    return "\n".join(lines) + "\n"


async def plan_command(
    base_url: str, model: str, *, ctx: int | None, parallel: int | None, as_json: bool, out: TextIO, err: TextIO
) -> int:
    body: dict[str, Any] = {"model": model}
    if ctx:
        body["options"] = {"num_ctx": ctx}
    if parallel:
        body["parallel"] = parallel
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(base_url.rstrip("/") + "/api/plan", data=orjson.dumps(body)) as resp:
                data = await resp.json(content_type=None, loads=orjson.loads)
                status = resp.status
    except (aiohttp.ClientError, OSError, ValueError) as e:
        err.write(f"Error: could not reach the server at {base_url}: {e}\n")
        return 1
    if status != 200 or not isinstance(data, dict) or "fits" not in data:
        message = data.get("error") if isinstance(data, dict) else None
        err.write(f"Error: {message or f'unexpected answer (HTTP {status})'}\n")
        return 1
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n" if as_json else render(data))
    return 0 if data["fits"] or data["wait"] else 1
