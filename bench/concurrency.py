#!/usr/bin/env python3
"""Aggregate decode throughput with 1, 4 and 16 concurrent streams: llamasup vs the same llama-server
called directly, in one run.

For each model and each concurrency N the script:

1. starts llamasup with ``OLLAMA_NUM_PARALLEL=N`` (so its runner gets ``-np N`` and ``-c num_ctx x N``)
   on a temporary store holding the model, and has it load the model;
2. calls that very llama-server process directly as well, on the Unix socket llamasup gave it (same
   binary, model, slots, threads and process on both sides);
3. alternates rounds (llamasup, direct, direct, llamasup, ...): a round is N streamed requests sent at
   once, all with the same prompt and sampling fields (greedy, fixed num_predict);
4. per round, aggregate decode rate = tokens received by all N streams / time from the first token of
   any stream to the last token of all (timed on the client); reports the medians over the rounds,
   the ratio llamasup / direct, and llamasup's own CPU time (user+system) per streamed token;
5. measures a pair of rounds again when other programs used CPU meanwhile (the machine's busy time
   beyond the client's, llamasup's and the runner's), so a shared machine does not decide the ratio.

Results are printed as a Markdown table and written to ``bench/results/concurrency.json``.
Usage: ``python bench/concurrency.py [--models tiny,bench] [--concurrency 1,4,16] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DIRECT_BASE, ROOT, argv_value, bodies, direct_session, llama_server, llamasup  # noqa: E402
from common import print_row, prepare_store, runner_process, stream, write_results  # noqa: E402

PLAN = {  # model preset -> (tokens per stream, measured rounds per side)
    "tiny": (512, 12),
    "bench": (64, 12),
}
SIDES = ("llamasup", "direct")
# A pair of rounds during which other programs used more than this many cores is measured again,
# up to MAX_DISTURBED x rounds times (CI machines are shared). CPU times come in 10 ms ticks, so
# the limit sits above what rounding alone gives for the shortest pairs (~0.25 s).
OTHER_LOAD_LIMIT = 0.25
MAX_DISTURBED = 3


@dataclass
class Round:
    tokens: int  # received by all streams together
    wall_s: float  # first token of any stream -> last token of all
    tps: float
    elapsed_s: float  # requests sent -> all streams done
    # CPU time (user+system) per token received, of: this process (the client), llamasup's process
    # (~0 on the direct side) and the runner; other_load: the rest of the machine's busy time during the
    # round, in cores (other programs disturbing the measurement)
    client_cpu_us_per_token: float
    supervisor_cpu_us_per_token: float
    runner_cpu_us_per_token: float
    other_load: float


Target = tuple[aiohttp.ClientSession, str, dict[str, Any], bool]


def _cpu(procs: list[psutil.Process]) -> list[float]:
    """Busy CPU seconds of the whole machine, then of each process."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return [busy] + [sum(p.cpu_times()[:2]) for p in procs]


async def _round(n: int, target: Target, procs: list[psutil.Process]) -> Round:
    """N concurrent streams to one side; ``procs``: client, supervisor, runner."""
    session, url, body, ndjson = target
    t0, before = time.perf_counter(), _cpu(procs)
    streams = await asyncio.gather(*(stream(session, url, body, ndjson=ndjson) for _ in range(n)))
    busy, client, supervisor, runner = (b - a for a, b in zip(before, _cpu(procs), strict=True))
    elapsed = time.perf_counter() - t0
    tokens = sum(s.tokens for s in streams)
    wall = max(s.last for s in streams) - min(s.first for s in streams if s.tokens)
    return Round(tokens=tokens, wall_s=wall, tps=tokens / wall, elapsed_s=elapsed, client_cpu_us_per_token=client / tokens * 1e6,
                 supervisor_cpu_us_per_token=supervisor / tokens * 1e6, runner_cpu_us_per_token=runner / tokens * 1e6,
                 other_load=max(busy - client - supervisor - runner, 0.0) / elapsed)  # fmt: skip


def _per_token(rounds: list[Round], what: str) -> float:
    """CPU µs per token over all rounds (CPU times come in 10 ms ticks: a per-round median would be coarse)."""
    return float(sum(getattr(r, what) * r.tokens for r in rounds) / sum(r.tokens for r in rounds))


async def _measure(n: int, targets: dict[str, Target], procs: list[psutil.Process], rounds: int) -> tuple[list[dict[str, Round]], int]:
    """``rounds`` pairs of rounds, alternating which side goes first; a pair during which other programs
    took CPU is measured again (counted in the second value). Should every attempt be disturbed, the
    disturbed pairs are what is returned."""
    quiet: list[dict[str, Round]] = []
    noisy: list[dict[str, Round]] = []
    while len(quiet) < rounds and len(noisy) < rounds * MAX_DISTURBED:
        order = SIDES if (len(quiet) + len(noisy)) % 2 == 0 else SIDES[::-1]
        pair = {side: await _round(n, targets[side], procs) for side in order}
        rs = pair.values()
        other = sum(r.other_load * r.elapsed_s for r in rs) / sum(r.elapsed_s for r in rs)
        (noisy if other > OTHER_LOAD_LIMIT else quiet).append(pair)
    return quiet or noisy[-rounds:], len(noisy)


async def bench_level(preset: str, n: int, work: Path, models: Path, binary: Path, rounds: int, threads: int) -> dict[str, Any]:
    n_predict = PLAN[preset][0]
    ollama_body, direct_body = bodies(preset, n_predict)
    log_name = f"llamasup-{preset}-np{n}.log"
    with llamasup(work, models, binary, threads, log_name, OLLAMA_NUM_PARALLEL=str(n)) as (sup, base):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            await stream(session, base + "/api/generate", ollama_body, ndjson=True)  # loads the runner
            runner = runner_process(sup.pid)
            argv = runner.cmdline()
            assert argv_value(argv, "--parallel") == str(n), argv
            async with direct_session(argv_value(argv, "--host")) as direct:
                targets = {
                    "llamasup": (session, base + "/api/generate", ollama_body, True),
                    "direct": (direct, DIRECT_BASE + "/completion", direct_body, False),
                }
                procs = [psutil.Process(), psutil.Process(sup.pid), runner]
                for side in SIDES:  # warm-up: every slot has seen the prompt on both paths
                    await _round(n, targets[side], procs)
                pairs, disturbed = await _measure(n, targets, procs, rounds)
    if disturbed >= rounds * MAX_DISTURBED:
        print(f"warning: {preset}, N={n}: other programs used CPU during most rounds; the numbers are disturbed", file=sys.stderr)
    measured = {side: [pair[side] for pair in pairs] for side in SIDES}
    med = statistics.median
    result: dict[str, Any] = {"model": preset, "concurrency": n, "n_predict": n_predict, "rounds": len(pairs),
                              "disturbed_pairs": disturbed, "runner_threads": threads,
                              "runner_ctx": int(argv_value(argv, "--ctx-size"))}  # fmt: skip
    for side in SIDES:
        rs = measured[side]
        assert all(r.tokens == n * n_predict for r in rs), f"{side}: short streams"
        result[f"tps_{side}"] = med(r.tps for r in rs)
        result[f"other_load_{side}"] = med(r.other_load for r in rs)
        for what in ("client_cpu_us_per_token", "runner_cpu_us_per_token"):
            result[f"{what}_{side}"] = _per_token(rs, what)
    result["supervisor_cpu_us_per_token"] = _per_token(measured["llamasup"], "supervisor_cpu_us_per_token")
    result["ratio"] = result["tps_llamasup"] / result["tps_direct"]
    result["rounds_detail"] = {side: [asdict(r) for r in measured[side]] for side in SIDES}
    return result


HEADER = ["model", "N", "tokens per stream × rounds", "direct tok/s", "llamasup tok/s", "ratio", "supervisor CPU / token"]


def _row(r: dict[str, Any]) -> list[str]:
    return [r["model"], str(r["concurrency"]), f"{r['n_predict']} × {r['rounds']}", f"{r['tps_direct']:.0f}",
            f"{r['tps_llamasup']:.0f}", f"{r['ratio']:.3f}", f"{r['supervisor_cpu_us_per_token']:.0f} µs"]  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,bench")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated numbers of concurrent streams")
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds per side (default: per-model plan)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="runner threads (default: cores - 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "concurrency.json")
    args = ap.parse_args()
    binary = llama_server()
    levels = [int(n) for n in args.concurrency.split(",")]
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llamasup-bench-") as tmp:
        work = Path(tmp)
        for preset in args.models.split(","):
            _, models = prepare_store(work, preset)
            for n in levels:
                rounds = args.rounds or PLAN[preset][1]
                results.append(await bench_level(preset, n, work, models, binary, rounds, args.threads))
                print_row(_row(results[-1]), results[-1])
    write_results(args.out, results, HEADER, _row, started)


if __name__ == "__main__":
    asyncio.run(main())
