"""The fit traffic of the fit benchmark, in its own process: one fit stream on KEY, watching its acks
for the weights version in use to time how long its samples take to reach the weights.

It runs apart from the measured transform stream so that the transform's latency shows what the
fit traffic costs the server, not what it costs the benchmark client's own event loop (a 46 KB fit
frame to send at every tick on that loop delays the transform's replies). The weights lag needs no
polling: every ack carries the `weights_version` in use, and one GET /streams/{key} per new version
says how many samples that version was solved from.
As the control, mode `control` sends a paced transform stream of the same frames on another key
(CONTROL_KEY): what any second 1 kHz stream from another process costs the measured one.
Usage: fit_sender.py SERVICE_WS BASE_URL COUNT paced|full|control. Prints `ready`, then one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx
from fit_traffic import CONTROL_KEY, KEY, PERIOD, fit_frames, fit_stream, weights_lags
from wsload import run_paced

from lrr_service.core.codec import AckReply, decode_reply

READY = "ready"


class WeightsWatch:
    """An ack check that notes when each weights version is first in use and asks how many samples it holds."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.version: int | None = None
        self.lookups: list[asyncio.Task[tuple[float, int]]] = []

    def __call__(self, reply: bytes) -> None:
        ack = decode_reply(reply)
        if not isinstance(ack, AckReply):
            raise RuntimeError(f"expected an ack, got {str(ack)[:300]}")
        if ack.weights_version != self.version:
            self.version = ack.weights_version
            self.lookups.append(asyncio.create_task(self._solved_count(ack.weights_version, time.perf_counter())))

    async def _solved_count(self, version: int, seen_at: float) -> tuple[float, int] | None:
        """(when `version` was first acked, the samples it was solved from), or None if a newer version
        was installed before the lookup arrived (solves are >= 0.5 s apart, so that is rare)."""
        response = await self.client.get(f"/streams/{KEY}")
        response.raise_for_status()
        state = response.json()
        if state["weights_version"] != version:
            return None
        return seen_at, int(state["n_samples_solved"])

    async def seen(self) -> list[tuple[float, int]]:
        """Every version seen in use whose sample count was read, in order: (time first acked, samples solved)."""
        return [found for found in await asyncio.gather(*self.lookups) if found is not None]


async def send_fit(service_ws: str, base_url: str, count: int, paced: bool) -> dict[str, object]:
    """Fit `count` frames (paced at real time, or pipelined) and time the weights lag."""
    wire = fit_frames()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        watch = WeightsWatch(client)
        print(READY, flush=True)
        run = await fit_stream(
            f"{service_ws}/ws/{KEY}/fit", wire, count, PERIOD if paced else None, check=watch, check_every=1
        )
        run.lags, run.worst_lags = weights_lags(run, await watch.seen())
    return {"samples_per_s": run.samples_per_second(), "lags": run.lags, "worst_lags": run.worst_lags}


async def send_control(service_ws: str, count: int) -> dict[str, object]:
    """A paced transform stream of `count` fit-sized frames on CONTROL_KEY (its weights already uploaded)."""
    wire = fit_frames()
    print(READY, flush=True)
    run = await run_paced(f"{service_ws}/ws/{CONTROL_KEY}/transform", wire, count, PERIOD, lambda reply: None)
    return {"frames_per_s": run.frames_per_second()}


if __name__ == "__main__":
    service_ws, base_url, count, mode = sys.argv[1:5]
    if mode == "control":
        result = asyncio.run(send_control(service_ws, int(count)))
    else:
        result = asyncio.run(send_fit(service_ws, base_url, int(count), mode == "paced"))
    print(json.dumps(result), flush=True)
