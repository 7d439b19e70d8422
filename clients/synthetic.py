"""A synthetic acquisition rig for `lrr demo`: independent channel signals plus shared artifacts,
and the part of a recording the artifacts explain, which `lrr demo` measures with clients/cleaning.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrr_service.clients.cleaning import decibels


@dataclass(frozen=True)
class SyntheticRig:
    """`recording` = `signals` + artifacts; `sources` are the shared artifact waveforms (samples, k)."""

    recording: np.ndarray
    signals: np.ndarray
    sources: np.ndarray
    sample_rate: float


def make_rig(
    n_channels: int = 8,
    n_samples: int = 6000,
    sample_rate: float = 1000.0,
    line_hz: float = 60.0,
    seed: int = 0,
) -> SyntheticRig:
    """N channels of independent unit-variance noise plus line noise and a common-mode drift.

    Each channel sees the shared artifacts with its own gain (and its own line-noise phase),
    which is the situation LRR is built for: the artifact on one channel is predictable from the others.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sample_rate
    line_sin, line_cos = np.sin(2 * np.pi * line_hz * t), np.cos(2 * np.pi * line_hz * t)
    drift = np.cumsum(rng.standard_normal(n_samples)) / np.sqrt(sample_rate)
    drift = drift - drift.mean() + 0.5 * np.sin(2 * np.pi * 0.3 * t)
    sources = np.column_stack([line_sin, line_cos, drift])
    line_gain = rng.uniform(3.0, 6.0, n_channels)
    line_phase = rng.uniform(0, 2 * np.pi, n_channels)
    drift_gain = rng.uniform(2.0, 5.0, n_channels)
    mixing = np.vstack([line_gain * np.cos(line_phase), line_gain * np.sin(line_phase), drift_gain])
    signals = rng.standard_normal((n_samples, n_channels))
    recording = signals + sources @ mixing
    return SyntheticRig(recording, signals, sources, sample_rate)


def artifact_part(data: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """The part of `data` (samples, channels) explained by the artifact `sources` (least squares), float64."""
    coefficients, *_ = np.linalg.lstsq(sources, data, rcond=None)
    explained: np.ndarray = sources @ coefficients
    return explained


def artifact_power(data: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per channel: the mean power of the part of `data` explained by the artifact `sources` (least squares)."""
    power: np.ndarray = np.mean(artifact_part(data, sources) ** 2, axis=0)
    return power


def reduction_db(before: np.ndarray, after: np.ndarray) -> float:
    """Overall artifact power reduction in dB (positive = less artifact), from the powers summed over channels
    (`cleaning.decibels`: +inf when nothing is left, NaN when there was nothing to begin with)."""
    return decibels(float(np.sum(before)), float(np.sum(after)))
