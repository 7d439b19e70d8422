"""The project's clients against a real cluster: the direct path through a failover, `lrr stream --direct`
with its worker killed mid-run, and auth and limits through the proxy and on the direct path."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import websockets
from live_server import HTTP, wait_for_session
from websockets.exceptions import ConnectionClosed, InvalidStatus

from lrr_service.clients import LRRClient
from lrr_service.clients.local_server import ClusterProcess, clean_environment

try:
    import test_lsl_bridge as lsl
except ImportError:
    from tests import test_lsl_bridge as lsl

N_CHANNELS = 8
TOKEN = "cluster-test-token"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    with ClusterProcess(tmp_path / "state", workers=2) as running:
        yield running


def _chunk(seed: int, n: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, N_CHANNELS)) + 3 * rng.standard_normal((n, 1))).astype(np.float32)


async def test_the_direct_path_follows_its_key_through_a_failover(cluster: ClusterProcess) -> None:
    key = "direct-failover"
    weights = np.random.default_rng(3).uniform(-0.2, 0.2, (N_CHANNELS, N_CHANNELS))
    np.fill_diagonal(weights, 0.0)
    async with LRRClient(cluster.url, key, direct=True) as client:
        await client.put_weights(weights)
        chunk = _chunk(1)
        expected = chunk - (chunk.astype(np.float64) @ weights).astype(np.float32)
        first = await client.transform(chunk)
        before = client.channel("transform").url
        owner = cluster.owner_index(key)
        os.kill(cluster.worker_pid(owner), signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            answers.append(await client.transform(chunk))
        after = client.channel("transform").url
        reconnects = client.reconnects
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-5)
    for answer in answers:
        np.testing.assert_array_equal(answer, first)
    assert reconnects >= 1
    assert before.startswith(cluster.worker_url(owner).replace("http", "ws"))
    assert after != before or reconnects >= 2  # moved to the other worker (and maybe back once restarted)


def test_lrr_stream_direct_rides_through_the_death_of_its_worker(cluster: ClusterProcess, tmp_path: Path) -> None:
    key = "cli-failover"
    rng = np.random.default_rng(0)
    recording = (rng.standard_normal((6000, N_CHANNELS)) + 3 * rng.standard_normal((6000, 1))).astype(np.float32)
    np.save(tmp_path / "rec.npy", recording)
    lrr = Path(sys.executable).with_name("lrr")
    command = [
        str(lrr),
        "stream",
        str(tmp_path / "rec.npy"),
        "--key",
        key,
        "--url",
        cluster.url,
        "--direct",
        "--fit-then-transform",
        "--chunk",
        "30",
        "--rate",
        "realtime",
        "--sample-rate",
        "3000",
        "-o",
        str(tmp_path / "out.npy"),
    ]
    process = subprocess.Popen(command, env=clean_environment({}), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # 2 s of fitting at real time: kill its worker in the middle, once the stream flows (a first connection
    # that fails is reported at once, by design, and on a loaded machine lrr can take a second to start)
    fitted = "held fitted samples"
    wait_for_session(cluster.url, key, lambda held: held["n_samples"] > 0, fitted, while_running=process)
    os.kill(cluster.worker_pid(cluster.owner_index(key)), signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    out = np.load(tmp_path / "out.npy")
    assert out.shape == recording.shape and np.isfinite(out).all()
    assert np.abs(out).mean() < 0.5 * np.abs(recording).mean()  # the common noise is gone: weights were fitted
    assert b"6000 samples x 8 channels" in stdout


async def test_clients_ride_through_haproxy_dying_and_coming_back(cluster: ClusterProcess) -> None:
    """Through the proxy and on the direct path (whose owner lookups go through the proxy), every frame
    is answered across HAProxy's death and its restart by the launcher."""
    async with (
        LRRClient(cluster.url, "via-proxy", allow_identity=True) as proxied,
        LRRClient(cluster.url, "via-direct", direct=True, allow_identity=True) as direct,
    ):
        chunk = _chunk(2)
        first = [await proxied.transform(chunk), await direct.transform(chunk)]
        old_proxy = int(cluster.topology()["haproxy_pid"])
        os.kill(old_proxy, signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            answers.append(await proxied.transform(chunk))
            answers.append(await direct.transform(chunk))
        reconnects = proxied.reconnects
    assert int(cluster.topology()["haproxy_pid"]) != old_proxy
    assert reconnects >= 1 and len(answers) > 10
    for answer in answers:
        np.testing.assert_array_equal(answer, first[0])


def test_lrr_lsl_direct_rides_through_the_death_of_its_worker(cluster: ClusterProcess) -> None:
    """Every sample of the LSL input comes out, in order, across a kill -9 of the worker that owns the key."""
    key = "lsl-failover"
    data, stamps = lsl.recording(1500)
    name = f"lrr-test-{uuid.uuid4().hex[:12]}"
    outlet = lsl.make_input_outlet(name)
    bridge = lsl.start_bridge(name, cluster.url, key, "--direct")
    try:
        inlet = lsl.connect_output(name, outlet)
        lsl.push_recording(outlet, data[:750], stamps[:750])
        _, before = lsl.pull_samples(inlet, 750)
        os.kill(cluster.worker_pid(cluster.owner_index(key)), signal.SIGKILL)
        lsl.push_recording(outlet, data[750:], stamps[750:])
        output, after = lsl.pull_samples(inlet, 750)
    finally:
        code, out, err = lsl.stop_bridge(bridge)
    assert code == 0, err
    np.testing.assert_array_equal(np.concatenate([before, after]), stamps)
    assert np.isfinite(output).all()
    assert json.loads(out)["samples_out"] == 1500


@pytest.fixture
def guarded_cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    env = {"LRR_API_TOKEN": TOKEN, "LRR_MAX_FRAME_BYTES": "4096", "LRR_MAX_CONNECTIONS": "2"}
    with ClusterProcess(tmp_path / "state", workers=2, env=env) as running:
        yield running


async def test_auth_and_limits_hold_through_the_proxy_and_on_the_direct_path(guarded_cluster: ClusterProcess) -> None:
    cluster = guarded_cluster
    key = "guarded"
    assert HTTP.get(f"{cluster.url}/streams").status_code == 401
    assert HTTP.get(f"{cluster.url}/streams", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    owner = cluster.owner_index(key)
    direct_ws = cluster.worker_url(owner).replace("http", "ws")
    for base in (cluster.ws_url, direct_ws):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(f"{base}/ws/{key}/fit"):
                pass
        assert refused.value.response.status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with LRRClient(cluster.url, key, TOKEN, direct=True) as client:
        ack = await client.fit(_chunk(0))
    assert ack.n_samples == 30
    for base in (cluster.ws_url, direct_ws):  # a frame over LRR_MAX_FRAME_BYTES closes the socket with 1009
        async with websockets.connect(f"{base}/ws/{key}/fit", additional_headers=auth, max_size=None) as ws:
            await ws.send(b"\x00" * 8192)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1009
    held = [await websockets.connect(f"{cluster.ws_url}/ws/{key}/fit", additional_headers=auth) for _ in range(2)]
    try:
        with pytest.raises(InvalidStatus) as busy:
            async with websockets.connect(f"{cluster.ws_url}/ws/{key}/transform", additional_headers=auth):
                pass
        assert busy.value.response.status_code == 503
        assert b"too_many_connections" in busy.value.response.body
    finally:
        for ws in held:
            await ws.close()
