"""Transform latency under heavy REST work (issue 10): a paced 384-channel stream alone and while
4 clients upload and download 1024 x 1024 weights as CSV in a loop (goal: p99 at most 1.5x alone).

The stream (30 x 384 float32 chunks, one per ms) is measured alone and under load in interleaved
rounds, as bench/fit_traffic.py does, so that drift in the machine's load reaches both alike: a
ratio is a round's figure under load over the same round's figure alone, and the figure is the
median over rounds. The REST clients run in their own process (this file, mode `load`), so that
the transform's latency shows what the REST work costs the server, not this process's event loop;
the process starts for each loaded run, loads the server for LEAD_SECONDS before the stream
starts, and lets its requests under way finish before the next run alone.
Usage: rest_load.py [--seconds S] [--rounds N] [--quick] runs the section on a fresh server and
prints its table; rest_load.py load BASE_URL CSV_PATH KEY... is the load process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from latency import summarize
from processes import ServerProcess, cpu_seconds
from workload import FS, chunks, dense_weights, expect_chunk, frames, upload_weights
from wsload import StreamRun, pooled, run_paced

from lrr_service.core.weights_csv import format_weights_csv

N_CHANNELS = 384
N_SAMPLES = 30
PERIOD = N_SAMPLES / FS
KEY = "bench-rest-384"
LOAD_CHANNELS = 1024
LOAD_KEYS = tuple(f"bench-rest-load-{i + 1}" for i in range(4))
"""One session per REST client."""
LEAD_SECONDS = 1.0
"""How long the REST clients run before the measured stream starts."""
REQUEST_TIMEOUT = 300.0
GOAL_RATIO = 1.5
SECONDS = 3.0
ROUNDS = 5
WARMUP_FRAMES = 20
LOAD_MODE = "load"
READY = "ready"
CSV_HEADERS = {"content-type": "text/csv"}


async def put_csv(client: httpx.AsyncClient, key: str, body: bytes) -> None:
    """PUT /streams/{key}/weights with the CSV `body`; raises on refusal."""
    response = await client.put(f"/streams/{key}/weights", content=body, headers=CSV_HEADERS)
    response.raise_for_status()


async def get_csv(client: httpx.AsyncClient, key: str) -> None:
    """GET /streams/{key}/weights, reading the whole body and keeping none of it; raises on refusal."""
    async with client.stream("GET", f"/streams/{key}/weights") as response:
        response.raise_for_status()
        async for _ in response.aiter_raw():
            pass


async def rest_client(
    base_url: str, key: str, body: bytes, upload_first: bool, stop: asyncio.Event, done: list[tuple[str, float, float]]
) -> None:
    """PUT then GET the weights of `key` in turn until `stop` is set, finishing the request under way;
    appends ("put" or "get", started, finished) to `done` per request."""
    upload = upload_first
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        while not stop.is_set():
            started = time.perf_counter()
            await (put_csv(client, key, body) if upload else get_csv(client, key))
            done.append(("put" if upload else "get", started, time.perf_counter()))
            upload = not upload


def requests_in(done: list[tuple[str, float, float]], op: str, start: float, end: float) -> float:
    """How many `op` requests were done between `start` and `end`, each counted by the share of its time
    inside (requests take seconds: whole counts in a window of a few seconds would be mostly 0 or 1)."""
    return sum(
        (min(finished, end) - max(started, start)) / (finished - started)
        for kind, started, finished in done
        if kind == op and started < end and finished > start
    )


async def send_load(base_url: str, csv_path: Path, keys: list[str]) -> dict[str, Any]:
    """One REST client per key (half of them starting with a download, so uploads and downloads mix);
    prints READY after LEAD_SECONDS and counts the requests done from then until a line on stdin."""
    body = csv_path.read_bytes()
    stop = asyncio.Event()
    done: list[tuple[str, float, float]] = []
    clients = [
        asyncio.create_task(rest_client(base_url, key, body, k % 2 == 0, stop, done)) for k, key in enumerate(keys)
    ]
    await asyncio.sleep(LEAD_SECONDS)
    started = time.perf_counter()
    print(READY, flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    stopped = time.perf_counter()
    stop.set()
    await asyncio.gather(*clients)
    return {
        "window_s": stopped - started,
        "uploads": requests_in(done, "put", started, stopped),
        "downloads": requests_in(done, "get", started, stopped),
        "put_s": [finished - begun for op, begun, finished in done if op == "put"],
        "get_s": [finished - begun for op, begun, finished in done if op == "get"],
    }


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children, their children...) alive now."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended while being read
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and the descendants it has now (see processes.cpu_seconds)."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):  # ended since it was listed
            total += cpu_seconds(member)
    return total


@dataclass
class Measured:
    """One run of the paced stream, from opening its websocket to its last reply."""

    run: StreamRun
    cpu: list[float]
    """CPU seconds each watched process used meanwhile, with its descendants (the server's CSV worker)."""
    wall: float
    opening: float
    """From opening the websocket until the first paced frame was sent (handshake, one warm-up frame)."""

    def cpu_share(self, k: int) -> float:
        """Cores the k-th watched process used on average."""
        return self.cpu[k] / self.wall

    def pace(self) -> float:
        """Frames sent per chunk duration: 1.0 at real time, less where sends waited for the server to read."""
        return (len(self.run.sent) - 1) * PERIOD / float(self.run.sent[-1] - self.run.sent[0])


async def paced_transform(service_ws: str, wire: list[bytes], seconds: float, pids: list[int]) -> Measured:
    """The paced transform stream on KEY for `seconds`, watching the CPU time of `pids`."""
    before = [tree_cpu_seconds(pid) for pid in pids]
    started = time.perf_counter()
    run = await run_paced(
        f"{service_ws}/ws/{KEY}/transform", wire, int(seconds / PERIOD), PERIOD, expect_chunk(N_SAMPLES, N_CHANNELS)
    )
    used = [tree_cpu_seconds(pid) - cpu for pid, cpu in zip(pids, before)]
    return Measured(run, used, float(run.received[-1]) - started, float(run.sent[0]) - started)


async def loaded_transform(
    service_ws: str, base_url: str, wire: list[bytes], seconds: float, csv_path: Path, server_pid: int
) -> tuple[dict[str, Any], Measured]:
    """The paced transform stream while the load process runs, watching the CPU time of the server and the
    load process; returns the load's counts (see `send_load`) and the stream's run."""
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        LOAD_MODE,
        base_url,
        str(csv_path),
        *LOAD_KEYS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent,
    )
    assert sender.stdout is not None
    try:
        if (await sender.stdout.readline()).strip() != READY.encode():
            raise RuntimeError("the REST load process did not start")
        measured = await paced_transform(service_ws, wire, seconds, [server_pid, sender.pid])
        output, _ = await sender.communicate(b"stop\n")
    finally:
        if sender.returncode is None:  # this run failed: do not leave the clients loading the server
            sender.kill()
            await sender.wait()
    if sender.returncode != 0:
        raise RuntimeError(f"the REST load process failed with exit code {sender.returncode}")
    return json.loads(output), measured


def cpu_per_frame_us(measured: Measured) -> float:
    """The server's CPU µs per frame of a run alone (its first watched process; opening included)."""
    return measured.cpu[0] / len(measured.run.sent) * 1e6


async def measure_rest_load(
    base_url: str,
    service_ws: str,
    server_pid: int,
    seconds: float = SECONDS,
    rounds: int = ROUNDS,
    progress: Any = print,
) -> dict[str, Any]:
    """The whole scenario against one running server; returns JSON-able results.

    Each round runs the stream alone, then under load; the weights CSV is formatted once before.
    """
    wire = frames(chunks(N_SAMPLES, N_CHANNELS, "float32", seed=7))
    upload_weights(base_url, KEY, dense_weights(N_CHANNELS))
    body = format_weights_csv(dense_weights(LOAD_CHANNELS, seed=8)).encode()
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        for key in LOAD_KEYS:  # every client's session exists before one starts with a download
            await put_csv(client, key, body)
    alone: list[Measured] = []
    loaded: list[Measured] = []
    sent: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lrr-bench-rest-") as tmp:
        csv_path = Path(tmp) / "weights.csv"
        csv_path.write_bytes(body)
        for round_ in range(rounds):
            alone.append(await paced_transform(service_ws, wire, seconds, [server_pid]))
            counts, measured = await loaded_transform(service_ws, base_url, wire, seconds, csv_path, server_pid)
            loaded.append(measured)
            sent.append(counts)
            quiet, busy = alone[-1].run.summary(WARMUP_FRAMES), measured.run.summary(WARMUP_FRAMES)
            progress(
                f"  round {round_ + 1}: transform p50 / p99 µs alone {quiet.p50:,.0f} / {quiet.p99:,.0f}"
                f" (server CPU {cpu_per_frame_us(alone[-1]):,.0f} µs/frame),"
                f" under REST load {busy.p50:,.0f} / {busy.p99:,.0f} (p99 {busy.p99 / quiet.p99:.2f}x,"
                f" sent at {measured.pace():.2f}x real time);"
                f" {counts['uploads']:.1f} uploads, {counts['downloads']:.1f} downloads in"
                f" {counts['window_s']:.1f} s;"
                f" server CPU {measured.cpu_share(0):.0%}, load process CPU {measured.cpu_share(1):.0%};"
                f" stream opened in {alone[-1].opening * 1e3:,.0f} ms alone,"
                f" {measured.opening * 1e3:,.0f} ms under load"
            )

    def ratios(field: str) -> list[float]:
        return [
            getattr(busy.run.summary(WARMUP_FRAMES), field) / getattr(quiet.run.summary(WARMUP_FRAMES), field)
            for busy, quiet in zip(loaded, alone)
        ]

    def latencies(runs: list[Measured]) -> np.ndarray:
        return pooled([m.run for m in runs], WARMUP_FRAMES)

    window = sum(counts["window_s"] for counts in sent)
    p99_ratio = float(np.median(ratios("p99")))
    results = {
        "rounds": rounds,
        "seconds": seconds,
        "clients": len(LOAD_KEYS),
        "load_channels": LOAD_CHANNELS,
        "csv_bytes": len(body),
        "goal_ratio": GOAL_RATIO,
        "transform_alone": summarize(latencies(alone)).as_dict(),
        "transform_loaded": summarize(latencies(loaded)).as_dict(),
        "p50_ratio": float(np.median(ratios("p50"))),
        "p50_ratio_by_round": ratios("p50"),
        "p99_ratio": p99_ratio,
        "p99_ratio_by_round": ratios("p99"),
        "goal_met": p99_ratio <= GOAL_RATIO,
        "p99_alone_by_round": [m.run.summary(WARMUP_FRAMES).p99 for m in alone],
        "p99_loaded_by_round": [m.run.summary(WARMUP_FRAMES).p99 for m in loaded],
        "uploads": sum(counts["uploads"] for counts in sent),
        "downloads": sum(counts["downloads"] for counts in sent),
        "load_window_s": window,
        "uploads_per_s": sum(counts["uploads"] for counts in sent) / window,
        "downloads_per_s": sum(counts["downloads"] for counts in sent) / window,
        "put_median_s": float(np.median([x for counts in sent for x in counts["put_s"]])),
        "get_median_s": float(np.median([x for counts in sent for x in counts["get_s"]])),
        "server_cpu_us_per_frame_alone": float(np.median([cpu_per_frame_us(m) for m in alone])),
        "server_cpu_us_per_frame_alone_by_round": [cpu_per_frame_us(m) for m in alone],
        "server_cpu_loaded": float(np.median([m.cpu_share(0) for m in loaded])),
        "load_process_cpu": float(np.median([m.cpu_share(1) for m in loaded])),
        "pace_alone": float(np.median([m.pace() for m in alone])),
        "pace_loaded": float(np.median([m.pace() for m in loaded])),
        "opening_s_alone": float(np.median([m.opening for m in alone])),
        "opening_s_loaded": float(np.median([m.opening for m in loaded])),
        "latencies_us": {"alone": (latencies(alone) * 1e6).tolist(), "loaded": (latencies(loaded) * 1e6).tolist()},
    }
    progress(
        f"  p99 ratio under REST load (median of rounds): {p99_ratio:.2f}x (goal <= {GOAL_RATIO}x);"
        f" {results['uploads_per_s']:.2f} uploads/s, {results['downloads_per_s']:.2f} downloads/s"
    )
    return results


async def run_rest_load(
    env: dict[str, str], seconds: float = SECONDS, rounds: int = ROUNDS, progress: Any = print
) -> dict[str, Any]:
    """`measure_rest_load` on a fresh server of its own (no other section's sessions), whose state directory
    (four 1024-channel checkpoints) is removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="lrr-bench-rest-") as tmp,
        ServerProcess(Path(tmp) / "state", env=env) as server,
    ):
        return await measure_rest_load(server.url, server.ws_url, server.pid or 0, seconds, rounds, progress)


def main() -> int:
    """`make bench-rest`: this section alone on a fresh server, then its table."""
    import bench_service  # here, not at the top: bench_service imports this module
    import report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of each run of the stream")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--quick", action="store_true", help="the --quick scale of make bench (smoke test)")
    args = parser.parse_args()
    seconds = args.seconds * (bench_service.QUICK_SCALE if args.quick else 1.0)
    load_before = bench_service.load_average()
    print("transform latency under REST load:", flush=True)
    with bench_service.client_runner() as runner:
        rest = runner.run(run_rest_load(bench_service.SERVER_ENV, seconds, args.rounds))
    print()
    print("\n".join(report.rest_table(rest)))
    print(f"\nload average before {load_before}, after {bench_service.load_average()}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [LOAD_MODE]:
        print(json.dumps(asyncio.run(send_load(sys.argv[2], Path(sys.argv[3]), sys.argv[4:]))), flush=True)
    else:
        sys.exit(main())
