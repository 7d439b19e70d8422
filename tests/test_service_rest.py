"""The REST API against the real server: health, sessions, settings, weights CSV, solves, metrics."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest
from in_process import InProcessServer
from live_server import LiveServer, exchange

from lrr_service.core.codec import AckReply, ChunkReply, encode_chunk
from lrr_service.core.weights_csv import format_weights_csv

MAX_CHANNELS = 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"LRR_MAX_CHANNELS": str(MAX_CHANNELS), "LRR_MAX_CSV_BYTES": "65536", "LRR_RIDGE_LAMBDA": "0.5"}
    live = InProcessServer(tmp_path_factory.mktemp("rest") / "lrr-state", env=env).start()
    yield live
    live.stop()


def random_weights(n: int, seed: int = 0) -> np.ndarray:
    """A valid W (zero diagonal) with values that need all 17 significant digits."""
    W = np.random.default_rng(seed).standard_normal((n, n)) / 7
    np.fill_diagonal(W, 0.0)
    return W


async def fit(server: LiveServer, key: str, chunks: list[np.ndarray]) -> list[AckReply]:
    async with server.connect(key, "fit") as ws:
        return [await exchange(ws, encode_chunk(i, c)) for i, c in enumerate(chunks)]


# -- health, docs ---------------------------------------------------------------------------


def test_health_ready_and_openapi(server: LiveServer) -> None:
    with server.http() as http:
        assert http.get("/health").json() == {"status": "ok"}
        ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        paths = http.get("/openapi.json").json()["paths"]
        assert http.get("/docs").status_code == 200
    for path in (
        "/health",
        "/ready",
        "/metrics",
        "/streams",
        "/streams/{key}",
        "/streams/{key}/weights",
        "/streams/{key}/reset",
        "/streams/{key}/solve",
    ):
        assert path in paths


# -- sessions ---------------------------------------------------------------------------------


def test_put_creates_then_replaces_settings(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        created = http.put(f"/streams/{stream_key}", json={"block_size": 4})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["settings"]["block_size"] == 4
        assert body["settings"]["ridge_lambda"] == 0.5  # the server default (LRR_RIDGE_LAMBDA)
        assert body["n_channels"] is None and body["weights_source"] == "none" and body["changed"] is True
        same = http.put(f"/streams/{stream_key}", json={"block_size": 4})
        assert same.status_code == 200 and same.json()["changed"] is False
        replaced = http.put(f"/streams/{stream_key}", json={"ridge_lambda": 2.0, "init_default": "car"})
        assert replaced.status_code == 200 and replaced.json()["changed"] is True
        got = http.get(f"/streams/{stream_key}").json()
    assert got["settings"]["ridge_lambda"] == 2.0 and got["settings"]["init_default"] == "car"
    assert got["settings"]["block_size"] is None  # a PUT replaces the settings, it does not merge


async def test_new_settings_clear_statistics_and_weights(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(1)
    await fit(server, stream_key, [rng.standard_normal((50, 6))])
    with server.http() as http:
        http.post(f"/streams/{stream_key}/solve").raise_for_status()
        before = http.get(f"/streams/{stream_key}").json()
        after = http.put(f"/streams/{stream_key}", json={"ridge_lambda": 1.0}).json()
    assert before["n_samples"] == 50 and before["weights_source"] == "fitted"
    assert after["n_samples"] == 0 and after["weights_source"] == "none" and after["n_channels"] is None
    assert after["weights_version"] > before["weights_version"]  # versions never go back


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ridge_lambda": -1}, "ridge_lambda"),
        ({"ridge_lambda": "big"}, "ridge_lambda"),
        ({"block_size": 0}, "block_size"),
        ({"init_default": "median"}, "init_default"),
        ({"half_life_samples": 0}, "half_life_samples"),
        ({"channel_groups": [[0, 1], []]}, "channel_groups"),
        ({"channel_groups": [[0, 1, 2], [2, 3, 4]]}, "channel_groups"),
        ({"incremental": "yes"}, "incremental"),
        ({"unknown_setting": 1}, "unknown_setting"),
    ],
)
def test_invalid_settings_get_422_with_the_field(server: LiveServer, stream_key: str, body: dict, field: str) -> None:
    with server.http() as http:
        response = http.put(f"/streams/{stream_key}", json=body)
        assert response.status_code == 422, response.text
        errors = response.json()["detail"]
        assert any(field in [str(part) for part in error["loc"]] for error in errors), errors
        assert all(error["msg"] for error in errors)
        assert http.get(f"/streams/{stream_key}").status_code == 404  # nothing was created


def test_list_get_delete_and_404s(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}", json={}).raise_for_status()
        listed = http.get("/streams").json()
        assert stream_key in [s["key"] for s in listed["streams"]]
        assert listed["count"] == len(listed["streams"])
        got = http.get(f"/streams/{stream_key}").json()
        for field in ("settings", "n_channels", "n_samples", "weights_version", "weights_source", "counters"):
            assert field in got
        assert http.delete(f"/streams/{stream_key}").status_code == 204
        for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/reset"), ("POST", "/solve"), ("GET", "/weights")):
            missing = http.request(method, f"/streams/{stream_key}{path}")
            assert missing.status_code == 404, (method, path)
            assert missing.json()["detail"]["code"] == "unknown_session"
        assert stream_key not in [s["key"] for s in http.get("/streams").json()["streams"]]


def test_invalid_key_on_rest_is_400(server: LiveServer) -> None:
    with server.http() as http:
        response = http.put("/streams/" + "k" * 129, json={})
        assert response.status_code == 400
        assert response.json()["detail"]["code"] == "bad_key"
        assert "128" in response.json()["detail"]["message"]
        assert http.get("/streams/bad%20key").status_code == 400


async def test_reset_clears_statistics_and_weights_keeps_settings(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(2)
    with server.http() as http:
        http.put(f"/streams/{stream_key}", json={"ridge_lambda": 3.0}).raise_for_status()
    await fit(server, stream_key, [rng.standard_normal((40, 5))])
    with server.http() as http:
        http.post(f"/streams/{stream_key}/solve").raise_for_status()
        body = http.post(f"/streams/{stream_key}/reset").json()
    assert body["n_samples"] == 0 and body["weights_source"] == "none" and body["n_channels"] is None
    assert body["settings"]["ridge_lambda"] == 3.0
    assert body["counters"]["resets"] == 1


# -- solve -------------------------------------------------------------------------------------


async def test_solve_reflects_every_accepted_fit_chunk(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(3)
    acks = await fit(server, stream_key, [rng.standard_normal((n, 8)) for n in (13, 7, 101, 1)])
    with server.http() as http:
        solved = http.post(f"/streams/{stream_key}/solve")
        assert solved.status_code == 200, solved.text
        body = solved.json()
    assert acks[-1].n_samples == 122
    assert body["n_samples"] == body["n_samples_solved"] == 122
    assert body["weights_source"] == "fitted" and body["weights_version"] >= 1
    assert body["replaced_uploaded"] is False


def test_solve_without_fit_data_is_409(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}", json={}).raise_for_status()
        response = http.post(f"/streams/{stream_key}/solve")
    assert response.status_code == 409 and response.json()["detail"]["code"] == "no_fit_data"


# -- weights ------------------------------------------------------------------------------------


async def test_uploaded_weights_apply_to_the_next_transform(server: LiveServer, stream_key: str) -> None:
    W = random_weights(6)
    X = np.random.default_rng(4).standard_normal((10, 6))
    with server.http() as http:
        response = http.put(
            f"/streams/{stream_key}/weights", content=format_weights_csv(W), headers={"Content-Type": "text/csv"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
    assert body["weights_source"] == "uploaded" and body["n_channels"] == 6
    async with server.connect(stream_key, "transform") as ws:
        reply = await exchange(ws, encode_chunk(0, X))
        single = await exchange(ws, encode_chunk(1, X.astype(np.float32)))
    assert isinstance(reply, ChunkReply) and reply.weights_version == body["weights_version"]
    np.testing.assert_allclose(reply.data, X @ (np.eye(6) - W), rtol=1e-12, atol=1e-12)
    assert isinstance(single, ChunkReply) and single.data.dtype == np.float32  # the plan prepared for float32
    np.testing.assert_allclose(single.data, X.astype(np.float32) @ (np.eye(6) - W), rtol=1e-5, atol=1e-5)


def test_weights_round_trip_bit_exactly(server: LiveServer, stream_key: str) -> None:
    W = random_weights(9, seed=5)
    W[0, 1] = 5e-324  # subnormal
    W[2, 3] = -1.7976931348623157e308
    with server.http() as http:
        http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(W)).raise_for_status()
        downloaded = http.get(f"/streams/{stream_key}/weights")
        assert downloaded.status_code == 200
        assert downloaded.headers["content-type"].startswith("text/csv")
        assert f'filename="{stream_key}-weights-v' in downloaded.headers["content-disposition"]
        again = np.loadtxt(io.StringIO(downloaded.text), delimiter=",")
        assert again.tobytes() == W.tobytes()
        # and uploading the download gives the same matrix again
        other = stream_key + ".copy"
        http.put(f"/streams/{other}/weights", content=downloaded.content).raise_for_status()
        assert http.get(f"/streams/{other}/weights").content == downloaded.content


def test_weights_upload_as_multipart_file(server: LiveServer, stream_key: str) -> None:
    W = random_weights(4, seed=6)
    with server.http() as http:
        response = http.put(
            f"/streams/{stream_key}/weights", files={"file": ("w.csv", format_weights_csv(W), "text/csv")}
        )
        assert response.status_code == 200, response.text
        text = http.get(f"/streams/{stream_key}/weights").text
        assert np.loadtxt(io.StringIO(text), delimiter=",").tobytes() == W.tobytes()
        wrong_field = http.put(f"/streams/{stream_key}/weights", files={"weights": ("w.csv", "0,1\n1,0\n")})
        assert wrong_field.status_code == 400
        assert wrong_field.json()["detail"]["code"] == "missing_file"


def test_no_weights_is_404(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}", json={}).raise_for_status()
        response = http.get(f"/streams/{stream_key}/weights")
    assert response.status_code == 404 and response.json()["detail"]["code"] == "no_weights"


async def test_car_default_weights_are_served_before_any_fit(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}", json={"init_default": "car"}).raise_for_status()
    X = np.random.default_rng(12).standard_normal((6, 4))
    async with server.connect(stream_key, "transform") as ws:
        reply = await exchange(ws, encode_chunk(0, X))
    car = np.full((4, 4), 1 / 3)
    np.fill_diagonal(car, 0.0)  # y_i = x_i - mean of the other channels
    np.testing.assert_allclose(reply.data, X @ (np.eye(4) - car), rtol=1e-12, atol=1e-12)
    with server.http() as http:
        assert http.get(f"/streams/{stream_key}").json()["weights_source"] == "default"
        served = np.loadtxt(io.StringIO(http.get(f"/streams/{stream_key}/weights").text), delimiter=",")
    np.testing.assert_allclose(served, car, rtol=1e-15)


@pytest.mark.parametrize(
    ("csv", "status", "row", "column"),
    [
        ("0,1,2\n3,x,5\n6,7,0\n", 422, 2, 2),
        ("0,1\n1,nan\n", 422, 2, 2),
        ("0,1,2\n3,4\n5,6,7\n", 422, 2, None),
        ("0,1,2\n3,4,5\n", 422, None, None),
        ("0;1\n1;0\n", 422, 1, None),
        ("0,1\n1,1e999\n", 422, 2, 2),
        ("", 400, None, None),
        (" \n\t\n", 400, None, None),
        (",".join(["0"] * (MAX_CHANNELS + 1)) + "\n", 422, 1, None),
    ],
)
def test_bad_csv_is_refused_naming_row_and_column(
    server: LiveServer, stream_key: str, csv: str, status: int, row: int | None, column: int | None
) -> None:
    with server.http() as http:
        response = http.put(f"/streams/{stream_key}/weights", content=csv, headers={"Content-Type": "text/csv"})
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert detail["message"]
        if status == 422:
            assert (detail["code"], detail["row"], detail["column"]) == ("bad_csv", row, column)
            if row is not None:
                assert f"line {row}" in detail["message"]
        assert http.get(f"/streams/{stream_key}").status_code == 404  # nothing created


def test_upload_over_the_size_limit_is_413(server: LiveServer, stream_key: str) -> None:
    big = ("0," * 40000 + "0\n").encode()
    with server.http() as http:
        response = http.put(f"/streams/{stream_key}/weights", content=big)
        assert response.status_code == 413
        assert "65536" in response.json()["detail"]["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
            yield from (big[i : i + 8192] for i in range(0, len(big), 8192))

        streamed = http.put(f"/streams/{stream_key}/weights", content=chunked())
        assert streamed.status_code == 413


async def test_concurrent_large_uploads_are_each_applied_exactly(server_factory) -> None:
    """Uploads over 1 MiB (declared or chunked) are read one at a time and parsed in the CSV process:
    all of them still succeed, each session gets exactly its matrix, and downloads are bit-identical."""
    big = server_factory(env={"LRR_MAX_CHANNELS": "256"})
    matrices = {f"big-{i}": random_weights(256, seed=40 + i) for i in range(3)}
    bodies = {key: format_weights_csv(W).encode() for key, W in matrices.items()}
    assert all(len(body) > 1024 * 1024 for body in bodies.values())

    async def upload(http: httpx.AsyncClient, key: str, chunked: bool) -> int:
        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(bodies[key]), 65536):
                yield bodies[key][start : start + 65536]

        response = await http.put(f"/streams/{key}/weights", content=pieces() if chunked else bodies[key])
        return response.status_code

    async with httpx.AsyncClient(base_url=big.url, timeout=30.0) as http:
        statuses = await asyncio.gather(*(upload(http, key, i == 0) for i, key in enumerate(matrices)))
        assert statuses == [200, 200, 200]
        for key, W in matrices.items():
            downloaded = await http.get(f"/streams/{key}/weights")
            assert downloaded.content == bodies[key]
            assert np.loadtxt(io.StringIO(downloaded.text), delimiter=",").tobytes() == W.tobytes()


async def test_size_mismatch_is_409_unless_replace(server: LiveServer, stream_key: str) -> None:
    rng = np.random.default_rng(7)
    await fit(server, stream_key, [rng.standard_normal((30, 5))])
    W = random_weights(3)
    with server.http() as http:
        refused = http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(W))
        assert refused.status_code == 409
        assert refused.json()["detail"]["code"] == "size_mismatch"
        assert "replace=true" in refused.json()["detail"]["message"]
        unchanged = http.get(f"/streams/{stream_key}").json()
        assert unchanged["n_channels"] == 5 and unchanged["n_samples"] == 30
        replaced = http.put(f"/streams/{stream_key}/weights?replace=true", content=format_weights_csv(W))
        assert replaced.status_code == 200, replaced.text
        body = replaced.json()
    assert body["n_channels"] == 3 and body["n_samples"] == 0 and body["weights_source"] == "uploaded"


def test_non_lrr_weights_are_refused(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}", json={"channel_groups": [[0, 1, 2, 3, 4]]}).raise_for_status()
        response = http.put(f"/streams/{stream_key}/weights", content="0,1\n1,0\n")
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "bad_weights"
    assert "out-of-range" in response.json()["detail"]["message"]


async def test_replacing_weights_the_settings_cannot_take_is_refused_without_a_reset(
    server: LiveServer, stream_key: str
) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}", json={"channel_groups": [[0, 1, 2, 3, 4]]}).raise_for_status()
    await fit(server, stream_key, [np.random.default_rng(10).standard_normal((30, 5))])
    with server.http() as http:
        response = http.put(f"/streams/{stream_key}/weights?replace=true", content="0,1\n1,0\n")
        body = http.get(f"/streams/{stream_key}").json()
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "bad_weights"
    assert "out-of-range" in response.json()["detail"]["message"]
    assert (body["n_channels"], body["n_samples"], body["counters"]["resets"]) == (5, 30, 0)


async def test_uploaded_weights_are_pinned_until_an_explicit_solve(server: LiveServer, stream_key: str) -> None:
    """Fit traffic after an upload grows the statistics but never replaces uploaded weights by itself."""
    W = random_weights(4, seed=8)
    rng = np.random.default_rng(9)
    with server.http() as http:
        version = http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(W)).json()["weights_version"]
    acks = await fit(server, stream_key, [rng.standard_normal((4000, 4)) for _ in range(2)])
    assert all(a.weights_version == version for a in acks)
    with server.http() as http:
        state = http.get(f"/streams/{stream_key}").json()
        assert state["weights_source"] == "uploaded" and state["n_samples"] == 8000
        downloaded = np.loadtxt(io.StringIO(http.get(f"/streams/{stream_key}/weights").text), delimiter=",")
        assert downloaded.tobytes() == W.tobytes()
        solved = http.post(f"/streams/{stream_key}/solve").json()
    assert solved["replaced_uploaded"] is True and solved["weights_source"] == "fitted"
    assert solved["n_samples_solved"] == 8000 and solved["weights_version"] > version


async def test_automatic_solves_follow_fit_traffic(server: LiveServer, stream_key: str) -> None:
    """With the default LRR_SOLVE_EVERY_SAMPLES (3000), enough fit data leads to fitted weights by itself."""
    rng = np.random.default_rng(10)
    await fit(server, stream_key, [rng.standard_normal((1000, 4)) + rng.standard_normal((1000, 1)) for _ in range(4)])
    with server.http() as http:  # until the server reports the background solve (pytest-timeout bounds the wait)
        while (state := http.get(f"/streams/{stream_key}").json())["weights_source"] != "fitted":
            time.sleep(0.02)
    assert state["weights_source"] == "fitted" and state["n_samples_solved"] >= 3000
    assert state["counters"]["solves"] >= 1


# -- metrics --------------------------------------------------------------------------------------


async def test_metrics_report_frames_samples_latency_errors_sessions_solves(
    server: LiveServer, stream_key: str
) -> None:
    rng = np.random.default_rng(11)
    await fit(server, stream_key, [rng.standard_normal((25, 4))])
    async with server.connect(stream_key, "transform") as ws:
        await exchange(ws, encode_chunk(0, rng.standard_normal((3, 4))))
        await exchange(ws, b"\xc1")
    with server.http() as http:
        http.post(f"/streams/{stream_key}/solve").raise_for_status()
        http.put(f"/streams/{stream_key}.gone", json={}).raise_for_status()
        http.delete(f"/streams/{stream_key}.gone").raise_for_status()
        response = http.get("/metrics")
        held = http.get("/streams").json()["count"]
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for needle in (
        'lrr_frames_total{route="fit"}',
        'lrr_frames_total{route="transform"}',
        'lrr_samples_total{route="fit"}',
        'lrr_reply_latency_seconds_bucket{le="0.001",route="transform"}',
        'lrr_errors_total{code="bad_msgpack"}',
        "lrr_sessions ",
        "lrr_solve_duration_seconds_count",
        'lrr_solves_total{outcome="installed"}',
        'lrr_checkpoints_total{outcome="ok"}',
    ):
        assert needle in text, needle
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"}
    assert samples['lrr_samples_total{route="fit"}'] >= 25
    assert samples["lrr_sessions"] >= 1
    assert samples["lrr_sessions"] == held  # kept current by every creation and deletion
