"""The LSL bridge end to end on loopback: a real pylsl outlet -> `lrr lsl` -> the server -> a real inlet.

The bridge runs as its own process (it is stopped by SIGTERM); failures before it starts run in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pylsl

try:
    from cli_runner import run_lrr
except ImportError:
    from tests.cli_runner import run_lrr

LRR = str(Path(sys.executable).with_name("lrr"))
RATE = 500.0
CHANNELS = 6
LABELS = [f"Ch{i + 1}" for i in range(CHANNELS)]
WAIT_S = 30.0
"""Bound on each wait for the bridge (discovery, connection, output): a hang fails instead of blocking."""


def make_input_outlet(name: str) -> pylsl.StreamOutlet:
    """A float32 EEG outlet with channel labels and a unique source_id."""
    info = pylsl.StreamInfo(name, "EEG", CHANNELS, RATE, pylsl.cf_float32, f"{name}-source")
    channels = info.desc().append_child("channels")
    for label in LABELS:
        channels.append_child("channel").append_child_value("label", label)
    return pylsl.StreamOutlet(info)


def start_bridge(name: str, url: str, key: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRR_")}
    return subprocess.Popen(
        [LRR, "lsl", "--input", name, "--key", key, "--url", url, "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def connect_output(name: str, outlet: pylsl.StreamOutlet) -> pylsl.StreamInlet:
    """Wait until the bridge reads our outlet and publishes NAME-lrr, then open an inlet on it."""
    assert outlet.wait_for_consumers(WAIT_S), "the bridge never connected to the input stream"
    found = pylsl.resolve_byprop("name", name + "-lrr", 1, WAIT_S)
    assert found, "the bridge never published NAME-lrr"
    inlet = pylsl.StreamInlet(found[0], max_chunklen=0, recover=False)
    inlet.open_stream(WAIT_S)
    return inlet


def push_recording(outlet: pylsl.StreamOutlet, data: np.ndarray, stamps: np.ndarray, chunk: int = 25) -> None:
    for start in range(0, len(data), chunk):
        outlet.push_chunk(data[start : start + chunk], stamps[start : start + chunk].tolist())


def pull_samples(inlet: pylsl.StreamInlet, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pull until `count` samples arrived (or WAIT_S passed); returns (samples, timestamps)."""
    samples, stamps = [], []
    deadline = time.monotonic() + WAIT_S
    while sum(len(s) for s in stamps) < count and time.monotonic() < deadline:
        chunk, times = inlet.pull_chunk(timeout=0.2)
        if times:
            samples.append(np.asarray(chunk))
            stamps.append(np.asarray(times))
    if not stamps:
        return np.zeros((0, CHANNELS)), np.zeros(0)
    return np.concatenate(samples), np.concatenate(stamps)


def stop_bridge(bridge: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM the bridge and collect its exit code and output (killed if it does not stop)."""
    if bridge.poll() is None:
        bridge.send_signal(signal.SIGTERM)
    try:
        out, err = bridge.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        bridge.kill()
        out, err = bridge.communicate()
    return bridge.returncode, out, err


def recording(samples: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    data = rng.standard_normal((samples, CHANNELS)) @ (rng.standard_normal((CHANNELS, CHANNELS)) + 1.0)
    stamps = 5000.0 + np.arange(samples) / RATE
    return data.astype(np.float32), stamps


@dataclass
class BridgeRun:
    """What one bridge run produced: the output stream's info, samples and timestamps, and the summary."""

    name: str
    info: pylsl.StreamInfo
    output: np.ndarray
    stamps: np.ndarray
    summary: dict


def bridge_recording(
    url: str, key: str, data: np.ndarray, stamps: np.ndarray, expected: int, *options: str
) -> BridgeRun:
    """Publish a unique input stream, run `lrr lsl` on it, push `data` and collect `expected` output samples."""
    name = f"lrr-test-{uuid.uuid4().hex[:12]}"
    outlet = make_input_outlet(name)
    bridge = start_bridge(name, url, key, *options)
    try:
        inlet = connect_output(name, outlet)
        info = inlet.info(WAIT_S)
        push_recording(outlet, data, stamps)
        output, out_stamps = pull_samples(inlet, expected)
    finally:
        code, out, err = stop_bridge(bridge)
    assert code == 0, err
    return BridgeRun(name, info, output, out_stamps, json.loads(out))


def session(url: str, key: str) -> dict:
    return httpx.get(f"{url}/streams/{key}").json()


def test_fit_seconds_then_transform_keeps_labels_rate_and_timestamps(shared_server):
    data, stamps = recording(1000)  # 2 s: the first second is fitted, the second transformed
    run = bridge_recording(shared_server.url, "lsl-fit", data, stamps, 500, "--fit-seconds", "1")
    info = run.info
    assert info.channel_count() == CHANNELS and info.nominal_srate() == RATE
    assert info.channel_format() == pylsl.cf_float32
    channel, labels = info.desc().child("channels").child("channel"), []
    while not channel.empty():
        labels.append(channel.child_value("label"))
        channel = channel.next_sibling("channel")
    assert labels == LABELS
    assert run.output.shape == (500, CHANNELS)
    np.testing.assert_array_equal(run.stamps, stamps[500:])
    weights = np.loadtxt(httpx.get(f"{shared_server.url}/streams/lsl-fit/weights").text.splitlines(), delimiter=",")
    expected = data[500:].astype(np.float64) @ (np.eye(CHANNELS) - weights)
    np.testing.assert_allclose(run.output, expected, rtol=1e-4, atol=1e-3)
    assert session(shared_server.url, "lsl-fit")["n_samples"] == 500
    assert run.summary["samples_fitted"] == 500 and run.summary["samples_out"] == 500
    assert run.summary["output_name"] == run.name + "-lrr"


def test_without_fit_seconds_every_sample_goes_through_fit_transform(shared_server):
    data, stamps = recording(600)
    run = bridge_recording(shared_server.url, "lsl-ft", data, stamps, 600)
    np.testing.assert_array_equal(run.stamps, stamps)
    assert run.output.shape == (600, CHANNELS) and np.isfinite(run.output).all()
    assert session(shared_server.url, "lsl-ft")["n_samples"] == 600
    assert run.summary["samples_out"] == 600 and run.summary["samples_fitted"] == 600


def test_a_non_finite_sample_is_published_unfitted_and_the_bridge_goes_on(shared_server):
    data, stamps = recording(400)
    data[200, 3] = np.nan
    run = bridge_recording(shared_server.url, "lsl-nan", data, stamps, 400)
    np.testing.assert_array_equal(run.stamps, stamps)  # every sample published, in order
    skipped = run.summary["samples_not_fitted"]
    assert skipped >= 1 and run.summary["samples_fitted"] == 400 - skipped
    assert session(shared_server.url, "lsl-nan")["n_samples"] == 400 - skipped
    assert np.isnan(run.output[200, 3]) and np.isfinite(run.output[:200]).all()


def test_missing_input_stream_fails_with_one_line():
    absent = f"absent-{uuid.uuid4().hex}"
    done = run_lrr("lsl", "--input", absent, "--key", "k", "--resolve-timeout", "0.5", "--url", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no LSL stream named" in done.stderr


def wait_for_fitted(url: str, key: str, n_samples: int) -> None:
    """Wait (bounded by WAIT_S) until the server's session holds `n_samples` fitted samples."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        reply = httpx.get(f"{url}/streams/{key}")
        if reply.status_code == 200 and reply.json()["n_samples"] >= n_samples:
            return
        time.sleep(0.05)
    raise AssertionError(f"the session never held {n_samples} samples: {reply.text}")


def test_a_non_finite_chunk_in_the_fitting_period_is_counted_once_and_not_fitted(shared_server):
    url, key = shared_server.url, "lsl-fit-nan"
    data, stamps = recording(1000)  # the first second (500 samples) is the fitting period
    data[300, 2] = np.nan
    name = f"lrr-test-{uuid.uuid4().hex[:12]}"
    outlet = make_input_outlet(name)
    bridge = start_bridge(name, url, key, "--fit-seconds", "1")
    try:
        inlet = connect_output(name, outlet)
        push_recording(outlet, data[:200], stamps[:200])
        wait_for_fitted(url, key, 200)  # the finite start is fitted apart from the chunk holding the NaN
        push_recording(outlet, data[200:], stamps[200:])
        output, out_stamps = pull_samples(inlet, 500)
    finally:
        code, out, err = stop_bridge(bridge)
    assert code == 0, err
    summary = json.loads(out)
    fitted, skipped = summary["samples_fitted"], summary["samples_not_fitted"]
    assert skipped >= 1 and fitted >= 200 and fitted + skipped == 500  # each sample counted exactly once
    assert session(url, key)["n_samples"] == fitted
    np.testing.assert_array_equal(out_stamps, stamps[500:])  # only the second after the fitting period
    assert np.isfinite(output).all() and summary["samples_out"] == 500


def test_a_fitting_period_without_finite_chunks_stops_the_bridge_with_a_clear_error(shared_server):
    data, stamps = recording(1000)
    data[:500, 0] = np.inf  # every chunk of the fitting period is refused as non-finite
    name = f"lrr-test-{uuid.uuid4().hex[:12]}"
    outlet = make_input_outlet(name)
    bridge = start_bridge(name, shared_server.url, "lsl-fit-all-nan", "--fit-seconds", "1")
    try:
        assert outlet.wait_for_consumers(WAIT_S), "the bridge never connected to the input stream"
        push_recording(outlet, data, stamps)
        bridge.wait(WAIT_S)  # it stops by itself at the end of the fitting period
    finally:
        code, _, err = stop_bridge(bridge)
    assert code == 1, err
    assert err.strip().count("\n") == 0 and "could be fitted" in err and "nothing to solve" in err


def test_a_refused_fit_stops_the_bridge_during_the_fitting_period(shared_server):
    url, key = shared_server.url, "lsl-fit-refused"
    created = httpx.put(f"{url}/streams/{key}", json={"channel_groups": [[0, 1, 2, CHANNELS + 1]]})
    assert created.status_code == 201, created.text  # a group naming a channel the stream does not have
    data, stamps = recording(100)
    name = f"lrr-test-{uuid.uuid4().hex[:12]}"
    outlet = make_input_outlet(name)
    bridge = start_bridge(name, url, key, "--fit-seconds", "1000", "--max-in-flight", "1")
    try:
        assert outlet.wait_for_consumers(WAIT_S), "the bridge never connected to the input stream"
        push_recording(outlet, data, stamps)
        bridge.wait(WAIT_S)  # raises if still running: the refusal must stop it long before the 1000 s end
    finally:
        code, _, err = stop_bridge(bridge)
    assert code == 1, err
    assert err.strip().count("\n") == 0 and "settings_mismatch" in err, err
    assert session(url, key)["n_samples"] == 0


def test_max_in_flight_below_one_is_refused_before_looking_for_the_stream():
    done = run_lrr("lsl", "--input", "unused", "--key", "k", "--max-in-flight", "0")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "max_in_flight must be >= 1" in done.stderr
