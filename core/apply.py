"""Applying y = X @ (I - W), planned once per weight matrix and dtype.

The plan is derived from W's own sparsity, not from the settings, so it is right for
fitted, default and uploaded weights alike and is re-derived whenever W changes.
"""

from __future__ import annotations

import numpy as np

BLOCK_FLOP_FRACTION = 0.5
"""Use per-block products only when they need at most this fraction of the dense flops."""

MAX_BLOCKS = 64
"""Beyond this many blocks, per-call Python overhead outweighs the saved flops."""


class ApplyPlan:
    """A callable computing X @ (I - W) for C-contiguous X of one float dtype."""

    def __init__(self, W: np.ndarray | None, n_channels: int, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.n_channels = n_channels
        self._dense: np.ndarray | None = None
        self._blocks: list[tuple[slice, np.ndarray]] = []
        self._gather: np.ndarray | None = None
        self._covers_all = False
        self._passthrough = True
        if W is None or not W.any():
            return
        self._passthrough = False
        components = coupled_components(W)
        block_flops = sum(c.size**2 for c in components)
        if len(components) <= MAX_BLOCKS and block_flops <= BLOCK_FLOP_FRACTION * n_channels**2:
            contiguous = all(_is_consecutive(idx) for idx in components)
            self._covers_all = sum(idx.size for idx in components) == n_channels
            if not contiguous:
                # gather every block's columns with one take per chunk, then work on contiguous slices
                self._gather = np.concatenate(components)
            start = 0
            for idx in components:
                effective = np.eye(idx.size) - W[np.ix_(idx, idx)]
                columns = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else slice(start, start + idx.size)
                self._blocks.append((columns, np.ascontiguousarray(effective, dtype=self.dtype)))
                start += idx.size
        else:
            self._dense = np.ascontiguousarray(np.eye(n_channels) - W, dtype=self.dtype)

    @property
    def kind(self) -> str:
        """'identity', 'dense' or 'blocks': how this plan applies the weights."""
        if self._passthrough:
            return "identity"
        return "dense" if self._dense is not None else "blocks"

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self._dense is not None:
            product: np.ndarray = np.matmul(X, self._dense)
            return product
        if self._covers_all:
            out = np.empty(X.shape, dtype=self.dtype)
        else:  # channels in no block pass through
            out = np.array(X, dtype=self.dtype, copy=True, order="C")
        if self._gather is None:
            for columns, effective in self._blocks:
                out[:, columns] = X[:, columns] @ effective
            return out
        gathered = X.take(self._gather, axis=1)
        for columns, effective in self._blocks:
            gathered[:, columns] = gathered[:, columns] @ effective
        out[:, self._gather] = gathered
        return out


def coupled_components(W: np.ndarray) -> list[np.ndarray]:
    """Sorted index arrays of the channel sets that W couples (components of size >= 2)."""
    n = W.shape[0]
    coupled = (W != 0) | (W.T != 0)
    np.fill_diagonal(coupled, False)
    unvisited = np.ones(n, dtype=bool)
    unvisited[~coupled.any(axis=1)] = False
    components = []
    for start in range(n):
        if not unvisited[start]:
            continue
        unvisited[start] = False
        members = [start]
        frontier = np.array([start])
        while frontier.size:
            reached = coupled[frontier].any(axis=0) & unvisited
            frontier = np.flatnonzero(reached)
            unvisited[frontier] = False
            members.extend(frontier.tolist())
        components.append(np.array(sorted(members), dtype=np.int64))
    return components


def _is_consecutive(idx: np.ndarray) -> bool:
    """Sorted indices that form one run, so a slice (a view) reaches them."""
    return bool(idx[-1] - idx[0] + 1 == idx.size)
