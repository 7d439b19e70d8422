"""Persistence against the real server: graceful restarts, kill -9, corrupt files, the file format."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from live_server import LiveServer, exchange
from websockets.exceptions import ConnectionClosed

from lrr_service.core.codec import AckReply, ChunkReply, encode_chunk
from lrr_service.core.weights_csv import format_weights_csv
from lrr_service.service.persistence import CheckpointStore


def weights(n: int, seed: int) -> np.ndarray:
    W = np.random.default_rng(seed).standard_normal((n, n)) / 5
    np.fill_diagonal(W, 0.0)
    return W


async def fit_and_solve(server: LiveServer, key: str, n_channels: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    async with server.connect(key, "fit") as ws:
        for seq in range(3):
            data = rng.standard_normal((100, n_channels)) + rng.standard_normal((100, 1))
            assert isinstance(await exchange(ws, encode_chunk(seq, data)), AckReply)
    with server.http() as http:
        response = http.post(f"/streams/{key}/solve")
        assert response.status_code == 200, response.text
        return response.json()


async def transform(server: LiveServer, key: str, X: np.ndarray) -> ChunkReply:
    async with server.connect(key, "transform") as ws:
        reply = await exchange(ws, encode_chunk(0, X))
    assert isinstance(reply, ChunkReply)
    return reply


def snapshot(server: LiveServer, key: str) -> tuple[dict, bytes | None]:
    """(GET /streams/{key} without counters and the live status, the weights CSV or None)."""
    with server.http() as http:
        body = http.get(f"/streams/{key}").json()
        csv = http.get(f"/streams/{key}/weights")
    body.pop("counters")
    body.pop("solve_in_flight")
    body.pop("status")
    return body, csv.content if csv.status_code == 200 else None


def wait_until_solved(server: LiveServer, key: str, n_samples: int) -> tuple[dict, bytes | None]:
    """Poll until the server reports that the background solves reflect `n_samples` and none is pending;
    the snapshot then. Bounded by the suite's per-test timeout (pytest-timeout), not by the wall clock."""
    with server.http() as http:
        while True:
            body = http.get(f"/streams/{key}").json()
            if body["n_samples_solved"] == n_samples and not body["solve_in_flight"]:
                return snapshot(server, key)
            time.sleep(0.02)


def wait_for_log(server: LiveServer, needle: str) -> None:
    """Poll the server log until it reports `needle` (bounded by pytest-timeout)."""
    while needle not in server.log_text():
        time.sleep(0.02)


@pytest.mark.parametrize("stop", ["stop", "interrupt"])
async def test_graceful_restart_restores_every_session(process_factory, stop: str) -> None:
    server = process_factory()
    await fit_and_solve(server, "fitted", 6, seed=1)
    with server.http() as http:
        http.put("/streams/configured", json={"ridge_lambda": 0.25, "block_size": 2}).raise_for_status()
        http.put("/streams/uploaded/weights", content=format_weights_csv(weights(5, 2))).raise_for_status()
    X = np.random.default_rng(3).standard_normal((8, 6))
    before = {key: snapshot(server, key) for key in ("fitted", "configured", "uploaded")}
    output_before = (await transform(server, "fitted", X)).data.copy()

    getattr(server, stop)()  # SIGTERM or SIGINT: checkpoints every changed session
    assert '"event":"service_stopped"' in server.log_text()
    server.start()

    for key, expected in before.items():
        assert snapshot(server, key) == expected, key
    np.testing.assert_array_equal((await transform(server, "fitted", X)).data, output_before)
    # the statistics came back too: more fit data adds to them
    solved = await fit_and_solve(server, "fitted", 6, seed=4)
    assert solved["n_samples_solved"] == 600


async def test_shutdown_with_a_connected_client_closes_1012_and_keeps_its_chunks(server_factory) -> None:
    server = server_factory(env={"LRR_CHECKPOINT_SECONDS": "3600"})
    rng = np.random.default_rng(10)
    async with server.connect("live", "fit") as ws:
        ack = await exchange(ws, encode_chunk(0, rng.standard_normal((70, 4))))
        await asyncio.to_thread(server.stop)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert ack.n_samples == 70
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # service restart
    server.start()
    assert snapshot(server, "live")[0]["n_samples"] == 70


async def test_shutdown_writes_only_the_sessions_changed_since_their_checkpoint(server_factory) -> None:
    server = server_factory(env={"LRR_CHECKPOINT_SECONDS": "3600"})
    rng = np.random.default_rng(12)
    with server.http() as http:
        http.put("/streams/clean", json={}).raise_for_status()  # on disk before the answer, unchanged since
    async with server.connect("busy", "fit") as ws:
        assert isinstance(await exchange(ws, encode_chunk(0, rng.standard_normal((30, 4)))), AckReply)
    X = rng.standard_normal((5, 3))
    await transform(server, "viewer", X)  # created and bound by a transform chunk
    server.stop()
    log = server.log_text()
    shutdown = [json.loads(line)["key"] for line in log.splitlines() if '"reason":"shutdown"' in line]
    assert sorted(shutdown) == ["busy", "viewer"]
    stopped = [json.loads(line) for line in log.splitlines() if '"event":"service_stopped"' in line]
    assert stopped[-1]["checkpointed"] == 2
    server.start()
    with server.http() as http:
        restored = {s["key"]: (s["n_channels"], s["n_samples"]) for s in http.get("/streams").json()["streams"]}
    assert restored == {"busy": (4, 30), "clean": (None, 0), "viewer": (3, 0)}


async def test_uploaded_weights_and_settings_survive_kill_9(process_factory) -> None:
    server = process_factory(env={"LRR_CHECKPOINT_SECONDS": "3600"})
    W = weights(4, 5)
    with server.http() as http:
        http.put("/streams/rig", json={"ridge_lambda": 1.5, "init_default": "car"}).raise_for_status()
        uploaded = http.put("/streams/rig/weights", content=format_weights_csv(W)).json()
        http.put("/streams/other", json={"min_group_size": 4}).raise_for_status()
    server.kill()
    server.start()
    with server.http() as http:
        rig = http.get("/streams/rig").json()
        other = http.get("/streams/other").json()
        csv = http.get("/streams/rig/weights").text
    assert rig["settings"]["ridge_lambda"] == 1.5 and rig["settings"]["init_default"] == "car"
    assert rig["weights_source"] == "uploaded" and rig["weights_version"] == uploaded["weights_version"]
    assert np.loadtxt(io.StringIO(csv), delimiter=",").tobytes() == W.tobytes()
    assert other["settings"]["min_group_size"] == 4
    X = np.random.default_rng(6).standard_normal((5, 4))
    np.testing.assert_allclose((await transform(server, "rig", X)).data, X @ (np.eye(4) - W), rtol=1e-12)


async def test_solved_state_is_checkpointed_periodically(process_factory) -> None:
    server = process_factory(env={"LRR_CHECKPOINT_SECONDS": "0.2", "LRR_SOLVE_EVERY_SAMPLES": "100"})
    rng = np.random.default_rng(7)
    async with server.connect("auto", "fit") as ws:
        for seq in range(5):
            await exchange(ws, encode_chunk(seq, rng.standard_normal((100, 5)) + rng.standard_normal((100, 1))))
    expected = wait_until_solved(server, "auto", 500)
    version = expected[0]["weights_version"]
    periodic = '"event":"checkpoint","key":"auto","reason":"periodic","n_samples":500'
    wait_for_log(server, f'{periodic},"weights_version":{version}')
    server.kill()
    server.start()
    restored = snapshot(server, "auto")
    assert restored[0]["n_samples"] == 500 and restored[0]["weights_source"] == "fitted"
    assert restored == expected


async def test_deleted_sessions_stay_deleted(process_factory) -> None:
    server = process_factory()
    with server.http() as http:
        http.put("/streams/gone", json={}).raise_for_status()
        assert (server.state_dir / "gone.lrr.npz").exists()
        assert http.delete("/streams/gone").status_code == 204
    assert not (server.state_dir / "gone.lrr.npz").exists()
    server.kill()
    server.start()
    with server.http() as http:
        assert http.get("/streams/gone").status_code == 404


def test_corrupt_files_are_moved_aside_and_the_server_starts(server_factory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = server_factory(state_dir=state)
    with server.http() as http:
        http.put("/streams/good/weights", content=format_weights_csv(weights(3, 8))).raise_for_status()
        http.put("/streams/victim", json={}).raise_for_status()
    server.stop()
    (state / "garbage.lrr.npz").write_bytes(b"this is not a zip file")
    victim = state / "victim.lrr.npz"
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    (state / "misnamed.lrr.npz").write_bytes((state / "good.lrr.npz").read_bytes())  # holds key "good"

    server.start()
    with server.http() as http:
        keys = [s["key"] for s in http.get("/streams").json()["streams"]]
        assert http.get("/ready").status_code == 200
    assert keys == ["good"]
    for name in ("garbage", "victim", "misnamed"):
        assert not (state / f"{name}.lrr.npz").exists()
        assert (state / f"{name}.lrr.npz.corrupt").exists()
    log = server.log_text()
    assert log.count('"event":"checkpoint_corrupt"') == 3


def write_checkpoint(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """A well-formed npz checkpoint holding exactly `meta` (whatever it says) and `arrays`."""
    entries = {"engine__" + name: arr for name, arr in arrays.items()}
    with open(path, "wb") as handle:
        np.savez(handle, __meta__=np.array(json.dumps(meta)), **entries)


def fitted_checkpoint(key: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The meta document and arrays the service writes for a fitted 3-channel session."""
    from lrr_service.core import LRR

    engine = LRR().fit(np.random.default_rng(11).standard_normal((50, 3)))
    engine_meta, arrays = engine.snapshot()
    meta = {
        "format": "lrr-service-session/1",
        "key": key,
        "engine": engine_meta,
        "service": {"created_at": 1.5, "counters": {"fit_frames": 1}},
        "arrays": sorted(arrays),
    }
    return meta, arrays


def _drop_engine(meta: dict) -> None:
    del meta["engine"]


BAD_METADATA = {
    "missing engine": _drop_engine,
    "engine not a dict": lambda meta: meta.update(engine=5),
    "counters with null": lambda meta: meta["service"]["counters"].update(fit_frames=None),
    "created_at a list": lambda meta: meta["service"].update(created_at=[1]),
    "service a string": lambda meta: meta.update(service="abc"),
    "n_channels 10**6": lambda meta: meta["engine"].update(n_channels=10**6),
}


@pytest.mark.parametrize("damage", list(BAD_METADATA), ids=list(BAD_METADATA))
def test_bad_metadata_is_moved_aside_and_the_server_starts(server_factory, tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    write_checkpoint(state / "good.lrr.npz", *fitted_checkpoint("good"))
    meta, arrays = fitted_checkpoint("bad")
    BAD_METADATA[damage](meta)
    write_checkpoint(state / "bad.lrr.npz", meta, arrays)

    server = server_factory(state_dir=state)
    with server.http() as http:
        assert http.get("/ready").status_code == 200
        streams = http.get("/streams").json()["streams"]
    assert [(s["key"], s["n_channels"], s["n_samples"]) for s in streams] == [("good", 3, 50)]
    assert not (state / "bad.lrr.npz").exists()
    assert (state / "bad.lrr.npz.corrupt").exists()
    assert server.log_text().count('"event":"checkpoint_corrupt"') == 1


def test_checkpoint_file_is_an_npz_without_pickles(tmp_path: Path, server_factory) -> None:
    server = server_factory(state_dir=tmp_path / "state")
    W = weights(3, 9)
    with server.http() as http:
        http.put("/streams/fmt/weights", content=format_weights_csv(W)).raise_for_status()
    path = tmp_path / "state" / "fmt.lrr.npz"
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["__meta__"][()]))
        assert archive["engine__weights"].tobytes() == W.tobytes()
    assert meta["format"] == "lrr-service-session/1" and meta["key"] == "fmt"
    assert meta["engine"]["weights_source"] == "uploaded"
    assert not list((tmp_path / "state").glob("*.tmp"))


# -- the store itself (no server needed) ----------------------------------------------------------


def test_store_save_load_round_trip_and_stale_temp_cleanup(tmp_path: Path) -> None:
    from lrr_service.service.persistence import SessionRecord

    store = CheckpointStore(tmp_path)
    store.ensure_dir()
    record = SessionRecord("k-1", {"format": "x", "n": 1}, {"cxx": np.eye(2)}, {"counters": {"fit_frames": 3}})
    path = store.save(record)
    assert path.name == "k-1.lrr.npz"
    loaded = store.load(path)
    assert loaded.key == "k-1" and loaded.engine_meta == {"format": "x", "n": 1}
    assert loaded.arrays["cxx"].tobytes() == np.eye(2).tobytes()
    assert loaded.service_meta == {"counters": {"fit_frames": 3}}
    stale = tmp_path / "k-1.lrr.npz.abc.tmp"
    stale.write_bytes(b"half written")
    store.ensure_dir()
    assert not stale.exists() and path.exists()
