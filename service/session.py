"""A session: one stream key's LRR engine, and the only code that changes it.

Everything that touches a session's engine or its bookkeeping goes through `Session`'s methods:
the stream protocol (`fit`, `transform`), the REST routes (`reset`, `configure`, `load_weights`),
the solve scheduler (`solve`) and the checkpointer (`checkpoint_record`). The rules they keep:

- **Where work runs.** On the event loop: transforms of a bound engine, staging of fit chunks (a
  copy), bookkeeping. In the statistics lane (service/lane.py, one thread for every session):
  folds of staged samples into XᵀX, statistics copies for solves, snapshots for checkpoints,
  checking and installing uploaded weights and preparing their apply plans. In the solve thread:
  the O(n³) solve. Both threads run at the lowest CPU priority.
- **The lock.** Every change of the engine's statistics, weights, binding or settings, and every
  lane call on it, happens with `_lock` held; transforms of a bound engine never take it. The one
  exception is the fold of a full staging block (`engine.fold_pending`), queued in the lane
  without waiting: the engine allows it beside cheap staging and transforms, and later lane work
  for the engine queues behind it. A solve holds `_solving` throughout, so at most one is in
  flight; it takes `_lock` only to copy the statistics and to install the result.
- **Staleness.** `epoch` increases with every change that makes work in flight stale: a reset,
  new settings, uploaded weights, the session's deletion. Work started at one epoch is discarded
  at another; nothing else decides.
- **Refusals change nothing.** Every check of a chunk or request runs before its first change,
  and a refusal is a ServiceError carrying its code.
- **Live status and quality.** `status` (service/status.py: rates, latency, weights age, last solve
  and error) and the quality meter (core/quality.py: power in and out per channel, measured on
  every `quality_every`-th transforming frame) are the session's own bookkeeping, updated on the
  loop without the lock. The meter starts over when the session is reset, rebound to another
  channel count or given new settings; it keeps measuring across weight changes (it is a moving
  window, so new weights show within `quality_window_seconds`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from lrr_service.core import LRR, LRRSettings, validate_weights
from lrr_service.core.channels import ChannelDescription
from lrr_service.core.errors import ChannelCountError, ChannelsMismatchError, SettingsError, WeightsError
from lrr_service.core.groups import resolve_groups
from lrr_service.core.quality import QualityMeter, quality_report, reduction_summary
from lrr_service.core.samples import MAX_FIT_MAGNITUDE, BadSample, first_bad_sample
from lrr_service.core.vocabulary import ErrorCode, Mode, Regrouped
from lrr_service.service.errors import ServiceError
from lrr_service.service.lane import StatisticsLane
from lrr_service.service.logs import log_event
from lrr_service.service.metrics import ServiceMetrics
from lrr_service.service.persistence import SessionRecord
from lrr_service.service.status import SessionStatus

if TYPE_CHECKING:
    from lrr_service.service.solver import SolveScheduler

TRANSFORM_DTYPES = (np.float32, np.float64)
"""The output dtypes of transforms (integer wire dtypes give float32)."""


@dataclass
class SessionCounters:
    """Per-session traffic and event counts, reported by GET /streams/{key} and persisted."""

    fit_frames: int = 0
    fit_samples: int = 0
    transform_frames: int = 0
    transform_samples: int = 0
    rejected_frames: int = 0
    resets: int = 0
    solves: int = 0
    weights_uploads: int = 0


@dataclass
class SessionRuntime:
    """What every session of an app shares: the threads its heavy work runs in, the solve policy,
    the metrics, and the state budget (a check over every session, kept by the registry)."""

    lane: StatisticsLane
    solve_executor: ThreadPoolExecutor
    metrics: ServiceMetrics
    scheduler: SolveScheduler
    check_capacity: Callable[[str, int], None]
    connections: Callable[[str], dict[str, int]] = field(default=lambda key: no_connections())
    """Open websocket streams of a key by mode (kept by the registry: a socket may outlive its session)."""
    quality_window_seconds: float = 10.0
    """LRR_QUALITY_WINDOW_SECONDS: the time constant of the quality meters' exponential window."""
    quality_every: int = 1
    """LRR_QUALITY_EVERY: measure every k-th transforming frame of a session (0: never)."""


def no_connections() -> dict[str, int]:
    """The connection counts of a key nobody is connected to."""
    return {mode.value: 0 for mode in Mode}


class ChunkResult(NamedTuple):
    """What a chunk did to its session, for the reply frame."""

    reset: bool
    weights_version: int
    n_samples: int
    output: np.ndarray | None
    weights_source: str = "none"
    regrouped: Regrouped | None = None
    """What the channel description the chunk carried did (None: it carried none)."""


@dataclass(frozen=True)
class SolveOutcome:
    """What one solve did: `installed` is False when it went stale or there was nothing to solve."""

    installed: bool
    reason: str
    n_samples: int
    weights_version: int
    seconds: float = 0.0


@dataclass(eq=False)
class Session:
    """One stream key's engine and bookkeeping (see the module's rules)."""

    key: str
    _engine: LRR
    _runtime: SessionRuntime
    counters: SessionCounters = field(default_factory=SessionCounters)
    created_at: float = field(default_factory=time.time)
    dirty: bool = True
    """Changed since the last checkpoint (a new session is not on disk yet)."""
    epoch: int = 0
    """Increased by every change that makes work in flight stale."""
    closed: bool = False
    """Deleted from the registry; connections holding it look the key up again."""
    pending_samples: int = 0
    """Fit samples accepted since the last solve started (read by the solve scheduler)."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _solving: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pending_fold: asyncio.Future[object] | None = None
    status: SessionStatus = field(init=False)
    """Live status (service/status.py), reported under `status` by GET /streams and GET /streams/{key}."""
    _quality: QualityMeter | None = None
    _quality_countdown: int = 0

    def __post_init__(self) -> None:
        self.status = SessionStatus(self._engine.weights_version)

    @property
    def engine(self) -> LRR:
        """The engine, to read: every change goes through this class."""
        return self._engine

    # -- chunks (service/stream.py) ---------------------------------------------------------------

    async def transform(self, data: np.ndarray, route: Mode, channels: ChannelDescription | None = None) -> ChunkResult:
        """Apply the current weights; a chunk with a new channel count binds the session first (resetting
        it if it was bound), a new description of its `channels` regroups it. Raises ServiceError
        (settings_mismatch, channels_mismatch, over_capacity), changing nothing."""
        if channels is None and self._engine.n_channels == data.shape[1]:  # the hot path: no lock, no await
            return self._transformed(data, reset=False)
        async with self._lock:
            reset = self._rebind(data, route, channels)
            regrouped = await self._regroup(channels) if channels is not None else None
            result = self._transformed(data, reset)._replace(regrouped=regrouped)
            self.dirty = True  # bound to a channel count (and perhaps given default weights)
            self.status.weights_seen(self._engine.weights_version)
            return result

    async def fit(self, data: np.ndarray, route: Mode, channels: ChannelDescription | None = None) -> ChunkResult:
        """Add the chunk to the statistics (staged on the loop, folded in the lane), then transform it if
        `route` does; a new description of its `channels` is applied first. Raises ServiceError (non_finite,
        out_of_range, settings_mismatch, channels_mismatch, over_capacity), changing nothing."""
        n_samples = data.shape[0]
        async with self._lock:
            reset = self._rebind(data, route, channels)
            if channels is not None and (bad := first_bad_sample(data)) is not None:
                raise _unfittable(bad)  # before the description changes anything
            regrouped = await self._regroup(channels) if channels is not None else None
            engine, lane = self._engine, self._runtime.lane
            if engine.n_channels is None:
                engine.bind(data.shape[1])  # allocation only, so the check below is exact for every chunk
            if engine.accumulate_is_cheap(n_samples):  # staging only: a copy, microseconds
                accepted = engine.accumulate(data)
            else:  # folds a staged block into XᵀX with BLAS: milliseconds, off the loop
                accepted = await lane.run(engine.accumulate, data)
            if not accepted:
                raise _unfittable(first_bad_sample(data))
            if engine.has_pending_fold and (self._pending_fold is None or self._pending_fold.done()):
                self._pending_fold = lane.start(engine.fold_pending)  # the next chunks stage meanwhile
            self.counters.fit_frames += 1
            self.counters.fit_samples += n_samples
            self.pending_samples += n_samples
            self.dirty = True
            self.status.weights_seen(engine.weights_version)
            self._runtime.scheduler.note_fit(self)
            if route.transforms:
                return self._transformed(data, reset)._replace(regrouped=regrouped)
            return ChunkResult(reset, engine.weights_version, engine.n_samples, None, regrouped=regrouped)

    def note_rejected(self, code: str, message: str) -> None:
        """Count a frame of this session's key that was refused with `code` (the status's last error)."""
        self.counters.rejected_frames += 1
        self.status.failed(code, message)

    def note_served(self, started: float, samples_in: int, samples_out: int, fs: float | None) -> None:
        """A frame of `samples_in` samples that arrived at `started` (time.perf_counter) was answered just now with
        `samples_out` samples (0: an ack); `fs` is the nominal rate it carried, if any. For the live status."""
        now = time.perf_counter()
        if fs is not None:
            self.status.fs = float(fs)
        self.status.served(now, samples_in, samples_out, now - started if samples_out else None)

    def _transformed(self, data: np.ndarray, reset: bool) -> ChunkResult:
        engine = self._engine
        output = engine.transform(data)
        self.counters.transform_frames += 1
        self.counters.transform_samples += data.shape[0]
        every = self._runtime.quality_every
        if every:
            self._quality_countdown -= 1
            if self._quality_countdown <= 0:
                self._quality_countdown = every
                self._measure(data, output)
        return ChunkResult(reset, engine.weights_version, engine.n_samples, output, engine.weights_source)

    def _measure(self, data: np.ndarray, output: np.ndarray) -> None:
        """Add one transformed chunk to the quality meter (a new meter for a new channel count)."""
        meter = self._quality
        if meter is None or meter.n_channels != data.shape[1]:
            meter = self._quality = QualityMeter(data.shape[1], self._runtime.quality_window_seconds)
        meter.add(data, output, time.perf_counter())

    def _rebind(self, data: np.ndarray, route: Mode, channels: ChannelDescription | None) -> bool:
        """With the lock held: refuse the chunk if it would be refused anyway, else reset a session bound
        to another channel count. True if it reset; the engine is then unbound. `channels`, if the chunk
        carries a description (of its own channel count: the codec checked), replaces the held one."""
        engine = self._engine
        n_channels = data.shape[1]
        if engine.n_channels == n_channels:
            return False
        described = channels if channels is not None else engine.channels
        if described is not None and len(described) != n_channels:
            raise ServiceError(
                f"the session's channel description has {len(described)} channels but the chunk has {n_channels}; "
                "send the chunk's description with it (field channels), or replace it (PUT "
                f"/streams/{self.key}/channels) or remove it (DELETE /streams/{self.key}/channels)",
                code=ErrorCode.CHANNELS_MISMATCH,
            )
        try:
            resolve_groups(engine.settings, n_channels, described)
        except SettingsError as exc:
            raise ServiceError(
                f"{exc}; change the session's settings (PUT /streams/{self.key}) or send chunks "
                "with a matching channel count",
                code=ErrorCode.SETTINGS_MISMATCH,
            ) from None
        self._runtime.check_capacity(self.key, n_channels)
        if route.fits:
            bad = first_bad_sample(data)
            if bad is not None:
                raise _unfittable(bad)
        if engine.n_channels is None:
            return False
        self._reset("channel_count", n_channels=n_channels, route=route)
        return True

    # -- REST (service/rest.py) --------------------------------------------------------------------

    async def reset(self, reason: str) -> None:
        """Clear statistics, weights and channel count; keep the settings."""
        async with self._lock:
            self._reset(reason)

    async def describe_channels(self, channels: ChannelDescription | None) -> Regrouped:
        """Hold `channels` as the description of the session's channels (None: hold none) and regroup.
        Raises ServiceError channels_mismatch, changing nothing, if it describes another channel count."""
        async with self._lock:
            return await self._regroup(channels)

    async def _regroup(self, channels: ChannelDescription | None) -> Regrouped:
        """With the lock held: apply a description; a regrouping of fitted weights is solved in the solve
        thread and installed with the description at once, so no transform sees one without the other."""
        engine = self._engine
        if channels == engine.channels:
            return Regrouped.UNCHANGED
        stats = None
        if engine.weights_source == "fitted" and engine.n_samples > 0:
            stats = await self._runtime.lane.run(engine.statistics)
        try:
            plan = await asyncio.get_running_loop().run_in_executor(
                self._runtime.solve_executor, engine.plan_channels, channels, stats
            )
        except ChannelsMismatchError as exc:
            raise ServiceError(
                f"the description has {exc.described} channels but session {self.key!r} is bound to {exc.got}; "
                f"describe {exc.got} channels, or reset the session (POST /streams/{self.key}/reset) first",
                code=ErrorCode.CHANNELS_MISMATCH,
                n_channels=exc.got,
                got=exc.described,
            ) from None
        outcome = engine.install_channels(plan)
        if outcome in (Regrouped.UNCHANGED, Regrouped.UNBOUND):
            self.dirty = True
        else:
            self.pending_samples = 0
            self._changed()
        log_event(
            "channels_described",
            key=self.key,
            n_channels=len(channels) if channels is not None else None,
            regrouped=outcome,
            grouping=engine.grouping.describe() if engine.grouping is not None else None,
        )
        return outcome

    async def configure(self, settings: LRRSettings) -> bool:
        """Start over with `settings` (a fresh engine; weights_version continues); False if they are the
        session's already, which changes nothing."""
        if settings == self._engine.settings:
            return False
        async with self._lock:
            self._engine = _engine_with_settings(settings, self._engine.weights_version, self._engine.channels)
            self.pending_samples = 0
            self._quality = None
            self._changed()
        log_event("session_configured", key=self.key, settings=settings.to_dict())
        return True

    async def load_weights(self, weights: np.ndarray, replace: bool) -> None:
        """Pin uploaded weights; with `replace`, a session bound to another channel count is reset first.

        Raises ServiceError, changing nothing: size_mismatch (another count, no `replace`), over_capacity,
        bad_weights (not a finite square matrix, or settings that cannot take its size).
        """
        n = weights.shape[0]
        async with self._lock:
            bound, described = self._engine.n_channels, self._engine.channels
            if described is not None and len(described) != n:
                raise ServiceError(
                    f"the weights are {n}x{n} but session {self.key!r} describes {len(described)} channels; upload "
                    f"a {len(described)}x{len(described)} matrix, or replace or remove the description "
                    f"(/streams/{self.key}/channels) first",
                    code=ErrorCode.CHANNELS_MISMATCH,
                    n_channels=len(described),
                    got=n,
                )
            if bound is not None and bound != n and not replace:
                raise ServiceError(
                    f"the weights are {n}x{n} but session {self.key!r} has {bound} channels; upload a {bound}x{bound} "
                    f"matrix, or add ?replace=true to reset the session to {n} channels",
                    code=ErrorCode.SIZE_MISMATCH,
                    n_channels=bound,
                    got=n,
                )
            if bound != n:
                self._runtime.check_capacity(self.key, n)
            replacing = bound is not None and bound != n
            try:  # copies and checks of n² values: milliseconds at 1024 channels, off the loop
                await self._runtime.lane.run(_install_uploaded, self._engine, weights, replacing)
            except (ChannelCountError, WeightsError, SettingsError) as exc:
                raise ServiceError(str(exc), code=ErrorCode.BAD_WEIGHTS) from None
            if replacing:
                self._note_reset("weights_replace", bound, n_channels=n)
            self.pending_samples = 0
            self.counters.weights_uploads += 1
            self._changed()
        self._runtime.metrics.uploads.inc()
        log_event("weights_uploaded", key=self.key, n_channels=n, weights_version=self._engine.weights_version)

    # -- solves (service/solver.py) ---------------------------------------------------------------

    async def solve(self, *, requested: bool) -> SolveOutcome:
        """Solve on every sample accepted so far and install the result unless the session changed
        meanwhile. Uploaded weights are replaced only when `requested` (POST .../solve)."""
        runtime = self._runtime
        async with self._solving:
            async with self._lock:
                engine, epoch = self._engine, self.epoch
                if engine.n_channels is None or engine.n_samples == 0:
                    return SolveOutcome(False, "no_data", engine.n_samples, engine.weights_version)
                self.pending_samples = 0
                stats = await runtime.lane.run(engine.statistics)
            started = time.perf_counter()
            try:
                solution = await asyncio.get_running_loop().run_in_executor(
                    runtime.solve_executor, engine.solve_statistics, stats
                )
            except Exception as exc:  # the engine changed under the copy (e.g. reset): stale; else unsolvable
                reason = "stale" if self.epoch != epoch else "failed"
                runtime.metrics.solves.labels(reason).inc()
                if reason == "failed":
                    log_event("solve_failed", logging.ERROR, key=self.key, error=str(exc))
                    self.status.failed(ErrorCode.SOLVE_FAILED, f"the solve failed ({type(exc).__name__}: {exc})")
                return SolveOutcome(False, reason, engine.n_samples, engine.weights_version)
            seconds = time.perf_counter() - started
            runtime.metrics.solve_seconds.observe(seconds)
            async with self._lock:  # not while a lane call (e.g. a snapshot) reads the engine
                installed = self.epoch == epoch and engine.install(solution, replace_uploaded=requested)
            if not installed:
                runtime.metrics.solves.labels("stale").inc()
                return SolveOutcome(False, "stale", engine.n_samples, engine.weights_version, seconds)
            self.counters.solves += 1
            self.dirty = True
            self.status.weights_seen(engine.weights_version)
            self.status.solved(seconds)
        runtime.metrics.solves.labels("installed").inc()
        log_event(
            "solve",
            logging.INFO if requested else logging.DEBUG,
            key=self.key,
            n_samples=solution.n_samples,
            weights_version=engine.weights_version,
            seconds=round(seconds, 6),
            requested=requested,
        )
        return SolveOutcome(True, "installed", solution.n_samples, engine.weights_version, seconds)

    # -- checkpoints (service/checkpoints.py) ------------------------------------------------------

    async def checkpoint_record(self) -> SessionRecord | None:
        """A consistent copy of the state for a checkpoint (made in the lane), or None once the session is
        closed; the session counts as saved from here on (`checkpoint_failed` undoes that)."""
        async with self._lock:
            if self.closed:
                return None
            record = await self._runtime.lane.run(self._record)
            self.dirty = False
            return record

    def checkpoint_failed(self) -> None:
        """The record could not be written: the next periodic checkpoint tries again."""
        self.dirty = True

    def close(self) -> None:
        """Taken out of the registry: work in flight goes stale, connections look the key up again."""
        self.closed = True
        self._changed()

    # -- views ------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The short JSON view of GET /streams, with the live `status`."""
        engine = self._engine
        return {
            "key": self.key,
            "n_channels": engine.n_channels,
            "n_samples": engine.n_samples,
            "weights_version": engine.weights_version,
            "weights_source": engine.weights_source,
            "status": self.status_view(),
        }

    def status_view(self) -> dict[str, Any]:
        """The `status` object: connections by mode, rates, fs, transform latency, weights, last solve and error,
        and the quality's median and worst channel reduction (so a table of sessions needs no request each)."""
        engine = self._engine
        self.status.weights_seen(engine.weights_version)  # a change no event dated: dated when first seen
        view = self.status.view(self._runtime.connections(self.key), engine.weights_source, engine.n_samples)
        reductions = self.reduction_summary()
        median, worst = reductions if reductions is not None else (None, None)
        return view | {"quality": {"median_channel_db": median, "worst_channel_db": worst}}

    def quality(self) -> dict[str, Any]:
        """The JSON of GET /streams/{key}/quality: the power in and out and its reduction in dB per channel, per
        group and overall, over the quality window (null where nothing was measured yet)."""
        engine, meter = self._engine, self._quality
        n_channels = engine.n_channels
        if meter is not None and meter.n_channels != n_channels:
            meter = None
        report = quality_report(meter, n_channels or 0, engine.groups)
        channels = engine.channels
        labels = channels.labels if channels is not None and len(channels) == n_channels else None
        for entry in report["channels"]:
            entry["label"] = labels[entry["index"]] if labels is not None else None
        return {
            "key": self.key,
            "window_seconds": self._runtime.quality_window_seconds,
            "every": self._runtime.quality_every,
            "n_channels": n_channels,
        } | report

    def reduction_summary(self) -> tuple[float, float] | None:
        """(median channel reduction, worst channel reduction) in dB for the metrics, or None if not measured."""
        meter = self._quality
        if meter is None or meter.n_channels != self._engine.n_channels:
            return None
        return reduction_summary(meter)

    def describe(self) -> dict[str, Any]:
        """The JSON view of GET /streams/{key}: the summary with settings, solve state and counters."""
        engine = self._engine
        grouping, channels = engine.grouping, engine.channels
        return self.summary() | {
            "settings": engine.settings.to_dict(),
            "channels": channels.summary() if channels is not None else None,
            "grouping": grouping.describe() if grouping is not None else None,
            "n_samples_solved": engine.n_samples_solved,
            "solve_in_flight": self._runtime.scheduler.is_solving(self),
            "created_at": self.created_at,
            "counters": asdict(self.counters),
        }

    # -- internals --------------------------------------------------------------------------------

    def _record(self) -> SessionRecord:
        meta, arrays = self._engine.snapshot()
        service = {"created_at": self.created_at, "counters": asdict(self.counters)}
        if self.status.weights_changed_at is not None:
            service["weights_changed_at"] = self.status.weights_changed_at
        return SessionRecord(self.key, meta, arrays, service)

    def _reset(self, reason: str, **details: Any) -> None:
        previous = self._engine.n_channels
        self._engine.reset()
        self._note_reset(reason, previous, **details)

    def _note_reset(self, reason: str, previous: int | None, **details: Any) -> None:
        self.pending_samples = 0
        self._quality = None
        self.counters.resets += 1
        self._changed()
        self._runtime.metrics.resets.labels(reason).inc()
        log_event("session_reset", key=self.key, reason=reason, previous_n_channels=previous, **details)

    def _changed(self) -> None:
        self.epoch += 1
        self.dirty = True
        self.status.weights_seen(self._engine.weights_version)


def _install_uploaded(engine: LRR, weights: np.ndarray, replacing: bool) -> None:
    """In the lane: pin `weights` (after a reset when `replacing` another channel count; the weights and the
    settings are checked before it) and build their apply plans, so the first transform does not."""
    if replacing:
        validate_weights(weights)
        resolve_groups(engine.settings, weights.shape[0], engine.channels)
        engine.reset()
    engine.load_weights(weights)
    if engine.n_channels:
        for dtype in TRANSFORM_DTYPES:
            engine.transform(np.zeros((1, engine.n_channels), dtype=dtype))


def _engine_with_settings(
    settings: LRRSettings, after_version: int = 0, channels: ChannelDescription | None = None
) -> LRR:
    """A fresh engine describing `channels`, whose weights_version continues after `after_version`, so versions
    never go back."""
    return LRR(settings, weights_version=after_version + 1 if after_version > 0 else 0, channels=channels)


def _unfittable(bad: BadSample | None) -> ServiceError:
    """The refusal of a fit chunk the statistics cannot take, naming its first bad sample so the sender can
    find it: `out_of_range` for a finite sample beyond ±MAX_FIT_MAGNITUDE, else `non_finite`."""
    if bad is not None and bad.finite:
        return ServiceError(
            f"the chunk holds {bad.describe()}, beyond ±{MAX_FIT_MAGNITUDE:g}: its square would "
            "overflow the statistics; it was not fitted, nothing changed: send samples in physical "
            "units (volts, microvolts or ADC counts)",
            code=ErrorCode.OUT_OF_RANGE,
        )
    where = f" (first at sample {bad.sample}, channel {bad.channel})" if bad is not None else ""
    return ServiceError(
        f"the chunk holds NaN or infinity{where}; it was not fitted, nothing changed: send "
        "finite samples (drop or interpolate bad ones)",
        code=ErrorCode.NON_FINITE,
    )
