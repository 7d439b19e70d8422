"""Hardening of weights uploads (issue-10 defects 1 and 10), against the real server.

* 1: a CSV line like `'1' * 16000 + 'x'` made the cell regex backtrack quadratically (about 25 s
  at 16000 characters, hours at 1 MB) while holding the GIL, so the whole server, /health
  included, froze. The fixed parser refuses it at once with 422 `bad_csv` (row 1, column 1) and
  parsing runs in a separate process, so /health answers meanwhile.
* 10: a malformed multipart upload is answered 400 `{"detail": {"code": "bad_multipart", ...}}`
  and counted in `lrr_errors_total{code="bad_multipart"}` (it used to be starlette's bare
  `{"detail": "<text>"}`, uncounted).

Time bounds are liveness bounds (the broken code takes 25 s to hours), not performance claims.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from lrr_service.core.weights_csv import format_weights_csv

try:
    from in_process import InProcessServer
    from live_server import REPO_ROOT, LiveServer
except ImportError:
    from tests.in_process import InProcessServer
    from tests.live_server import REPO_ROOT, LiveServer

pytestmark = pytest.mark.timeout(90)

HOSTILE_LINE = "1" * 16000 + "x\n"
HOSTILE_CSV = HOSTILE_LINE * 4  # 64 KB of it
ANSWER_S = 10.0
"""Liveness bound for the hostile upload's answer (the broken server needs ~25 s or more)."""
HEALTH_S = 5.0
"""Liveness bound for /health while the hostile upload is being handled (broken: ~25 s)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Shared by the multipart tests (they do not load the server)."""
    live = InProcessServer(tmp_path_factory.mktemp("uploads") / "lrr-state").start()
    yield live
    live.stop()


# -- 1: pathological CSV -------------------------------------------------------------------------


def test_a_pathological_csv_line_is_refused_422_at_row_1_column_1(server_factory) -> None:
    server = server_factory()
    with httpx.Client(base_url=server.url, timeout=ANSWER_S) as http:
        try:
            response = http.put("/streams/redos/weights", content=HOSTILE_CSV, headers={"Content-Type": "text/csv"})
        except httpx.TimeoutException:
            pytest.fail(f"PUT /streams/redos/weights with a 16000-digit cell got no answer within {ANSWER_S} s")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert (detail["code"], detail["row"], detail["column"]) == ("bad_csv", 1, 1), detail
    with server.http() as http:
        assert http.get("/streams/redos").status_code == 404


def test_health_answers_while_a_pathological_csv_is_handled(server_factory) -> None:
    server = server_factory()
    done = threading.Event()

    def upload() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=120.0) as http:
                http.put("/streams/redos-bg/weights", content=HOSTILE_CSV, headers={"Content-Type": "text/csv"})
        except httpx.HTTPError:
            pass
        finally:
            done.set()

    threading.Thread(target=upload, daemon=True).start()
    done.wait(1.0)  # the upload has reached the server (or, fixed, is already answered)
    with httpx.Client(base_url=server.url, timeout=HEALTH_S) as http:
        try:
            health = http.get("/health")
        except httpx.TimeoutException:
            pytest.fail(f"/health did not answer within {HEALTH_S} s while a pathological CSV was being parsed")
    assert health.status_code == 200


def test_parse_weights_csv_refuses_a_1_mb_pathological_line_promptly() -> None:
    """In a child process, so a hang can be stopped (a regex holding the GIL cannot be interrupted)."""
    code = textwrap.dedent("""
        from lrr_service.core.weights_csv import WeightsCsvError, parse_weights_csv
        try:
            parse_weights_csv("1" * 1_000_000 + "x\\n", max_channels=4096)
        except WeightsCsvError as exc:
            print(exc.row, exc.column)
        else:
            print("accepted")
    """)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=15
        )  # liveness bound: the broken parser needs hours
    except subprocess.TimeoutExpired:
        pytest.fail("parse_weights_csv on a 1 MB line of digits ending in 'x' did not finish within 15 s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


def test_guard_a_valid_csv_still_round_trips(server: LiveServer) -> None:
    """Guard (held before the fix too): moving the parser elsewhere keeps uploads bit-exact."""
    W = np.random.default_rng(1).uniform(-0.3, 0.3, (6, 6))
    np.fill_diagonal(W, 0.0)
    with server.http() as http:
        assert http.put("/streams/valid-csv/weights", content=format_weights_csv(W)).status_code == 200
        text = http.get("/streams/valid-csv/weights").text
    assert np.loadtxt(text.splitlines(), delimiter=",").tobytes() == W.tobytes()


# -- 10: malformed multipart --------------------------------------------------------------------------

MALFORMED_MULTIPART = {
    "no boundary": ("multipart/form-data", b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\n0\r\n'),
    "garbage body": ("multipart/form-data; boundary=xyz", b"this is not multipart at all"),
    "part without headers": ("multipart/form-data; boundary=xyz", b"--xyz\r\nfoo\r\n\r\n1\r\n--xyz--\r\n"),
    "part without a name": (
        "multipart/form-data; boundary=xyz",
        b"--xyz\r\nContent-Disposition: form-data\r\n\r\n1\r\n--xyz--\r\n",
    ),
}


def bad_multipart_count(server: LiveServer) -> float:
    with server.http() as http:
        for line in http.get("/metrics").text.splitlines():
            if line.startswith('lrr_errors_total{code="bad_multipart"}'):
                return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("case", list(MALFORMED_MULTIPART), ids=list(MALFORMED_MULTIPART))
def test_malformed_multipart_is_refused_400_bad_multipart_and_counted(server: LiveServer, case: str) -> None:
    content_type, body = MALFORMED_MULTIPART[case]
    before = bad_multipart_count(server)
    with server.http() as http:
        response = http.put("/streams/multipart/weights", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, dict), f"detail is not an object: {response.text}"
    assert detail["code"] == "bad_multipart" and detail["message"], detail
    assert bad_multipart_count(server) == before + 1
