"""Faults: `kill -9` of the server while fit and transform streams run, then a restart on the same state dir.

What must come back: uploaded weights (bit for bit), session settings, and fitted statistics exactly
as of the last checkpoint (fit acks after it are lost with the process, and the acks say so: the
count restarts from the checkpoint). Clients with reconnect finish their streams, every frame
answered, transform output right.
"""

from __future__ import annotations

import asyncio

import numpy as np

from lrr_service.clients import LRRClient, ReconnectPolicy
from lrr_service.core.weights_csv import format_weights_csv

try:
    from live_server import LiveServer
except ImportError:
    from tests.live_server import LiveServer

PATIENT = ReconnectPolicy(max_attempts=400, initial_delay=0.02, max_delay=0.25, max_elapsed=60.0)
CHANNELS = 6
FIT_SAMPLES = 10
FIT_FRAMES = 400
TRANSFORM_FRAMES = 400
KILL_AT = 150


def chunks(seed: int, count: int, samples: int) -> list[np.ndarray]:
    """Correlated channels, so that fitted weights are not trivial."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((CHANNELS, CHANNELS)) + 1.0
    return [rng.standard_normal((samples, CHANNELS)) @ mixing for _ in range(count)]


def uploaded_weights() -> np.ndarray:
    W = np.random.default_rng(9).uniform(-0.3, 0.3, (CHANNELS, CHANNELS))
    np.fill_diagonal(W, 0.0)
    return W


async def test_kill_9_mid_stream_restores_checkpointed_state_and_clients_finish(process_factory) -> None:
    server: LiveServer = process_factory(env={"LRR_CHECKPOINT_SECONDS": "3600", "LRR_SOLVE_EVERY_SAMPLES": "100"})
    W = uploaded_weights()
    with server.http() as http:
        assert http.put("/streams/configured", json={"ridge_lambda": 0.75, "block_size": 3}).status_code == 201
        assert http.put("/streams/uploaded/weights", content=format_weights_csv(W)).status_code == 200
    fit_frames = chunks(1, FIT_FRAMES, FIT_SAMPLES)
    frames = chunks(2, TRANSFORM_FRAMES, 8)
    restarted: list[asyncio.Task[LiveServer]] = []
    killed = asyncio.Event()

    async with (
        LRRClient(server.url, "fitted", reconnect=PATIENT, max_in_flight=16) as fitter,
        LRRClient(server.url, "uploaded", reconnect=PATIENT, max_in_flight=16) as transformer,
    ):
        async for _ in fitter.fit_stream(chunks(3, 30, FIT_SAMPLES)):
            pass
        checkpoint = await fitter.solve()  # written to disk before the reply: the last checkpoint of "fitted"

        async def fit_chunks():
            for index, frame in enumerate(fit_frames):
                if index == KILL_AT:
                    server.kill()  # kill -9 with fit and transform frames on the wire
                    killed.set()
                    restarted.append(asyncio.create_task(asyncio.to_thread(server.start)))
                yield frame

        async def fit_all() -> list[int]:
            return [ack.n_samples async for ack in fitter.fit_stream(fit_chunks())]

        acks, outputs = await asyncio.wait_for(
            asyncio.gather(fit_all(), _collect(transformer.transform_stream(_across(frames, killed)))), 90
        )
        await restarted[0]
        assert fitter.reconnects >= 1 and transformer.reconnects >= 1

    n0 = checkpoint["n_samples"]
    assert checkpoint["n_samples_solved"] == n0 == 30 * FIT_SAMPLES
    # every fit frame answered once; the count runs on from the checkpoint, falls back to it once
    # (the restart: acks given by the killed process after the checkpoint are gone), then runs on again
    assert len(acks) == FIT_FRAMES
    steps = np.diff([n0, *acks])
    falls = np.flatnonzero(steps != FIT_SAMPLES)
    assert len(falls) == 1, acks
    restart_at = int(falls[0])
    assert acks[restart_at] == n0 + FIT_SAMPLES, "statistics after the restart are not those of the last checkpoint"
    assert acks[-1] == n0 + FIT_SAMPLES * (FIT_FRAMES - restart_at)

    with server.http() as http:
        fitted = http.get("/streams/fitted").json()
        configured = http.get("/streams/configured").json()
        uploaded = http.get("/streams/uploaded").json()
    assert fitted["n_samples"] == acks[-1]
    assert configured["settings"]["ridge_lambda"] == 0.75 and configured["settings"]["block_size"] == 3
    assert uploaded["weights_source"] == "uploaded"
    async with LRRClient(server.url, "uploaded") as client:
        assert (await client.get_weights()).tobytes() == W.tobytes()
    assert len(outputs) == TRANSFORM_FRAMES
    for frame, output in zip(frames, outputs):
        np.testing.assert_allclose(output, frame @ (np.eye(CHANNELS) - W), rtol=1e-10, atol=1e-10)


async def _across(frames: list[np.ndarray], killed: asyncio.Event):
    """Yield the first half of the frames, wait for the kill, then the rest: the stream spans the restart."""
    for index, frame in enumerate(frames):
        if index == len(frames) // 2:
            await killed.wait()
        yield frame


async def _collect(stream) -> list[np.ndarray]:
    return [item async for item in stream]
