"""The expensive half of LRR: per-group ridge regressions from the statistics to W.

For a group with covariance C_g and ridge λ, one inverse A⁻¹ = (C_g + λI)⁻¹ gives
every channel's regression on the others at once (block-inverse identity):
W[:, c] = -A⁻¹[:, c] / A⁻¹[c, c], diag(W) = 0. Column c of W predicts channel c.
"""

from __future__ import annotations

import numpy as np

from lrr_service.core.errors import StatisticsError
from lrr_service.core.settings import LRRSettings
from lrr_service.core.statistics import Statistics

FLAT_RELATIVE_VARIANCE = 1e-12
"""A channel whose variance is below this fraction of its group's largest is flat (silent or railed)."""

SINGULAR_FLOOR = 1e-9
"""When a group's covariance cannot be inverted, ridge by this fraction of its mean diagonal (λ→0⁺ limit)."""


def default_weights(groups: list[np.ndarray], n_channels: int, settings: LRRSettings) -> np.ndarray | None:
    """W used before any fit: None (identity) or leave-one-out average reference per group."""
    if settings.init_default == "identity":
        return None
    W = np.zeros((n_channels, n_channels))
    for group in groups:
        _set_car(W, group, settings.min_group_size)
    return W


def solve_weights(stats: Statistics, groups: list[np.ndarray], settings: LRRSettings) -> np.ndarray:
    """W (n, n) float64 from the statistics; deterministic for the same inputs.

    Flat channels are neither predicted nor used as predictors (they pass through).
    A group left with fewer live channels than ``min_group_size`` passes through; a group
    with no ridge and fewer effective samples than live channels is undetermined and keeps
    the default weights (identity or CAR) until enough data has arrived. Raises
    StatisticsError for statistics holding NaN or infinity, whose every channel would look flat.
    """
    if not (np.isfinite(stats.cxx).all() and np.isfinite(stats.col_sum).all() and np.isfinite(stats.weight)):
        raise StatisticsError(
            "the statistics hold NaN or infinity; no weights can be solved from them: "
            "reset the session and fit it again"
        )
    n = stats.n_channels
    W = np.zeros((n, n))
    variance, resolution = _channel_variances(stats)
    for group in groups:
        active = group[_live(variance[group], resolution[group])]
        k = active.size
        if k < settings.min_group_size or k < 2:
            continue
        if settings.ridge_lambda == 0.0 and stats.weight < k:
            if settings.init_default == "car":
                _set_car(W, active, settings.min_group_size)
            continue
        if k == n:  # one group of every live channel: no gather, no scatter
            W = _group_weights(stats.cxx, settings.ridge_lambda)
            continue
        block = stats.cxx[np.ix_(active, active)]
        W[np.ix_(active, active)] = _group_weights(block, settings.ridge_lambda)
    return W


def _group_weights(cov: np.ndarray, ridge: float) -> np.ndarray:
    k = cov.shape[0]
    A = cov + ridge * np.eye(k)
    inverse = _stable_inverse(A)
    W = inverse / -np.diag(inverse)[None, :]
    np.fill_diagonal(W, 0.0)
    return W


def _stable_inverse(A: np.ndarray) -> np.ndarray:
    """A⁻¹, or (A + εI)⁻¹ with a tiny ε when A is singular: the minimum-norm limit of ridge."""
    try:
        inverse = np.linalg.inv(A)
        if np.all(np.isfinite(inverse)) and np.all(np.diag(inverse) > 0):
            return inverse
    except np.linalg.LinAlgError:
        pass
    floor = SINGULAR_FLOOR * max(float(np.trace(A)) / A.shape[0], np.finfo(np.float64).tiny)
    return np.linalg.inv(A + floor * np.eye(A.shape[0]))


def _channel_variances(stats: Statistics) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's variance, and the rounding error below which a variance means zero."""
    if stats.weight <= 0:
        zeros = np.zeros(stats.n_channels)
        return zeros, zeros
    mean_square = np.diag(stats.cxx) / stats.weight
    mean = stats.col_sum / stats.weight
    # mean_square - mean² loses ~eps·mean_square to rounding
    return mean_square - mean * mean, 64 * np.finfo(np.float64).eps * mean_square


def _live(variance: np.ndarray, resolution: np.ndarray) -> np.ndarray:
    """Mask of the channels of one group whose variance is distinguishable from zero."""
    threshold = np.maximum(resolution, FLAT_RELATIVE_VARIANCE * variance.max(initial=0.0))
    live: np.ndarray = (variance > threshold) & (variance > 0)
    return live


def _set_car(W: np.ndarray, group: np.ndarray, min_group_size: int) -> None:
    k = group.size
    if k < max(min_group_size, 2):
        return
    block = np.full((k, k), 1.0 / (k - 1))
    np.fill_diagonal(block, 0.0)
    W[np.ix_(group, group)] = block
