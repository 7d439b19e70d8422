"""`make bench`: the service measured end to end against its floors; writes docs/benchmarks.md and plots.

The server runs in its own process on a free loopback port, the bare-echo transport floor in
another, and this process is the client (websockets on uvloop, one BLAS thread). Sections:
transform grid (paced and pipelined, with echo / engine / matmul floors), fit traffic, concurrent
rigs, transform latency under REST load, memory per session, BLAS thread policy, the cost of the
quality measurement. `--quick` shortens every run (smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import report
import uvloop
from banked import CHUNK, N_CHANNELS, measure_banked
from blas_policy import measure_blas
from fit_traffic import measure_fit
from memory import measure_memory
from processes import REPO_ROOT, EchoServer, ServerProcess
from quality_cost import measure_quality_cost, summary_line
from rest_load import run_rest_load
from rigs import measure_rigs
from threadpoolctl import threadpool_info, threadpool_limits
from transform_grid import measure_grid, measure_row
from transport_variants import measure_transports
from workload import dense_weights, upload_weights

SERVER_ENV = {"LRR_LOG_LEVEL": "WARNING"}
QUICK_SCALE = 0.3
"""How much of every run's length `--quick` keeps."""
CLIENT_SWITCH_INTERVAL = 1e-4
"""The client's pacing thread must get the GIL within ~0.1 ms, not Python's default 5 ms, or a busy
client loop delays its ticks and sends frames in bursts (measured: 8 paced echo streams p99 103 ms
at 5 ms, 5 ms at 0.1 ms)."""


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    blas = [f"{i['internal_api']} {i.get('version')}" for i in threadpool_info() if i["user_api"] == "blas"]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} x {cpu}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": ", ".join(blas) or "no BLAS found",
        "uvicorn": version("uvicorn"),
        "websockets": version("websockets"),
        "load_before": load_average(),
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as printed in the report."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def client_runner() -> asyncio.Runner:
    """The benchmark client's event loop (uvloop), after limiting this process to one BLAS thread (the
    client must not compete with the server for the second core) and shortening its GIL switch interval."""
    threadpool_limits(1)
    sys.setswitchinterval(CLIENT_SWITCH_INTERVAL)
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every section in turn; returns their results."""
    scale = QUICK_SCALE if args.quick else 1.0
    results: dict[str, Any] = {}
    state = Path(tempfile.mkdtemp(prefix="lrr-bench-")) / "state"
    with EchoServer() as echo, ServerProcess(state, env=SERVER_ENV) as server:
        print("transform grid (paced and pipelined, with floors):", flush=True)
        channels = (64, 384) if args.quick else (64, 256, 384, 1024)
        pids = (server.pid or 0, echo.pid)
        results["grid"] = await measure_grid(server.url, server.ws_url, echo.ws_url, pids, 0.5 * scale, channels)
        print("1024 channels in 8 banks (grouped by the channel description's bank field) vs dense:", flush=True)
        dense = await dense_1024_row(results["grid"], server, echo.ws_url, pids, 0.5 * scale)
        results["banked"] = await measure_banked(server.url, server.ws_url, echo.ws_url, pids, 0.5 * scale, dense)
        print(report.banked_line(results["banked"]), flush=True)
        print("fit traffic:", flush=True)
        results["fit"] = await measure_fit(server.ws_url, server.url, 3.0 * scale)
        print("concurrent rigs:", flush=True)
        results["rigs"] = await measure_rigs(server.url, server.ws_url, pids[0], echo.ws_url, pids[1], 2.0 * scale)
    print("transform latency under REST load:", flush=True)
    results["rest"] = await run_rest_load(SERVER_ENV, 3.0 * scale)
    print("transport variants (echo of a 30 x 384 float32 frame):", flush=True)
    results["transports"] = await measure_transports(2.0 * scale)
    print("memory per session:", flush=True)
    results["memory"] = await measure_memory(SERVER_ENV)
    print("BLAS threads:", flush=True)
    results["blas"] = await measure_blas(SERVER_ENV, 2.0 * scale)
    print("quality measurement (384 x 30 float32, on every frame, at the default, off):", flush=True)
    results["quality"] = await measure_quality_cost(SERVER_ENV, 10.0 * scale, 2 if args.quick else 4)
    print(summary_line(results["quality"]), flush=True)
    return results


async def dense_1024_row(
    grid: list[Any], server: ServerProcess, echo_ws: str, pids: tuple[int, int], seconds: float
) -> Any:
    """The grid's dense 1024 x 30 float32 row; measured here when the grid left it out (--quick)."""
    for row in grid:
        if (row.n_channels, row.n_samples, row.dtype) == (N_CHANNELS, CHUNK, "float32"):
            return row
    weights = dense_weights(N_CHANNELS)
    upload_weights(server.url, "bench-transform-1024", weights)
    return await measure_row(server.ws_url, echo_ws, pids, weights, "bench-transform-1024", CHUNK, "float32", seconds)


def load_plots() -> Any:
    """The plots module, or a clear exit when matplotlib (the `bench` extra) is missing."""
    try:
        import plots
    except ModuleNotFoundError as exc:
        raise SystemExit(
            f"make bench needs matplotlib ({exc}); install the bench extra: pip install -e '.[bench]'"
        ) from None
    return plots


def main() -> int:
    """Run, print the table, write the report, the plots and the raw summaries."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--plots", type=Path, default=REPO_ROOT / "docs" / "bench")
    parser.add_argument("--quick", action="store_true", help="short runs, two channel counts (smoke test)")
    args = parser.parse_args()
    plots = load_plots()  # before the long run, so a missing dependency fails at once
    meta = machine_facts()
    started = time.perf_counter()
    with client_runner() as runner:
        results = runner.run(run_all(args))
    meta |= {
        "load_after": load_average(),
        "seconds": time.perf_counter() - started,
        "server_blas_threads": "1 (default)",
    }
    grid, fit, rest = results["grid"], results["fit"], results["rest"]
    figures = {
        "transform_latency": plots.transform_latency(grid, args.plots / "transform_latency.png"),
        "overhead_breakdown": plots.overhead_breakdown(grid, args.plots / "overhead_breakdown.png"),
        "fit_cdf": plots.fit_cdf(fit["latencies_us"], args.plots / "fit_cdf.png"),
        "rigs": plots.rigs(results["rigs"], args.plots / "rigs.png"),
        "rest_cdf": plots.rest_cdf(rest["latencies_us"], args.plots / "rest_cdf.png"),
        "blas": plots.blas(results["blas"], args.plots / "blas.png"),
    }
    page = report.render(meta, results, figures, args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    summaries = {
        "meta": meta,
        "grid": [r.as_dict() for r in grid],
        "banked": {k: v.as_dict() if hasattr(v, "as_dict") else v for k, v in results["banked"].items()},
        "rigs": results["rigs"],
        "memory": results["memory"],
        "blas": results["blas"],
        "transports": results["transports"],
        "fit": {k: v for k, v in fit.items() if k != "latencies_us"},
        "rest": {k: v for k, v in rest.items() if k != "latencies_us"},
        "quality": results["quality"],
    }
    (args.plots / "results.json").write_text(json.dumps(summaries, indent=1))
    print()
    target_list = report.targets(grid, fit, results["rigs"], rest) + report.quality_targets(results["quality"])
    print(report.console_table(grid, target_list))
    print(f"\nwrote {args.out} and {args.plots}/ in {meta['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
