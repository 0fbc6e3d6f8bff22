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
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.protocol.ollama import resolve_options  # noqa: E402
from tests.net import free_port  # noqa: E402
from tests.models import write_model  # noqa: E402
from tests.store_helpers import install_gguf  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog. Tell me a long story about it."
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


def _llama_server() -> Path:
    env = os.environ.get("LLAMASUP_LLAMA_SERVER")
    if env:
        return Path(env)
    out = subprocess.run([str(ROOT / "build_runner.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def _stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any], *, ndjson: bool) -> Sample:
    """Stream one completion; timestamps are taken on the client for both sides alike."""
    data = orjson.dumps(body)
    t0 = time.perf_counter()
    first = last = 0.0
    tokens = 0
    # llama-server closes a connection after a stream while advertising keep-alive: never reuse one.
    headers = {"Content-Type": "application/json"} if ndjson else {"Content-Type": "application/json", "Connection": "close"}
    async with session.post(url, data=data, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if ndjson:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                piece = event.get("response", "")
            else:
                if not line.startswith(b"data: "):
                    continue
                event = orjson.loads(line[6:])
                piece = event.get("content", "") if not event.get("stop") else ""
            if piece:
                now = time.perf_counter()
                tokens += 1
                if not first:
                    first = now
                last = now
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Sample(ttft_ms=(first - t0) * 1000, decode_tps=decode, tokens=tokens)


async def bench_model(preset: str, work: Path, binary: Path, runs: int | None, threads: int) -> dict[str, Any]:
    n_predict, pairs = PLAN[preset]
    pairs = runs or pairs
    gguf = write_model(work / f"{preset}.gguf", preset=preset)
    models = work / f"store-{preset}"
    install_gguf(models, preset, gguf)
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(models), OLLAMA_KEEP_ALIVE="-1",
               LLAMASUP_LLAMA_SERVER=str(binary), LLAMASUP_CACHE_DIR=str(work / "cache"), LLAMASUP_LOG_FORMAT="json",
               LLAMASUP_LOG_LEVEL="warning", LLAMASUP_THREADS=str(threads))  # fmt: skip
    sup = subprocess.Popen([sys.executable, "-m", "supervisor", "serve"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=open(work / f"llamasup-{preset}.log", "wb"))  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/", sup)
        # Same prompt, same sampling fields on both sides: what llamasup sends for raw generate.
        sampling = resolve_options({}, {"temperature": 0, "num_predict": n_predict, "seed": 1}).sampling
        ollama_body = {"model": preset, "prompt": PROMPT, "raw": True, "stream": True,
                       "options": {"temperature": 0, "num_predict": n_predict, "seed": 1}}  # fmt: skip
        direct_body = dict(sampling, prompt=PROMPT, stream=True, cache_prompt=True)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            await _stream(session, base + "/api/generate", ollama_body, ndjson=True)  # loads the runner
            (runner,) = [c for c in psutil.Process(sup.pid).children() if "llama-server" in " ".join(c.cmdline()[:1])]
            argv = runner.cmdline()
            socket_path = argv[argv.index("--host") + 1]  # llamasup's runner listens on a Unix socket
            direct_session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=socket_path), timeout=aiohttp.ClientTimeout(total=600)
            )
            dbase = "http://llama-server"
            for _ in range(WARMUP):
                await _stream(session, base + "/api/generate", ollama_body, ndjson=True)
                await _stream(direct_session, dbase + "/completion", direct_body, ndjson=False)
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
                        straight.append(await _stream(direct_session, dbase + "/completion", direct_body, ndjson=False))
            await direct_session.close()
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
    finally:
        sup.terminate()
        sup.wait(timeout=30)


def _table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| model | size | runner threads | tokens | TTFT direct | TTFT llamasup | added TTFT (median of pairs) | decode direct | decode llamasup | ratio | supervisor CPU / token |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['model']} | {r['model_bytes'] / 1e6:.0f} MB | {r['runner_threads']} | {r['n_predict']} x {r['pairs']} | {r['ttft_ms_direct']:.2f} ms "
            f"| {r['ttft_ms_llamasup']:.2f} ms | {r['ttft_added_ms_median_paired']:+.2f} ms | {r['decode_tps_direct']:.0f} tok/s "
            f"| {r['decode_tps_llamasup']:.0f} tok/s | {r['decode_ratio']:.3f} | {r['supervisor_cpu_us_per_token']:.0f} µs |"
        )
    return "\n".join(rows)


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
    binary = _llama_server()
    results = []
    with tempfile.TemporaryDirectory(prefix="llamasup-bench-") as tmp:
        for preset in args.models.split(","):
            results.append(await bench_model(preset, Path(tmp), binary, args.runs, args.threads))
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    print(_table(results))
    print(f"\nmachine: {machine}; raw samples in {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
