"""The banked row: 1024 channels grouped by the `bank` field of the session's channel description (8 banks of
128), 30-sample float32 chunks, read against the dense 1024-channel row of the same run.

The session is grouped the way a rig would do it: `channel_groups: "bank"`, a channel description with a
`bank` field, fitted over the websocket and solved, so its weights are block diagonal by construction and
the engine applies them bank by bank (core/apply.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
from transform_grid import GridRow, measure_row

from lrr_service.clients import LRRClient

N_CHANNELS = 1024
N_BANKS = 8
CHUNK = 30
FIT_SAMPLES = 4 * N_CHANNELS // N_BANKS * 4
KEY = "bench-banked-1024"


def bank_of_each_channel() -> list[int]:
    """Bank numbers of the channels: 8 consecutive banks of 128, as an array of 8 headstages is wired."""
    return [channel // (N_CHANNELS // N_BANKS) for channel in range(N_CHANNELS)]


async def fitted_banked_weights(base_url: str) -> np.ndarray:
    """Group a session by bank, fit it on data with noise common to each bank, solve; its W (block diagonal)."""
    banks = np.array(bank_of_each_channel())
    with httpx.Client(base_url=base_url, timeout=120) as http:
        http.delete(f"/streams/{KEY}")
        http.put(f"/streams/{KEY}", json={"channel_groups": "bank"}).raise_for_status()
        http.put(f"/streams/{KEY}/channels", json={"fields": {"bank": banks.tolist()}}).raise_for_status()
    rng = np.random.default_rng(7)
    common = rng.standard_normal((FIT_SAMPLES, N_BANKS))[:, banks]
    data = (rng.standard_normal((FIT_SAMPLES, N_CHANNELS)) + common).astype(np.float32)
    async with LRRClient(base_url, KEY) as client:
        async for _ in client.fit_stream(np.array_split(data, FIT_SAMPLES // 256)):
            pass
        await client.solve()
        weights = await client.get_weights()
    across = banks[:, None] != banks[None, :]
    within = [np.flatnonzero(banks == bank) for bank in range(N_BANKS)]
    if np.any(weights[across]) or not all(weights[np.ix_(members, members)].any() for members in within):
        raise RuntimeError("the banked session's weights are not block diagonal by bank; the grouping did not hold")
    return weights


async def measure_banked(
    service_base: str, service_ws: str, echo_ws: str, pids: tuple[int, int], floor_seconds: float, dense: GridRow
) -> dict[str, Any]:
    """The banked row, and its p99 and real-time factor over those of `dense` (1024 x 30 float32, same run)."""
    weights = await fitted_banked_weights(service_base)
    row = await measure_row(service_ws, echo_ws, pids, weights, KEY, CHUNK, "float32", floor_seconds)
    return {
        "banked": row,
        "dense": dense,
        "p99_ratio": row.service_paced.p99 / dense.service_paced.p99,
        "p50_ratio": row.service_paced.p50 / dense.service_paced.p50,
        "realtime_ratio": row.realtime_factor / dense.realtime_factor,
        "engine_ratio": row.engine_us / dense.engine_us,
    }
