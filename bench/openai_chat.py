#!/usr/bin/env python3
"""What llamasup's OpenAI chat route costs: streamed ``POST /v1/chat/completions`` on llamasup vs the
same llama-server's own ``/v1/chat/completions``, in one run.

For each model (the tiny generated one, which streams thousands of tokens/s and so stresses the
translation and the relay, and the ~340 MB "bench" one, which decodes at a realistic speed) the script:

1. starts llamasup (``python -m supervisor serve``) on a temporary store holding the model, and has
   it load the model; the model has no Go TEMPLATE, so llamasup sends every chat to llama-server's
   ``/v1/chat/completions``, which renders the GGUF's chat template itself;
2. calls that very llama-server process directly as well, on the Unix socket llamasup gave it, with
   the body llamasup sends for the same request (the same messages and sampling fields, built with
   llamasup's own translation functions), so the runner does the same work on both sides;
3. alternates requests (llamasup, direct, direct, llamasup, ...), all streamed, greedy (temperature 0,
   seed 1), a fixed ``max_tokens``, the same messages every time: the runner's prompt cache holds the
   prompt for both sides alike (as in ``bench_proxy.py``); a pair during which other programs used CPU
   is measured again (the machine is shared);
4. measures on the client, for both sides alike: time to first token (request sent -> first chunk
   with content text) and decode rate ((content chunks - 1) / (last content - first content)), checks
   that both sides stream one content chunk per token and the same text, and reports the medians,
   the median of the paired differences of TTFT, the median of the paired decode ratios, and
   llamasup's own CPU time (user+system) per streamed token.

Results are printed as a Markdown table and written to ``bench/results/openai_chat.json``.
Usage: ``python bench/openai_chat.py [--models tiny,bench] [--pairs N] [--threads T]``.
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
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DIRECT_BASE, PROMPT, ROOT, argv_value, direct_session, llama_server, llamasup  # noqa: E402
from common import print_row, prepare_store, runner_process, write_results  # noqa: E402

from supervisor.protocol import openai_chat  # noqa: E402
from supervisor.protocol.llama_server import chat_body, tool_fields  # noqa: E402
from supervisor.protocol.ollama import resolve_options  # noqa: E402

PLAN = {  # model preset -> (max_tokens, measured pairs)
    "tiny": (512, 30),
    "bench": (128, 20),
}
WARMUP = 2
SIDES = ("llamasup", "direct")
MESSAGES = [{"role": "system", "content": "You are a storyteller."}, {"role": "user", "content": PROMPT}]
# A pair during which other programs used more than this many cores (on average) is measured again,
# up to MAX_DISTURBED x pairs times; then the least disturbed of them fill up the quiet ones.
OTHER_LOAD_LIMIT = 0.25
MAX_DISTURBED = 3


@dataclass
class Sample:
    ttft_ms: float  # sent -> first chunk with content text
    decode_tps: float  # (content chunks - 1) / (last content - first content)
    tokens: int  # chunks with content text
    events: int  # data events (role-only, finish, [DONE] included)
    elapsed_s: float  # sent -> end of the stream
    supervisor_cpu_s: float  # llamasup's user+system CPU during the request (~0 on the direct side)
    other_load: float  # the machine's busy time beyond client, llamasup and runner, in cores


def request_bodies(preset: str, max_tokens: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(llamasup's OpenAI body, the body llamasup sends for it to llama-server's chat endpoint), the
    second built as ``InferenceService._chat_native`` builds it: the OpenAI fields mapped to Ollama
    options, resolved to llama-server's sampling fields, with the messages in llama-server's shape."""
    body = {"model": preset, "messages": MESSAGES, "stream": True, "max_tokens": max_tokens, "temperature": 0, "seed": 1}
    req, opts = openai_chat.chat_request(orjson.loads(orjson.dumps(body)))
    assert opts.n == 1 and not req.tools and req.think is None
    sampling = resolve_options({}, req.options).sampling
    assert sampling["n_predict"] == max_tokens and sampling["temperature"] == 0
    direct = dict(sampling, stream=True) | chat_body(req.messages, req.tools, None) | tool_fields(req)
    return body, direct


def _cpu(procs: list[psutil.Process]) -> list[float]:
    """Busy CPU seconds of the whole machine, then of each process."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return [busy] + [sum(p.cpu_times()[:2]) for p in procs]


async def chat_stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any], procs: list[psutil.Process],
                      *, close: bool) -> tuple[Sample, str]:  # fmt: skip
    """One streamed chat, timed on the client; ``procs``: client, supervisor, runner. ``close``: ask
    for the connection to be closed (llama-server closes it after a stream while advertising keep-alive)."""
    data = orjson.dumps(body)
    headers = {"Content-Type": "application/json"} | ({"Connection": "close"} if close else {})
    before = _cpu(procs)
    t0 = time.perf_counter()
    first = last = 0.0
    tokens = events = 0
    text = []
    async with session.post(url, data=data, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            events += 1
            if line.startswith(b"data: [DONE]"):
                continue
            event = orjson.loads(line[6:])
            choices = event.get("choices") or [{}]
            piece = (choices[0].get("delta") or {}).get("content")
            if piece:
                now = time.perf_counter()
                tokens += 1
                text.append(piece)
                if not first:
                    first = now
                last = now
    elapsed = time.perf_counter() - t0
    busy, client, supervisor, runner = (b - a for a, b in zip(before, _cpu(procs), strict=True))
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    sample = Sample(ttft_ms=(first - t0) * 1000, decode_tps=decode, tokens=tokens, events=events, elapsed_s=elapsed,
                    supervisor_cpu_s=supervisor, other_load=max(busy - client - supervisor - runner, 0.0) / elapsed)  # fmt: skip
    return sample, "".join(text)


def _other_load(pair: dict[str, Sample]) -> float:
    """Cores other programs used during a pair, on average."""
    ss = pair.values()
    return sum(s.other_load * s.elapsed_s for s in ss) / sum(s.elapsed_s for s in ss)


Target = tuple[aiohttp.ClientSession, str, dict[str, Any], bool]


async def _measure(targets: dict[str, Target], procs: list[psutil.Process], pairs: int,
                   expected: str) -> tuple[list[dict[str, Sample]], int]:  # fmt: skip
    """``pairs`` pairs of requests, alternating which side goes first; a pair during which other
    programs took CPU is measured again (counted in the second value). Should too many attempts be
    disturbed, the quiet pairs are filled up with the least disturbed ones."""
    quiet: list[dict[str, Sample]] = []
    noisy: list[tuple[float, dict[str, Sample]]] = []
    while len(quiet) < pairs and len(noisy) < pairs * MAX_DISTURBED:
        order = SIDES if (len(quiet) + len(noisy)) % 2 == 0 else SIDES[::-1]
        pair = {}
        for side in order:
            session, url, body, close = targets[side]
            pair[side], text = await chat_stream(session, url, body, procs, close=close)
            assert text == expected, f"{side}: the text differs from the warm-up's"
        other = _other_load(pair)
        if other > OTHER_LOAD_LIMIT:
            noisy.append((other, pair))
        else:
            quiet.append(pair)
    least = [pair for _, pair in sorted(noisy, key=lambda n: n[0])]
    return quiet + least[: pairs - len(quiet)], len(noisy)


async def bench_model(preset: str, work: Path, binary: Path, pairs: int | None, threads: int) -> dict[str, Any]:
    max_tokens, planned = PLAN[preset]
    pairs = pairs or planned
    gguf, models = prepare_store(work, preset)
    body, direct_body = request_bodies(preset, max_tokens)
    with llamasup(work, models, binary, threads, f"llamasup-openai-{preset}.log") as (sup, base):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            url = base + "/v1/chat/completions"
            async with session.post(url, json=body | {"stream": False, "max_tokens": 1}) as resp:
                assert resp.status == 200, await resp.text()  # loads the runner
            runner = runner_process(sup.pid)
            procs = [psutil.Process(), psutil.Process(sup.pid), runner]
            async with direct_session(argv_value(runner.cmdline(), "--host")) as direct:
                targets: dict[str, Target] = {
                    "llamasup": (session, url, body, False),
                    "direct": (direct, DIRECT_BASE + "/v1/chat/completions", direct_body, True),
                }
                texts = {}
                for _ in range(WARMUP):
                    for side in SIDES:
                        session_, url_, body_, close = targets[side]
                        sample, texts[side] = await chat_stream(session_, url_, body_, procs, close=close)
                        assert sample.tokens == max_tokens, f"{side}: {sample.tokens} content chunks for {max_tokens} tokens"
                assert texts["llamasup"] == texts["direct"], "llamasup and llama-server stream different text"
                measured_pairs, disturbed = await _measure(targets, procs, pairs, texts["direct"])
    if disturbed >= pairs * MAX_DISTURBED:
        print(f"warning: {preset}: other programs used CPU during most pairs; the numbers are disturbed", file=sys.stderr)
    measured = {side: [p[side] for p in measured_pairs] for side in SIDES}
    via, straight = measured["llamasup"], measured["direct"]
    for side in SIDES:
        assert all(s.tokens == max_tokens for s in measured[side]), f"{side}: not one content chunk per token"
    med = statistics.median
    streamed = sum(s.tokens for s in via)
    added = [a.ttft_ms - b.ttft_ms for a, b in zip(via, straight, strict=True)]
    ratios = [a.decode_tps / b.decode_tps for a, b in zip(via, straight, strict=True)]
    result: dict[str, Any] = {
        "model": preset,
        "model_bytes": gguf.stat().st_size,
        "max_tokens": max_tokens,
        "pairs": len(measured_pairs),
        "disturbed_pairs": disturbed,  # measured again
        "disturbed_pairs_kept": sum(_other_load(p) > OTHER_LOAD_LIMIT for p in measured_pairs),
        "runner_threads": threads,
        "content_chunks_per_request": {side: med(s.tokens for s in measured[side]) for side in SIDES},
        "events_per_request": {side: med(s.events for s in measured[side]) for side in SIDES},
        "ttft_ms_llamasup": med(s.ttft_ms for s in via),
        "ttft_ms_direct": med(s.ttft_ms for s in straight),
        "ttft_added_ms_median_paired": med(added),
        "ttft_added_ms_quartiles": statistics.quantiles(added, n=4),
        "decode_tps_llamasup": med(s.decode_tps for s in via),
        "decode_tps_direct": med(s.decode_tps for s in straight),
        "decode_ratio_median_paired": med(ratios),
        "decode_ratio_quartiles": statistics.quantiles(ratios, n=4),
        "supervisor_cpu_us_per_token": sum(s.supervisor_cpu_s for s in via) / streamed * 1e6,
        "samples": {side: [asdict(s) for s in measured[side]] for side in SIDES},
    }
    return result


HEADER = ["model", "size", "tokens × pairs", "TTFT direct", "TTFT llamasup", "added TTFT (median of pairs)",
          "decode direct", "decode llamasup", "ratio (median of pairs)", "supervisor CPU / token"]  # fmt: skip


def _row(r: dict[str, Any]) -> list[str]:
    return [r["model"], f"{r['model_bytes'] / 1e6:.0f} MB", f"{r['max_tokens']} × {r['pairs']}",
            f"{r['ttft_ms_direct']:.2f} ms", f"{r['ttft_ms_llamasup']:.2f} ms", f"{r['ttft_added_ms_median_paired']:+.2f} ms",
            f"{r['decode_tps_direct']:.0f} tok/s", f"{r['decode_tps_llamasup']:.0f} tok/s",
            f"{r['decode_ratio_median_paired']:.3f}", f"{r['supervisor_cpu_us_per_token']:.0f} µs"]  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,bench")
    ap.add_argument("--pairs", type=int, default=None, help="measured pairs per model (default: per-model plan)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="runner threads (default: cores - 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "openai_chat.json")
    args = ap.parse_args()
    binary = llama_server()
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="llamasup-bench-") as tmp:
        for preset in args.models.split(","):
            results.append(await bench_model(preset, Path(tmp), binary, args.pairs, args.threads))
            print_row(_row(results[-1]), results[-1])
    write_results(args.out, results, HEADER, _row, started)


if __name__ == "__main__":
    asyncio.run(main())
