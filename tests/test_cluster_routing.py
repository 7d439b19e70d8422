"""A cluster of two workers behind the real HAProxy, sessions in the real Redis: routing, ownership, direct path."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from lrr_service.clients import LRRClient
from lrr_service.clients.local_server import ClusterProcess
from lrr_service.core.vocabulary import CloseCode

N_CHANNELS = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    with ClusterProcess(tmp_path_factory.mktemp("cluster") / "state", workers=2) as running:
        yield running


def _data(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    common = rng.standard_normal((n, 1))
    return (rng.standard_normal((n, N_CHANNELS)) + 3 * common).astype(np.float32)


async def test_fit_transform_and_rest_of_one_key_reach_one_worker(cluster: ClusterProcess) -> None:
    key = "affine-rig"
    async with LRRClient(cluster.url, key) as client:
        for seed in range(4):
            await client.fit(_data(seed))
        solved = await client.solve()
        chunk = _data(99, 30)
        out = await client.transform(chunk)
        info = await client.info()
    weights = await _weights(cluster.url, key)
    assert solved["n_samples"] == 2400 and info["weights_version"] == solved["weights_version"] >= 1
    np.testing.assert_allclose(out, chunk - chunk @ weights, rtol=1e-4, atol=1e-4)
    owner = cluster.owner_index(key)
    with cluster.http(base_url=cluster.worker_url(owner)) as direct:
        assert direct.get(f"/streams/{key}").json()["n_samples"] == 2400
    with cluster.http(base_url=cluster.worker_url(1 - owner)) as other:
        refused = other.get(f"/streams/{key}")
    assert refused.status_code == 421
    assert refused.json()["detail"]["code"] == "not_owner"
    assert refused.json()["detail"]["owner"] == cluster.worker_url(owner)


async def _weights(url: str, key: str) -> np.ndarray:
    async with LRRClient(url, key) as client:
        return await client.get_weights()


def test_a_hundred_keys_spread_over_both_workers(cluster: ClusterProcess) -> None:
    owners = Counter(cluster.owner_index(f"spread-{i}") for i in range(100))
    assert set(owners) == {0, 1}
    assert min(owners.values()) >= 25, f"consistent hash gave {dict(owners)}"
    with cluster.http() as client:
        listed = client.get("/streams").json()
    spread = [s for s in listed["streams"] if s["key"].startswith("spread-")]
    assert listed["cluster"] is True and len(spread) == 0  # owner lookups create no session
    assert cluster.owner_index("spread-7") == cluster.owner_index("spread-7")


async def test_the_direct_path_streams_to_the_owner_and_a_non_owner_refuses(cluster: ClusterProcess) -> None:
    key = "direct-rig"
    async with LRRClient(cluster.url, key, direct=True, allow_identity=True) as client:
        acks = [await client.fit(_data(seed)) for seed in range(3)]
        out = await client.transform(_data(5, 30))
        channel_url = client.channel("fit").url
    owner = cluster.owner_index(key)
    assert channel_url.startswith(cluster.worker_url(owner).replace("http", "ws"))
    assert [a.n_samples for a in acks] == [600, 1200, 1800] and out.shape == (30, N_CHANNELS)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{cluster.worker_url(1 - owner).replace('http', 'ws')}/ws/{key}/fit"):
            pass
    assert refused.value.response.status_code == 421
    assert cluster.worker_url(owner) in refused.value.response.body.decode()


async def test_a_routed_request_takes_the_key_over_and_the_old_owners_sockets_close(cluster: ClusterProcess) -> None:
    """What a ring change does (a worker added, the key's hash now names another): the new worker asks for
    the key, the old owner checkpoints it, releases it and closes its streams with 4421."""
    key = "moving-rig"
    async with LRRClient(cluster.url, key) as client:
        for seed in range(2):
            await client.fit(_data(seed))
    old = cluster.owner_index(key)
    new = 1 - old
    old_ws = cluster.worker_url(old).replace("http", "ws")
    async with websockets.connect(f"{old_ws}/ws/{key}/transform") as held:
        with cluster.http(base_url=cluster.worker_url(new), **{"X-LRR-Routed": "1"}) as routed:
            moved = routed.get(f"/streams/{key}")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(held.recv(), 5)
        assert held.close_code == CloseCode.NOT_OWNER
    assert moved.status_code == 200 and moved.json()["n_samples"] == 1200
    with cluster.http(base_url=cluster.worker_url(old)) as stale:
        refused = stale.get(f"/streams/{key}")
    assert refused.status_code == 421 and refused.json()["detail"]["owner"] == cluster.worker_url(new)


def test_the_launcher_runs_one_process_per_part(cluster: ClusterProcess) -> None:
    topology = cluster.topology()
    assert [w["port"] for w in topology["workers"]] == [cluster.port + 1, cluster.port + 2]
    assert all(Path(f"/proc/{w['pid']}").exists() for w in topology["workers"])
    assert Path(f"/proc/{topology['redis_pid']}").exists()
    config = (cluster.state_dir / "haproxy.cfg").read_text()
    assert "balance hash var(txn.key)" in config and "hash-type consistent" in config
