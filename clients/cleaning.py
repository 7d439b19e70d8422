"""What the cleaning did: each channel's mean power before and after LRR and the reduction in dB,
overall and per channel group, as a table for people, a JSON-ready dict and a PNG figure.

Definitions (numpy only, float64 whatever the input dtype):

- A channel's power is its mean square over the samples used (any DC offset included), before (the
  input X) and after (the output Y). A sample (row) is left out, and counted, when its power in X or
  in Y is not a finite float64: it holds NaN or ±inf (or values beyond ~1e154, whose square overflows).
- Reduction in dB is ``10 log10(P_before / P_after)``: positive when the cleaning removed power.
  It is +inf when only P_after is 0 (everything removed), -inf when only P_before is 0 (power added to a
  silent channel), NaN when both are 0 or no sample was usable. Tables print ``inf``, ``-inf`` and
  ``n/a``; the JSON form has ``null`` for every non-finite dB (the powers say which case it was).
- A group's (and the overall) reduction is the ratio of the summed channel powers, so loud channels
  weigh more; the median of the channels' dB and the worst channel (smallest dB; NaN channels left out)
  are given beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrr_service.clients.errors import LRRClientError
from lrr_service.clients.table import format_table

MAX_CHANNEL_ROWS = 64
"""Up to this many channels the table has one row per channel; beyond, per group and the worst channels."""

WORST_ROWS = 10
"""How many of the worst channels the table lists when there are too many channels for one row each."""

BLOCK_ELEMENTS = 1 << 22
"""`cleaning_report` squares at most this many samples × channels at once (32 MiB of float64)."""


_MISSING_MATPLOTLIB = "drawing the report needs matplotlib; install it with: pip install 'lrr-service[report]'"


class ReportError(LRRClientError):
    """The report cannot be drawn (an optional dependency is missing)."""


def decibels(before: float, after: float) -> float:
    """``10 log10(before / after)``: +inf when only `after` is 0, -inf when only `before` is 0,
    NaN when both are 0 or either is NaN."""
    return float(_decibels(np.array([before], dtype=np.float64), np.array([after], dtype=np.float64))[0])


def _decibels(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Element-wise `decibels` of two float64 arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        result: np.ndarray = 10.0 * np.log10(before / after)
    return result


@dataclass(frozen=True)
class Reduction:
    """Some channels' summed mean power before and after, and the reduction they show."""

    channels: tuple[int, ...]
    """The channels, ascending."""
    power_before: float
    """Sum of the channels' mean powers before the cleaning (NaN when no sample was usable)."""
    power_after: float
    """The same after the cleaning."""
    reduction_db: float
    """``decibels(power_before, power_after)``: the ratio of the summed powers."""
    median_channel_db: float
    """Median of the channels' reduction dB, NaN channels left out (NaN when none is left)."""
    worst_channel: int | None
    """The channel with the smallest reduction dB (the lowest index on ties), NaN channels left out."""
    worst_channel_db: float
    """That channel's reduction dB (NaN when there is no worst channel)."""


@dataclass(frozen=True, eq=False)
class CleaningReport:
    """Per channel power before and after and reduction dB; the same per group and overall."""

    power_before: np.ndarray
    """(n_channels,) float64: each channel's mean power in the input."""
    power_after: np.ndarray
    """(n_channels,) float64: each channel's mean power in the output."""
    reduction_db: np.ndarray
    """(n_channels,) float64: ``10 log10(power_before / power_after)`` per channel."""
    n_samples: int
    """Samples (rows) measured."""
    n_excluded: int
    """Samples left out because their power in the input or the output was not finite."""
    overall: Reduction
    """Every channel together."""
    groups: tuple[Reduction, ...]
    """One per channel group given, in the order given (empty when no groups were given)."""

    @property
    def n_channels(self) -> int:
        """Number of channels measured."""
        return int(self.power_before.shape[0])

    def group_of(self) -> np.ndarray:
        """(n_channels,) int64: each channel's index in `groups`, -1 for a channel in no group."""
        index = np.full(self.n_channels, -1, dtype=np.int64)
        for gi, group in enumerate(self.groups):
            index[list(group.channels)] = gi
        return index

    @property
    def ungrouped(self) -> tuple[int, ...]:
        """The channels in no group, when groups were given (they pass through LRR untouched)."""
        if not self.groups:
            return ()
        return tuple(int(c) for c in np.flatnonzero(self.group_of() < 0))


class CleaningAccumulator:
    """Builds a `CleaningReport` chunk by chunk, keeping only per-channel sums (no samples)."""

    def __init__(self, groups: Sequence[Sequence[int]] | None = None, n_channels: int | None = None) -> None:
        """`groups`: lists of channel indices (disjoint); `n_channels`, if known, is checked against every chunk."""
        self._groups = None if groups is None else _checked_groups(groups)
        self._n_channels: int | None = None
        self._sum_before = np.zeros(0)
        self._sum_after = np.zeros(0)
        self.n_samples = 0
        """Samples added and measured so far."""
        self.n_excluded = 0
        """Samples added but left out (power not finite in the input or the output)."""
        if n_channels is not None:
            self._bind(n_channels)

    @property
    def n_channels(self) -> int | None:
        """The channel count, once known."""
        return self._n_channels

    def add(self, x_chunk: np.ndarray, y_chunk: np.ndarray) -> None:
        """Add a chunk of input and the matching output (samples × channels, same shape, real numbers)."""
        x, y = _checked_pair(x_chunk, y_chunk)
        if self._n_channels is None:
            self._bind(x.shape[1])
        elif x.shape[1] != self._n_channels:
            raise ValueError(f"chunk has {x.shape[1]} channels but the earlier ones had {self._n_channels}")
        with np.errstate(over="ignore", invalid="ignore"):
            square_x = np.square(x, dtype=np.float64)
            square_y = np.square(y, dtype=np.float64)
            usable = np.isfinite(square_x.sum(axis=1)) & np.isfinite(square_y.sum(axis=1))
        used = int(np.count_nonzero(usable))
        if used < usable.shape[0]:
            square_x, square_y = square_x[usable], square_y[usable]
        self._sum_before += square_x.sum(axis=0)
        self._sum_after += square_y.sum(axis=0)
        self.n_samples += used
        self.n_excluded += int(usable.shape[0]) - used

    def report(self) -> CleaningReport:
        """The report of everything added so far; ValueError if the channel count is still unknown."""
        if self._n_channels is None:
            raise ValueError("nothing to report: no chunk was added and no channel count was given")
        with np.errstate(divide="ignore", invalid="ignore"):
            before = self._sum_before / self.n_samples
            after = self._sum_after / self.n_samples
        reduction = _decibels(before, after)
        groups = tuple(_reduction(group, before, after, reduction) for group in self._groups or [])
        overall = _reduction(list(range(self._n_channels)), before, after, reduction)
        return CleaningReport(before, after, reduction, self.n_samples, self.n_excluded, overall, groups)

    def _bind(self, n_channels: int) -> None:
        """Fix the channel count and check the groups against it."""
        if n_channels < 1:
            raise ValueError(f"the data needs at least one channel, got {n_channels}")
        for gi, group in enumerate(self._groups or []):
            bad = [c for c in group if c >= n_channels]
            if bad:
                raise ValueError(
                    f"groups[{gi}] holds channel {bad[0]}; with {n_channels} channels the valid range is "
                    f"0..{n_channels - 1}"
                )
        self._n_channels = n_channels
        self._sum_before = np.zeros(n_channels)
        self._sum_after = np.zeros(n_channels)


def cleaning_report(x: np.ndarray, y: np.ndarray, groups: Sequence[Sequence[int]] | None = None) -> CleaningReport:
    """The report of input `x` cleaned into `y` (samples × channels, same shape; float or integer dtypes).

    Works through row blocks, so the float64 temporaries stay small whatever the recording's length.
    """
    x, y = _checked_pair(x, y)
    accumulator = CleaningAccumulator(groups, n_channels=x.shape[1])
    step = max(1, BLOCK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, x.shape[0], step):
        accumulator.add(x[start : start + step], y[start : start + step])
    return accumulator.report()


def report_json(report: CleaningReport, *, quantity: str = "power") -> dict[str, Any]:
    """The report as JSON-ready data (non-finite numbers become None); powers are keyed
    ``{quantity}_before`` / ``{quantity}_after``."""
    group_of = report.group_of()

    def summary(reduction: Reduction) -> dict[str, Any]:
        worst = None
        if reduction.worst_channel is not None:
            worst = {"channel": reduction.worst_channel, "reduction_db": _finite(reduction.worst_channel_db)}
        return {
            f"{quantity}_before": _finite(reduction.power_before),
            f"{quantity}_after": _finite(reduction.power_after),
            "reduction_db": _finite(reduction.reduction_db),
            "median_channel_reduction_db": _finite(reduction.median_channel_db),
            "worst_channel": worst,
        }

    return {
        "n_channels": report.n_channels,
        "n_samples": report.n_samples,
        "n_samples_excluded": report.n_excluded,
        **summary(report.overall),
        "groups": [
            {"group": gi, "channel_indices": list(group.channels), **summary(group)}
            for gi, group in enumerate(report.groups)
        ],
        "ungrouped_channels": list(report.ungrouped),
        "channels": [
            {
                "channel": c,
                "group": int(group_of[c]) if group_of[c] >= 0 else None,
                f"{quantity}_before": _finite(float(report.power_before[c])),
                f"{quantity}_after": _finite(float(report.power_after[c])),
                "reduction_db": _finite(float(report.reduction_db[c])),
            }
            for c in range(report.n_channels)
        ],
    }


def report_text(
    report: CleaningReport, *, label: str = "power", max_channel_rows: int = MAX_CHANNEL_ROWS, worst: int = WORST_ROWS
) -> str:
    """The report for people: one row per channel up to `max_channel_rows` channels, else the `worst`
    channels (least reduction first); a row per group when there is more than one; an overall line."""
    sections = []
    grouped = _has_real_groups(report)
    if report.n_channels <= max_channel_rows:
        sections.append(_channel_table(report, range(report.n_channels), label, grouped))
    else:
        order = _worst_first(report.reduction_db)[:worst]
        heading = (
            f"the {len(order)} channels of {report.n_channels} with the least reduction (the JSON form lists them all)"
        )
        sections.append(heading + "\n" + _channel_table(report, order, label, grouped))
    if grouped:
        sections.append(
            "per group (reduction of the group's summed power):\n"
            + _group_table(report, label)
            + (f"\nin no group (passed through): {_ranges(report.ungrouped)}" if report.ungrouped else "")
        )
    overall = report.overall
    line = f"overall {label} reduction: {_db(overall.reduction_db)} dB ({report.n_channels} channels"
    if overall.worst_channel is not None:
        line += (
            f"; median channel {_db(overall.median_channel_db)} dB, "
            f"worst channel {overall.worst_channel}: {_db(overall.worst_channel_db)} dB"
        )
    line += ")"
    samples = f"{report.n_samples} samples measured"
    if report.n_excluded:
        samples += f", {report.n_excluded} left out (NaN or infinite in the input or the output)"
    sections.append(f"{line}\n{samples}")
    return "\n\n".join(sections)


def require_plotting() -> None:
    """Raise ReportError, naming the extra to install, unless matplotlib can be imported (check before the work)."""
    try:  # the ignores: mypy may run where the report extra is not installed
        import matplotlib  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        raise ReportError(_MISSING_MATPLOTLIB) from None


def plot_report(
    report: CleaningReport,
    path: Path | str,
    weights: np.ndarray | None = None,
    *,
    title: str | None = None,
    label: str = "power",
) -> Path:
    """Write a PNG to `path`: per-channel reduction bars and, when `weights` (W, n × n) is given, W as a
    heatmap (diverging colours centred on 0); channels in group order with the group boundaries drawn."""
    try:
        from matplotlib.figure import Figure  # type: ignore[import-not-found,unused-ignore]
        from matplotlib.ticker import FuncFormatter, MaxNLocator  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ReportError(_MISSING_MATPLOTLIB) from None
    n = report.n_channels
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (n, n):
            raise ValueError(f"weights must be {n} x {n} for {n} channels, got shape {weights.shape}")
    order, boundaries = _group_order(report)

    def channel_ticks(axis: Any) -> None:
        """Integer ticks labelled with the channel shown at that position."""
        axis.set_major_locator(MaxNLocator(integer=True))
        axis.set_major_formatter(
            FuncFormatter(lambda value, _: str(order[round(value)]) if 0 <= round(value) < n else "")
        )

    axis_name = "channel" if np.array_equal(order, np.arange(n)) else "channel (in group order)"

    figure = Figure(figsize=(13.0, 5.0) if weights is not None else (8.0, 4.5), layout="constrained")
    bars_axes = figure.add_subplot(1, 2, 1) if weights is not None else figure.add_subplot(1, 1, 1)
    _draw_bars(bars_axes, report, order, boundaries, label)
    bars_axes.set_xlabel(axis_name)
    channel_ticks(bars_axes.xaxis)
    if weights is not None:
        heat_axes = figure.add_subplot(1, 2, 2)
        shown = weights[np.ix_(order, order)]
        finite = np.abs(shown[np.isfinite(shown)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        image = heat_axes.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        for boundary in boundaries:
            heat_axes.axhline(boundary - 0.5, color="black", linewidth=0.8)
            heat_axes.axvline(boundary - 0.5, color="black", linewidth=0.8)
        heat_axes.set_title("weights W (column j predicts channel j)")
        heat_axes.set_xlabel(f"predicted {axis_name}")
        heat_axes.set_ylabel(f"predictor {axis_name}")
        channel_ticks(heat_axes.xaxis)
        channel_ticks(heat_axes.yaxis)
        figure.colorbar(image, ax=heat_axes, label="W[i, j]")
    figure.suptitle(
        title
        or f"LRR cleaning: {_db(report.overall.reduction_db)} dB overall, {n} channels, {report.n_samples} samples"
    )
    path = Path(path)
    figure.savefig(path, format="png", dpi=100)
    return path


# -- internals -------------------------------------------------------------------------------------


def _checked_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`x` and `y` as arrays, refused with ValueError unless 2-D, of one shape and of real numbers."""
    x, y = np.asarray(x), np.asarray(y)
    for name, array in (("input", x), ("output", y)):
        if array.ndim != 2:
            raise ValueError(f"{name} must be 2-D (samples x channels), got shape {array.shape}")
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{name} must hold real numbers (float or integer), got dtype {array.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"input has shape {x.shape} but output has {y.shape}; they must match sample for sample")
    return x, y


def _checked_groups(groups: Sequence[Sequence[int]]) -> list[list[int]]:
    """The groups as sorted lists of channel indices; ValueError if one is empty, negative or shared."""
    seen: dict[int, int] = {}
    result = []
    for gi, group in enumerate(groups):
        members = sorted(int(c) for c in group)
        if not members:
            raise ValueError(f"groups[{gi}] is empty; every group needs at least one channel")
        if members[0] < 0:
            raise ValueError(f"groups[{gi}] holds {members[0]}; channel indices must be >= 0")
        for c in members:
            if c in seen:
                raise ValueError(f"channel {c} is in groups[{seen[c]}] and groups[{gi}]; groups must not overlap")
            seen[c] = gi
        result.append(members)
    return result


def _reduction(channels: list[int], before: np.ndarray, after: np.ndarray, reduction: np.ndarray) -> Reduction:
    """The summed-power reduction of `channels`, with the median and the worst of their channel dBs."""
    index = np.array(channels, dtype=np.int64)
    total_before, total_after = float(before[index].sum()), float(after[index].sum())
    db = reduction[index]
    measured = ~np.isnan(db)
    if not measured.any():
        return Reduction(
            tuple(channels), total_before, total_after, decibels(total_before, total_after), math.nan, None, math.nan
        )
    worst = int(index[measured][np.argmin(db[measured])])
    return Reduction(
        tuple(channels),
        total_before,
        total_after,
        decibels(total_before, total_after),
        float(np.median(db[measured])),
        worst,
        float(reduction[worst]),
    )


def _finite(value: float) -> float | None:
    """`value`, or None when it is NaN or infinite (JSON has neither)."""
    return value if math.isfinite(value) else None


def _db(value: float) -> str:
    """A dB value for people: one decimal, inf, -inf or n/a."""
    return "n/a" if math.isnan(value) else f"{value:.1f}"  # Python writes ±inf as inf and -inf


def _power(value: float) -> str:
    """A power for people: four significant digits, or n/a."""
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def _has_real_groups(report: CleaningReport) -> bool:
    """Whether the groups say more than the overall line: more than one, or some channel in none."""
    return len(report.groups) > 1 or (len(report.groups) == 1 and bool(report.ungrouped))


def _worst_first(reduction_db: np.ndarray) -> list[int]:
    """Channel indices by reduction dB, smallest first, NaN last, ties by index."""
    key = np.where(np.isnan(reduction_db), np.inf, reduction_db)
    nan_last = np.isnan(reduction_db)
    return [int(c) for c in np.lexsort((np.arange(key.size), key, nan_last))]


def _channel_table(report: CleaningReport, channels: Sequence[int], label: str, grouped: bool) -> str:
    """One row per channel of `channels`, with its group when there are groups."""
    group_of = report.group_of()
    headers = ["channel", *(["group"] if grouped else []), f"{label} before", f"{label} after", "reduction dB"]
    rows = [
        [
            str(c),
            *([str(group_of[c]) if group_of[c] >= 0 else "-"] if grouped else []),
            _power(float(report.power_before[c])),
            _power(float(report.power_after[c])),
            _db(float(report.reduction_db[c])),
        ]
        for c in channels
    ]
    return format_table(headers, rows)


def _group_table(report: CleaningReport, label: str) -> str:
    """One row per group: its channels, summed powers, reduction, median channel dB and worst channel."""
    headers = ["group", "channels", f"{label} before", f"{label} after", "reduction dB", "median ch dB", "worst ch"]
    rows = [
        [
            str(gi),
            _ranges(group.channels),
            _power(group.power_before),
            _power(group.power_after),
            _db(group.reduction_db),
            _db(group.median_channel_db),
            "-" if group.worst_channel is None else f"{group.worst_channel} ({_db(group.worst_channel_db)} dB)",
        ]
        for gi, group in enumerate(report.groups)
    ]
    return format_table(headers, rows)


def _ranges(channels: Sequence[int]) -> str:
    """Channel indices compactly: runs as first-last, e.g. ``0-3,8,10-11``."""
    parts = []
    start: int | None = None
    previous: int | None = None
    for c in [*channels, None]:
        if c is not None and previous is not None and c == previous + 1:
            previous = c
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = c
    return ",".join(parts)


def _group_order(report: CleaningReport) -> tuple[np.ndarray, list[int]]:
    """Channels ordered group after group (channels in no group last), and the positions where a new group starts."""
    if not report.groups:
        return np.arange(report.n_channels), []
    blocks = [list(group.channels) for group in report.groups]
    if report.ungrouped:
        blocks.append(list(report.ungrouped))
    order = np.array([c for block in blocks for c in block], dtype=np.int64)
    boundaries = [int(b) for b in np.cumsum([len(block) for block in blocks])[:-1]]
    return order, boundaries


def _draw_bars(axes: Any, report: CleaningReport, order: np.ndarray, boundaries: list[int], label: str) -> None:
    """Reduction dB per channel as bars in `order`, coloured by group; ±inf and n/a channels as markers."""
    db = report.reduction_db[order]
    group_of = report.group_of()[order]
    palette = [f"C{i % 10}" for i in range(len(report.groups))]
    colours = [palette[g] if g >= 0 else "0.6" for g in group_of] if report.groups else "C0"
    positions = np.arange(order.size)
    finite = np.isfinite(db)
    heights = np.where(finite, db, 0.0)
    top = max(1.0, float(heights.max(initial=0.0)))
    bottom = min(0.0, float(heights.min(initial=0.0)))
    axes.bar(positions, heights, width=0.8 if order.size <= 200 else 1.0, color=colours, linewidth=0)
    for mask, y, marker, name in (
        (db == np.inf, top, "^", "inf (nothing left)"),
        (db == -np.inf, bottom, "v", "-inf (was silent)"),
        (np.isnan(db), 0.0, "x", "n/a (silent before and after)"),
    ):
        if mask.any():
            axes.plot(positions[mask], np.full(int(mask.sum()), y), marker, color="black", label=name, linestyle="")
    overall = report.overall.reduction_db
    if math.isfinite(overall):
        axes.axhline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.1f} dB")
    axes.axhline(0.0, color="0.3", linewidth=0.6)
    for boundary in boundaries:
        axes.axvline(boundary - 0.5, color="black", linewidth=0.8)
    axes.set_xlim(-0.5, order.size - 0.5)
    axes.set_ylim(bottom - 0.05 * (top - bottom), top + 0.3 * (top - bottom))  # room for the legend
    axes.set_ylabel(f"reduction dB (10 log10 {label} before / after)")
    axes.set_title(f"{label} reduction per channel")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper right", fontsize="small", ncols=2)
