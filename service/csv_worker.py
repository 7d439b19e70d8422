"""The CSV worker: `python -m lrr_service.service.csv_worker`, started and fed by service/csv_process.py.

It answers one job at a time, read from stdin and answered on stdout, each a JSON header line
followed by `size` bytes:

    parse   {"op": "parse", "max_channels": m, "size": s} + s bytes of CSV text
            -> {"ok": true, "n": n, "size": 8·n²} + W, little-endian float64 in C order
            -> {"ok": false, "message": ..., "row": r, "column": c, "size": 0}
    format  {"op": "format", "n": n, "size": 8·n²} + W as above
            -> {"ok": true, "size": s} + s bytes of CSV text

It runs at the lowest CPU priority and exits when stdin ends: the server closed it, or died.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import numpy as np

from lrr_service.core.weights_csv import WeightsCsvError, format_weights_csv, parse_weights_csv
from lrr_service.service.lane import lower_thread_priority

WIRE_FLOAT = np.dtype("<f8")


def main() -> int:
    """Answer jobs until stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the server stops us
    lower_thread_priority()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while header := source.readline():
        job = json.loads(header)
        payload = source.read(job["size"])
        if len(payload) < job["size"]:
            return 0
        reply, body = answer(job, payload)
        sink.write(json.dumps(reply | {"size": len(body)}).encode() + b"\n")
        sink.write(body)
        sink.flush()
    return 0


def answer(job: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
    """The reply header and body of one job."""
    if job["op"] == "parse":
        try:
            weights = parse_weights_csv(payload, max_channels=job["max_channels"])
        except WeightsCsvError as exc:
            return {"ok": False, "message": str(exc), "row": exc.row, "column": exc.column}, b""
        return {"ok": True, "n": weights.shape[0]}, weights.astype(WIRE_FLOAT).tobytes()
    n = job["n"]
    weights = np.frombuffer(payload, dtype=WIRE_FLOAT).reshape(n, n)
    return {"ok": True}, format_weights_csv(weights).encode("ascii")


if __name__ == "__main__":
    sys.exit(main())
