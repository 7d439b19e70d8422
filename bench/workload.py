"""What the benchmark sends: weights to upload, encoded chunk frames, and checks of the replies."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np

from lrr_service.core import LRR
from lrr_service.core.codec import AckReply, ChunkReply, decode_reply, encode_chunk
from lrr_service.core.weights_csv import format_weights_csv

FS = 30_000
"""Sample rate of every benchmark stream (Hz)."""
DTYPES = {"float32": np.float32, "int16": np.int16}
FRAME_VARIANTS = 16


def dense_weights(n_channels: int, seed: int = 0) -> np.ndarray:
    """Fitted (dense, full-rank) LRR weights for `n_channels`, as the service would hold them."""
    rng = np.random.default_rng(seed)
    return np.array(LRR().fit(rng.standard_normal((4 * n_channels, n_channels))).weights)


def chunks(n_samples: int, n_channels: int, dtype: str, count: int = FRAME_VARIANTS, seed: int = 1) -> list[np.ndarray]:
    """`count` different random chunks (n_samples, n_channels) of `dtype` ('float32' or 'int16')."""
    rng = np.random.default_rng(seed)
    if dtype == "int16":
        return [rng.integers(-2000, 2000, (n_samples, n_channels), dtype=np.int16) for _ in range(count)]
    return [rng.standard_normal((n_samples, n_channels)).astype(DTYPES[dtype]) for _ in range(count)]


def frames(data: list[np.ndarray]) -> list[bytes]:
    """The wire frames of `data`, seq = index."""
    return [encode_chunk(i, x) for i, x in enumerate(data)]


def upload_weights(base_url: str, key: str, weights: np.ndarray) -> None:
    """PUT /streams/{key}/weights as CSV (replacing whatever the session held); raises on refusal."""
    response = httpx.put(
        f"{base_url}/streams/{key}/weights",
        params={"replace": "true"},
        content=format_weights_csv(weights),
        headers={"content-type": "text/csv"},
        timeout=60,
    )
    response.raise_for_status()


def expect_chunk(n_samples: int, n_channels: int) -> Callable[[bytes], None]:
    """A reply check: the reply is a `chunk` of the request's shape (not an error)."""

    def check(reply: bytes) -> None:
        decoded = decode_reply(reply)
        if not isinstance(decoded, ChunkReply) or decoded.data.shape != (n_samples, n_channels):
            raise RuntimeError(f"unexpected reply: {str(decoded)[:300]}")

    return check


def expect_ack(reply: bytes) -> None:
    """A reply check for the fit route: the reply is an `ack`."""
    decoded = decode_reply(reply)
    if not isinstance(decoded, AckReply):
        raise RuntimeError(f"unexpected reply: {str(decoded)[:300]}")


def expect_echo(size: int) -> Callable[[bytes], None]:
    """A reply check for the echo floor: the frame came back whole."""

    def check(reply: bytes) -> None:
        if len(reply) != size:
            raise RuntimeError(f"echo returned {len(reply)} bytes, sent {size}")

    return check
