"""Reconnection against the real server: restarts mid-stream lose no frame; frames are resent or reported."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest

from lrr_service.clients import ConnectionLost, LRRClient, ReconnectPolicy

try:
    from live_server import LiveServer
except ImportError:
    from tests.live_server import LiveServer

BOUND_S = 90.0
"""Upper bound on each test, so a lost reply fails the test instead of hanging it (not a performance check)."""
PATIENT = ReconnectPolicy(max_attempts=200, initial_delay=0.02, max_delay=0.25, max_elapsed=60.0)
CHANNELS = 6


def _frames(seed: int, count: int, samples: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((CHANNELS, CHANNELS)) + 1.5
    return [rng.standard_normal((samples, CHANNELS)) @ mixing for _ in range(count)]


async def _fit_across_a_server_kill(server: LiveServer, client: LRRClient, frames: list[np.ndarray]) -> list[object]:
    """Fit frames[0]; freeze the server; put frames[1:] on the wire; kill and restart it; settle them all."""
    async with asyncio.timeout(BOUND_S):
        await client.fit(frames[0])
        os.kill(server.pid, signal.SIGSTOP)  # the server reads nothing more: replies cannot arrive
        futures = [client.channel("fit").submit(frame) for frame in frames[1:]]
        await _wait_written(client, "fit")
        server.kill()
        server.start()
        return await asyncio.gather(*futures, return_exceptions=True)


async def _wait_written(client: LRRClient, mode: str) -> None:
    """Yield to the event loop until every submitted frame of `mode` is on the wire (a sync point, not a timing)."""
    while client.channel(mode).unsent:
        await asyncio.sleep(0.01)


async def test_stream_survives_a_server_restart_mid_stream_with_every_frame_answered(tmp_path):
    server = LiveServer(tmp_path / "state").start()
    restarted: list[asyncio.Task[LiveServer]] = []
    try:
        fit_frames, frames = _frames(1, 50), _frames(2, 600)
        async with (
            asyncio.timeout(BOUND_S),
            LRRClient(server.url, "restart-mid", reconnect=PATIENT, max_in_flight=32) as client,
        ):
            async for _ in client.fit_stream(fit_frames):
                pass
            await client.solve()  # checkpointed before the reply, so it survives kill -9
            weights = await client.get_weights()

            async def chunks():
                for index, frame in enumerate(frames):
                    if index == 200:
                        server.kill()
                        restarted.append(asyncio.create_task(asyncio.to_thread(server.start)))
                    yield frame

            outputs = [y async for y in client.transform_stream(chunks())]
            await restarted[0]
            assert client.reconnects >= 1
        assert len(outputs) == 600
        for frame, output in zip(frames, outputs):
            np.testing.assert_allclose(output, frame @ (np.eye(CHANNELS) - weights), rtol=1e-10, atol=1e-9)
    finally:
        await asyncio.gather(*restarted, return_exceptions=True)  # never leave a late start behind
        server.stop()


async def test_frames_on_the_wire_when_the_server_dies_are_resent_after_it_restarts(tmp_path):
    server = LiveServer(tmp_path / "state").start()
    try:
        frames = _frames(3, 20)
        async with LRRClient(server.url, "resend", reconnect=PATIENT) as client:
            acks = await _fit_across_a_server_kill(server, client, frames)
        assert [ack.seq for ack in acks] == list(range(1, 20))
        assert acks[-1].n_samples - acks[0].n_samples == 18 * 8  # resent in order, once each on the new connection
    finally:
        server.stop()


async def test_with_resend_off_unconfirmed_fit_frames_are_reported_not_resent(tmp_path):
    server = LiveServer(tmp_path / "state").start()
    try:
        frames = _frames(4, 6)
        async with LRRClient(server.url, "no-resend", reconnect=PATIENT, resend=False) as client:
            results = await _fit_across_a_server_kill(server, client, frames)
            after = await client.fit(frames[0])  # the channel reconnected and works again
        assert all(isinstance(r, ConnectionLost) for r in results)
        assert sorted(seq for r in results for seq in r.unanswered) == [1, 2, 3, 4, 5]
        assert after.seq == 6
    finally:
        server.stop()


async def test_when_the_server_stays_down_every_waiting_frame_fails_with_connection_lost(tmp_path):
    server = LiveServer(tmp_path / "state").start()
    brief = ReconnectPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)
    try:
        async with (
            asyncio.timeout(BOUND_S),
            LRRClient(server.url, "gone", reconnect=brief, allow_identity=True) as client,
        ):
            await client.transform(np.ones((2, CHANNELS)))
            os.kill(server.pid, signal.SIGSTOP)
            futures = [client.channel("transform").submit(np.ones((2, CHANNELS))) for _ in range(4)]
            await _wait_written(client, "transform")
            server.kill()
            results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        server.kill()  # also when the test fails before it: no server outlives its test
    assert all(isinstance(r, ConnectionLost) for r in results)
    assert results[0].unanswered == (1, 2, 3, 4)
    assert "could not reconnect" in str(results[0])


async def test_first_connection_fails_fast_with_connection_lost_when_nothing_listens(tmp_path):
    server = LiveServer(tmp_path / "state")  # never started: its port is free
    async with LRRClient(server.url, "nobody") as client:
        with pytest.raises(ConnectionLost, match="cannot connect"):
            await client.transform(np.ones((2, 3)))
