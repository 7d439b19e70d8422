"""The cheap half of LRR: accumulating the channel covariance C = XᵀX in float64.

Chunks are staged into a float64 buffer and folded into C in blocks, because one
large symmetric rank-k update runs several times faster than many 30-row ones. There are
two staging blocks, so that a real-time caller can fold a full one in another thread while
chunks keep arriving in the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_STAGING_BYTES = 4 << 20


@dataclass(frozen=True)
class Statistics:
    """An immutable copy of the sufficient statistics, safe to hand to another thread."""

    cxx: np.ndarray
    """(n, n) float64: Σ wᵢ xᵢᵀxᵢ over accepted samples (wᵢ = 1 without forgetting)."""
    col_sum: np.ndarray
    """(n,) float64: Σ wᵢ xᵢ, used only to tell flat channels from live ones."""
    weight: float
    """Σ wᵢ: the effective number of samples."""
    n_samples: int
    """Samples accepted, counted without forgetting."""
    generation: int = 0
    """The engine's generation when copied, so a solution of stale statistics is recognised."""

    @property
    def n_channels(self) -> int:
        return int(self.cxx.shape[0])


def staging_rows(n_channels: int, staging_bytes: int = DEFAULT_STAGING_BYTES) -> int:
    """Rows of each of the accumulator's two staging blocks, which share ``staging_bytes`` between them."""
    return max(32, staging_bytes // (2 * 8 * max(n_channels, 1)))


class CovarianceAccumulator:
    """Accumulates C (and column sums) of 2-D chunks in float64, whatever dtype comes in.

    With ``half_life_samples`` set, sample i of a stream of N carries weight
    α^(N-1-i), α = 2^(-1/half_life), exactly: chunking never changes the result.

    Chunks are staged in one of two blocks. A full block is *sealed* and the other one
    takes the next chunks, so the sealed block's fold (``fold_sealed``) can run in another
    thread while staging goes on. The contract: ``fold_sealed`` may run concurrently only
    with ``add`` calls for which ``fold_due`` was False; every other method needs it done.
    """

    def __init__(
        self, n_channels: int, half_life_samples: float | None = None, staging_bytes: int = DEFAULT_STAGING_BYTES
    ) -> None:
        self.n_channels = n_channels
        self.decay = None if half_life_samples is None else 0.5 ** (1.0 / half_life_samples)
        self._cxx = np.zeros((n_channels, n_channels))
        self._col_sum = np.zeros(n_channels)
        self._weight = 0.0
        self.n_samples = 0
        rows = staging_rows(n_channels, staging_bytes)
        self._blocks = (np.empty((rows, n_channels)), np.empty((rows, n_channels)))
        self._staging = self._blocks[0]
        self._staged = 0
        self._sealed: np.ndarray | None = None

    @property
    def has_sealed_block(self) -> bool:
        """Whether a full staging block waits for ``fold_sealed``."""
        return self._sealed is not None

    def add(self, chunk: np.ndarray) -> None:
        """Fold a (samples, n_channels) chunk in; the caller has validated its shape."""
        rows = chunk.shape[0]
        capacity = self._staging.shape[0]
        if rows >= capacity:
            self._flush()
            self._fold(np.asarray(chunk, dtype=np.float64))
        else:
            if self._staged + rows > capacity:
                self._seal()
            self._staging[self._staged : self._staged + rows] = chunk
            self._staged += rows
        self.n_samples += rows

    def fold_due(self, rows: int) -> bool:
        """Whether adding ``rows`` samples now would run an O(rows·n²) fold, not just stage them.

        Sealing a full block is not a fold: it leaves the fold to ``fold_sealed``.
        """
        capacity = self._staging.shape[0]
        if rows >= capacity:
            return True
        return self._staged + rows > capacity and self._sealed is not None

    def fold_sealed(self) -> None:
        """Fold the sealed block, if any, into C; see the class's contract for running it in another thread."""
        sealed = self._sealed
        if sealed is not None:
            self._fold(sealed)
            self._sealed = None  # only now may the block be staged into again

    def _seal(self) -> None:
        """Hand the full block over to ``fold_sealed`` and stage into the other one (folding an older seal first)."""
        self.fold_sealed()
        full, self._staged = self._staging[: self._staged], 0
        self._sealed = full
        self._staging = self._blocks[1] if self._staging is self._blocks[0] else self._blocks[0]

    def clear(self) -> None:
        """Forget every sample (keeps the channel count and forgetting rate)."""
        self._sealed = None
        self._cxx.fill(0.0)
        self._col_sum.fill(0.0)
        self._weight = 0.0
        self.n_samples = 0
        self._staged = 0

    def statistics(self) -> Statistics:
        """A consistent copy of everything accepted so far."""
        self._flush()
        cxx = self._cxx.copy()
        col_sum = self._col_sum.copy()
        cxx.flags.writeable = False
        col_sum.flags.writeable = False
        return Statistics(cxx, col_sum, self._weight, self.n_samples)

    def load(self, stats: Statistics) -> None:
        """Replace the state by ``stats`` (used by restore)."""
        self._sealed = None
        self._staged = 0
        self._cxx[...] = stats.cxx
        self._col_sum[...] = stats.col_sum
        self._weight = float(stats.weight)
        self.n_samples = int(stats.n_samples)

    def _flush(self) -> None:
        """Fold everything staged, sealed block first (the order matters with forgetting)."""
        self.fold_sealed()
        if self._staged:
            staged, self._staged = self._staged, 0
            self._fold(self._staging[:staged])

    def _fold(self, block: np.ndarray) -> None:
        """C ← α^m C + Bᵀ diag(w) B, the one O(m·n²) step."""
        m = block.shape[0]
        if self.decay is None:
            self._cxx += block.T @ block
            self._col_sum += block.sum(axis=0)
            self._weight += m
            return
        # weights α^(m-1-i) for rows i = 0..m-1, applied as sqrt(w) to both factors
        exponents = np.arange(m - 1, -1, -1, dtype=np.float64)
        weights = self.decay**exponents
        scaled = block * np.sqrt(weights)[:, None]
        carry = self.decay**m
        self._cxx *= carry
        self._cxx += scaled.T @ scaled
        self._col_sum *= carry
        self._col_sum += weights @ block
        self._weight = self._weight * carry + float(weights.sum())
