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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylsl
from pylsl.info import XMLElement

from lrr_service.clients import LRRClientSync
from lrr_service.clients.lsl_bridge import stream_channels
from lrr_service.core.channels import MAX_FIELDS, MAX_TEXT_CHARS

try:
    from cli_runner import run_lrr
    from live_server import HTTP, wait_for_session
except ImportError:
    from tests.cli_runner import run_lrr
    from tests.live_server import HTTP, wait_for_session

LRR = str(Path(sys.executable).with_name("lrr"))
RATE = 500.0
CHANNELS = 6
LABELS = [f"Ch{i + 1}" for i in range(CHANNELS)]
WAIT_S = 30.0
"""Bound on each wait for the bridge (discovery, connection, output): a hang fails instead of blocking."""


def make_input_outlet(name: str, described: list[dict[str, str]] | None = None) -> pylsl.StreamOutlet:
    """A float32 EEG outlet with a unique source_id whose desc/channels holds, per channel, the elements of
    `described` (a dotted name is a nested element: `location.X` is <location><X>); default: labels only."""
    info = pylsl.StreamInfo(name, "EEG", CHANNELS, RATE, pylsl.cf_float32, f"{name}-source")
    channels = info.desc().append_child("channels")
    for elements in described or [{"label": label} for label in LABELS]:
        channel = channels.append_child("channel")
        for path, value in elements.items():
            *parents, leaf = path.split(".")
            parent = channel
            for tag in parents:
                parent = parent.child(tag) if not parent.child(tag).empty() else parent.append_child(tag)
            parent.append_child_value(leaf, value)
    return pylsl.StreamOutlet(info)


def described_channels(info: pylsl.StreamInfo) -> list[dict[str, str]]:
    """Every channel's elements under desc/channels, read with pylsl itself (nested ones by dotted path)."""

    def elements(element: XMLElement, prefix: str) -> dict[str, str]:
        found: dict[str, str] = {}
        child = element.first_child()
        while not child.empty():
            inner = child.first_child()
            if inner.empty() or inner.is_text():
                found[prefix + child.name()] = child.child_value()
            else:
                found |= elements(child, prefix + child.name() + ".")
            child = child.next_sibling()
        return found

    channels, channel = [], info.desc().child("channels").child("channel")
    while not channel.empty():
        channels.append(elements(channel, ""))
        channel = channel.next_sibling("channel")
    return channels


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
    stderr: str


def bridge_recording(
    url: str,
    key: str,
    data: np.ndarray,
    stamps: np.ndarray,
    expected: int,
    *options: str,
    described: list[dict[str, str]] | None = None,
) -> BridgeRun:
    """Publish a unique input stream (channels `described`, make_input_outlet), run `lrr lsl` on it, push `data`
    and collect `expected` output samples."""
    name = f"lrr-test-{uuid.uuid4().hex[:12]}"
    outlet = make_input_outlet(name, described)
    bridge = start_bridge(name, url, key, *options)
    try:
        inlet = connect_output(name, outlet)
        info = inlet.info(WAIT_S)
        push_recording(outlet, data, stamps)
        output, out_stamps = pull_samples(inlet, expected)
    finally:
        code, out, err = stop_bridge(bridge)
    assert code == 0, err
    return BridgeRun(name, info, output, out_stamps, json.loads(out), err)


def session(url: str, key: str) -> dict:
    return HTTP.get(f"{url}/streams/{key}").json()


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
    weights = np.loadtxt(HTTP.get(f"{shared_server.url}/streams/lsl-fit/weights").text.splitlines(), delimiter=",")
    expected = data[500:].astype(np.float64) @ (np.eye(CHANNELS) - weights)
    np.testing.assert_allclose(run.output, expected, rtol=1e-4, atol=1e-3)
    assert session(shared_server.url, "lsl-fit")["n_samples"] == 500
    assert run.summary["samples_fitted"] == 500 and run.summary["samples_out"] == 500
    assert run.summary["output_name"] == run.name + "-lrr"


def test_without_fit_seconds_every_sample_goes_through_fit_transform(shared_server):
    """600 samples, fewer than the server's solve schedule (3000): never solved, so every published sample is
    its input unchanged, and the bridge says so."""
    data, stamps = recording(600)
    run = bridge_recording(shared_server.url, "lsl-ft", data, stamps, 600)
    np.testing.assert_array_equal(run.stamps, stamps)
    assert run.output.shape == (600, CHANNELS) and np.isfinite(run.output).all()
    assert session(shared_server.url, "lsl-ft")["n_samples"] == 600
    assert run.summary["samples_out"] == 600 and run.summary["samples_fitted"] == 600
    np.testing.assert_array_equal(run.output, data)
    assert run.summary["samples_passed_through"] == 600
    assert run.summary["notes"] == [
        f"session 'lsl-ft' has no weights: from the sample stamped {stamps[0]:.6f} on, {run.name}-lrr publishes "
        "the input unchanged until the session is solved (lrr solve, or the server's solve schedule)"
    ]
    assert f"lrr lsl: {run.summary['notes'][0]}" in run.stderr


def test_the_output_is_said_to_be_unchanged_until_the_first_solve_and_rereferenced_after(server_factory):
    """A server solving every 200 fitted samples; half the recording is pushed, then (once the session holds
    weights) the other half: a prefix of the output is the input unchanged, counted and noted, and from the
    first chunk with weights on the output is rereferenced, which is noted too."""
    server = server_factory(env={"LRR_SOLVE_EVERY_SAMPLES": "200", "LRR_SOLVE_MIN_INTERVAL_SECONDS": "0"})
    key, (data, stamps) = "lsl-first-solve", recording(1000)

    def solved(held: dict) -> bool:
        return held["weights_source"] == "fitted"

    name, output, _, summary = bridge_in_two_parts(
        server.url, key, data, stamps, 500, lambda: wait_for_session(server.url, key, solved, "was solved"), 1000
    )
    unchanged = summary["samples_passed_through"]
    assert 0 < unchanged <= 500 and summary["samples_out"] == 1000 and output.shape == data.shape
    np.testing.assert_array_equal(output[:unchanged], data[:unchanged])
    assert not np.any(np.all(output[unchanged:] == data[unchanged:], axis=1))  # every later row rereferenced
    assert summary["notes"] == [
        f"session '{key}' has no weights: from the sample stamped {stamps[0]:.6f} on, {name}-lrr publishes the "
        "input unchanged until the session is solved (lrr solve, or the server's solve schedule)",
        f"weights apply from the sample stamped {stamps[unchanged]:.6f} on: {name}-lrr is rereferenced "
        f"({unchanged} samples were published unchanged before)",
    ]


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
    """Wait until the server's session holds `n_samples` fitted samples."""
    wait_for_session(url, key, lambda held: held["n_samples"] >= n_samples, f"held {n_samples} samples")


def bridge_in_two_parts(
    url: str,
    key: str,
    data: np.ndarray,
    stamps: np.ndarray,
    split: int,
    between: Callable[[], None],
    expected: int,
    *options: str,
) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """Run `lrr lsl` on a new input stream: push data[:split], call `between`, push the rest and collect
    `expected` output samples; returns (the input's name, the output, its timestamps, the summary)."""
    name = f"lrr-test-{uuid.uuid4().hex[:12]}"
    outlet = make_input_outlet(name)
    bridge = start_bridge(name, url, key, *options)
    try:
        inlet = connect_output(name, outlet)
        push_recording(outlet, data[:split], stamps[:split])
        between()
        push_recording(outlet, data[split:], stamps[split:])
        output, out_stamps = pull_samples(inlet, expected)
    finally:
        code, out, err = stop_bridge(bridge)
    assert code == 0, err
    return name, output, out_stamps, json.loads(out)


def test_a_non_finite_chunk_in_the_fitting_period_is_counted_once_and_not_fitted(shared_server):
    url, key = shared_server.url, "lsl-fit-nan"
    data, stamps = recording(1000)  # the first second (500 samples) is the fitting period
    data[300, 2] = np.nan
    # the finite start is fitted apart from the chunk holding the NaN
    _, output, out_stamps, summary = bridge_in_two_parts(
        url, key, data, stamps, 200, lambda: wait_for_fitted(url, key, 200), 500, "--fit-seconds", "1"
    )
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
    created = HTTP.put(f"{url}/streams/{key}", json={"channel_groups": [[0, 1, 2, CHANNELS + 1]]})
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


BANKS = ["A", "B", "A", "B", "A", "B"]
"""Two interleaved banks of three: grouping by bank is not any block_size grouping."""
DESCRIBED = [
    {"label": label, "bank": bank, "type": "EEG", "unit": "microvolts", "location.X": f"{i * 1.5:g}"}
    for i, (label, bank) in enumerate(zip(LABELS, BANKS, strict=True))
]


def test_the_lsl_bridge_keeps_labels_and_groups_by_a_field_in_a_stream_description(shared_server):
    url, key = shared_server.url, "lsl-banks"
    data, stamps = recording(1000)  # the first second is fitted, the second transformed
    run = bridge_recording(url, key, data, stamps, 500, "--fit-seconds", "1", "--group-by", "bank", described=DESCRIBED)
    with LRRClientSync(url, key) as client:
        description, info, weights = client.get_channels(), client.info(), client.get_weights()
    assert description is not None and description.labels == tuple(LABELS)
    assert description.fields["bank"] == tuple(BANKS)
    assert description.fields["unit"] == ("microvolts",) * CHANNELS
    assert description.fields["location.X"] == tuple(channel["location.X"] for channel in DESCRIBED)
    assert info["settings"]["channel_groups"] == "bank"
    assert info["grouping"]["source"] == "fields" and info["grouping"]["fallback"] is None
    resolved = HTTP.get(f"{url}/streams/{key}/channels").json()["groups"]
    bank_a, bank_b = [0, 2, 4], [1, 3, 5]
    assert sorted(resolved) == [bank_a, bank_b]
    assert not weights[np.ix_(bank_a, bank_b)].any() and not weights[np.ix_(bank_b, bank_a)].any()
    assert weights[np.ix_(bank_a, bank_a)].any() and weights[np.ix_(bank_b, bank_b)].any()
    assert described_channels(run.info) == DESCRIBED  # the outlet: same labels, same per-channel fields
    assert run.output.shape == (500, CHANNELS) and "warning" not in run.stderr


def test_group_by_a_field_the_stream_does_not_describe_warns_and_keeps_the_other_settings(shared_server):
    url, key = shared_server.url, "lsl-no-array"
    created = HTTP.put(f"{url}/streams/{key}", json={"ridge_lambda": 0.5, "block_size": 3})
    assert created.status_code == 201, created.text
    data, stamps = recording(300)
    run = bridge_recording(url, key, data, stamps, 300, "--group-by", "array")  # the stream has labels only
    settings = session(url, key)["settings"]
    assert settings["channel_groups"] == "array" and settings["ridge_lambda"] == 0.5 and settings["block_size"] == 3
    grouping = session(url, key)["grouping"]
    assert grouping["source"] == "block_size" and grouping["sizes"] == [3, 3] and "'array'" in grouping["fallback"]
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'array'" in warnings[0] and "blocks of block_size" in warnings[0], run.stderr
    assert any("'array'" in note for note in run.summary["notes"])


def channels_xml(*channels: str, count_tag: str = "") -> str:
    """An LSL info document whose desc/channels holds these <channel> bodies."""
    body = "".join(f"<channel>{channel}</channel>" for channel in channels)
    return f"<info>{count_tag}<desc><channels>{body}</channels><manufacturer>x</manufacturer></desc></info>"


def test_stream_channels_reads_labels_and_every_field_as_stripped_strings():
    xml = channels_xml(
        "<label> Fp1 </label><bank>1</bank><location><X>0.5</X><Y>-1</Y></location>",
        "<label>Fp2</label><bank>01</bank><unit>uV</unit>",
        "<bank>1</bank>",
    )
    found = stream_channels(xml, 3)
    assert found.notes == ()
    assert found.description == {
        "labels": ["Fp1", "Fp2", ""],
        "fields": {
            "bank": ["1", "01", "1"],  # strings, as written: "1" and "01" are different banks
            "location.X": ["0.5", None, None],
            "location.Y": ["-1", None, None],
            "unit": [None, "uV", None],
        },
    }


def test_stream_channels_without_labels_sends_fields_only_and_without_channels_nothing():
    assert stream_channels(channels_xml("<bank>a</bank>", "<bank>b</bank>"), 2).description == {
        "labels": None,
        "fields": {"bank": ["a", "b"]},
    }
    assert stream_channels("<info><desc/></info>", 4) == stream_channels("<info/>", 4)
    assert stream_channels("<info/>", 4).description is None and stream_channels("<info/>", 4).notes == ()


def test_stream_channels_with_another_channel_count_sends_none_and_says_why():
    found = stream_channels(channels_xml("<label>a</label>", "<label>b</label>"), 3)
    assert found.description is None
    assert found.notes == (
        "the stream's description lists 2 channel(s) for its 3 channels; no channel description is sent",
    )


def test_stream_channels_leaves_out_what_the_service_cannot_hold_and_names_it():
    too_long = "v" * (MAX_TEXT_CHARS + 1)
    found = stream_channels(channels_xml(f"<label>a</label><größe>1</größe><note>{too_long}</note><bank>2</bank>"), 1)
    assert found.description == {"labels": ["a"], "fields": {"bank": ["2"]}}
    assert len(found.notes) == 2
    assert "'größe' is left out" in found.notes[0] and "[A-Za-z0-9_.-]" in found.notes[0]
    assert "'note' is left out" in found.notes[1] and f"at most {MAX_TEXT_CHARS}" in found.notes[1]


def test_stream_channels_keeps_at_most_max_fields_fields():
    many = "".join(f"<f{i}>{i}</f{i}>" for i in range(MAX_FIELDS + 2))
    found = stream_channels(channels_xml(many), 1)
    assert found.description is not None and list(found.description["fields"]) == [f"f{i}" for i in range(MAX_FIELDS)]
    assert [note.split(" is left out")[0] for note in found.notes] == [
        f"the channel field 'f{i}'" for i in (MAX_FIELDS, MAX_FIELDS + 1)
    ]


def test_stream_channels_of_unreadable_xml_sends_none_and_says_why():
    found = stream_channels("<info><desc><channels><channel>", 1)
    assert found.description is None and "not readable XML" in found.notes[0]
