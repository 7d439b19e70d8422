"""The websocket routes against the real server: replies, dtypes, every frame error, resets, shared sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import msgpack
import numpy as np
import pytest
from in_process import InProcessServer
from live_server import LiveServer, exchange
from websockets.exceptions import ConnectionClosed

from lrr_service.core import LRR, LRRSettings
from lrr_service.core.codec import AckReply, ChunkReply, ErrorReply, decode_reply, encode_chunk

MAX_CHANNELS = 64
MAX_FRAME_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module, with small limits so the limit errors are cheap to provoke."""
    env = {"LRR_MAX_CHANNELS": str(MAX_CHANNELS), "LRR_MAX_FRAME_BYTES": str(MAX_FRAME_BYTES)}
    live = InProcessServer(tmp_path_factory.mktemp("ws") / "lrr-state", env=env).start()
    yield live
    live.stop()


def chunk(rng: np.random.Generator, n_samples: int = 40, n_channels: int = 8, dtype: str = "<f8") -> np.ndarray:
    """Correlated test data: a common reference plus channel noise, in `dtype`."""
    common = rng.standard_normal((n_samples, 1)) * 3
    data = common + rng.standard_normal((n_samples, n_channels))
    if dtype in ("<i2", "<i4"):
        return np.round(data * 100).astype(dtype)
    return data.astype(dtype)


def describe(server: LiveServer, key: str) -> dict:
    with server.http() as http:
        response = http.get(f"/streams/{key}")
        assert response.status_code == 200, response.text
        return response.json()


def state_of(server: LiveServer, key: str) -> dict:
    """The session's state without the counters that count rejected frames and the live status."""
    body = describe(server, key)
    body["counters"].pop("rejected_frames")
    body.pop("status")
    return body


# -- replies ---------------------------------------------------------------------------------


async def test_fit_acks_accumulated_samples_in_order(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(1)
    async with server.connect(stream_key, "fit") as ws:
        for seq, n in enumerate((10, 25, 5)):
            await ws.send(encode_chunk(seq, chunk(rng, n)))
        replies = [await ws.recv() for _ in range(3)]
    acks = [decode_reply(r) for r in replies]
    assert [a.seq for a in acks] == [0, 1, 2]
    assert all(isinstance(a, AckReply) for a in acks)
    assert [a.n_samples for a in acks] == [10, 35, 40]
    assert [a.reset for a in acks] == [False, False, False]
    assert describe(server, stream_key)["n_samples"] == 40


@pytest.mark.parametrize(
    ("wire", "out"), [("<f4", np.float32), ("<f8", np.float64), ("<i2", np.float32), ("<i4", np.float32)]
)
async def test_transform_output_dtype_and_echoes(server: LiveServer, stream_key: str, wire: str, out: type) -> None:
    rng = np.random.default_rng(2)
    data = chunk(rng, 12, 6, wire)
    async with server.connect(stream_key, "transform") as ws:
        reply = await exchange(ws, encode_chunk(41, data, t0=1234.5, fs=30000))
    assert isinstance(reply, ChunkReply)
    assert (reply.seq, reply.t0, reply.fs, reply.reset) == (41, 1234.5, 30000, False)
    assert reply.data.dtype == out and reply.data.shape == (12, 6)
    # before any fit the transform is the identity
    np.testing.assert_array_equal(reply.data, data.astype(out))
    assert reply.n_samples is None


async def test_transform_without_t0_and_fs_omits_them(server: LiveServer, stream_key: str) -> None:
    async with server.connect(stream_key, "transform") as ws:
        await ws.send(encode_chunk(0, np.ones((2, 3))))
        raw = msgpack.unpackb(await ws.recv())
    assert raw["type"] == "chunk"
    assert "t0" not in raw and "fs" not in raw
    assert set(raw) == {"type", "seq", "shape", "dtype", "data", "weights_version", "reset", "weights_source"}
    assert raw["weights_source"] == "none"


async def test_fit_transform_fits_then_transforms(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(3)
    data = chunk(rng, 30, 5)
    async with server.connect(stream_key, "fit_transform") as ws:
        reply = await exchange(ws, encode_chunk(7, data))
    assert isinstance(reply, ChunkReply)
    assert reply.n_samples == 30 and reply.seq == 7
    body = describe(server, stream_key)
    assert body["n_samples"] == 30
    assert body["counters"]["fit_frames"] == 1 and body["counters"]["transform_frames"] == 1


async def test_transform_agrees_with_in_process_engine(server: LiveServer, stream_key: str) -> None:
    """Same fit data, explicit solve: the server's output equals the engine's on the same chunk."""
    rng = np.random.default_rng(4)
    fits = [chunk(rng, 50, 8) for _ in range(6)]
    probe64 = chunk(rng, 20, 8)
    probe16 = chunk(rng, 20, 8, "<i2")
    async with server.connect(stream_key, "fit") as ws:
        for seq, data in enumerate(fits):
            assert isinstance(await exchange(ws, encode_chunk(seq, data)), AckReply)
    with server.http() as http:
        solved = http.post(f"/streams/{stream_key}/solve").json()
    assert solved["n_samples_solved"] == 300
    engine = LRR(LRRSettings())
    for data in fits:
        engine.accumulate(data)
    engine.solve()
    async with server.connect(stream_key, "transform") as ws:
        reply64 = await exchange(ws, encode_chunk(0, probe64))
        reply16 = await exchange(ws, encode_chunk(1, probe16))
    assert reply64.weights_version == solved["weights_version"]
    np.testing.assert_allclose(reply64.data, engine.transform(probe64), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reply16.data, engine.transform(probe16), rtol=1e-6, atol=1e-4)
    assert not np.allclose(reply64.data, probe64)  # really rereferenced


# -- sessions: sharing and resets ---------------------------------------------------------------


async def test_fit_and_transform_connections_share_one_session(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(5)
    fits = [chunk(rng, 40, 8) for _ in range(10)]
    probes = [chunk(rng, 5, 8) for _ in range(10)]
    async with server.connect(stream_key, "fit") as fit_ws, server.connect(stream_key, "transform") as tr_ws:

        async def fit_all() -> list:
            return [await exchange(fit_ws, encode_chunk(i, d)) for i, d in enumerate(fits)]

        async def transform_all() -> list:
            return [await exchange(tr_ws, encode_chunk(i, d)) for i, d in enumerate(probes)]

        acks, outputs = await asyncio.gather(fit_all(), transform_all())
        assert [a.n_samples for a in acks] == [40 * (i + 1) for i in range(10)]
        assert all(isinstance(o, ChunkReply) and not o.reset for o in outputs)
        with server.http() as http:
            solved = http.post(f"/streams/{stream_key}/solve").json()
        after = await exchange(tr_ws, encode_chunk(99, probes[0]))
    assert solved["n_samples_solved"] == 400
    assert after.weights_version == solved["weights_version"] > 0
    assert not np.allclose(after.data, probes[0])
    body = describe(server, stream_key)
    assert body["counters"]["fit_frames"] == 10 and body["counters"]["transform_frames"] == 11
    assert body["counters"]["resets"] == 0


async def test_channel_count_change_resets_the_session(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(6)
    async with server.connect(stream_key, "fit") as ws:
        await exchange(ws, encode_chunk(0, chunk(rng, 50, 8)))
        with server.http() as http:
            http.post(f"/streams/{stream_key}/solve").raise_for_status()
        reset = await exchange(ws, encode_chunk(1, chunk(rng, 20, 4)))
        following = await exchange(ws, encode_chunk(2, chunk(rng, 20, 4)))
    assert isinstance(reset, AckReply) and reset.reset is True and reset.n_samples == 20
    assert following.reset is False and following.n_samples == 40
    body = describe(server, stream_key)
    assert body["n_channels"] == 4 and body["weights_source"] == "none"
    assert body["counters"]["resets"] == 1
    assert body["settings"]["ridge_lambda"] == 0.0
    with server.http() as http:
        metrics = http.get("/metrics").text
    assert 'lrr_session_resets_total{reason="channel_count"}' in metrics
    assert f'"event":"session_reset","key":"{stream_key}","reason":"channel_count"' in server.log_text()


async def test_transform_with_new_channel_count_resets_and_says_so(server: LiveServer, stream_key: str) -> None:
    async with server.connect(stream_key, "transform") as ws:
        first = await exchange(ws, encode_chunk(0, np.ones((3, 6))))
        second = await exchange(ws, encode_chunk(1, np.ones((3, 7))))
    assert first.reset is False and second.reset is True
    assert second.data.shape == (3, 7)


async def test_nothing_but_channel_count_resets(server: LiveServer, stream_key: str) -> None:
    """dtype, sample rate, chunk length and connection changes keep statistics and weights."""
    rng = np.random.default_rng(7)
    async with server.connect(stream_key, "fit") as ws:
        await exchange(ws, encode_chunk(0, chunk(rng, 50, 8, "<f8"), fs=1000))
    with server.http() as http:
        http.post(f"/streams/{stream_key}/solve").raise_for_status()
    version = describe(server, stream_key)["weights_version"]
    replies = []
    for seq, (n, dtype, fs) in enumerate([(7, "<f4", 30000), (1, "<i2", 2000), (100, "<i4", None)]):
        async with server.connect(stream_key, "fit") as ws:
            replies.append(await exchange(ws, encode_chunk(seq, chunk(rng, n, 8, dtype), fs=fs)))
    assert [r.reset for r in replies] == [False, False, False]
    assert [r.n_samples for r in replies] == [57, 58, 158]
    body = describe(server, stream_key)
    assert body["counters"]["resets"] == 0
    assert body["weights_version"] >= version and body["weights_source"] == "fitted"


# -- frame errors: an error reply, the connection stays open, nothing changes ---------------------


def packed(**fields: object) -> bytes:
    return msgpack.packb(fields)


GOOD = {"seq": 5, "shape": [2, 3], "dtype": "<f8", "data": np.zeros((2, 3)).tobytes()}

BAD_FRAMES = [
    ("bad_msgpack", b"\xc1", None),
    ("bad_msgpack", b"", None),
    ("bad_msgpack", packed(**GOOD) + b"\x00", 5),
    ("not_a_map", msgpack.packb([1, 2, 3]), None),
    ("missing_field", packed(seq=5), 5),
    ("missing_field", packed(**{k: v for k, v in GOOD.items() if k != "data"}), 5),
    ("bad_field", packed(**{**GOOD, "seq": "five"}), None),
    ("bad_field", packed(**{**GOOD, "seq": -1}), None),
    ("bad_field", packed(**{**GOOD, "data": "text"}), 5),
    ("bad_field", packed(**{**GOOD, "shape": "2x3"}), 5),
    ("bad_field", packed(**{**GOOD, "fs": 0}), 5),
    ("bad_field", packed(**{**GOOD, "t0": "noon"}), 5),
    ("bad_dtype", packed(**{**GOOD, "dtype": "<u2"}), 5),
    ("bad_dtype", packed(**{**GOOD, "dtype": ">f8"}), 5),
    ("bad_shape", packed(**{**GOOD, "shape": [0, 3], "data": b""}), 5),
    ("bad_shape", packed(**{**GOOD, "shape": [2, -3]}), 5),
    ("bad_shape", packed(**{**GOOD, "shape": [6]}), 5),
    ("size_mismatch", packed(**{**GOOD, "data": b"\x00" * 47}), 5),
    ("too_many_channels", packed(**{**GOOD, "shape": [1, MAX_CHANNELS + 1], "data": b"\x00" * 8 * 65}), 5),
]


@pytest.mark.parametrize("route", ["fit", "transform", "fit_transform"])
async def test_every_bad_frame_gets_an_error_and_changes_nothing(
    server: LiveServer, stream_key: str, route: str
) -> None:
    rng = np.random.default_rng(8)
    async with server.connect(stream_key, "fit") as ws:
        await exchange(ws, encode_chunk(0, chunk(rng, 30, 3)))
    before = state_of(server, stream_key)
    async with server.connect(stream_key, route) as ws:
        for code, frame, seq in BAD_FRAMES:
            reply = await exchange(ws, frame)
            assert isinstance(reply, ErrorReply), (code, reply)
            assert (reply.code, reply.seq) == (code, seq), reply
            assert len(reply.message) > 10
        text_reply = await exchange(ws, "not binary")
        assert isinstance(text_reply, ErrorReply) and text_reply.code == "text_frame"
        assert state_of(server, stream_key) == before
        still_open = await exchange(ws, encode_chunk(9, chunk(rng, 2, 3)))
        assert not isinstance(still_open, ErrorReply) and still_open.seq == 9
    assert describe(server, stream_key)["counters"]["rejected_frames"] == len(BAD_FRAMES) + 1
    with server.http() as http:
        metrics = http.get("/metrics").text
    assert 'lrr_errors_total{code="size_mismatch"}' in metrics


@pytest.mark.parametrize("route", ["fit", "fit_transform"])
async def test_non_finite_fit_chunk_is_refused_and_changes_nothing(
    server: LiveServer, stream_key: str, route: str
) -> None:
    rng = np.random.default_rng(9)
    good = chunk(rng, 20, 4)
    bad = good.copy()
    bad[3, 2] = np.nan
    async with server.connect(stream_key, route) as ws:
        await exchange(ws, encode_chunk(0, good))
        before = state_of(server, stream_key)
        reply = await exchange(ws, encode_chunk(1, bad))
        assert isinstance(reply, ErrorReply)
        assert (reply.code, reply.seq) == ("non_finite", 1)
        assert "sample 3, channel 2" in reply.message
        assert state_of(server, stream_key) == before
        # a non-finite chunk with a new channel count does not reset the session either
        wide = np.full((2, 6), np.inf)
        reply = await exchange(ws, encode_chunk(2, wide))
        assert reply.code == "non_finite"
        assert state_of(server, stream_key) == before


async def test_non_finite_chunk_on_a_new_key_leaves_no_session(server: LiveServer, stream_key: str) -> None:
    async with server.connect(stream_key, "fit") as ws:
        reply = await exchange(ws, encode_chunk(0, np.full((2, 3), np.nan)))
    assert reply.code == "non_finite"
    assert "first at sample 0, channel 0" in reply.message
    with server.http() as http:
        assert http.get(f"/streams/{stream_key}").status_code == 404


async def test_chunk_that_the_settings_cannot_take_is_refused(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        assert http.put(f"/streams/{stream_key}", json={"channel_groups": [[0, 1, 2], [3, 4, 5]]}).status_code == 201
    async with server.connect(stream_key, "fit") as ws:
        refused = await exchange(ws, encode_chunk(0, np.ones((4, 4))))
        accepted = await exchange(ws, encode_chunk(1, np.ones((4, 6))))
    assert isinstance(refused, ErrorReply) and refused.code == "settings_mismatch"
    assert "out-of-range" in refused.message
    assert isinstance(accepted, AckReply) and accepted.n_samples == 4
    assert describe(server, stream_key)["counters"]["resets"] == 0


@pytest.mark.parametrize("bad_key", ["has space", "x" * 129, "semi;colon", "ünicode"])
async def test_invalid_key_is_refused_with_a_reason(server: LiveServer, bad_key: str) -> None:
    async with server.connect(quote(bad_key, safe=""), "fit") as ws:
        reply = decode_reply(await ws.recv())  # sent on connect, before any chunk
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert isinstance(reply, ErrorReply) and reply.code == "bad_key"
    assert "A-Z" in reply.message and "128" in reply.message
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with server.http() as http:
        keys = [s["key"] for s in http.get("/streams").json()["streams"]]
    assert bad_key not in keys


async def test_longest_valid_key_is_accepted(server: LiveServer) -> None:
    key = "k." + "A_z-9" * 25 + "x"
    assert len(key) == 128
    async with server.connect(key, "fit") as ws:
        assert isinstance(await exchange(ws, encode_chunk(0, np.ones((2, 3)))), AckReply)


async def test_frame_over_the_size_limit_closes_with_1009(server: LiveServer, stream_key: str) -> None:
    n_samples = MAX_FRAME_BYTES // (8 * 8) + 1
    async with server.connect(stream_key, "fit") as ws:
        await ws.send(encode_chunk(0, np.zeros((n_samples, 8))))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with server.http() as http:
        assert http.get(f"/streams/{stream_key}").status_code == 404
    async with server.connect(stream_key, "fit") as ws:  # the server is fine
        assert isinstance(await exchange(ws, encode_chunk(1, np.zeros((10, 8)))), AckReply)


# -- limits that need their own server ------------------------------------------------------------


async def test_sessions_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "state", env={"LRR_MAX_SESSIONS": "2"}) as live:
        for key in ("one", "two"):
            async with live.connect(key, "fit") as ws:
                assert isinstance(await exchange(ws, encode_chunk(0, np.ones((2, 3)))), AckReply)
        async with live.connect("three", "transform") as ws:
            refused = await exchange(ws, encode_chunk(4, np.ones((2, 3))))
            assert isinstance(refused, ErrorReply)
            assert (refused.code, refused.seq) == ("too_many_sessions", 4)
            assert "2 sessions" in refused.message
            with live.http() as http:
                assert http.delete("/streams/one").status_code == 204
            accepted = await exchange(ws, encode_chunk(5, np.ones((2, 3))))
            assert isinstance(accepted, ChunkReply)
        with live.http() as http:
            assert http.put("/streams/four", json={}).status_code == 429
            assert sorted(s["key"] for s in http.get("/streams").json()["streams"]) == ["three", "two"]


async def test_random_garbage_never_breaks_the_connection_or_the_session(server: LiveServer, stream_key: str) -> None:
    """Hundreds of random byte strings and random maps: each gets one reply, the session is untouched."""
    rng = np.random.default_rng(12)
    async with server.connect(stream_key, "fit") as ws:
        await exchange(ws, encode_chunk(0, chunk(rng, 20, 3)))
    before = state_of(server, stream_key)
    values = [
        None,
        True,
        -1,
        0,
        2**63,
        1.5,
        float("nan"),
        "",
        "<f8",
        "<f4",
        b"",
        b"\x00" * 24,
        [],
        [2, 3],
        [1, 3],
        [2, 3, 1],
        {"a": 1},
        [[1]],
        "x" * 300,
    ]
    keys = ["seq", "shape", "dtype", "data", "t0", "fs", "type", "extra"]
    frames: list[bytes] = []
    for _ in range(150):
        frames.append(rng.bytes(int(rng.integers(1, 64))))
        fields = {k: values[int(rng.integers(len(values)))] for k in rng.choice(keys, int(rng.integers(0, 7)))}
        fields["shape"] = [2, 4]  # never 3 channels, so a frame that happens to be valid cannot touch the session
        frames.append(msgpack.packb(fields))
    async with server.connect(stream_key + ".other", "transform") as other, server.connect(stream_key, "fit") as ws:
        for frame in frames:
            reply = await exchange(ws if frame[0] & 1 else other, frame)
            assert isinstance(reply, (ErrorReply, AckReply, ChunkReply))
        assert isinstance(await exchange(ws, encode_chunk(1, chunk(rng, 5, 3))), AckReply)
    after = state_of(server, stream_key)
    assert after["n_samples"] == before["n_samples"] + 5 and after["counters"]["resets"] == 0


async def test_concurrent_fits_transforms_and_rest_changes_stay_consistent(server: LiveServer, stream_key: str) -> None:
    """Two fit connections, one transform connection and REST resets, solves, uploads and settings at once:
    every chunk gets a proper reply (never `internal`), and the final sample count adds up."""
    rng = np.random.default_rng(13)
    fit_chunks = [chunk(rng, 64, 16) for _ in range(40)]
    probe = chunk(rng, 8, 16)
    zero_weights = "\n".join(",".join("0" for _ in range(16)) for _ in range(16))

    async def fitter(route: str) -> list:
        async with server.connect(stream_key, route) as ws:
            return [await exchange(ws, encode_chunk(i, c)) for i, c in enumerate(fit_chunks)]

    async def transformer() -> list:
        async with server.connect(stream_key, "transform") as ws:
            return [await exchange(ws, encode_chunk(i, probe)) for i in range(60)]

    async def admin() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(base_url=server.url) as http:
            for step in range(12):
                if step % 4 == 0:
                    response = await http.post(f"/streams/{stream_key}/reset")
                elif step % 4 == 1:
                    response = await http.post(f"/streams/{stream_key}/solve")
                elif step % 4 == 2:
                    response = await http.put(f"/streams/{stream_key}/weights?replace=true", content=zero_weights)
                else:
                    response = await http.put(f"/streams/{stream_key}", json={"ridge_lambda": float(step)})
                statuses.append(response.status_code)
                await asyncio.sleep(0.005)
        return statuses

    async with server.connect(stream_key, "fit") as ws:  # make the session exist before the REST calls
        await exchange(ws, encode_chunk(0, fit_chunks[0]))
    fits_a, fits_b, outputs, statuses = await asyncio.gather(
        fitter("fit"), fitter("fit_transform"), transformer(), admin()
    )
    for reply in [*fits_a, *fits_b, *outputs]:
        assert not isinstance(reply, ErrorReply), reply
    assert set(statuses) <= {200, 409}, statuses  # 409: a solve with no data since a reset
    assert '"event":"chunk_failed"' not in server.log_text()
    # quiet now: every frame was counted once, and the statistics hold whole chunks since the last reset
    async with server.connect(stream_key, "fit") as ws:
        last = await exchange(ws, encode_chunk(99, fit_chunks[0]))
    assert isinstance(last, AckReply)
    state = describe(server, stream_key)
    fit_frames = 1 + 2 * len(fit_chunks) + 1
    assert state["counters"]["fit_frames"] == fit_frames
    assert state["counters"]["fit_samples"] == fit_frames * 64
    assert state["counters"]["transform_frames"] == len(outputs) + len(fits_b)
    assert state["counters"]["rejected_frames"] == 0
    assert 64 <= last.n_samples <= fit_frames * 64 and last.n_samples % 64 == 0


async def test_fits_crossing_the_staging_block_add_up_exactly(server: LiveServer, stream_key: str) -> None:
    """Enough fit rows from two connections to fill five 2 MiB staging blocks (16 channels: 16384 rows
    each), each folded in the statistics lane while the next chunks stage, with transforms
    on the loop meanwhile: nothing is lost or counted twice."""
    rng = np.random.default_rng(21)
    per_connection = 640  # 2 x 640 x 64 = 81920 rows = 5 blocks
    chunks = {route: [chunk(rng, 64, 16) for _ in range(per_connection)] for route in ("fit", "fit_transform")}
    probe = chunk(rng, 8, 16)

    async def fitter(route: str) -> list:
        async with server.connect(stream_key, route) as ws:
            return [await exchange(ws, encode_chunk(i, c)) for i, c in enumerate(chunks[route])]

    async def transformer() -> list:
        async with server.connect(stream_key, "transform") as ws:
            return [await exchange(ws, encode_chunk(i, probe)) for i in range(200)]

    async with server.connect(stream_key, "fit") as ws:  # bind the session to 16 channels first
        first = chunk(rng, 64, 16)
        assert isinstance(await exchange(ws, encode_chunk(0, first)), AckReply)
    fits, fit_outputs, outputs = await asyncio.gather(fitter("fit"), fitter("fit_transform"), transformer())
    assert all(isinstance(reply, AckReply) for reply in fits)
    assert all(isinstance(reply, ChunkReply) and reply.data.shape == (64, 16) for reply in fit_outputs)
    assert all(isinstance(reply, ChunkReply) and reply.data.shape == (8, 16) for reply in outputs)
    everything = np.concatenate([first, *chunks["fit"], *chunks["fit_transform"]])
    assert describe(server, stream_key)["n_samples"] == everything.shape[0] == 64 * (1 + 2 * per_connection)
    with server.http() as http:
        solved = http.post(f"/streams/{stream_key}/solve")
        assert solved.status_code == 200, solved.text
        csv = http.get(f"/streams/{stream_key}/weights").text
    W = np.loadtxt(csv.splitlines(), delimiter=",")
    np.testing.assert_allclose(W, LRR().fit(everything).weights, rtol=0, atol=1e-10)
    # the folds and the solve ran in the server's background threads, which yield the CPU to the loop
    assert len(threads_with_policy(server.pid, SCHED_IDLE)) >= 2  # the statistics lane and the solve thread


SCHED_IDLE = 5
"""Linux's scheduling policy number for SCHED_IDLE (os.SCHED_IDLE)."""


def threads_with_policy(pid: int | None, policy: int) -> list[int]:
    """Thread ids of process `pid` whose scheduling policy is `policy` (from /proc/<pid>/task/*/stat)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        if int(fields[38]) == policy:  # field 41 of stat, counted from the state (field 3)
            found.append(int(task.name))
    return found


async def test_logs_name_events_and_never_grow_per_frame(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(14)
    async with server.connect(stream_key, "fit") as ws:
        await exchange(ws, encode_chunk(0, chunk(rng, 10, 4)))
    lines_before = len(server.log_text().splitlines())
    async with server.connect(stream_key, "fit") as fit_ws, server.connect(stream_key, "transform") as tr_ws:
        for seq in range(150):
            await exchange(fit_ws, encode_chunk(seq, chunk(rng, 10, 4)))
            await exchange(tr_ws, encode_chunk(seq, chunk(rng, 10, 4)))
            await exchange(tr_ws, b"\xc1")  # rejected frames are counted, not logged
    new_lines = server.log_text().splitlines()[lines_before:]
    assert len(new_lines) < 20, new_lines  # connection open/close lines, not 450 frame lines
    created = [line for line in server.log_text().splitlines() if f'"key":"{stream_key}"' in line]
    assert created and json.loads(created[0])["event"] == "session_created"
    assert all(json.loads(line) for line in new_lines if line.startswith("{"))
