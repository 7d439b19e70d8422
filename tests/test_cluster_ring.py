"""A ring change in a real cluster: a worker joins HAProxy's ring while keys are held by the others.

Three workers start; one is paused (SIGSTOP) before any key exists, so HAProxy takes it out of the
ring and every key goes to the other two. When it is resumed, HAProxy adds it back and about a
third of the keys hash to it: each moves by a handover (checkpoint, release, restore), none is lost
and none is served by two workers.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np

from lrr_service.clients.local_server import ClusterProcess
from lrr_service.clients.sync import LRRClientSync

N_KEYS = 24


def _owner_of(cluster: ClusterProcess, key: str) -> int:
    return cluster.owner_index(key)


def test_a_worker_joining_the_ring_takes_its_keys_with_their_state(tmp_path: Path) -> None:
    with ClusterProcess(tmp_path / "state", workers=3) as cluster:
        joining = 2
        os.kill(cluster.worker_pid(joining), signal.SIGSTOP)
        try:
            time.sleep(2.0)  # HAProxy: two failed checks 250 ms apart (with margin) and the worker is out of the ring
            keys = [f"ring-{i}" for i in range(N_KEYS)]
            rng = np.random.default_rng(0)
            for i, key in enumerate(keys):
                with LRRClientSync(cluster.url, key) as client:
                    client.fit(rng.standard_normal((100 * (i + 1), 6)).astype(np.float32))
            before = {key: _owner_of(cluster, key) for key in keys}
        finally:
            os.kill(cluster.worker_pid(joining), signal.SIGCONT)
        assert joining not in before.values()
        time.sleep(2.5)  # two successful checks 250 ms apart (with margin) and the worker is back in the ring
        after = {key: _owner_of(cluster, key) for key in keys}
        moved = [key for key in keys if after[key] != before[key]]
        samples = {}
        http = httpx.Client(timeout=10)
        for key in keys:
            answers = [http.get(f"{cluster.worker_url(w)}/streams/{key}") for w in range(3)]
            serving = [w for w, answer in enumerate(answers) if answer.status_code == 200]
            assert serving == [after[key]], f"{key}: served by {serving}, owner {after[key]}"
            assert all(answers[w].status_code == 421 for w in range(3) if w != after[key])
            samples[key] = answers[after[key]].json()["n_samples"]
        http.close()
    assert moved and all(after[key] == joining for key in moved)
    assert 3 <= len(moved) <= 16, f"{len(moved)} of {N_KEYS} keys moved to the new worker"
    assert samples == {key: 100 * (i + 1) for i, key in enumerate(keys)}
