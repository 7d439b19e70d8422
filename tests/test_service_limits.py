"""Resource limits against the real server: the state budget (over_capacity) and the stream limit (503)."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from live_server import LiveServer, exchange
from websockets.exceptions import InvalidStatus

from lrr_service.core.codec import AckReply, ChunkReply, ErrorReply, encode_chunk
from lrr_service.core.weights_csv import format_weights_csv
from lrr_service.service.capacity import session_state_bytes

MIB = 1024 * 1024
BUDGET = 16 * MIB
"""Room for three 16-channel sessions (each ~4 MiB, mostly its staging block) but not four."""


def test_the_budget_fits_three_small_sessions_and_no_1024_channel_one() -> None:
    assert 3 * session_state_bytes(16) <= BUDGET < 4 * session_state_bytes(16)
    assert session_state_bytes(1024) > BUDGET
    assert session_state_bytes(None) == 0


def describe(server: LiveServer, key: str) -> tuple[int, dict]:
    with server.http() as http:
        response = http.get(f"/streams/{key}")
    return response.status_code, response.json()


async def fit_one(
    server: LiveServer, key: str, n_channels: int, route: str = "fit"
) -> AckReply | ChunkReply | ErrorReply:
    async with server.connect(key, route) as ws:
        return await exchange(ws, encode_chunk(3, np.ones((2, n_channels))))


async def test_chunks_beyond_the_state_budget_get_over_capacity_and_change_nothing(server_factory) -> None:
    server = server_factory(env={"LRR_MAX_STATE_BYTES": str(BUDGET)})
    huge = await fit_one(server, "huge", 1024)  # one 16 KB frame must not bind 16 MiB of statistics
    assert isinstance(huge, ErrorReply) and (huge.code, huge.seq) == ("over_capacity", 3)
    assert "LRR_MAX_STATE_BYTES" in huge.message and "nothing changed" in huge.message
    assert describe(server, "huge")[0] == 404

    for key in ("a", "b", "c"):
        assert isinstance(await fit_one(server, key, 16), AckReply)
    for route in ("fit", "transform", "fit_transform"):
        refused = await fit_one(server, "d", 16, route)
        assert isinstance(refused, ErrorReply) and refused.code == "over_capacity", route
    assert describe(server, "d")[0] == 404
    # a bound session that would grow past the budget is not reset: it keeps its channels and samples
    _, before = describe(server, "a")
    grown = await fit_one(server, "a", 600)
    assert isinstance(grown, ErrorReply) and grown.code == "over_capacity"
    _, after = describe(server, "a")
    assert (after["n_channels"], after["n_samples"], after["counters"]["resets"]) == (16, 2, 0)
    assert after["weights_version"] == before["weights_version"]
    # rebinding within the budget still works, and deleting a session makes room
    assert isinstance(await fit_one(server, "a", 17), AckReply)
    with server.http() as http:
        assert http.delete("/streams/c").status_code == 204
        metrics = http.get("/metrics").text
    assert isinstance(await fit_one(server, "d", 16), AckReply)
    assert 'lrr_errors_total{code="over_capacity"} 5.0' in metrics


async def test_weights_uploads_beyond_the_state_budget_get_507(server_factory) -> None:
    server = server_factory(env={"LRR_MAX_STATE_BYTES": str(BUDGET)})
    for key in ("a", "b", "c"):
        assert isinstance(await fit_one(server, key, 16), AckReply)
    W = np.zeros((3, 3))
    with server.http() as http:
        refused = http.put("/streams/new/weights", content=format_weights_csv(W))
        assert refused.status_code == 507
        detail = refused.json()["detail"]
        assert detail["code"] == "over_capacity" and "LRR_MAX_STATE_BYTES" in detail["message"]
        assert http.get("/streams/new").status_code == 404  # not created
        replacing = http.put("/streams/a/weights?replace=true", content=format_weights_csv(np.zeros((600, 600))))
        assert replacing.status_code == 507
        assert http.get("/streams/a").json()["n_channels"] == 16  # not reset
        same_size = http.put("/streams/a/weights", content=format_weights_csv(np.zeros((16, 16))))
        assert same_size.status_code == 200, same_size.text  # no new binding: no new memory
        assert http.delete("/streams/b").status_code == 204
        assert http.put("/streams/new/weights", content=format_weights_csv(W)).status_code == 200


def wait_for_metric(server: LiveServer, line: str) -> None:
    """Poll /metrics until it shows `line` (the server reports the connections it has let go of);
    bounded by the suite's per-test timeout, not by the wall clock."""
    with server.http() as http:
        while line not in http.get("/metrics").text.splitlines():
            time.sleep(0.01)


async def test_streams_beyond_max_connections_are_refused_with_503(server_factory) -> None:
    server = server_factory(env={"LRR_MAX_CONNECTIONS": "3"})
    held = [await server.connect(f"s{i}", "transform").__aenter__() for i in range(3)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with server.connect("s3", "transform"):
                pass
        assert refused.value.response.status_code == 503
        detail = json.loads(refused.value.response.body)["detail"]
        assert detail["code"] == "too_many_connections" and "LRR_MAX_CONNECTIONS" in detail["message"]
        with server.http() as http:  # REST and the health check still answer while the streams are full
            assert http.get("/health").status_code == 200
            assert http.get("/streams").status_code == 200
        assert isinstance(await exchange(held[0], encode_chunk(0, np.ones((1, 3)))), ChunkReply)
    finally:
        for ws in held:
            await ws.close()
    await asyncio.to_thread(wait_for_metric, server, 'lrr_websocket_connections{route="transform"} 0.0')
    async with server.connect("s3", "transform") as ws:  # a slot is free again
        assert isinstance(await exchange(ws, encode_chunk(0, np.ones((1, 3)))), ChunkReply)


async def test_checkpoints_beyond_the_state_budget_are_skipped_and_kept(server_factory, tmp_path) -> None:
    state = tmp_path / "state"
    roomy = server_factory(state_dir=state)
    for key in ("a", "b", "c", "d"):
        assert isinstance(await fit_one(roomy, key, 16), AckReply)
    roomy.stop()
    tight = server_factory(env={"LRR_MAX_STATE_BYTES": str(BUDGET)}, state_dir=state)
    with tight.http() as http:
        assert [s["key"] for s in http.get("/streams").json()["streams"]] == ["a", "b", "c"]
    skipped = [json.loads(line) for line in tight.log_text().splitlines() if '"event":"checkpoint_skipped"' in line]
    assert [entry["key"] for entry in skipped] == ["d"] and "LRR_MAX_STATE_BYTES" in skipped[0]["reason"]
    assert (state / "d.lrr.npz").exists() and not list(state.glob("*.corrupt"))
