"""Microbenchmark of the engine alone (make bench-core).

Transform time is read against a floor measured in the same run, interleaved call by call:
a bare np.matmul of the same shape into a preallocated output. Accumulation throughput
includes a solve every 30 000 samples. Writes docs/bench-core.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from lrr_service.core import LRR

CHANNELS = (64, 256, 384, 1024)
CHUNKS = (30, 300)
SOLVE_EVERY = 30_000


def interleaved_medians(a, b, seconds: float) -> tuple[float, float]:
    """Median seconds per call of a and b, called alternately so both see the same machine load."""
    ta, tb = [], []
    a(), b()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(ta) < 50:
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return float(np.median(ta)), float(np.median(tb))


def transform_row(n: int, m: int, seconds: float) -> dict:
    rng = np.random.default_rng(0)
    engine = LRR().fit(rng.standard_normal((4 * n, n)))
    X = rng.standard_normal((m, n)).astype(np.float32)
    M = (np.eye(n) - engine.weights).astype(np.float32)
    out = np.empty((m, n), np.float32)
    engine_s, floor_s = interleaved_medians(lambda: engine.transform(X), lambda: np.matmul(X, M, out=out), seconds)
    return {"engine_us": engine_s * 1e6, "floor_us": floor_s * 1e6, "ratio": engine_s / floor_s}


def accumulate_row(n: int, m: int, total: int) -> dict:
    rng = np.random.default_rng(1)
    chunks = [rng.standard_normal((m, n)).astype(np.float32) for _ in range(64)]
    engine = LRR()
    engine.accumulate(chunks[0])
    engine.solve()
    solves = 0
    since_solve = 0
    t0 = time.perf_counter()
    done = 0
    i = 0
    while done < total:
        engine.accumulate(chunks[i % 64])
        i += 1
        done += m
        since_solve += m
        if since_solve >= SOLVE_EVERY:
            engine.solve()
            since_solve = 0
            solves += 1
    elapsed = time.perf_counter() - t0
    return {"samples_per_s": done / elapsed, "solves": solves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="time per transform measurement")
    parser.add_argument("--samples", type=int, default=300_000, help="samples per accumulation measurement")
    parser.add_argument("--out", type=Path, default=Path("docs/bench-core.md"))
    args = parser.parse_args()

    blas = [
        f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads, {i.get('architecture')})"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    lines = [
        "# Engine microbenchmark",
        "",
        f"`make bench-core` on {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"BLAS: {', '.join(blas)}. Medians; float32; the floor is a bare `np.matmul` into a preallocated "
        "output, interleaved call by call with the engine's `transform` so that both see the same load. "
        f"Accumulation includes a solve every {SOLVE_EVERY} samples.",
        "",
        "| channels | chunk | transform µs | floor µs | ratio | accumulate samples/s, 1 BLAS thread"
        " | 2 BLAS threads | x real time (30 kHz), best |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print(lines[-2])
    for n in CHANNELS:
        for m in CHUNKS:
            t = transform_row(n, m, args.seconds)
            total = args.samples if n <= 384 else args.samples // 3
            rates = []
            for threads in (1, 2):
                with threadpool_limits(threads):
                    rates.append(accumulate_row(n, m, total)["samples_per_s"])
            row = (
                f"| {n} | {m} | {t['engine_us']:.1f} | {t['floor_us']:.1f} | {t['ratio']:.3f} | "
                f"{rates[0]:,.0f} | {rates[1]:,.0f} | {max(rates) / 30_000:.1f} |"
            )
            print(row, flush=True)
            lines.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
