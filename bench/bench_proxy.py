#!/usr/bin/env python3
"""What llamasup's proxying costs: llamasup vs the same llama-server called directly, in one run.

For each model (the tiny generated one, which streams thousands of tokens/s and so stresses the proxy,
and the ~320 MB "bench" one, which decodes at a realistic speed) the script:

1. starts llamasup (``python -m supervisor serve``) on a temporary store holding the model, and has
   it load the model;
2. calls that very llama-server process directly as well, on the Unix socket llamasup gave it, so both
   sides use the same binary, model, context, threads, flags, prompt cache and process (a second
   llama-server would add process-to-process variance of a few percent on a 2-core machine);
3. alternates requests (llamasup, direct, llamasup, ...) with the same prompt and the same sampling
   fields (greedy, fixed num_predict), streaming, and measures on the client:
   time to first token (request sent -> first text received) and decode rate (tokens after the first
   / time from first to last token);
4. reports medians, the added time to first token (median of the paired differences), the decode
   ratio, and llamasup's own CPU time per streamed token (psutil, user+system, of the supervisor).

Results are printed as a Markdown table and written to ``bench/results/latest.json``.
Usage: ``make bench`` or ``python bench/bench_proxy.py [--runs N] [--models tiny,bench]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DIRECT_BASE,
    ROOT,
    bodies,
    direct_session,
    llama_server,
    llamasup,
    machine_info,
    markdown_table,
    prepare_store,
    runner_socket,
    stream,
)

PLAN = {  # model preset -> (tokens to generate, measured pairs)
    "tiny": (512, 30),
    "bench": (48, 20),
}
WARMUP = 2


@dataclass
class Sample:
    ttft_ms: float
    decode_tps: float
    tokens: int


async def _stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any], *, ndjson: bool) -> Sample:
    s = await stream(session, url, body, ndjson=ndjson)
    decode = (s.tokens - 1) / (s.last - s.first) if s.tokens > 1 and s.last > s.first else 0.0
    return Sample(ttft_ms=(s.first - s.sent) * 1000, decode_tps=decode, tokens=s.tokens)


async def bench_model(preset: str, work: Path, binary: Path, runs: int | None, threads: int) -> dict[str, Any]:
    n_predict, pairs = PLAN[preset]
    pairs = runs or pairs
    gguf, models = prepare_store(work, preset)
    with llamasup(work, models, binary, threads, f"llamasup-{preset}.log") as (sup, base):
        ollama_body, direct_body = bodies(preset, n_predict)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            await _stream(session, base + "/api/generate", ollama_body, ndjson=True)  # loads the runner
            direct = direct_session(runner_socket(sup.pid))  # llamasup's runner listens on a Unix socket
            for _ in range(WARMUP):
                await _stream(session, base + "/api/generate", ollama_body, ndjson=True)
                await _stream(direct, DIRECT_BASE + "/completion", direct_body, ndjson=False)
            sup_proc = psutil.Process(sup.pid)
            via: list[Sample] = []
            straight: list[Sample] = []
            cpu = 0.0
            for i in range(pairs):
                order = ("via", "direct") if i % 2 == 0 else ("direct", "via")
                for side in order:
                    if side == "via":
                        c0 = sum(sup_proc.cpu_times()[:2])
                        via.append(await _stream(session, base + "/api/generate", ollama_body, ndjson=True))
                        cpu += sum(sup_proc.cpu_times()[:2]) - c0
                    else:
                        straight.append(await _stream(direct, DIRECT_BASE + "/completion", direct_body, ndjson=False))
            await direct.close()
        med = statistics.median
        streamed = sum(s.tokens for s in via)
        result = {
            "model": preset,
            "model_bytes": gguf.stat().st_size,
            "n_predict": n_predict,
            "pairs": pairs,
            "runner_threads": threads,
            "ttft_ms_llamasup": med(s.ttft_ms for s in via),
            "ttft_ms_direct": med(s.ttft_ms for s in straight),
            "ttft_added_ms_median_paired": med(a.ttft_ms - b.ttft_ms for a, b in zip(via, straight, strict=True)),
            "decode_tps_llamasup": med(s.decode_tps for s in via),
            "decode_tps_direct": med(s.decode_tps for s in straight),
            "tokens_per_request": med(s.tokens for s in via),
            "supervisor_cpu_us_per_token": cpu / streamed * 1e6 if streamed else 0.0,
            "samples": {"llamasup": [asdict(s) for s in via], "direct": [asdict(s) for s in straight]},
        }
        result["decode_ratio"] = result["decode_tps_llamasup"] / result["decode_tps_direct"]
        return result


HEADER = ["model", "size", "runner threads", "tokens", "TTFT direct", "TTFT llamasup", "added TTFT (median of pairs)",
          "decode direct", "decode llamasup", "ratio", "supervisor CPU / token"]  # fmt: skip


def _row(r: dict[str, Any]) -> list[str]:
    return [r["model"], f"{r['model_bytes'] / 1e6:.0f} MB", str(r["runner_threads"]), f"{r['n_predict']} x {r['pairs']}",
            f"{r['ttft_ms_direct']:.2f} ms", f"{r['ttft_ms_llamasup']:.2f} ms", f"{r['ttft_added_ms_median_paired']:+.2f} ms",
            f"{r['decode_tps_direct']:.0f} tok/s", f"{r['decode_tps_llamasup']:.0f} tok/s", f"{r['decode_ratio']:.3f}",
            f"{r['supervisor_cpu_us_per_token']:.0f} µs"]  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,bench")
    ap.add_argument("--runs", type=int, default=None, help="measured pairs per model (default: per-model plan)")
    ap.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="runner threads (both sides); default leaves one core for the client and the supervisor",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = ap.parse_args()
    binary = llama_server()
    results = []
    with tempfile.TemporaryDirectory(prefix="llamasup-bench-") as tmp:
        for preset in args.models.split(","):
            results.append(await bench_model(preset, Path(tmp), binary, args.runs, args.threads))
    machine = machine_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    print(markdown_table(HEADER, map(_row, results)))
    print(f"\nmachine: {machine}; raw samples in {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
