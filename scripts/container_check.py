"""Checks that scripts/container-test.sh runs from the host against a containerised lrr-service.

Each sub-command exits 0 when the server behaved as specified and 1 with a message saying what
differed; it talks to the server only through its public HTTP and websocket interface.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from websockets.sync.client import connect

from lrr_service.core.codec import AckReply, ChunkReply, Reply, decode_reply, encode_chunk
from lrr_service.core.weights_csv import format_weights_csv, parse_weights_csv
from lrr_service.service.config import ServiceSettings

N_CHANNELS = 6
N_SAMPLES = 40
FIT_CHUNKS = 5
#: seq of the first chunk on a connection (not 0, so that an echo of a default would show)
FIRST_SEQ = 41
MAX_CHANNELS = 4096
FAILOVER_S = 10.0
"""How long a request may keep failing at the transport level right after a worker is killed: HAProxy can close
a request it sent towards the dead worker without an answer (docs/scale.md), and the caller tries again."""
#: Settings the image sets itself (listen on all interfaces of the container, port 8000, state in the volume),
#: and LRR_WORKERS: the image runs one worker (it has no HAProxy or Redis); docker-compose.cluster.yml runs several.
IMAGE_FIXED_SETTINGS = frozenset({"LRR_HOST", "LRR_PORT", "LRR_STATE_DIR", "LRR_WORKERS"})


class CheckFailed(Exception):
    """The server answered, but not as specified."""


def known_weights() -> np.ndarray:
    """A fixed W with a zero diagonal and full-precision values, so a lossy round trip would show."""
    rng = np.random.default_rng(20261127)
    weights = rng.normal(scale=0.2, size=(N_CHANNELS, N_CHANNELS))
    np.fill_diagonal(weights, 0.0)
    return weights


def known_chunk() -> np.ndarray:
    """A fixed float64 chunk (n_samples, n_channels)."""
    return np.random.default_rng(7).normal(size=(N_SAMPLES, N_CHANNELS))


def auth(token: str) -> dict[str, str]:
    """The Authorization header the service expects."""
    return {"Authorization": f"Bearer {token}"}


def wait_ready(url: str, token: str, timeout_s: float) -> None:
    """Poll GET /health, then GET /ready, until both answer 200: the server is up and its sessions restored."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/health", timeout=2.0)
            ready = httpx.get(f"{url}/ready", headers=auth(token), timeout=2.0) if health.status_code == 200 else health
            if ready.status_code == 200:
                return
            last = f"{ready.request.url.path}: HTTP {ready.status_code}: {ready.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise CheckFailed(f"{url} was not healthy and ready within {timeout_s:.0f} s (last: {last})")


def weights_url(url: str, key: str) -> str:
    """The REST address of a session's weights."""
    return f"{url}/streams/{key}/weights"


def fetch_weights_csv(client: httpx.Client, url: str, key: str) -> bytes:
    """GET the session's weights as CSV bytes; fails unless the server answers 200."""
    response = client.get(weights_url(url, key))
    if response.status_code != 200:
        raise CheckFailed(f"GET {weights_url(url, key)} answered {response.status_code}: {response.text[:300]}")
    return response.content


def check_token_required(url: str, key: str, weights_csv: str) -> None:
    """An upload without the token must be refused: proves LRR_API_TOKEN reached the container."""
    response = httpx.put(weights_url(url, key), content=weights_csv, headers={"Content-Type": "text/csv"})
    if response.status_code not in (401, 403):
        raise CheckFailed(f"PUT weights without a token answered {response.status_code}; expected 401 or 403")


def upload_weights(client: httpx.Client, url: str, key: str, weights_csv: str) -> None:
    """PUT W as CSV, replacing whatever the session held."""
    response = client.put(
        weights_url(url, key), content=weights_csv, params={"replace": "true"}, headers={"Content-Type": "text/csv"}
    )
    if not response.is_success:
        raise CheckFailed(f"PUT {weights_url(url, key)} answered {response.status_code}: {response.text[:300]}")


def exchange(url: str, token: str, key: str, route: str, chunks: list[np.ndarray]) -> list[Reply]:
    """Send every chunk to /ws/{key}/{route} (pipelined, seq from FIRST_SEQ) and return the decoded replies."""
    ws_url = url.replace("http://", "ws://", 1) + f"/ws/{key}/{route}"
    with connect(ws_url, additional_headers=auth(token), open_timeout=10, close_timeout=5) as websocket:
        for seq, chunk in enumerate(chunks, start=FIRST_SEQ):
            websocket.send(encode_chunk(seq, chunk))
        return [decode_reply(websocket.recv(timeout=30)) for _ in chunks]


def transform_once(url: str, token: str, key: str, chunk: np.ndarray) -> ChunkReply:
    """Send one chunk to /ws/{key}/transform and return its chunk reply."""
    (reply,) = exchange(url, token, key, "transform", [chunk])
    if not isinstance(reply, ChunkReply):
        raise CheckFailed(f"/ws/{key}/transform answered {reply!r}; expected a chunk reply")
    return reply


def fit_chunks() -> list[np.ndarray]:
    """Fixed float32 chunks for the fit route, far fewer samples than would start a solve."""
    rng = np.random.default_rng(11)
    return [rng.normal(size=(N_SAMPLES, N_CHANNELS)).astype(np.float32) for _ in range(FIT_CHUNKS)]


def fit_all(url: str, token: str, key: str, chunks: list[np.ndarray]) -> int:
    """Send every chunk to /ws/{key}/fit and return n_samples of the last ack."""
    acks = [reply for reply in exchange(url, token, key, "fit", chunks) if isinstance(reply, AckReply)]
    if len(acks) != len(chunks):
        raise CheckFailed(f"/ws/{key}/fit answered {len(acks)} acks to {len(chunks)} chunks; expected one ack each")
    return acks[-1].n_samples


def session_samples(client: httpx.Client, url: str, key: str) -> int:
    """n_samples of GET /streams/{key}."""
    response = client.get(f"{url}/streams/{key}")
    if response.status_code != 200:
        raise CheckFailed(f"GET {url}/streams/{key} answered {response.status_code}: {response.text[:300]}")
    return int(response.json()["n_samples"])


def check_transform(reply: ChunkReply, chunk: np.ndarray, weights: np.ndarray) -> None:
    """The reply must echo seq and carry X @ (I - W) in float64."""
    if reply.seq != FIRST_SEQ:
        raise CheckFailed(f"reply seq is {reply.seq}; expected {FIRST_SEQ}, the chunk's seq")
    if reply.weights_version < 1:
        raise CheckFailed(f"reply weights_version is {reply.weights_version}; expected >= 1 after the upload")
    expected = chunk @ (np.eye(N_CHANNELS) - weights)
    if reply.data.dtype != np.float64 or reply.data.shape != expected.shape:
        raise CheckFailed(f"reply data is {reply.data.dtype} {reply.data.shape}; expected float64 {expected.shape}")
    if not np.allclose(reply.data, expected, rtol=1e-12, atol=1e-12):
        worst = float(np.max(np.abs(reply.data - expected)))
        raise CheckFailed(f"reply data differs from X @ (I - W) by up to {worst:g}")


def check_weights_exact(served_csv: bytes, weights: np.ndarray) -> None:
    """The served CSV must parse back to W bit for bit."""
    if not np.array_equal(parse_weights_csv(served_csv, max_channels=MAX_CHANNELS), weights):
        raise CheckFailed("served weights CSV does not parse back to W bit for bit")


def run_upload_and_transform(args: argparse.Namespace) -> None:
    """Token refused without, weights uploaded with it, one chunk transformed and checked; CSV saved."""
    weights = known_weights()
    weights_csv = format_weights_csv(weights)
    check_token_required(args.url, args.key, weights_csv)
    with httpx.Client(headers=auth(args.token), timeout=10.0) as client:
        upload_weights(client, args.url, args.key, weights_csv)
        served = fetch_weights_csv(client, args.url, args.key)
    check_weights_exact(served, weights)
    chunk = known_chunk()
    check_transform(transform_once(args.url, args.token, args.key, chunk), chunk, weights)
    args.save.write_bytes(served)
    print(f"ok: {args.key}: weights uploaded ({len(served)} bytes CSV), chunk {chunk.shape} transformed exactly")


def run_same_weights(args: argparse.Namespace) -> None:
    """The session's weights are still the ones saved by upload-and-transform (after a restart, or after the
    key's worker was killed: a request the proxy dropped then is tried again, for up to FAILOVER_S)."""
    deadline = time.monotonic() + FAILOVER_S
    with httpx.Client(headers=auth(args.token), timeout=10.0) as client:
        while True:
            try:
                served = fetch_weights_csv(client, args.url, args.key)
                break
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    raise
                print(f"note: GET {weights_url(args.url, args.key)}: {type(exc).__name__}: {exc}; trying again")
                time.sleep(0.2)
    expected = args.expect.read_bytes()
    if served != expected:
        raise CheckFailed(
            f"served weights CSV ({len(served)} bytes) differs from the one saved before the restart "
            f"({len(expected)} bytes)"
        )
    check_weights_exact(served, known_weights())
    print(f"ok: {args.key}: weights survived bit-exact ({len(served)} bytes CSV)")


def run_fit(args: argparse.Namespace) -> None:
    """Fit a few chunks into a fresh session: statistics only a checkpoint on SIGTERM will save."""
    expected = FIT_CHUNKS * N_SAMPLES
    n_samples = fit_all(args.url, args.token, args.key, fit_chunks())
    if n_samples != expected:
        raise CheckFailed(f"after {FIT_CHUNKS} fit chunks the session holds {n_samples} samples; expected {expected}")
    print(f"ok: {args.key}: {n_samples} samples fitted")


def run_same_samples(args: argparse.Namespace) -> None:
    """The session fitted by `fit` still holds its samples (after a restart)."""
    expected = FIT_CHUNKS * N_SAMPLES
    with httpx.Client(headers=auth(args.token), timeout=10.0) as client:
        n_samples = session_samples(client, args.url, args.key)
    if n_samples != expected:
        raise CheckFailed(f"{args.key} holds {n_samples} samples after the restart; expected {expected}")
    print(f"ok: {args.key}: {n_samples} fitted samples survived")


def run_wait_ready(args: argparse.Namespace) -> None:
    """Wait for /health and /ready."""
    wait_ready(args.url, args.token, args.timeout)
    print(f"ok: {args.url} healthy and ready")


def run_settings_coverage(args: argparse.Namespace) -> None:
    """docker-compose.yml passes, and the deploy docs name, every LRR_ setting the service reads."""
    expected = {f"LRR_{name.upper()}" for name in ServiceSettings.model_fields}
    configurable = expected - IMAGE_FIXED_SETTINGS
    environment = json.load(sys.stdin)["services"]["lrr"]["environment"]
    passed = {name for name in environment if name.startswith("LRR_")}
    missing, unknown = sorted(configurable - passed), sorted(passed - configurable)
    if missing or unknown:
        raise CheckFailed(f"docker-compose.yml service lrr: LRR_ variables missing {missing}, unknown {unknown}")
    documented = args.docs.read_text()
    undocumented = sorted(name for name in expected if f"`{name}`" not in documented)
    if undocumented:
        raise CheckFailed(f"{args.docs} does not describe {undocumented}")
    print(f"ok: docker-compose.yml passes and {args.docs} describes all {len(expected)} LRR_ settings")


def build_parser() -> argparse.ArgumentParser:
    """One sub-command per check; the server checks take --url, --token and --key."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", required=True, help="http://127.0.0.1:PORT of the container")
    server.add_argument("--token", required=True, help="the LRR_API_TOKEN the container was given")
    server.add_argument("--key", default="container-test", help="session key to use")
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait-ready", parents=[server], help="poll /health and /ready until both answer 200")
    wait.add_argument("--timeout", type=float, default=90.0, help="seconds to wait")
    wait.set_defaults(run=run_wait_ready)
    upload = commands.add_parser(
        "upload-and-transform", parents=[server], help="upload W, transform a chunk, save the served CSV"
    )
    upload.add_argument("--save", type=Path, required=True, help="where to save the served weights CSV")
    upload.set_defaults(run=run_upload_and_transform)
    same = commands.add_parser("same-weights", parents=[server], help="the served weights CSV equals a saved one")
    same.add_argument("--expect", type=Path, required=True, help="CSV saved by upload-and-transform")
    same.set_defaults(run=run_same_weights)
    fit = commands.add_parser("fit", parents=[server], help="fit a few chunks into a fresh session")
    fit.set_defaults(run=run_fit)
    samples = commands.add_parser("same-samples", parents=[server], help="the session still holds its fitted samples")
    samples.set_defaults(run=run_same_samples)
    coverage = commands.add_parser("settings-coverage", help="stdin: `docker compose config --format json`")
    coverage.add_argument("--docs", type=Path, required=True, help="the deployment document (docs/deploy.md)")
    coverage.set_defaults(run=run_settings_coverage)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one check; 0 if it passed, 1 with the reason if not."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
