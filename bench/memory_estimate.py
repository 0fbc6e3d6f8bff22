#!/usr/bin/env python3
"""How close ``supervisor.pool.memory.estimate_memory`` comes to what llama-server really allocates.

For generated models of several shapes (dense multi-head attention, grouped-query attention, a
128k-token vocabulary), weight types (F16, Q8_0, Q4_K_M via the runner build's ``llama-quantize``),
KV cache types (f16, q8_0), 1 and 4 slots, and flash attention auto (enabled on the CPU) or off, the
script:

1. starts llama-server with exactly the runner's command line (``runner.command.build_argv``;
   ``--no-repack``, since this llama.cpp crashes repacking Q8_0/Q4_K on AMX CPUs), on a Unix socket;
2. waits for ``/health`` = 200 (the load, including the warm-up decode, is done), reads the process's
   RSS, and stops it;
3. sums the buffer lines of its log (``runner.memlog``: weights, KV, output, compute) and compares the
   total with the estimate for the same parameters.

Weights are zeros: buffer sizes do not depend on values, and zeros make writing and quantizing quick.
RSS is what the process has resident after load: mapped weights it touched, KV, buffers, plus the
binary, tokenizer and HTTP server (and without ``--cache-ram`` use, no prompt cache yet).

Prints a Markdown table and writes ``bench/results/memory_estimate.json``.
Usage: ``python bench/memory_estimate.py [--keep DIR] [--only NAME,...]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, llama_server, machine_info  # noqa: E402

from supervisor.pool.memory import estimate_memory, shape_of  # noqa: E402
from supervisor.runner.binary import find_tool  # noqa: E402
from supervisor.runner.command import RunnerConfig, build_argv  # noqa: E402
from supervisor.runner.memlog import MeasuredMemory, parse_memory_log  # noqa: E402
from supervisor.store.gguf_info import read_gguf_info  # noqa: E402
from tests.models import Preset, Vocab, build_vocab, write_zero_model  # noqa: E402

MIB = 1 << 20
LOAD_TIMEOUT = 120.0
TARGET = 0.10  # |estimate - measured| / measured


@dataclass(frozen=True)
class Shape:
    name: str
    preset: Preset
    n_vocab: int


SHAPES = {
    s.name: s
    for s in (
        Shape("dense-mha", Preset(n_embd=1024, n_layer=8, n_head=16, n_head_kv=16, n_ff=2816), 550),
        Shape("gqa", Preset(n_embd=2048, n_layer=6, n_head=16, n_head_kv=4, n_ff=5632), 550),
        Shape("vocab-128k", Preset(n_embd=1024, n_layer=4, n_head=16, n_head_kv=8, n_ff=2816), 128256),
        # dimensions and a context the compute formula was not fitted on (n_ff = 3 n_embd, 12 heads of 128)
        Shape("gqa-12h", Preset(n_embd=1536, n_layer=8, n_head=12, n_head_kv=2, n_ff=4608), 49152),
    )
}


@dataclass(frozen=True)
class Row:
    shape: str
    weights: str  # F16, Q8_0, Q4_K_M
    kv: str
    num_ctx: int  # per slot
    slots: int
    flash_attention: bool | None = None  # None = auto

    @property
    def label(self) -> str:
        return f"{self.shape}/{self.weights}/{self.kv}/{self.num_ctx}x{self.slots}/fa-{_fa(self.flash_attention)}"


# shape, weights, KV cache type, context per slot, slots, flash attention (auto | off)
_TABLE = """
dense-mha   F16     f16   4096  1  auto
dense-mha   F16     f16   1024  4  auto
dense-mha   F16     q8_0  4096  1  auto
dense-mha   F16     f16   4096  1  off
dense-mha   Q8_0    f16   4096  1  auto
dense-mha   Q8_0    f16   4096  4  auto
gqa         Q4_K_M  f16   8192  1  auto
gqa         Q4_K_M  f16   8192  4  auto
gqa         Q4_K_M  q8_0  8192  4  auto
gqa         Q8_0    f16   8192  1  auto
gqa         Q8_0    f16   2048  4  off
vocab-128k  F16     f16   4096  1  auto
vocab-128k  Q8_0    f16   4096  1  auto
vocab-128k  Q8_0    f16   4096  4  auto
vocab-128k  Q4_K_M  q8_0  4096  4  auto
gqa-12h     Q8_0    f16   6144  2  auto
gqa-12h     Q4_K_M  q8_0  3000  3  auto
gqa-12h     Q4_K_M  f16   3000  3  off
"""  # the 3000 x 3 rows: -c 9000 is padded to 3 x 3072 cells
ROWS = [
    Row(shape, weights, kv, int(ctx), int(slots), None if fa == "auto" else False)
    for shape, weights, kv, ctx, slots, fa in (line.split() for line in _TABLE.strip().splitlines())
]


def _fa(flash_attention: bool | None) -> str:
    return "auto" if flash_attention is None else ("on" if flash_attention else "off")


# -- models -------------------------------------------------------------------------------------


def _vocab(n_tokens: int) -> Vocab:
    """The test tokenizer padded with unreachable filler tokens up to ``n_tokens`` (llama-server only
    needs them to be unique)."""
    base = build_vocab()
    extra = n_tokens - len(base.tokens)
    if extra <= 0:
        return base
    return Vocab(
        tokens=base.tokens + tuple(f"~fill{i}" for i in range(extra)),
        token_types=base.token_types + (int(gguf.TokenType.NORMAL),) * extra,
        merges=base.merges, bos_id=base.bos_id, im_start_id=base.im_start_id, im_end_id=base.im_end_id,
        banned_ids=base.banned_ids,
    )  # fmt: skip


def write_f16(path: Path, shape: Shape) -> Path:
    return write_zero_model(path, preset=shape.preset, vocab=_vocab(shape.n_vocab), name=shape.name)


def model_file(work: Path, binary: Path, shape: Shape, weights: str) -> Path:
    """The shape's GGUF in ``weights`` (generated once per work directory)."""
    path = work / f"{shape.name}-{weights}.gguf"
    if path.exists():
        return path
    f16 = work / f"{shape.name}-F16.gguf"
    if not f16.exists():
        write_f16(f16, shape)
    if weights != "F16":
        quantize = find_tool(binary, "llama-quantize")
        tmp = path.with_suffix(".tmp")
        subprocess.run([str(quantize), str(f16), str(tmp), weights], check=True, capture_output=True)
        tmp.rename(path)
    return path


# -- one load -----------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("llama-server", timeout=5)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


def _healthy(sock: Path) -> bool:
    conn = _UnixConnection(sock)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False  # not listening yet
    finally:
        conn.close()


def load(binary: Path, model: Path, row: Row, work: Path) -> tuple[MeasuredMemory, int, float]:
    """Start the runner for ``row``, wait until it serves; (measured buffers, RSS bytes, load seconds)."""
    config = RunnerConfig(
        model_path=model, alias=row.label, ctx_size=row.num_ctx * row.slots, parallel=row.slots, threads=2,
        flash_attention=row.flash_attention, kv_cache_type=row.kv, repack=False,
    )  # fmt: skip
    sock, log = work / "runner.sock", work / "runner.log"
    sock.unlink(missing_ok=True)
    t0 = time.monotonic()
    with log.open("wb") as out:
        argv = build_argv(binary, config, sock)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while not _healthy(sock):
            try:
                code = proc.wait(timeout=0.05)  # the pause between polls ends early if the runner exits
            except subprocess.TimeoutExpired:
                if time.monotonic() - t0 > LOAD_TIMEOUT:
                    raise RuntimeError(f"{row.label}: not serving after {LOAD_TIMEOUT}s") from None
                continue
            raise RuntimeError(f"{row.label}: runner exited with {code}:\n{log.read_text(errors='replace')[-3000:]}")
        seconds = time.monotonic() - t0
        rss = int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return parse_memory_log(log.read_text(errors="replace").splitlines()), rss, seconds


def measure(binary: Path, work: Path, row: Row) -> dict[str, Any]:
    model = model_file(work, binary, SHAPES[row.shape], row.weights)
    measured, rss, seconds = load(binary, model, row, work)
    est = estimate_memory(
        shape_of(read_gguf_info(model)), n_ctx=row.num_ctx * row.slots, n_seq=row.slots, kv_type=row.kv,
        flash_attention=row.flash_attention,
    )  # fmt: skip
    if not measured.measured:
        raise RuntimeError(f"{row.label}: no buffer lines in the runner's log")
    fields = ("model", "kv", "compute", "output")
    return {
        "model": row.shape,
        "weights": row.weights,
        "kv_type": row.kv,
        "num_ctx": row.num_ctx,
        "slots": row.slots,
        "flash_attention": _fa(row.flash_attention),
        "file_bytes": model.stat().st_size,
        "estimate_bytes": est.total,
        "measured_bytes": measured.total,
        "error": (est.total - measured.total) / measured.total,
        "rss_bytes": rss,
        "load_seconds": seconds,
        "estimate": {f: sum(getattr(d, f) for d in est.devices.values()) for f in fields},
        "measured": {f: sum(getattr(d, f) for d in measured.devices.values()) for f in fields},
        "n_ctx": [measured.n_ctx, est.n_ctx],
    }


def _table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| model | weights | KV | flash attn | ctx × slots | estimate | measured (buffers) | error "
        "| compute est / measured | RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['model']} | {r['weights']} | {r['kv_type']} | {r['flash_attention']} | {r['num_ctx']} × {r['slots']} "
            f"| {r['estimate_bytes'] / MIB:.1f} MiB | {r['measured_bytes'] / MIB:.1f} MiB | {r['error'] * 100:+.1f}% "
            f"| {r['estimate']['compute'] / MIB:.1f} / {r['measured']['compute'] / MIB:.1f} MiB "
            f"| {r['rss_bytes'] / MIB:.0f} MiB |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, default=None, help="generate models into (and reuse them from) this directory")
    ap.add_argument("--only", default="", help="comma-separated shapes to run (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_estimate.json")
    args = ap.parse_args()
    binary = llama_server()
    only = set(filter(None, args.only.split(",")))
    rows = [r for r in ROWS if not only or r.shape in only]
    results = []
    with tempfile.TemporaryDirectory(prefix="llamasup-mem-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for row in rows:
            result = measure(binary, work, row)
            results.append(result)
            print(f"{row.label}: estimate {result['estimate_bytes'] / MIB:.1f} MiB, measured "
                  f"{result['measured_bytes'] / MIB:.1f} MiB ({result['error'] * 100:+.1f}%)", file=sys.stderr)  # fmt: skip
    misses = [r for r in results if abs(r["error"]) > TARGET]
    machine = machine_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "binary": str(binary), "target": TARGET, "results": results}
    args.out.write_text(json.dumps(report, indent=1))
    print(_table(results))
    within = len(results) - len(misses)
    print(f"\nmachine: {machine}; {within}/{len(results)} rows within {TARGET:.0%}; raw data in {args.out}")
    if misses:
        sys.exit(1)


if __name__ == "__main__":
    main()
