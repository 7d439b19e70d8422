"""LRRClient / LRRClientSync against the real server: pipelined streams keep order and content."""

from __future__ import annotations

import numpy as np
import pytest

from lrr_service.clients import LRRClient, LRRClientSync
from lrr_service.core import LRR, LRRSettings

CHANNELS = 16
SAMPLES_PER_FRAME = 10


def _frames(seed: int, count: int) -> list[np.ndarray]:
    """`count` distinct float64 frames of SAMPLES_PER_FRAME x CHANNELS with correlated channels."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((CHANNELS, CHANNELS)) + 2.0
    return [rng.standard_normal((SAMPLES_PER_FRAME, CHANNELS)) @ mixing for _ in range(count)]


async def _engine_fitted_like(client: LRRClient, fit_frames: list[np.ndarray]) -> LRR:
    """An in-process engine with the session's settings, fitted on the same frames in the same order."""
    engine = LRR(LRRSettings.from_dict((await client.info())["settings"]))
    for frame in fit_frames:
        engine.partial_fit(frame)
    return engine


async def test_thousand_pipelined_transform_frames_come_back_in_order_and_match_the_engine(shared_server):
    fit_frames, frames = _frames(1, 200), _frames(2, 1000)
    async with LRRClient(shared_server.url, "stream-1000", max_in_flight=64) as client:
        acks = [ack async for ack in client.fit_stream(fit_frames)]
        assert [ack.seq for ack in acks] == list(range(200))
        assert acks[-1].n_samples == 200 * SAMPLES_PER_FRAME
        solved = await client.solve()
        assert solved["n_samples_solved"] == 200 * SAMPLES_PER_FRAME
        engine = await _engine_fitted_like(client, fit_frames)

        in_flight_seen: list[int] = []

        def watched():
            for frame in frames:
                in_flight_seen.append(client.channel("transform").in_flight)
                yield frame

        outputs = [y async for y in client.transform_stream(watched())]
    assert len(outputs) == 1000
    assert max(in_flight_seen) == 63  # the window really held 64 frames on the wire
    for frame, output in zip(frames, outputs):
        np.testing.assert_allclose(output, engine.transform(frame), rtol=1e-10, atol=1e-10)
    assert not np.allclose(outputs[0], frames[0])  # the weights were applied, not identity


async def test_fit_transform_stream_counts_samples_frame_by_frame(shared_server):
    frames = _frames(3, 300)
    async with LRRClient(shared_server.url, "stream-ft") as client:
        replies = [reply async for reply in client.stream("fit_transform", frames, max_in_flight=16)]
    assert [r.seq for r in replies] == list(range(300))
    assert [r.n_samples for r in replies] == [SAMPLES_PER_FRAME * (i + 1) for i in range(300)]
    assert all(r.data.shape == (SAMPLES_PER_FRAME, CHANNELS) for r in replies)


async def test_single_calls_and_concurrent_callers_get_their_own_replies(shared_server):
    import asyncio

    frames = _frames(4, 40)
    async with LRRClient(shared_server.url, "stream-concurrent") as client:
        ack = await client.fit(np.concatenate(frames))
        assert ack.n_samples == 40 * SAMPLES_PER_FRAME
        await client.solve()
        weights = await client.get_weights()
        outputs = await asyncio.gather(*(client.transform(frame) for frame in frames))
    identity = np.eye(CHANNELS)
    for frame, output in zip(frames, outputs):
        np.testing.assert_allclose(output, frame @ (identity - weights), rtol=1e-10, atol=1e-9)


def test_blocking_client_streams_and_round_trips_weights_exactly(shared_server, tmp_path):
    frames = [frame.astype(np.float32) for frame in _frames(5, 100)]
    rng = np.random.default_rng(6)
    uploaded = rng.standard_normal((CHANNELS, CHANNELS)) / 7
    np.fill_diagonal(uploaded, 0.0)
    with LRRClientSync(shared_server.url, "stream-sync", max_in_flight=8) as client:
        client.put_weights(uploaded)
        assert np.array_equal(client.get_weights(), uploaded)  # bit-exact through CSV
        outputs = list(client.transform_stream(iter(frames)))
        path = client.download_weights(tmp_path / "w.csv")
        client.put_weights(path, replace=True)
        assert np.array_equal(np.loadtxt(path, delimiter=","), uploaded)
        assert client.info()["weights_source"] == "uploaded"
        keys = [session["key"] for session in client.sessions()]
        assert client.delete() is None  # the server answers 204 No Content
        remaining = [session["key"] for session in client.sessions()]
    assert "stream-sync" in keys and "stream-sync" not in remaining
    assert [o.dtype for o in outputs] == [np.float32] * 100
    for frame, output in zip(frames, outputs):
        expected = frame.astype(np.float64) @ (np.eye(CHANNELS) - uploaded)
        np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-4)


async def test_bad_input_is_refused_before_sending_and_the_stream_goes_on(shared_server):
    async with LRRClient(shared_server.url, "stream-bad-input", allow_identity=True) as client:
        with pytest.raises(ValueError, match="expected 2-D"):
            await client.transform(np.zeros(5))
        with pytest.raises(ValueError, match="dtype"):
            await client.transform(np.zeros((2, 3), dtype=np.complex128))
        good = np.arange(12.0).reshape(4, 3)
        assert np.array_equal(await client.transform(good), good)  # no weights yet: identity
