"""LRR: the Linear Regression Rereferencing estimator.

Each channel is predicted by ridge regression from the other channels of its group,
fitted on the data itself, and the prediction is subtracted: y = X @ (I - W).
Accumulating statistics (cheap, every chunk) and solving for W (expensive, O(n³))
are separate steps so that a real-time caller decides when to solve, and where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from lrr_service.core.apply import ApplyPlan
from lrr_service.core.channels import ChannelDescription, ChannelDescriptionError
from lrr_service.core.errors import (
    ChannelCountError,
    ChannelsMismatchError,
    ShapeError,
    SnapshotError,
    StatisticsError,
    WeightsError,
)
from lrr_service.core.groups import Grouping, resolve_grouping
from lrr_service.core.samples import MAX_FIT_MAGNITUDE, first_bad_sample
from lrr_service.core.settings import LRRSettings
from lrr_service.core.solver import default_weights, solve_weights
from lrr_service.core.statistics import DEFAULT_STAGING_BYTES, CovarianceAccumulator, Statistics
from lrr_service.core.vocabulary import Regrouped

WeightsSource = Literal["none", "default", "fitted", "uploaded"]

SNAPSHOT_FORMAT = "lrr-engine/1"
MAX_WEIGHTS_VERSION = 2**53
"""Versions stay below this, so they survive JSON readers that hold numbers as doubles."""
MAX_SAMPLE_COUNT = 2**62
"""Sample counts beyond this cannot come from a real stream (150 million years at 1 MHz)."""


@dataclass(frozen=True)
class Solution:
    """Weights solved from a statistics copy, to be installed by the engine that made it."""

    weights: np.ndarray
    n_samples: int
    generation: int
    plans: dict[np.dtype, ApplyPlan] = field(default_factory=dict)
    """Application plans prepared with the solve, so installing them costs nothing."""


@dataclass(frozen=True)
class ChannelsPlan:
    """A new channel description and what it does to the engine, prepared by ``plan_channels`` (possibly in
    a worker thread: it may hold a solve) and applied by ``install_channels``."""

    channels: ChannelDescription | None
    outcome: Regrouped
    generation: int
    grouping: Grouping | None = None
    solution: Solution | None = None


class LRR:
    """Self-supervised channel regression with LRR applied as X @ (I - W).

    The channel count is bound by the first chunk (or by ``load_weights``); a chunk
    with another count raises ``ChannelCountError`` until ``reset()``. Every invalid
    call raises a ``ValueError`` subclass and leaves the engine exactly as it was.
    """

    def __init__(
        self,
        settings: LRRSettings | None = None,
        *,
        staging_bytes: int = DEFAULT_STAGING_BYTES,
        weights_version: int = 0,
        channels: ChannelDescription | None = None,
    ) -> None:
        """``weights_version`` lets a replacement engine continue its predecessor's versions; ``channels``
        describes the channels (labels, fields such as ``bank`` that ``channel_groups`` may name)."""
        if isinstance(weights_version, bool) or not isinstance(weights_version, int) or weights_version < 0:
            raise ValueError(f"weights_version must be an integer >= 0, got {weights_version!r}")
        self._settings = settings if settings is not None else LRRSettings()
        self._staging_bytes = staging_bytes
        self._n_channels: int | None = None
        self._channels = channels
        self._grouping: Grouping | None = None
        self._accumulator: CovarianceAccumulator | None = None
        self._weights: np.ndarray | None = None
        self._source: WeightsSource = "none"
        self._version = weights_version
        self._generation = 0
        self._n_samples_solved = 0
        self._plans: dict[np.dtype, ApplyPlan] = {}

    # -- state ---------------------------------------------------------------

    @property
    def settings(self) -> LRRSettings:
        return self._settings

    @property
    def n_channels(self) -> int | None:
        return self._n_channels

    @property
    def n_samples(self) -> int:
        """Samples accepted into the statistics since the last reset."""
        return self._accumulator.n_samples if self._accumulator is not None else 0

    @property
    def n_samples_solved(self) -> int:
        """How many of those samples the current fitted weights reflect."""
        return self._n_samples_solved

    @property
    def weights(self) -> np.ndarray | None:
        """The W being applied (read-only float64), or None while it is the identity."""
        return self._weights

    @property
    def weights_version(self) -> int:
        """Increases by one every time the applied weights change."""
        return self._version

    @property
    def weights_source(self) -> WeightsSource:
        return self._source

    @property
    def groups(self) -> list[np.ndarray]:
        """The resolved channel groups (empty until a channel count is bound)."""
        return list(self._grouping.groups) if self._grouping is not None else []

    @property
    def grouping(self) -> Grouping | None:
        """The resolved groups and where they came from (None until a channel count is bound)."""
        return self._grouping

    @property
    def channels(self) -> ChannelDescription | None:
        """The channel description (labels and per-channel fields), if one was given."""
        return self._channels

    # -- channel description ---------------------------------------------------

    def plan_channels(self, channels: ChannelDescription | None, stats: Statistics | None = None) -> ChannelsPlan:
        """What describing the channels by ``channels`` (None: no description) would do; safe in a worker thread.

        When it changes the groups of fitted weights, they are solved again from ``stats`` (a copy from
        ``statistics()``, which covers every grouping of the same channels). Raises ChannelsMismatchError
        if ``channels`` describes another channel count than the bound one, changing nothing.
        """
        n = self._n_channels
        if n is None or self._grouping is None:
            return ChannelsPlan(channels, Regrouped.UNBOUND, self._generation)
        if channels is not None and len(channels) != n:
            raise ChannelsMismatchError(len(channels), n, what="the session")
        grouping = resolve_grouping(self._settings, n, channels)
        if grouping.same_groups(self._grouping):
            return ChannelsPlan(channels, Regrouped.UNCHANGED, self._generation, grouping)
        if self._source == "uploaded":
            return ChannelsPlan(channels, Regrouped.UPLOADED_KEPT, self._generation, grouping)
        if self._source != "fitted":
            return ChannelsPlan(channels, Regrouped.DEFAULTS, self._generation, grouping)
        if stats is None or stats.n_samples == 0:
            return ChannelsPlan(channels, Regrouped.CLEARED, self._generation, grouping)
        solution = self._solved(stats, grouping.groups)
        return ChannelsPlan(channels, Regrouped.RESOLVED, self._generation, grouping, solution)

    def install_channels(self, plan: ChannelsPlan) -> Regrouped:
        """Apply a ``plan_channels`` result; ValueError if the engine changed since it was made (plan again)."""
        if plan.generation != self._generation:
            raise ValueError("the engine changed since the channel plan was made; plan again")
        self._channels = plan.channels
        if plan.grouping is None:
            return plan.outcome
        self._grouping = plan.grouping
        if plan.outcome is Regrouped.UNCHANGED:
            return plan.outcome
        self._generation += 1  # solutions of the old groups are stale
        if plan.solution is not None:
            self._set_weights(plan.solution.weights, "fitted")
            self._plans = dict(plan.solution.plans)
            self._n_samples_solved = plan.solution.n_samples
        elif plan.outcome is not Regrouped.UPLOADED_KEPT:
            self._apply_defaults()
            self._n_samples_solved = 0
        return plan.outcome

    def set_channels(self, channels: ChannelDescription | None) -> Regrouped:
        """Describe the channels and regroup at once (solving here when needed: O(n³) at most)."""
        fitted = self._source == "fitted" and self._accumulator is not None and self.n_samples > 0
        return self.install_channels(self.plan_channels(channels, self.statistics() if fitted else None))

    # -- fitting -------------------------------------------------------------

    def accumulate(self, chunk: Any) -> bool:
        """Fold a (samples, channels) chunk into the statistics without solving.

        Returns False, changing nothing, when the chunk holds a sample the statistics cannot
        take: NaN, infinity, or beyond ±MAX_FIT_MAGNITUDE (``first_bad_sample`` says which).
        """
        X = _as_samples(chunk)
        if first_bad_sample(X) is not None:
            return False
        self._bind(X.shape[1])
        assert self._accumulator is not None
        if not self._settings.incremental:
            self._accumulator.clear()
        self._accumulator.add(X)
        return True

    def bind(self, n_channels: int) -> None:
        """Bind the channel count without adding samples (O(n²) allocation, no BLAS).

        Raises ``ChannelCountError`` if another count is bound, ``SettingsError`` if the
        groups do not fit ``n_channels``; either way nothing changes.
        """
        if isinstance(n_channels, bool) or not isinstance(n_channels, int) or n_channels < 0:
            raise ShapeError(f"n_channels must be an integer >= 0, got {n_channels!r}")
        self._bind(n_channels)

    def accumulate_is_cheap(self, n_rows: int) -> bool:
        """Whether ``accumulate`` of ``n_rows`` samples would only stage them (a copy, microseconds).

        When False it folds a staged block into C, which takes milliseconds at hundreds of
        channels: a real-time caller may then run it in a worker thread. Staging can fill a
        block; its fold then waits for ``fold_pending``, which that thread can run meanwhile.
        """
        accumulator = self._accumulator
        if accumulator is None:
            return False  # binding allocates the statistics; bind() first to know
        if not self._settings.incremental and accumulator.has_sealed_block:
            return (
                False  # defensive (this mode clears before staging, so it never seals): clearing must not race a fold
            )
        return not accumulator.fold_due(n_rows)

    @property
    def has_pending_fold(self) -> bool:
        """Whether a full staging block waits to be folded into C (see ``fold_pending``)."""
        return self._accumulator is not None and self._accumulator.has_sealed_block

    def fold_pending(self) -> None:
        """Fold the full staging block, if any, into C: the milliseconds ``accumulate`` left out.

        Safe in a worker thread while the caller goes on calling ``accumulate`` and ``transform``,
        as long as each of those ``accumulate`` calls was cheap (``accumulate_is_cheap``); any other
        call must wait until it returns. Not calling it costs nothing but time: the next fold or
        ``statistics()`` does it.
        """
        accumulator = self._accumulator  # read once: a reset on another thread may drop it meanwhile
        if accumulator is not None:
            accumulator.fold_sealed()

    def statistics(self) -> Statistics:
        """A copy of the statistics that ``solve_statistics`` can use in another thread."""
        if self._accumulator is None:
            raise ShapeError("no data yet: accumulate a chunk before asking for statistics")
        return replace(self._accumulator.statistics(), generation=self._generation)

    def solve_statistics(self, stats: Statistics) -> Solution:
        """Solve W from ``stats`` and plan its application; safe in a worker thread.

        It reads the settings and groups (replaced, never mutated) and the statistics copy;
        the solution remembers the statistics' generation, so ``install`` refuses it if the
        engine was reset or given other weights in the meantime.
        """
        n_channels = self._n_channels
        if n_channels != stats.n_channels:
            raise ChannelCountError(n_channels or 0, stats.n_channels, what="statistics")
        return self._solved(stats, self.groups)

    def _solved(self, stats: Statistics, groups: list[np.ndarray]) -> Solution:
        """W of `groups` from `stats`, read-only, with apply plans for the dtypes in use (float32 at first)."""
        W = solve_weights(stats, groups, self._settings)
        W.flags.writeable = False
        dtypes = tuple(self._plans) or (np.dtype(np.float32),)
        plans = {dtype: ApplyPlan(W, stats.n_channels, dtype) for dtype in dtypes}
        return Solution(W, stats.n_samples, stats.generation, plans)

    def install(self, solution: Solution, *, replace_uploaded: bool = False) -> bool:
        """Apply solved weights unless they are stale; True when they were applied.

        Stale means: the engine was reset, refitted or given weights since the statistics
        were copied, a newer solution is already applied, or (unless ``replace_uploaded``)
        the current weights were uploaded and are pinned.
        """
        if solution.generation != self._generation:
            return False
        if self._source == "uploaded" and not replace_uploaded:
            return False
        if self._source == "fitted" and solution.n_samples < self._n_samples_solved:
            return False
        self._set_weights(solution.weights, "fitted")
        self._plans = dict(solution.plans)
        self._n_samples_solved = solution.n_samples
        return True

    def solve(self) -> None:
        """Solve W from every sample accepted so far and apply it (replaces uploaded weights)."""
        if self._accumulator is None:
            return
        self.install(self.solve_statistics(self.statistics()), replace_uploaded=True)

    def partial_fit(self, chunk: Any) -> LRR:
        """Accumulate a chunk and re-solve; uploaded weights stay pinned (statistics still grow)."""
        if self.accumulate(chunk) and self._source != "uploaded":
            self.solve()
        return self

    def fit(self, X: Any) -> LRR:
        """Replace the statistics by those of X and solve; raises ShapeError on a sample it cannot take."""
        X = _as_samples(X)
        bad = first_bad_sample(X)
        if bad is not None:
            raise ShapeError(
                f"X holds {bad.describe()}; expected finite samples within ±{MAX_FIT_MAGNITUDE:g} "
                "(drop or interpolate bad ones)"
            )
        self._bind(X.shape[1])
        assert self._accumulator is not None
        self._accumulator.clear()
        self._accumulator.add(X)
        self._generation += 1
        self.solve()
        return self

    # -- applying --------------------------------------------------------------

    def transform(self, chunk: Any) -> np.ndarray:
        """y = X @ (I - W) in the chunk's float dtype (integer input gives float32)."""
        X = _as_samples(chunk)
        self._bind(X.shape[1])
        dtype = _output_dtype(X.dtype)
        plan = self._plans.get(dtype)
        if plan is None:
            plan = self._plans[dtype] = ApplyPlan(self._weights, X.shape[1], dtype)
        if X.dtype != dtype:
            X = X.astype(dtype)
        return plan(X)

    def partial_fit_transform(self, chunk: Any) -> np.ndarray:
        """partial_fit then transform, on the same chunk."""
        return self.partial_fit(chunk).transform(chunk)

    def load_weights(self, W: Any) -> None:
        """Apply a pre-computed W (not I - W); it stays until reset, fit or solve."""
        weights = validate_weights(W)
        n = weights.shape[0]
        if self._n_channels is not None and n != self._n_channels:
            raise ChannelCountError(self._n_channels, n, what="weights")
        self._bind(n)
        self._generation += 1
        self._set_weights(weights, "uploaded")

    def reset(self) -> None:
        """Forget statistics, weights and the channel count; keep the settings."""
        self._n_channels = None
        self._grouping = None
        self._accumulator = None
        self._generation += 1
        self._n_samples_solved = 0
        if self._weights is not None or self._source != "none":
            self._version += 1
        self._weights = None
        self._source = "none"
        self._plans = {}

    # -- persistence -------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The complete state as JSON-able metadata plus float64 arrays (no pickling needed)."""
        meta: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "settings": self._settings.to_dict(),
            "n_channels": self._n_channels,
            "weights_version": self._version,
            "weights_source": self._source,
            "n_samples_solved": self._n_samples_solved,
            "channels": self._channels.to_dict() if self._channels is not None else None,
        }
        arrays: dict[str, np.ndarray] = {}
        if self._accumulator is not None:
            stats = self._accumulator.statistics()
            meta["n_samples"] = stats.n_samples
            meta["stats_weight"] = stats.weight
            arrays["cxx"] = stats.cxx  # already a fresh read-only copy
            arrays["col_sum"] = stats.col_sum
        if self._weights is not None:
            arrays["weights"] = self._weights  # read-only, replaced but never mutated
        return meta, arrays

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        *,
        staging_bytes: int = DEFAULT_STAGING_BYTES,
        statistics: bool = True,
    ) -> LRR:
        """Rebuild an engine from ``snapshot()`` output, validating every part and every count's range.

        Raises ``StatisticsError`` if the statistics hold NaN or infinity (with ``statistics=False``
        they are left out: settings, channel count, weights and versions are kept, the sample
        count starts again at 0), ``SnapshotError`` for anything else that is wrong.
        """
        try:
            if meta.get("format") != SNAPSHOT_FORMAT:
                raise SnapshotError(f"snapshot format {meta.get('format')!r}; expected {SNAPSHOT_FORMAT!r}")
            described = meta.get("channels")
            channels = ChannelDescription.from_dict(described) if described is not None else None
            engine = cls(LRRSettings.from_dict(dict(meta["settings"])), staging_bytes=staging_bytes, channels=channels)
            n = _meta_count(
                meta, "n_channels", minimum=1, maximum=2**31, required=True, nullable=True
            )  # callers cap it
            source = meta["weights_source"]
            if source not in ("none", "default", "fitted", "uploaded"):
                raise SnapshotError(f"unknown weights_source {source!r}")
            version = _meta_count(meta, "weights_version", maximum=MAX_WEIGHTS_VERSION, required=True)
            solved = _meta_count(meta, "n_samples_solved", maximum=MAX_SAMPLE_COUNT)
            if n is not None:
                engine._bind(n)
                if statistics and "cxx" in arrays:
                    stats = _restored_statistics(meta, arrays, n)
                    assert engine._accumulator is not None
                    engine._accumulator.load(stats)
            weights = arrays.get("weights")
            if weights is not None:
                W = validate_weights(weights)
                if n is None or W.shape[0] != n:
                    raise SnapshotError(f"weights are {W.shape}, expected ({n}, {n})")
                engine._set_weights(W, source)
            elif source not in ("none", "default"):
                raise SnapshotError(f"weights_source is {source!r} but the snapshot holds no weights")
            engine._version = version
            engine._n_samples_solved = solved
            return engine
        except (SnapshotError, StatisticsError):
            raise
        except (KeyError, TypeError, ValueError, ChannelDescriptionError) as exc:
            raise SnapshotError(f"snapshot is inconsistent: {exc}") from exc

    # -- internals -----------------------------------------------------------------

    def _bind(self, n_channels: int) -> None:
        """Bind the channel count on first use; refuse another one until reset."""
        if self._n_channels is not None:
            if n_channels != self._n_channels:
                raise ChannelCountError(self._n_channels, n_channels)
            return
        if self._channels is not None and len(self._channels) != n_channels:
            raise ChannelsMismatchError(len(self._channels), n_channels)
        grouping = resolve_grouping(self._settings, n_channels, self._channels)  # raises before any state changes
        self._n_channels = n_channels
        self._grouping = grouping
        self._accumulator = CovarianceAccumulator(n_channels, self._settings.half_life_samples, self._staging_bytes)
        self._apply_defaults()

    def _apply_defaults(self) -> None:
        """Install the cold-start weights of the current groups (identity: none)."""
        assert self._n_channels is not None
        default = default_weights(self.groups, self._n_channels, self._settings)
        if default is not None:
            default.flags.writeable = False
            self._set_weights(default, "default")
        elif self._weights is not None or self._source != "none":
            self._weights, self._source, self._plans = None, "none", {}
            self._version += 1

    def _set_weights(self, W: np.ndarray, source: WeightsSource) -> None:
        self._weights = W
        self._source = source
        self._version += 1
        self._plans = {}


_FLOAT32_INPUTS = {np.dtype(t) for t in ("float16", "float32", "int8", "uint8", "int16", "uint16", "int32", "uint32")}


def _output_dtype(dtype: np.dtype) -> np.dtype:
    """float64 stays float64; float32, float16 and integers up to 32 bits compute in float32."""
    return np.dtype(np.float32) if dtype in _FLOAT32_INPUTS else np.dtype(np.float64)


def _as_samples(chunk: Any) -> np.ndarray:
    """The chunk as a 2-D real numeric array (no copy when it already is one)."""
    X = np.asarray(chunk)
    if X.ndim != 2:
        raise ShapeError(f"expected a 2-D (samples, channels) array, got {X.ndim}-D with shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise ShapeError(f"expected real numbers (float or integer samples), got dtype {X.dtype}")
    return X


def validate_weights(W: Any) -> np.ndarray:
    """A read-only float64 copy of W after checking it is a finite square matrix (WeightsError if not).

    Public so that a caller can refuse bad weights before changing anything else.
    """
    try:
        arr = np.array(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights must be a numeric matrix: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise WeightsError(f"weights must be a square (channels, channels) matrix, got shape {arr.shape}")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        r, c = bad[0]
        raise WeightsError(f"weights must be finite; W[{r}, {c}] is {arr[r, c]}")
    arr.flags.writeable = False
    return arr


def _restored_statistics(meta: dict[str, Any], arrays: dict[str, np.ndarray], n: int) -> Statistics:
    cxx = np.asarray(arrays["cxx"], dtype=np.float64)
    col_sum = np.asarray(arrays.get("col_sum", np.zeros(n)), dtype=np.float64)
    if cxx.shape != (n, n) or col_sum.shape != (n,):
        raise SnapshotError(f"statistics have shapes {cxx.shape} and {col_sum.shape}, expected ({n}, {n}) and ({n},)")
    if not (np.isfinite(cxx).all() and np.isfinite(col_sum).all()):
        raise StatisticsError("the snapshot's statistics contain NaN or infinity; expected finite sums")
    n_samples = _meta_count(meta, "n_samples", maximum=MAX_SAMPLE_COUNT)
    weight = meta.get("stats_weight", n_samples)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
        raise SnapshotError(f"stats_weight is {weight!r}; expected a finite number >= 0 (the effective sample count)")
    return Statistics(cxx, col_sum, float(weight), n_samples)


def _meta_count(
    meta: dict[str, Any], name: str, *, maximum: int, minimum: int = 0, required: bool = False, nullable: bool = False
) -> Any:
    """An integer field of a snapshot, checked to lie in [minimum, maximum] (absent: 0, unless required)."""
    if name not in meta and not required:
        return 0
    value = meta[name]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise SnapshotError(f"{name} is {value!r}; expected an integer from {minimum} to {maximum}")
    return value
