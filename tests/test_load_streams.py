"""Load: 8 concurrent streams x 2000 frames against the real server; every seq answered once, in order, right.

Six transform streams (each its own session with uploaded weights, pipelined 64 deep, arbitrary
non-consecutive seq numbers) and two fit streams run at the same time. Transform output is compared
bit for bit with the engine run in this process on the same weights; fit acks must count every
sample exactly once, in order.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
from threadpoolctl import threadpool_limits
from websockets.asyncio.client import connect

from lrr_service.core import LRR
from lrr_service.core.codec import AckReply, ChunkReply, decode_reply, encode_chunk
from lrr_service.core.weights_csv import format_weights_csv

FRAMES = 2000
TRANSFORM_STREAMS = 6
FIT_STREAMS = 2
N_SAMPLES, N_CHANNELS = 4, 8
WINDOW = 64


async def pipelined(url: str, wire: list[bytes]) -> list[bytes]:
    """Send every frame with up to WINDOW unanswered and return the replies in arrival order."""
    replies: list[bytes] = []
    slots = asyncio.Semaphore(WINDOW)
    async with connect(url, max_size=None, compression=None) as ws:

        async def sender() -> None:
            for frame in wire:
                await slots.acquire()
                await ws.send(frame)

        task = asyncio.create_task(sender())
        for _ in wire:
            replies.append(await asyncio.wait_for(ws.recv(), 30))  # type: ignore[arg-type]
            slots.release()
        await task
    return replies


def stream_data(seed: int) -> tuple[list[int], list[np.ndarray]]:
    """FRAMES distinct chunks and strictly increasing but irregular seq numbers."""
    rng = np.random.default_rng(seed)
    seqs = np.cumsum(rng.integers(1, 1000, FRAMES)).tolist()
    data = [rng.standard_normal((N_SAMPLES, N_CHANNELS)).astype(np.float32) for _ in range(FRAMES)]
    return seqs, data


async def transform_stream(server_url: str, ws_url: str, index: int) -> None:
    """Upload weights, stream FRAMES chunks, check each reply against the local engine."""
    key = f"load-transform-{index}"
    weights = np.random.default_rng(100 + index).uniform(-0.2, 0.2, (N_CHANNELS, N_CHANNELS))
    np.fill_diagonal(weights, 0.0)
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as client:
        response = await client.put(
            f"/streams/{key}/weights", content=format_weights_csv(weights), headers={"content-type": "text/csv"}
        )
        assert response.status_code == 200, response.text
        version = response.json()["weights_version"]
    seqs, data = stream_data(index)
    replies = [
        decode_reply(r)
        for r in await pipelined(f"{ws_url}/ws/{key}/transform", [encode_chunk(s, x) for s, x in zip(seqs, data)])
    ]
    reference = LRR()
    reference.load_weights(weights)
    assert [r.seq for r in replies] == seqs, f"{key}: replies out of order, missing or repeated"
    with threadpool_limits(1):
        for reply, x in zip(replies, data):
            assert isinstance(reply, ChunkReply), reply
            assert reply.weights_version == version and reply.reset is False
            np.testing.assert_array_equal(reply.data, reference.transform(x), strict=True)


async def fit_stream(server_url: str, ws_url: str, index: int) -> None:
    """Stream FRAMES fit chunks; acks must count the samples one chunk at a time, in order."""
    key = f"load-fit-{index}"
    seqs, data = stream_data(1000 + index)
    replies = [
        decode_reply(r)
        for r in await pipelined(f"{ws_url}/ws/{key}/fit", [encode_chunk(s, x) for s, x in zip(seqs, data)])
    ]
    assert [r.seq for r in replies] == seqs, f"{key}: acks out of order, missing or repeated"
    assert all(isinstance(r, AckReply) for r in replies)
    assert [r.n_samples for r in replies] == [N_SAMPLES * (i + 1) for i in range(FRAMES)]  # type: ignore[union-attr]
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as client:
        state = (await client.get(f"/streams/{key}")).json()
    assert state["n_samples"] == N_SAMPLES * FRAMES
    assert state["counters"]["fit_frames"] == FRAMES


async def test_eight_concurrent_streams_answer_every_frame_once_in_order(process_factory) -> None:
    live_server = process_factory()  # a process of its own: the load must not share this process's GIL
    streams = [transform_stream(live_server.url, live_server.ws_url, i) for i in range(TRANSFORM_STREAMS)]
    streams += [fit_stream(live_server.url, live_server.ws_url, i) for i in range(FIT_STREAMS)]
    await asyncio.wait_for(asyncio.gather(*streams), 120)
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        listing = (await client.get("/streams")).json()
    assert listing["count"] == TRANSFORM_STREAMS + FIT_STREAMS
    assert live_server.running
