"""The Checkpointer in-process (real store, registry and lane): per-key locks do not accumulate."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lrr_service.core import LRRSettings
from lrr_service.service.checkpoints import Checkpointer
from lrr_service.service.lane import StatisticsLane
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.persistence import CheckpointStore
from lrr_service.service.registry import SessionRegistry
from lrr_service.service.solver import SolveScheduler


@pytest.fixture
async def checkpointer(tmp_path: Path) -> AsyncIterator[Checkpointer]:
    """A Checkpointer over an empty state dir with its own registry and lane."""
    store = CheckpointStore(tmp_path / "state")
    store.ensure_dir()
    metrics = ServiceMetrics()
    lane, solve_thread = StatisticsLane(), ThreadPoolExecutor(max_workers=1)
    try:
        registry = SessionRegistry(LRRSettings(), 1000, metrics, lane, solve_thread, SolveScheduler(3000))
        yield Checkpointer(store, registry, metrics)
    finally:
        lane.shutdown()
        solve_thread.shutdown()


async def test_create_delete_cycles_leave_no_locks_behind(checkpointer: Checkpointer) -> None:
    registry = checkpointer.registry
    for i in range(200):
        session, created = registry.get_or_create(f"cycle-{i}")
        assert created
        session.engine.accumulate(np.ones((4, 3)) * i)
        await checkpointer.checkpoint(session, "test")
        assert checkpointer.store.path_for(session.key).exists()
        registry.remove(session.key)
        await checkpointer.delete(session)
        assert not checkpointer.store.path_for(session.key).exists()
    gc.collect()
    assert checkpointer.lock_count == 0
    assert list(checkpointer.store.state_dir.iterdir()) == []
