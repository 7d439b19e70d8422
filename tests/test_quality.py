"""Quality measured by the service: core/quality.py's meter, and GET /streams/{key}/quality and its metrics
against an independent computation on data with known common noise, with groups and on int16 input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from lrr_service.core.codec import ChunkReply, encode_chunk
from lrr_service.core.quality import QualityMeter, quality_report, reduction_summary

try:
    from live_server import exchange
except ImportError:
    from tests.live_server import exchange

N_CHANNELS = 8
GROUPS = [[0, 1, 2, 3], [4, 5, 6, 7]]
EXACT = {"LRR_QUALITY_EVERY": "1", "LRR_QUALITY_WINDOW_SECONDS": "1e9"}
"""Every frame measured, and a window so long that every frame of a test weighs the same (to 1e-8)."""


def common_noise(rng: np.random.Generator, n_samples: int, groups: list[list[int]]) -> np.ndarray:
    """Independent unit noise on every channel plus, per group, one shared source 10x as strong with
    per-channel gains: what rereferencing is for."""
    data = rng.standard_normal((n_samples, N_CHANNELS))
    for members in groups:
        source = 10.0 * rng.standard_normal((n_samples, 1))
        data[:, members] += source * rng.uniform(0.5, 1.5, len(members))
    return data


def db(power_in: np.ndarray | float, power_out: np.ndarray | float) -> np.ndarray:
    return np.asarray(10 * np.log10(np.asarray(power_in) / np.asarray(power_out)))


# -- the meter, in core ----------------------------------------------------------------------------


def test_meter_is_an_exponential_window_in_wall_clock_time() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((20, 4))
    meter = QualityMeter(4, window_seconds=10.0)
    meter.add(a, a / 2, now=100.0)
    meter.add(b, b / 4, now=105.0)
    decay = math.exp(-0.5)
    weight = decay * 30 + 20
    expected_in = (decay * (a**2).sum(0) + (b**2).sum(0)) / weight
    expected_out = (decay * ((a / 2) ** 2).sum(0) + ((b / 4) ** 2).sum(0)) / weight
    powers = meter.powers()
    assert powers is not None
    np.testing.assert_allclose(powers[0], expected_in, rtol=1e-12)
    np.testing.assert_allclose(powers[1], expected_out, rtol=1e-12)
    meter.add(b, b / 4, now=105.0 + 30 * 10.0)  # past the rescale: the old frames weigh e^-30 now
    powers = meter.powers()
    assert powers is not None
    np.testing.assert_allclose(powers[1] / powers[0], 1 / 16, rtol=1e-9)
    assert meter.measured_frames == 3


def test_meter_report_per_channel_group_and_overall() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    y = (x * np.array([1, 0.5, 0.25, 0.1, 1, 2], dtype=np.float32)).astype(np.float32)
    meter = QualityMeter(6, 10.0)
    meter.add(x, y, 0.0)
    report = quality_report(meter, 6, [np.array([0, 1, 2]), np.array([3, 4, 5])])
    p_in = (x.astype(np.float64) ** 2).mean(0)
    p_out = (y.astype(np.float64) ** 2).mean(0)
    channel_db = db(p_in, p_out)
    assert [c["reduction_db"] for c in report["channels"]] == pytest.approx(list(channel_db), abs=1e-4)
    group = report["groups"][1]
    assert group["channels"] == [3, 4, 5]
    assert group["reduction_db"] == pytest.approx(float(db(p_in[3:].sum(), p_out[3:].sum())), abs=1e-4)
    overall = report["overall"]
    assert overall["reduction_db"] == pytest.approx(float(db(p_in.sum(), p_out.sum())), abs=1e-4)
    assert overall["median_channel_db"] == pytest.approx(float(np.median(channel_db)), abs=1e-4)
    assert overall["worst_channel"]["index"] == 5 and overall["worst_channel"]["reduction_db"] < 0
    assert reduction_summary(meter) == pytest.approx(
        (overall["median_channel_db"], float(db(p_in[5], p_out[5]))), abs=1e-4
    )


def test_meter_reports_null_before_measuring_and_for_silent_or_non_finite_channels() -> None:
    report = quality_report(None, 3, [np.arange(3)])
    assert report["measured_frames"] == 0 and len(report["channels"]) == 3
    assert report["channels"][0] == {"index": 0, "power_in": None, "power_out": None, "reduction_db": None}
    assert report["overall"]["worst_channel"] is None and report["groups"][0]["reduction_db"] is None
    meter = QualityMeter(3, 10.0)
    x = np.ones((4, 3))
    x[:, 1] = 0.0  # silent channel: 0/0
    y = x.copy()
    y[0, 2] = np.nan  # a non-finite output sample
    meter.add(x, y, 0.0)
    report = quality_report(meter, 3, [])
    assert report["channels"][0]["reduction_db"] == 0.0
    assert report["channels"][1]["reduction_db"] is None and report["channels"][2]["power_out"] is None
    meter.add(x, x, 1.0)  # the non-finite channel started over and measures again
    assert quality_report(meter, 3, [])["channels"][2]["reduction_db"] == 0.0


def test_meter_refuses_chunks_of_another_shape() -> None:
    meter = QualityMeter(4, 10.0)
    with pytest.raises(ValueError, match=r"expected \(n_samples, 4\)"):
        meter.add(np.ones((3, 5)), np.ones((3, 5)), 0.0)
    with pytest.raises(ValueError, match="window_seconds"):
        QualityMeter(4, 0.0)


# -- the service ------------------------------------------------------------------------------------


async def fitted_session(server: object, key: str, rng: np.random.Generator, groups: list[list[int]]) -> None:
    """Fit the session on common-noise data and solve."""
    async with server.connect(key, "fit") as ws:  # type: ignore[attr-defined]
        for seq in range(10):
            await exchange(ws, encode_chunk(seq, common_noise(rng, 300, groups)))
    with server.http() as http:  # type: ignore[attr-defined]
        assert http.post(f"/streams/{key}/solve").status_code == 200


async def transformed(server: object, key: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The server's outputs for `frames`, sent on the transform route."""
    outputs = []
    async with server.connect(key, "transform") as ws:  # type: ignore[attr-defined]
        for seq, frame in enumerate(frames):
            reply = await exchange(ws, encode_chunk(seq, frame))
            assert isinstance(reply, ChunkReply), reply
            outputs.append(reply.data)
    return outputs


def expected(frames: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per channel of the inputs (in their own units, float64) and of the outputs."""
    x = np.concatenate([f.astype(np.float64) for f in frames])
    y = np.concatenate([o.astype(np.float64) for o in outputs])
    return (x**2).mean(0), (y**2).mean(0)


async def test_quality_matches_the_power_of_what_the_server_returned(server_factory, stream_key: str) -> None:
    server = server_factory(env=EXACT)
    rng = np.random.default_rng(2)
    await fitted_session(server, stream_key, rng, [list(range(N_CHANNELS))])
    frames = [common_noise(rng, 30, [list(range(N_CHANNELS))]).astype(np.float32) for _ in range(40)]
    outputs = await transformed(server, stream_key, frames)
    p_in, p_out = expected(frames, outputs)
    with server.http() as http:
        quality = http.get(f"/streams/{stream_key}/quality").json()
        metrics = http.get("/metrics").text
    assert quality["key"] == stream_key and quality["n_channels"] == N_CHANNELS
    assert (quality["every"], quality["window_seconds"], quality["measured_frames"]) == (1, 1e9, 40)
    channels = quality["channels"]
    assert [c["index"] for c in channels] == list(range(N_CHANNELS)) and channels[0]["label"] is None
    assert [c["power_in"] for c in channels] == pytest.approx(list(p_in), rel=1e-5)
    assert [c["power_out"] for c in channels] == pytest.approx(list(p_out), rel=1e-5)
    assert [c["reduction_db"] for c in channels] == pytest.approx(list(db(p_in, p_out)), abs=1e-4)
    assert min(c["reduction_db"] for c in channels) > 3  # most of the common noise (20 dB above the rest) went
    overall = quality["overall"]
    assert overall["reduction_db"] == pytest.approx(float(db(p_in.sum(), p_out.sum())), abs=1e-4)
    assert overall["median_channel_db"] == pytest.approx(float(np.median(db(p_in, p_out))), abs=1e-4)
    worst = int(np.argmin(db(p_in, p_out)))
    assert overall["worst_channel"] == {"index": worst, "reduction_db": pytest.approx(float(db(p_in, p_out)[worst]))}
    assert quality["groups"] == [
        {
            "index": 0,
            "channels": list(range(N_CHANNELS)),
            "power_in": pytest.approx(float(p_in.sum()), rel=1e-5),
            "power_out": pytest.approx(float(p_out.sum()), rel=1e-5),
            "reduction_db": pytest.approx(overall["reduction_db"], abs=1e-6),
        }
    ]
    series = dict(re.findall(rf'lrr_session_reduction_db\{{key="{stream_key}",stat="(\w+)"\}} (\S+)', metrics))
    assert float(series["median"]) == pytest.approx(overall["median_channel_db"], abs=1e-6)
    assert float(series["worst"]) == pytest.approx(overall["worst_channel"]["reduction_db"], abs=1e-6)


async def test_quality_per_group_of_a_two_group_session(server_factory, stream_key: str) -> None:
    server = server_factory(env=EXACT)
    with server.http() as http:
        assert http.put(f"/streams/{stream_key}", json={"channel_groups": GROUPS}).status_code == 201
        labels = [f"ch{i}" for i in range(N_CHANNELS)]
        assert http.put(f"/streams/{stream_key}/channels", json={"labels": labels}).status_code == 200
    rng = np.random.default_rng(3)
    await fitted_session(server, stream_key, rng, GROUPS)
    frames = [common_noise(rng, 30, GROUPS).astype(np.float32) for _ in range(30)]
    outputs = await transformed(server, stream_key, frames)
    p_in, p_out = expected(frames, outputs)
    with server.http() as http:
        quality = http.get(f"/streams/{stream_key}/quality").json()
    assert [c["label"] for c in quality["channels"]] == labels
    assert [g["channels"] for g in quality["groups"]] == GROUPS
    for group, members in zip(quality["groups"], GROUPS, strict=True):
        assert group["power_in"] == pytest.approx(float(p_in[members].sum()), rel=1e-5)
        assert group["power_out"] == pytest.approx(float(p_out[members].sum()), rel=1e-5)
        assert group["reduction_db"] == pytest.approx(float(db(p_in[members].sum(), p_out[members].sum())), abs=1e-4)
        assert group["reduction_db"] > 3


async def test_quality_of_int16_input_is_in_its_own_units(server_factory, stream_key: str) -> None:
    server = server_factory(env=EXACT)
    rng = np.random.default_rng(4)
    await fitted_session(server, stream_key, rng, [list(range(N_CHANNELS))])
    frames = [np.round(100 * common_noise(rng, 30, [list(range(N_CHANNELS))])).astype(np.int16) for _ in range(30)]
    outputs = await transformed(server, stream_key, frames)
    assert outputs[0].dtype == np.float32
    p_in, p_out = expected(frames, outputs)
    with server.http() as http:
        quality = http.get(f"/streams/{stream_key}/quality").json()
    assert [c["power_in"] for c in quality["channels"]] == pytest.approx(list(p_in), rel=1e-9)  # ADC counts²
    assert [c["reduction_db"] for c in quality["channels"]] == pytest.approx(list(db(p_in, p_out)), abs=1e-4)


async def test_quality_every_k_th_frame_and_reset(server_factory, stream_key: str) -> None:
    server = server_factory(env={"LRR_QUALITY_EVERY": "4"})
    frames = [np.ones((10, 3), np.float32) for _ in range(9)]
    await transformed(server, stream_key, frames)
    with server.http() as http:
        quality = http.get(f"/streams/{stream_key}/quality").json()
        assert (quality["every"], quality["measured_frames"], quality["window_seconds"]) == (4, 3, 10.0)
        assert 'lrr_session_reduction_db{key="' + stream_key + '",stat="median"} 0.0' in http.get("/metrics").text
        assert http.post(f"/streams/{stream_key}/reset").status_code == 200
        quality = http.get(f"/streams/{stream_key}/quality").json()
        assert (quality["n_channels"], quality["measured_frames"], quality["channels"]) == (None, 0, [])
        assert quality["overall"]["reduction_db"] is None
        assert f'key="{stream_key}"' not in http.get("/metrics").text  # not measured: no series
        missing = http.get("/streams/nobody-here/quality")
        assert missing.status_code == 404 and missing.json()["detail"]["code"] == "unknown_session"
