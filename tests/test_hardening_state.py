"""Hardening of the state directory (issue-10 defects 7 and 9), against the real server.

* 7: a read-only state dir made DELETE answer a bare 500 after forgetting the session (its file
  stayed, so it came back on restart), and made start-up crash on a stale `*.tmp` file or a corrupt
  checkpoint it could not delete or move; a state dir removed under a running server made every
  checkpoint fail. The fixed server answers 500 `checkpoint_failed` and keeps the session, starts
  (logging the corrupt file with `moved_to` null) and recreates a missing state dir.
* 9: restore trusted the engine metadata (negative or huge `weights_version` / `n_samples`,
  non-finite `stats_weight`, ...) and opened any file named `*.lrr.npz`, so a FIFO hung start-up
  and a symlink pulled in a file from anywhere. The fixed server moves such files to `*.corrupt`
  (`checkpoint_corrupt`) and serves the other sessions.

The read-only state dir is a tmpfs remounted read-only (tests run as root), as in
tests/test_faults_state_dir.py. Start-up bounds are liveness bounds, not performance claims.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from lrr_service.core import LRR
from lrr_service.core.codec import ChunkReply, encode_chunk
from lrr_service.core.weights_csv import format_weights_csv

try:
    from in_process import InProcessServer
    from live_server import LiveServer, exchange
except ImportError:
    from tests.in_process import InProcessServer
    from tests.live_server import LiveServer, exchange

pytestmark = pytest.mark.timeout(90)

START_S = 15.0
"""Liveness bound for start-up (a healthy start takes a second or two; the broken one never finishes)."""
N = 3


def log_events(server: LiveServer, event: str) -> list[dict]:
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def error_code(response: httpx.Response) -> str:
    """The `detail.code` of a JSON error response; AssertionError showing the response otherwise."""
    try:
        return response.json()["detail"]["code"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(f"not a JSON error body: HTTP {response.status_code} {response.text[:300]!r}") from None


def weights(seed: int) -> np.ndarray:
    W = np.random.default_rng(seed).uniform(-0.3, 0.3, (N, N))
    np.fill_diagonal(W, 0.0)
    return W


def served_weights(server: LiveServer, key: str) -> np.ndarray:
    with server.http() as http:
        response = http.get(f"/streams/{key}/weights")
    assert response.status_code == 200, response.text
    return np.loadtxt(response.text.splitlines(), delimiter=",")


# -- 7: read-only and vanished state dirs -----------------------------------------------------------


@pytest.fixture
def read_only_capable(tmp_path: Path) -> Iterator[tuple[InProcessServer, Path, Callable[[], None], Callable[[], None]]]:
    """(server not started, state dir on a fresh tmpfs, make_read_only, make_writable); cleaned up after."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "lrr-hardening-state", str(mount)], check=True)
    server = InProcessServer(mount / "state")

    def make_read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)

    def make_writable() -> None:
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)

    try:
        yield server, mount / "state", make_read_only, make_writable
    finally:
        server.stop()
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=False)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_delete_on_a_read_only_state_dir_answers_checkpoint_failed_and_keeps_the_session(read_only_capable) -> None:
    server, state, make_read_only, make_writable = read_only_capable
    server.start()
    W = weights(1)
    with server.http() as http:
        assert http.put("/streams/keep/weights", content=format_weights_csv(W)).status_code == 200
    make_read_only()
    with server.http() as http:
        response = http.delete("/streams/keep")
    assert response.status_code == 500, response.text
    assert error_code(response) == "checkpoint_failed"
    with server.http() as http:
        assert http.get("/streams/keep").status_code == 200
    assert (state / "keep.lrr.npz").exists()
    assert served_weights(server, "keep").tobytes() == W.tobytes()
    make_writable()
    with server.http() as http:  # once writable the delete goes through
        assert http.delete("/streams/keep").status_code == 204
    assert not (state / "keep.lrr.npz").exists()


def prepare_read_only_start(server: LiveServer, W: np.ndarray) -> None:
    """Run the server once to write a real checkpoint of `kept`, then stop it."""
    server.start()
    with server.http() as http:
        assert http.put("/streams/kept/weights", content=format_weights_csv(W)).status_code == 200
    server.stop()


def test_start_up_on_a_read_only_state_dir_with_a_stale_temp_file_restores_the_sessions(read_only_capable) -> None:
    server, state, make_read_only, _ = read_only_capable
    W = weights(2)
    prepare_read_only_start(server, W)
    (state / "kept.lrr.npz.0123456789abcdef0123456789abcdef.tmp").write_bytes(b"half written")
    make_read_only()
    server.start(timeout=START_S)
    with server.http() as http:
        assert http.get("/health").status_code == 200
        assert http.get("/ready").status_code == 200
    assert served_weights(server, "kept").tobytes() == W.tobytes()


def test_start_up_on_a_read_only_state_dir_with_a_corrupt_file_logs_it_unmoved(read_only_capable) -> None:
    server, state, make_read_only, _ = read_only_capable
    W = weights(3)
    prepare_read_only_start(server, W)
    (state / "junk.lrr.npz").write_bytes(b"this is not a zip file")
    make_read_only()
    server.start(timeout=START_S)
    with server.http() as http:
        assert http.get("/health").status_code == 200
        assert [s["key"] for s in http.get("/streams").json()["streams"]] == ["kept"]
    assert served_weights(server, "kept").tobytes() == W.tobytes()
    assert (state / "junk.lrr.npz").exists()
    corrupt = log_events(server, "checkpoint_corrupt")
    assert corrupt and all(event.get("moved_to", "absent") is None for event in corrupt), corrupt


def test_a_state_dir_removed_while_running_is_recreated_by_the_next_checkpoint(process_factory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = process_factory(state_dir=state)
    with server.http() as http:
        assert http.put("/streams/before", json={}).status_code == 201
    shutil.rmtree(state)
    W = weights(4)
    with server.http() as http:
        created = http.put("/streams/after", json={"ridge_lambda": 0.5})
        uploaded = http.put("/streams/after/weights", content=format_weights_csv(W))
    assert created.status_code == 201, created.text
    assert uploaded.status_code == 200, uploaded.text
    assert (state / "after.lrr.npz").is_file()
    server.kill()
    server.start()
    assert served_weights(server, "after").tobytes() == W.tobytes()


# -- 9: checkpoint metadata and file types are validated before use -------------------------------------


def write_checkpoint(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """A well-formed npz checkpoint holding exactly `meta` (whatever it says) and `arrays`."""
    with open(path, "wb") as handle:
        np.savez(handle, __meta__=np.array(json.dumps(meta)), **{"engine__" + k: v for k, v in arrays.items()})


def fitted_engine() -> LRR:
    return LRR().fit(
        np.random.default_rng(11).standard_normal((50, N)) + np.random.default_rng(12).standard_normal((50, 1))
    )


def fitted_checkpoint(key: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The meta document and arrays the service writes for a fitted 3-channel session."""
    engine_meta, arrays = fitted_engine().snapshot()
    meta = {
        "format": "lrr-service-session/1",
        "key": key,
        "engine": engine_meta,
        "service": {"created_at": 1.5, "counters": {"fit_frames": 1}},
        "arrays": sorted(arrays),
    }
    return meta, {name: np.array(arr) for name, arr in arrays.items()}


async def assert_good_session_serves(server: LiveServer) -> None:
    """The untouched session `good` was restored and transforms like the engine it was saved from."""
    X = np.random.default_rng(13).standard_normal((6, N))
    async with server.connect("good", "transform") as ws:
        reply = await exchange(ws, encode_chunk(0, X))
    assert isinstance(reply, ChunkReply), reply
    np.testing.assert_allclose(reply.data, fitted_engine().transform(X), rtol=1e-12, atol=1e-12)


# Values the old restore took as they came (int() of floats, bools and strings; no range checks).
BAD_ENGINE_FIELDS = {
    "weights_version": [-1, 2**53 + 1, 1.5, True, "7"],
    "n_samples": [-5, 2**62 + 1, 50.5, "50"],
    "n_samples_solved": [-1, 2**62 + 1, 2.5, "3"],
    "stats_weight": [float("nan"), float("inf"), -1.0, "50"],
}


@pytest.mark.parametrize("field", list(BAD_ENGINE_FIELDS))
async def test_checkpoints_with_out_of_range_engine_metadata_are_moved_aside(
    server_factory, tmp_path: Path, field: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    write_checkpoint(state / "good.lrr.npz", *fitted_checkpoint("good"))
    bad_keys = {}
    for i, value in enumerate(BAD_ENGINE_FIELDS[field]):
        key = f"bad-{i}"
        meta, arrays = fitted_checkpoint(key)
        meta["engine"][field] = value
        write_checkpoint(state / f"{key}.lrr.npz", meta, arrays)
        bad_keys[key] = value
    server = server_factory(state_dir=state)
    with server.http() as http:
        restored = [s["key"] for s in http.get("/streams").json()["streams"]]
    wrongly_restored = {key: bad_keys[key] for key in restored if key in bad_keys}
    assert restored == ["good"], f"restored despite a bad {field}: {wrongly_restored}"
    for key in bad_keys:
        assert not (state / f"{key}.lrr.npz").exists()
        assert (state / f"{key}.lrr.npz.corrupt").exists(), key
    assert len(log_events(server, "checkpoint_corrupt")) == len(bad_keys)
    await assert_good_session_serves(server)


def make_fifo(path: Path, elsewhere: Path) -> None:
    os.mkfifo(path)


def make_directory(path: Path, elsewhere: Path) -> None:
    path.mkdir()
    (path / "inner").write_bytes(b"x")


def make_symlink(path: Path, elsewhere: Path) -> None:
    """A link to a perfectly valid checkpoint outside the state dir (the old restore adopted it)."""
    elsewhere.mkdir()
    write_checkpoint(elsewhere / path.name, *fitted_checkpoint(path.name.removesuffix(".lrr.npz")))
    path.symlink_to(elsewhere / path.name)


NON_REGULAR = {"fifo": make_fifo, "directory": make_directory, "symlink": make_symlink}


@pytest.mark.parametrize("kind", list(NON_REGULAR))
async def test_a_non_regular_checkpoint_file_is_moved_aside_without_being_opened(tmp_path: Path, kind: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    write_checkpoint(state / "good.lrr.npz", *fitted_checkpoint("good"))
    odd = state / "odd.lrr.npz"
    NON_REGULAR[kind](odd, tmp_path / "elsewhere")
    server = InProcessServer(state)
    try:
        server.start(timeout=START_S)  # a FIFO opened for reading blocks start-up forever
        with server.http() as http:
            assert [s["key"] for s in http.get("/streams").json()["streams"]] == ["good"]
        await assert_good_session_serves(server)
    finally:
        server.stop()
    assert not os.path.lexists(odd)
    assert os.path.lexists(state / "odd.lrr.npz.corrupt")
    corrupt = log_events(server, "checkpoint_corrupt")
    reasons = [event.get("reason") for event in corrupt]
    assert len(reasons) == 1 and "not a regular file" in reasons[0], reasons
    if kind == "symlink":
        assert (tmp_path / "elsewhere" / "odd.lrr.npz").is_file()  # the link's target is left alone
