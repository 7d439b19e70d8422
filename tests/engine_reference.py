"""Independent reference computations for the engine tests: one regression per channel."""

from __future__ import annotations

import numpy as np


def ridge_weights(X: np.ndarray, groups: list[list[int]], ridge: float = 0.0) -> np.ndarray:
    """W with column c = ridge regression of channel c on the other channels of its group."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[1]
    W = np.zeros((n, n))
    for group in groups:
        for c in group:
            others = [i for i in group if i != c]
            A = X[:, others]
            if ridge == 0.0:
                w, *_ = np.linalg.lstsq(A, X[:, c], rcond=None)
            else:
                w = np.linalg.solve(A.T @ A + ridge * np.eye(len(others)), A.T @ X[:, c])
            W[others, c] = w
    return W


def loo_car(X: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Leave-one-out average reference: y_i = x_i - mean of the other channels of i's group."""
    X = np.asarray(X, dtype=np.float64)
    y = X.copy()
    for group in groups:
        for c in group:
            others = [i for i in group if i != c]
            y[:, c] = X[:, c] - X[:, others].mean(axis=1)
    return y


def mixed_signals(rng: np.random.Generator, n_samples: int, n_channels: int, n_sources: int = 3) -> np.ndarray:
    """Independent per-channel noise plus shared sources mixed into every channel (what LRR removes)."""
    sources = rng.standard_normal((n_samples, n_sources)) * 3.0
    mixing = rng.standard_normal((n_sources, n_channels))
    return rng.standard_normal((n_samples, n_channels)) + sources @ mixing
