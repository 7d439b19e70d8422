"""The PNG figures of docs/benchmarks.md (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from transform_grid import GridRow

DPI = 110


def _label(row: GridRow) -> str:
    return f"{row.n_channels}x{row.n_samples}\n{'f32' if row.dtype == 'float32' else 'i16'}"


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _finish(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    """Title, axis labels, a light grid and a small legend."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def transform_latency(rows: list[GridRow], path: Path) -> Path:
    """Paced round trip p50 and p99 of the service next to its floors, per configuration (log scale)."""
    fig, ax = plt.subplots(figsize=(12, 4.8))
    x = np.arange(len(rows))
    width = 0.27
    series = [
        ("transport floor (echo) p50", [r.echo_paced.p50 for r in rows], "#9e9e9e"),
        ("engine in-process p50", [r.engine_us for r in rows], "#64b5f6"),
        ("service round trip p50", [r.service_paced.p50 for r in rows], "#e65100"),
    ]
    for k, (name, values, color) in enumerate(series):
        ax.bar(x + (k - 1) * width, values, width, label=name, color=color)
    ax.scatter(
        x + width,
        [r.service_paced.p99 for r in rows],
        marker="_",
        s=300,
        color="black",
        label="service round trip p99",
        zorder=3,
    )
    ax.axhline(1000, color="red", linestyle=":", linewidth=1, label="1 ms (p99 target, 1 ms chunks)")
    ax.set_yscale("log")
    ax.set_ylabel("µs")
    ax.set_xticks(x, [_label(r) for r in rows], fontsize=8)
    ax.set_title("Transform round trip at real-time pacing vs its floors")
    ax.legend(fontsize=8, ncols=3)
    return _save(fig, path)


def overhead_breakdown(rows: list[GridRow], path: Path) -> Path:
    """Stacked p50: transport floor + engine + the service's own overhead (float32 rows)."""
    rows = [r for r in rows if r.dtype == "float32"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(len(rows))
    transport = np.array([r.echo_paced.p50 for r in rows])
    engine = np.array([r.engine_us for r in rows])
    overhead = np.array([max(r.overhead_p50_us, 0.0) for r in rows])
    ax.bar(x, transport, label="transport floor (echo)", color="#9e9e9e")
    ax.bar(x, engine, bottom=transport, label="engine transform", color="#64b5f6")
    ax.bar(x, overhead, bottom=transport + engine, label="service overhead (rest)", color="#e65100")
    ax.set_yscale("log")
    ax.set_ylabel("µs at p50")
    ax.set_xticks(x, [_label(r) for r in rows], fontsize=8)
    ax.set_title("Where a float32 round trip goes (p50)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _latency_cdf(latencies: dict[str, list[float]], names: dict[str, str], title: str, path: Path) -> Path:
    """One CDF line per condition of round trips given in µs, labelled by `names`."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key, values in latencies.items():
        ordered = np.sort(np.asarray(values))
        if ordered.size:
            ax.plot(ordered, np.arange(1, ordered.size + 1) / ordered.size, label=names.get(key, key))
    ax.set_xscale("log")
    _finish(ax, title, "round trip, µs", "fraction of frames")
    return _save(fig, path)


def fit_cdf(latencies: dict[str, list[float]], path: Path) -> Path:
    """CDF of the paced 30 x 384 transform round trip alone and with fit traffic on the same key."""
    names = {
        "alone": "no fit traffic",
        "realtime_fit": "with real-time fit traffic",
        "full_speed_fit": "with full-speed fit traffic",
        "control_stream": "with a second transform stream (control)",
    }
    return _latency_cdf(latencies, names, "Transform 30 x 384 float32, paced, with and without fit traffic", path)


def rest_cdf(latencies: dict[str, list[float]], path: Path) -> Path:
    """CDF of the paced 30 x 384 transform round trip alone and while REST clients move 1024 x 1024 weights."""
    names = {"alone": "no REST traffic", "loaded": "4 clients uploading and downloading 1024 x 1024 weights (CSV)"}
    return _latency_cdf(latencies, names, "Transform 30 x 384 float32, paced, with and without REST load", path)


def rigs(rows: list[dict[str, Any]], path: Path) -> Path:
    """p50 and p99 round trip against the number of concurrent 96-channel rigs."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    counts = [r["rigs"] for r in rows]
    ax.plot(counts, [r["latency"]["p50"] for r in rows], "o-", label="p50")
    ax.plot(counts, [float(np.median(r["p99_by_repeat"])) for r in rows], "s-", label="p99 (median of the runs)")
    ax.plot(counts, [r["echo"]["p99"] for r in rows], "s--", color="#9e9e9e", label="p99 of the bare echo (floor)")
    ax.axhline(5000, color="red", linestyle=":", label="5 ms limit")
    ax.set_yscale("log")
    _finish(ax, "Concurrent rigs", "concurrent rigs (96 ch, 30 kHz, 1 ms chunks)", "round trip, µs")
    return _save(fig, path)


def blas(rows: list[dict[str, Any]], path: Path) -> Path:
    """p50 and p99 for 1 vs 2 BLAS threads, quiet and with a busy neighbour."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    labels = [
        f"{r['where']} {r['shape']}\n{r['threads']} thr, {'busy' if r['busy_neighbour'] else 'quiet'}" for r in rows
    ]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["latency"]["p50"] for r in rows], 0.4, label="p50", color="#64b5f6")
    ax.bar(x + 0.2, [r["latency"]["p99"] for r in rows], 0.4, label="p99", color="#e65100")
    ax.set_yscale("log")
    ax.set_ylabel("µs")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_title("Transform latency: BLAS threads x neighbour load")
    ax.legend(fontsize=8)
    return _save(fig, path)
