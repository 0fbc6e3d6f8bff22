#!/usr/bin/env python3
"""Pull throughput: llamasup's ``/api/pull`` vs ``curl`` fetching the same blob from the same registry.

The registry is Debian's ``docker-registry`` on 127.0.0.1 (as in the tests), holding a generated model
whose weights are one GGUF of ``--size-mb`` MiB (default 1024: a header and one tensor of random
bytes, so nothing compresses). The script:

1. starts the registry and llamasup (an empty store on the same filesystem as curl's output file);
2. alternates rounds (curl, curl + sha256sum, llamasup, then the reverse order, ...):
   - curl: ``curl -o <file> <registry>/v2/<repo>/blobs/<digest>`` into a fresh file;
   - curl + sha256sum: the same, then ``sha256sum <file>`` (a download verified with stock tools);
   - llamasup: ``POST /api/pull`` (``stream: false``) of the model, which downloads the blob in
     ranged parts into its partial file, verifies its sha256, makes it durable (fsync) and writes
     the manifest; the model is then deleted, which removes the blob, so the next round pulls all of it;
3. reports the median times and rates, the medians of the paired ratios (curl's time / llamasup's
   time, for the rounds run next to each other; likewise for curl + sha256sum), and llamasup's CPU
   time per pull;
4. and how long hashing as many bytes alone takes here (Python's ``hashlib``, i.e. OpenSSL, over
   bytes in memory, median of three): no pull that verifies the digest can take less, so curl's time /
   that time bounds the ratio any verifying pull can reach on this machine.

The registry's copy stays in the page cache for both sides alike. Results are printed as a Markdown
table and written to ``bench/results/pull.json``.
Usage: ``python bench/pull.py [--size-mb N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import gguf
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, llama_server, llamasup, write_results  # noqa: E402

from tests.models import finish_gguf  # noqa: E402
from tests.registry_push import publish  # noqa: E402
from tests.registry_server import registry_server  # noqa: E402

SIDES = ("curl", "curl_sha256sum", "llamasup")
REPO, TAG = "bench/big", "1"


def write_big_gguf(path: Path, size_mb: int) -> Path:
    """A ``llama`` GGUF whose one tensor is ``size_mb`` MiB of random bytes."""
    writer = gguf.GGUFWriter(path, "llama")
    data = np.frombuffer(os.urandom(size_mb << 20), dtype=np.int8)
    return finish_gguf(writer, {"token_embd.weight": data}, path)


def _curl_round(url: str, out: Path, size: int, digest: str | None = None) -> dict[str, float]:
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(out), url], check=True)
    if digest is not None:
        line = subprocess.run(["sha256sum", str(out)], check=True, capture_output=True, text=True).stdout
        assert "sha256:" + line.split()[0] == digest
    wall = time.perf_counter() - t0
    assert out.stat().st_size == size, out.stat().st_size
    out.unlink()
    return {"wall_s": wall}


async def _llamasup_round(session: aiohttp.ClientSession, base: str, name: str, sup: psutil.Process, blob: Path) -> dict[str, float]:
    cpu0 = sum(sup.cpu_times()[:2])
    t0 = time.perf_counter()
    async with session.post(base + "/api/pull", json={"model": name, "insecure": True, "stream": False}) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "success"
    wall = time.perf_counter() - t0
    cpu = sum(sup.cpu_times()[:2]) - cpu0
    assert blob.is_file()
    async with session.delete(base + "/api/delete", json={"model": name}) as resp:
        assert resp.status == 200, await resp.text()
    assert not blob.exists()
    return {"wall_s": wall, "supervisor_cpu_s": cpu}


async def bench(work: Path, binary: Path, size_mb: int, rounds: int) -> dict[str, Any]:
    weights = write_big_gguf(work / "big.gguf", size_mb)
    size = weights.stat().st_size
    with registry_server(work / "registry", "open") as registry:
        _, blobs = await publish(registry, f"{REPO}:{TAG}", weights, work)
        digest = next(d for d, data in blobs.items() if len(data) == size)
        del blobs
        weights.unlink()
        url = f"{registry.url}/v2/{REPO}/blobs/{digest}"
        name = f"{registry.host}/{REPO}:{TAG}"
        models = work / "store"
        blob = models / "blobs" / digest.replace(":", "-")
        with llamasup(work, models, binary, 1, "llamasup-pull.log") as (sup, base):
            proc = psutil.Process(sup.pid)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:

                async def one(side: str) -> dict[str, float]:
                    if side != "llamasup":
                        check = digest if side == "curl_sha256sum" else None
                        return await asyncio.to_thread(_curl_round, url, work / "curl.blob", size, check)
                    return await _llamasup_round(session, base, name, proc, blob)

                for side in SIDES:  # warm-up: the registry's file into the page cache, both paths once
                    await one(side)
                measured: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
                for i in range(rounds):
                    for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                        measured[side].append(await one(side))
                        print(f"round {i} {side}: {measured[side][-1]['wall_s']:.2f} s", flush=True)
    med = statistics.median
    mib = size / (1 << 20)
    result: dict[str, Any] = {"size_bytes": size, "rounds": rounds}
    for side in SIDES:
        result[f"wall_s_{side}"] = med(r["wall_s"] for r in measured[side])
        result[f"mib_per_s_{side}"] = med(mib / r["wall_s"] for r in measured[side])
    result["supervisor_cpu_s"] = med(r["supervisor_cpu_s"] for r in measured["llamasup"])
    # the machine's speed drifts over a run: the ratio is the median of each round's ratio to the
    # other side's round next to it
    for other, key in (("curl", "ratio"), ("curl_sha256sum", "ratio_verified")):
        pairs = zip(measured[other], measured["llamasup"], strict=True)
        result[key] = med(c["wall_s"] / s["wall_s"] for c, s in pairs)
    result["sha256_s"] = _hash_seconds(size)
    result["ratio_bound"] = result["wall_s_curl"] / result["sha256_s"]
    result["rounds_detail"] = measured
    return result


def _hash_seconds(size: int) -> float:
    """The median time of three sha256s of ``size`` random bytes held in memory (the least a verified
    download of that size spends on its hash: one core, whatever else overlaps it)."""
    data = os.urandom(size)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        hashlib.sha256(data).digest()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


HEADER = ["blob", "rounds", "curl", "curl + sha256sum", "llamasup pull", "llamasup MiB/s", "ratio to curl", "ratio to curl + sha256sum",
          "llamasup CPU / pull", "sha256 alone", "bound: curl / sha256 alone"]  # fmt: skip


def _row(r: dict[str, Any]) -> list[str]:
    return [f"{r['size_bytes'] / (1 << 20):.0f} MiB", str(r["rounds"]), f"{r['wall_s_curl']:.2f} s ({r['mib_per_s_curl']:.0f} MiB/s)",
            f"{r['wall_s_curl_sha256sum']:.2f} s", f"{r['wall_s_llamasup']:.2f} s", f"{r['mib_per_s_llamasup']:.0f}", f"{r['ratio']:.3f}",
            f"{r['ratio_verified']:.3f}", f"{r['supervisor_cpu_s']:.2f} s", f"{r['sha256_s']:.2f} s", f"{r['ratio_bound']:.3f}"]  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="size of the weights blob in MiB")
    ap.add_argument("--rounds", type=int, default=8, help="measured rounds per side")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pull.json")
    ap.add_argument("--workdir", type=Path, default=None, help="where the registry, the store and curl's file go (default: a temporary directory)")
    args = ap.parse_args()
    binary = llama_server()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llamasup-bench-pull-", dir=args.workdir) as tmp:
        result = await bench(Path(tmp), binary, args.size_mb, args.rounds)
    write_results(args.out, [result], HEADER, _row, started)


if __name__ == "__main__":
    asyncio.run(main())
