"""The live `status` of GET /streams and GET /streams/{key}: connections, rates, fs, latency, weights, solve, errors."""

from __future__ import annotations

import time

import numpy as np

from lrr_service.core.codec import AckReply, ChunkReply, ErrorReply, encode_chunk

try:
    from live_server import exchange
except ImportError:
    from tests.live_server import exchange

STATUS_KEYS = {
    "connections",
    "rates",
    "fs",
    "transform_latency_us",
    "weights",
    "last_solve",
    "n_samples",
    "last_error",
    "quality",
}


def status_of(server: object, key: str) -> dict:
    with server.http() as http:  # type: ignore[attr-defined]
        response = http.get(f"/streams/{key}")
        assert response.status_code == 200, response.text
        return response.json()["status"]


async def test_status_counts_connections_rates_latency_and_fs(shared_server, stream_key: str) -> None:
    rng = np.random.default_rng(0)
    async with (
        shared_server.connect(stream_key, "fit") as fit,
        shared_server.connect(stream_key, "transform") as transform,
        shared_server.connect(stream_key, "transform") as other,
    ):
        for seq in range(20):
            assert isinstance(await exchange(fit, encode_chunk(seq, rng.standard_normal((30, 4)), fs=30000)), AckReply)
        for seq in range(50):
            reply = await exchange(transform, encode_chunk(seq, rng.standard_normal((30, 4)), fs=30000))
            assert isinstance(reply, ChunkReply)
        status = status_of(shared_server, stream_key)
        assert set(status) == STATUS_KEYS
        assert status["connections"] == {"fit": 1, "transform": 2, "fit_transform": 0}
        rates = status["rates"]
        assert rates["frames_in_per_s"] > 0 and rates["samples_in_per_s"] == 30 * rates["frames_in_per_s"]
        assert 0 < rates["frames_out_per_s"] < rates["frames_in_per_s"]  # acks return no data
        assert rates["samples_out_per_s"] == 30 * rates["frames_out_per_s"]
        assert status["fs"] == 30000.0
        latency = status["transform_latency_us"]
        assert latency["count"] == 50 and 0 < latency["p50"] <= latency["p99"]
        assert status["n_samples"] == 600 and status["last_error"] is None
        with shared_server.http() as http:
            overall = http.get(f"/streams/{stream_key}/quality").json()["overall"]
        assert status["quality"] == {
            "median_channel_db": overall["median_channel_db"],
            "worst_channel_db": overall["worst_channel"]["reduction_db"],
        }
        assert status["quality"]["median_channel_db"] == 0.0  # no weights yet: output = input
        await other.close()
    deadline = time.monotonic() + 5
    while status_of(shared_server, stream_key)["connections"] != {"fit": 0, "transform": 0, "fit_transform": 0}:
        assert time.monotonic() < deadline, "connections still counted after the sockets closed"
        time.sleep(0.05)
    with shared_server.http() as http:
        listed = {s["key"]: s for s in http.get("/streams").json()["streams"]}
    assert set(listed[stream_key]["status"]) == STATUS_KEYS


async def test_status_weights_age_last_solve_and_last_error(shared_server, stream_key: str) -> None:
    rng = np.random.default_rng(1)
    async with shared_server.connect(stream_key, "fit") as ws:
        await exchange(ws, encode_chunk(0, rng.standard_normal((200, 4))))
        before = status_of(shared_server, stream_key)
        assert before["weights"] == {"version": 0, "source": "none", "age_seconds": None}
        assert before["last_solve"] == {"seconds": None, "at": None}
        with shared_server.http() as http:
            solved = http.post(f"/streams/{stream_key}/solve").json()
        status = status_of(shared_server, stream_key)
        assert status["weights"]["version"] == solved["weights_version"] and status["weights"]["source"] == "fitted"
        assert 0 <= status["weights"]["age_seconds"] < 5
        assert status["last_solve"]["seconds"] > 0 and abs(status["last_solve"]["at"] - time.time()) < 5
        bad = np.ones((5, 4))
        bad[2, 1] = np.nan
        refused = await exchange(ws, encode_chunk(1, bad))
        assert isinstance(refused, ErrorReply) and refused.code == "non_finite"
    error = status_of(shared_server, stream_key)["last_error"]
    assert error["code"] == "non_finite" and "NaN" in error["message"] and abs(error["at"] - time.time()) < 5


async def test_status_rates_fall_to_zero_when_the_stream_stops(shared_server, stream_key: str) -> None:
    async with shared_server.connect(stream_key, "transform") as ws:
        for seq in range(5):
            await exchange(ws, encode_chunk(seq, np.ones((10, 2))))
    assert status_of(shared_server, stream_key)["rates"]["frames_in_per_s"] > 0
    assert status_of(shared_server, stream_key)["fs"] is None
