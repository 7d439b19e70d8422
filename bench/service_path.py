"""The service's own per-frame path measured in-process, without any network: decode, session, transform, encode.

`StreamChannel.on_binary` of a real app context (service/stream.py) is timed on the running loop
against the engine's transform of the same chunk, so `path - engine` is what the service adds per
frame when nothing else disturbs the CPU. If the service's internals change shape, the figure is
reported as missing rather than failing the whole benchmark.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

_context: Any = None


def _app_context() -> Any:
    """One in-process app context (sessions, metrics) for every measurement of the run."""
    global _context
    if _context is None:
        from lrr_service.service.app import create_app
        from lrr_service.service.config import ServiceSettings

        state = Path(tempfile.mkdtemp(prefix="lrr-bench-path-"))
        _context = create_app(ServiceSettings(state_dir=state, log_level="WARNING")).state.context
    return _context


async def service_path_us(weights: np.ndarray, frame: bytes, seconds: float) -> float:
    """Median µs of one `on_binary(frame)` on a transform channel whose session holds `weights`."""
    try:
        from lrr_service.service.stream import StreamChannel

        context = _app_context()
        key = f"path-{weights.shape[0]}"
        session, _ = context.registry.get_or_create(key)
        if session.engine.weights is None or session.engine.weights.shape != weights.shape:
            session.engine.load_weights(weights)
        channel = StreamChannel(key, "transform", context)
        times = []
        await channel.on_binary(frame)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 50:
            started = time.perf_counter()
            await channel.on_binary(frame)
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1e6
    except Exception as exc:  # the benchmark goes on; the table shows '-'
        print(f"  (in-process service path not measured: {type(exc).__name__}: {exc})")
        return float("nan")
