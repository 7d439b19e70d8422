"""Failover in a real cluster: a worker killed with -9, a worker paused past its lease, Redis stopped.

Each test has a cluster of its own (the launcher starts a killed worker again, which moves keys back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed

from lrr_service.clients import LRRClient
from lrr_service.clients.local_server import ClusterProcess
from lrr_service.core.vocabulary import CloseCode
from lrr_service.service.launcher import redis_command

N_CHANNELS = 8


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    with ClusterProcess(tmp_path / "state", workers=2, env={"LRR_CHECKPOINT_SECONDS": "0.5"}) as running:
        yield running


def _chunk(seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, N_CHANNELS)) + 3 * rng.standard_normal((n, 1))).astype(np.float32)


def _random_weights(seed: int) -> np.ndarray:
    weights = np.random.default_rng(seed).uniform(-0.3, 0.3, (N_CHANNELS, N_CHANNELS))
    np.fill_diagonal(weights, 0.0)
    return weights


async def _stream_until(client: LRRClient, stop: asyncio.Event) -> tuple[int, int]:
    """Fit and transform chunks until `stop`; returns (frames sent, frames answered), checking each answer."""
    sent = answered = 0
    seed = 1000
    while not stop.is_set():
        chunk = _chunk(seed, 30)
        sent += 2
        ack = await client.fit(chunk)
        out = await client.transform(chunk)
        assert ack.n_samples > 0 and out.shape == chunk.shape
        answered += 2
        seed += 1
        await asyncio.sleep(0.005)
    return sent, answered


async def test_kill_9_of_the_owner_moves_the_key_with_its_weights_and_every_frame_is_answered(
    cluster: ClusterProcess,
) -> None:
    key = "failover-rig"
    uploaded = _random_weights(1)
    async with LRRClient(cluster.url, key) as client:
        await client.put_weights(uploaded)
        for seed in range(4):
            await client.fit(_chunk(seed))
        before = await client.info()
        assert await _stored(cluster, key, "n_samples", 1200) == 1200  # a periodic checkpoint wrote the fit
        owner = cluster.owner_index(key)
        stop = asyncio.Event()
        streaming = asyncio.create_task(_stream_until(client, stop))
        await asyncio.sleep(0.5)
        os.kill(cluster.worker_pid(owner), signal.SIGKILL)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 4:
            await asyncio.sleep(0.1)
        stop.set()
        sent, answered = await asyncio.wait_for(streaming, 30)
        after = await client.info()
        weights = await client.get_weights()
        reconnects = client.reconnects
    assert sent == answered and answered > 20
    assert reconnects >= 1
    np.testing.assert_array_equal(weights, uploaded)  # bit-exact: the CSV round trip is exact
    assert after["weights_source"] == "uploaded" and after["weights_version"] == before["weights_version"]
    assert after["n_samples"] >= before["n_samples"] == 1200


async def test_a_paused_owner_that_comes_back_is_fenced_out_and_its_sockets_closed(cluster: ClusterProcess) -> None:
    key = "split-rig"
    async with LRRClient(cluster.url, key) as client:
        await client.put_weights(_random_weights(2))
        owner = cluster.owner_index(key)
        owner_ws = cluster.worker_url(owner).replace("http", "ws")
        async with websockets.connect(f"{owner_ws}/ws/{key}/fit", max_size=None) as stale_socket:
            await client.fit(_chunk(1))  # the owner holds unsaved fit statistics when it is paused
            os.kill(cluster.worker_pid(owner), signal.SIGSTOP)
            try:
                await asyncio.sleep(2.5)  # past the 1.5 s lease: another worker may take the key
                winner = _random_weights(3)
                reply = await client.put_weights(winner)  # through the proxy: the other worker, durable
            finally:
                os.kill(cluster.worker_pid(owner), signal.SIGCONT)
            with pytest.raises(ConnectionClosed):
                await stale_socket.send(np.zeros(1).tobytes())  # any frame: the resumed worker no longer serves
                await asyncio.wait_for(stale_socket.recv(), 5)
            assert stale_socket.close_code == CloseCode.NOT_OWNER
        await asyncio.sleep(1.5)  # the resumed worker's periodic checkpoint would run now: it is refused
        stored = await client.get_weights()
        info = await client.info()
    assert reply["weights_version"] == info["weights_version"]
    np.testing.assert_array_equal(stored, winner)
    log = cluster.log_text()
    assert '"event":"lease_lost"' in log.replace(" ", "") or "no longer owns" in log


async def test_redis_stopped_and_started_again_loses_no_durable_session(cluster: ClusterProcess) -> None:
    key = "store-rig"
    uploaded = _random_weights(4)
    async with LRRClient(cluster.url, key) as client:
        await client.put_weights(uploaded)
        chunk = _chunk(7, 30)
        expected = await client.transform(chunk)
        redis_pid = cluster.redis_pid()
        command = redis_command(cluster.port + cluster.workers + 1, cluster.state_dir / "redis")
        subprocess.run(["kill", "-TERM", str(redis_pid)], check=True)
        await asyncio.sleep(1.0)
        served = [await client.transform(chunk) for _ in range(20)]  # served from memory meanwhile
        await asyncio.sleep(2.0)  # past the lease time: still served, nobody else can take the key
        served += [await client.transform(chunk) for _ in range(5)]
        with pytest.raises(Exception) as refused:
            await client.put_weights(_random_weights(5))
        in_memory = (await client.info())["weights_version"]
        restarted = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            # Redis is back; the next periodic checkpoint writes what was refused (waited for, not timed)
            assert await _stored(cluster, key, "weights_version", in_memory) == in_memory
            listed = await client.sessions()
            os.kill(cluster.worker_pid(cluster.owner_index(key)), signal.SIGKILL)  # what is left is what Redis holds
            stored = await client.get_weights()
        finally:
            restarted.terminate()
            restarted.wait(10)
    for out in served:
        np.testing.assert_array_equal(out, expected)
    assert getattr(refused.value, "code", None) == "store_unavailable"
    assert key in [s["key"] for s in listed]
    np.testing.assert_array_equal(stored, _random_weights(5))  # applied in memory, then made durable


async def _stored(cluster: ClusterProcess, key: str, field: str, wanted: int, timeout: float = 30.0) -> int | None:
    """`field` of `key`'s session summary in Redis itself, once it is `wanted` (or whatever it is at
    `timeout`); read with redis-py, as the workers write it at each checkpoint."""
    store = redis.Redis(port=cluster.port + cluster.workers + 1)
    version = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                summary = store.hget("lrr:summaries", key)
                version = json.loads(summary)[field] if summary else None
                if version == wanted:
                    break
            await asyncio.sleep(0.1)
    finally:
        store.close()
    return version
