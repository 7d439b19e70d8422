"""The mistakes a rig operator makes, made on purpose against the real server: `lrr` must refuse, warn or
say so, never pass raw data off as cleaned (issue 13)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from lrr_service.clients.local_server import clean_environment
from lrr_service.core.weights_csv import format_weights_csv

try:
    from cli_runner import Done, run_lrr
    from live_server import HTTP, wait_for_session
except ImportError:
    from tests.cli_runner import Done, run_lrr
    from tests.live_server import HTTP, wait_for_session

LRR = str(Path(sys.executable).with_name("lrr"))
N_CHANNELS = 6


def recording(samples: int = 1200, seed: int = 0) -> np.ndarray:
    """Channels sharing a strong common signal, as a rig's common noise."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((samples, N_CHANNELS)) + 4 * rng.standard_normal((samples, 1))).astype(np.float32)


def save(tmp_path: Path, name: str, data: np.ndarray) -> Path:
    path = tmp_path / name
    np.save(path, data)
    return path


def one_line_failure(done: Done, *fragments: str) -> str:
    """The failure's one line on stderr (after any state line), checked to hold every fragment."""
    assert done.returncode == 1, done
    error = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in error, error
    return error


def session(url: str, key: str) -> dict:
    return HTTP.get(f"{url}/streams/{key}").json()


def test_transform_on_a_new_or_misspelt_key_is_refused_unless_identity_is_allowed(shared_server, tmp_path):
    data = save(tmp_path, "rec.npy", recording())
    out = tmp_path / "out.npy"
    refused = run_lrr(
        "stream", str(data), "--key", "never-fitted", "--transform", "-o", str(out), url=shared_server.url
    )
    one_line_failure(refused, "no weights", "--allow-identity")
    assert not out.exists()
    allowed = run_lrr(
        "stream",
        str(data),
        "--key",
        "never-fitted",
        "--transform",
        "--allow-identity",
        "-o",
        str(out),
        "--json",
        url=shared_server.url,
    )
    assert allowed.returncode == 0, allowed.stderr
    summary = json.loads(allowed.stdout)
    assert summary["weights_applied"] == [{"weights_version": 0, "weights_source": "none"}]
    np.testing.assert_array_equal(np.load(out), recording())


def test_transform_after_a_reset_is_refused_and_every_run_states_the_weights_it_applied(shared_server, tmp_path):
    data = save(tmp_path, "rec.npy", recording())
    out = tmp_path / "out.npy"
    fitted = run_lrr("stream", str(data), "--key", "reset-rig", "-o", str(out), url=shared_server.url)
    assert fitted.returncode == 0, fitted.stderr
    assert "applied weights version 1 (fitted)" in fitted.stdout
    assert np.abs(np.load(out)).mean() < 0.5 * np.abs(recording()).mean()
    assert run_lrr("reset", "--key", "reset-rig", url=shared_server.url).returncode == 0
    refused = run_lrr("stream", str(data), "--key", "reset-rig", "--transform", "-o", str(out), url=shared_server.url)
    one_line_failure(refused, "'reset-rig' has no weights", "--allow-identity")


def test_the_python_client_refuses_an_identity_transform_unless_told(shared_server):
    from lrr_service.clients import IdentityTransformError, LRRClientSync

    chunk = recording(30)
    with (
        LRRClientSync(shared_server.url, "client-identity") as client,
        pytest.raises(IdentityTransformError, match="allow_identity=True"),
    ):
        client.transform(chunk)
    with LRRClientSync(shared_server.url, "client-identity", allow_identity=True) as client:
        np.testing.assert_array_equal(client.transform(chunk), chunk)
        weights = np.full((N_CHANNELS, N_CHANNELS), 1.0 / (N_CHANNELS - 1))
        np.fill_diagonal(weights, 0.0)
        client.put_weights(weights)
    with LRRClientSync(shared_server.url, "client-identity") as client:
        assert not np.array_equal(client.transform(chunk), chunk)


def test_a_transposed_recording_is_refused_naming_transpose_and_taken_with_it(shared_server, tmp_path):
    wide = save(tmp_path, "wide.npy", recording(300).T)  # channels x samples: 6 x 300
    out = tmp_path / "out.npy"
    refused = run_lrr("stream", str(wide), "--key", "transposed", "-o", str(out), url=shared_server.url)
    one_line_failure(refused, "6 samples x 300 channels", "more channels than samples", "--transpose")
    assert HTTP.get(f"{shared_server.url}/streams/transposed").status_code == 404  # nothing was sent
    taken = run_lrr("stream", str(wide), "--key", "transposed", "--transpose", "-o", str(out), url=shared_server.url)
    assert taken.returncode == 0, taken.stderr
    assert np.load(out).shape == (300, N_CHANNELS)
    # the session now has 6 channels: a file of 6 samples x 4 channels is most likely a transposed one
    tall = save(tmp_path, "tall.npy", recording(6)[:, :4])
    refused = run_lrr("stream", str(tall), "--key", "transposed", "--append", "-o", str(out), url=shared_server.url)
    one_line_failure(refused, "session 'transposed' has 6 channels", "--transpose")
    assert session(shared_server.url, "transposed")["n_channels"] == N_CHANNELS


def test_a_second_run_on_a_key_with_statistics_needs_append_or_reset(shared_server, tmp_path):
    data = save(tmp_path, "rec.npy", recording(1000))
    url, key = shared_server.url, "twice"
    first = run_lrr("stream", str(data), "--key", key, "--fit", url=url)
    assert first.returncode == 0 and "session 'twice' is new" in first.stderr
    again = run_lrr("stream", str(data), "--key", key, "--fit", url=url)
    one_line_failure(again, "already holds 1000 fitted samples", "--append", "--reset")
    assert "holds 1000 fitted samples and weights version" in again.stderr  # said before refusing
    assert session(url, key)["n_samples"] == 1000
    appended = run_lrr("stream", str(data), "--key", key, "--fit", "--append", url=url)
    assert appended.returncode == 0, appended.stderr
    assert session(url, key)["n_samples"] == 2000
    clean = run_lrr("stream", str(data), "--key", key, "--fit", "--reset", url=url)
    assert clean.returncode == 0 and "--reset: session 'twice' cleared" in clean.stderr
    assert session(url, key)["n_samples"] == 1000


def test_a_nan_block_is_refused_with_its_place_in_the_file_or_skipped_with_every_other_chunk_cleaned(
    shared_server, tmp_path
):
    data = recording(2000)
    data[1030:1100, 2] = np.nan  # inside chunks 4 (1024-1279) only, with --chunk 256
    path = save(tmp_path, "nan.npy", data)
    out = tmp_path / "out.npy"
    url = shared_server.url
    refused = run_lrr("stream", str(path), "--key", "nan-rig", "-o", str(out), url=url)
    one_line_failure(refused, "nan at sample 1030, channel 2", "--skip-non-finite")
    assert HTTP.get(f"{url}/streams/nan-rig").status_code == 404  # refused before anything was sent
    done = run_lrr("stream", str(path), "--key", "nan-rig", "--skip-non-finite", "-o", str(out), "--json", url=url)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["skipped_chunks"] == [{"start": 1024, "stop": 1280}]
    assert session(url, "nan-rig")["n_samples"] == 2000 - 256
    output = np.load(out)
    assert np.isnan(output[1024:1280]).all()
    finite = np.r_[0:1024, 1280:2000]
    weights = np.loadtxt(HTTP.get(f"{url}/streams/nan-rig/weights").text.splitlines(), delimiter=",")
    expected = data[finite].astype(np.float64) @ (np.eye(N_CHANNELS) - weights)
    np.testing.assert_allclose(output[finite], expected, rtol=1e-4, atol=1e-3)


def test_a_replay_stopped_by_bad_data_says_what_the_session_holds_and_how_to_undo(shared_server, tmp_path):
    data = recording(1024).astype(np.float64)
    data[700, 1] = 1e120  # finite, but beyond what a fit takes: the server refuses that chunk mid-replay
    path = save(tmp_path, "huge.npy", data)
    done = run_lrr("stream", str(path), "--key", "stopped-rig", "--fit", "--chunk", "128", url=shared_server.url)
    one_line_failure(done, "out_of_range" if "out_of_range" in done.stderr else "1e+120")
    account = [line for line in done.stderr.splitlines() if line.startswith("lrr stream: stopped")]
    held = session(shared_server.url, "stopped-rig")["n_samples"]
    assert held > 0 and account == [
        f"lrr stream: stopped: session 'stopped-rig' now holds {held} fitted samples (no weights); "
        "to undo: lrr reset --key stopped-rig"
    ]


def test_ctrl_c_mid_replay_says_what_the_session_holds_and_how_to_undo(process_factory, tmp_path):
    server = process_factory()
    path = save(tmp_path, "slow.npy", recording(20000))  # 20 s at 1 kHz: still replaying when interrupted
    process = subprocess.Popen(
        [
            LRR,
            "stream",
            str(path),
            "--key",
            "ctrl-c",
            "--fit",
            "--rate",
            "realtime",
            "--sample-rate",
            "1000",
            "--chunk",
            "50",
            "--url",
            server.url,
        ],
        env=clean_environment({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fitted = "held fitted samples"  # mid-replay, whatever the start-up took
    wait_for_session(server.url, "ctrl-c", lambda held: held["n_samples"] > 0, fitted, while_running=process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    held = HTTP.get(f"{server.url}/streams/ctrl-c").json()["n_samples"]
    assert process.returncode == 130, stderr
    assert 0 < held < 20000
    assert f"lrr stream: interrupted: session 'ctrl-c' now holds {held} fitted samples" in stderr
    assert "to undo: lrr reset --key ctrl-c" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("dtype", ["int64", "uint16", "uint8", "int8"])
def test_integer_recordings_are_converted_exactly(shared_server, tmp_path, dtype):
    rng = np.random.default_rng(1)
    data = (rng.integers(0, 100, (900, N_CHANNELS)) + rng.integers(0, 50, (900, 1))).astype(dtype)
    path = save(tmp_path, f"{dtype}.npy", data)
    out = tmp_path / "out.npy"
    done = run_lrr("stream", str(path), "--key", f"ints-{dtype}", "-o", str(out), url=shared_server.url)
    assert done.returncode == 0, done.stderr
    weights = np.loadtxt(HTTP.get(f"{shared_server.url}/streams/ints-{dtype}/weights").text.splitlines(), delimiter=",")
    expected = data.astype(np.float64) @ (np.eye(N_CHANNELS) - weights)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-2)


def test_int64_beyond_exact_float64_is_refused_with_the_reason(shared_server, tmp_path):
    data = np.full((100, N_CHANNELS), 2**60, dtype=np.int64)
    path = save(tmp_path, "huge-ints.npy", data)
    done = run_lrr("stream", str(path), "--key", "huge-ints", "--fit", url=shared_server.url)
    one_line_failure(done, "cannot be sent exactly", "2**53")


def test_a_key_the_server_would_refuse_is_refused_before_any_connection(tmp_path):
    path = save(tmp_path, "rec.npy", recording(100))
    done = run_lrr("stream", str(path), "--key", "rig/1", "--fit", url="http://127.0.0.1:9")
    one_line_failure(done, "invalid stream key 'rig/1'", "expected 1 to 128 characters")


def test_no_server_says_how_to_start_one_or_point_at_one(tmp_path):
    path = save(tmp_path, "rec.npy", recording(100))
    done = run_lrr("stream", str(path), "--key", "k", "--fit", url="http://127.0.0.1:9")
    one_line_failure(done, "cannot connect to the server at http://127.0.0.1:9", "lrr serve", "--url", "LRR_URL")


def test_a_path_prefix_without_a_proxy_that_strips_it_is_named_not_mistaken_for_a_token(shared_server, tmp_path):
    path = save(tmp_path, "rec.npy", recording(100))
    done = run_lrr("stream", str(path), "--key", "k", "--fit", url=shared_server.url + "/lrr")
    error = one_line_failure(done, "no lrr-service route", "path prefix")
    assert "token" not in error and "unauthorized" not in error


def test_a_path_prefix_behind_a_reverse_proxy_that_strips_it_works(shared_server, tmp_path):
    """HAProxy (the distribution's, as the cluster uses) in front of the server, serving it under /lrr."""
    from lrr_service.clients.local_server import free_loopback_port

    port = free_loopback_port()
    config = tmp_path / "proxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n"
        "    timeout tunnel 30s\n"
        f"frontend f\n    bind 127.0.0.1:{port}\n    http-request replace-path /lrr(/.*) \\1\n"
        "    default_backend b\n"
        f"backend b\n    server s {shared_server.url.removeprefix('http://')}\n"
    )
    proxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                HTTP.get(f"http://127.0.0.1:{port}/lrr/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        path = save(tmp_path, "rec.npy", recording(600))
        out = tmp_path / "out.npy"
        done = run_lrr("stream", str(path), "--key", "prefixed", "-o", str(out), url=f"http://127.0.0.1:{port}/lrr")
    finally:
        proxy.terminate()
        proxy.wait(10)
    assert done.returncode == 0, done.stderr
    assert session(shared_server.url, "prefixed")["n_samples"] == 600
    assert np.load(out).shape == (600, N_CHANNELS)


def test_a_closed_pipe_ends_quietly(shared_server):
    weights = np.random.default_rng(2).uniform(-0.01, 0.01, (200, 200))  # ~800 KB of CSV: more than a pipe holds
    np.fill_diagonal(weights, 0.0)
    HTTP.put(
        f"{shared_server.url}/streams/piped/weights",
        content=format_weights_csv(weights),
        headers={"content-type": "text/csv"},
    ).raise_for_status()
    done = subprocess.run(
        f"{LRR} weights get --key piped --url {shared_server.url} | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        env=clean_environment({}),
        timeout=60,
    )
    assert done.stdout == "0"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_the_exit_codes_are_what_docs_clients_md_says(tmp_path):
    documented = Path(__file__).parent.parent.joinpath("docs", "clients.md").read_text()
    for code, meaning in ((0, "success"), (1, "failure"), (2, "usage"), (130, "interrupted")):
        assert f"| {code} | {meaning}" in documented
    assert run_lrr("stream", "--no-such-flag").returncode == 2


def test_stream_reports_what_the_cleaning_did_per_channel_and_overall_with_a_figure(shared_server, tmp_path):
    data = recording(1500)
    path = save(tmp_path, "rec.npy", data)
    out, figure = tmp_path / "out.npy", tmp_path / "cleaning.png"
    done = run_lrr(
        "stream",
        str(path),
        "--key",
        "reported",
        "-o",
        str(out),
        "--report",
        str(figure),
        "--json",
        url=shared_server.url,
    )
    assert done.returncode == 0, done.stderr
    cleaning = json.loads(done.stdout)["cleaning"]
    cleaned = np.load(out).astype(np.float64)
    before, after = (data.astype(np.float64) ** 2).mean(axis=0), (cleaned**2).mean(axis=0)
    np.testing.assert_allclose([c["reduction_db"] for c in cleaning["channels"]], 10 * np.log10(before / after))
    assert cleaning["reduction_db"] == pytest.approx(10 * np.log10(before.sum() / after.sum()))
    assert cleaning["reduction_db"] > 6  # the common signal was most of the power
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    text = run_lrr("stream", str(path), "--key", "reported", "--reset", "-o", str(out), url=shared_server.url)
    assert "overall power reduction" in text.stdout


def test_delete_and_settings_from_the_command_line(shared_server):
    url, key = shared_server.url, "cli-settings"
    assert run_lrr("settings", "put", "--key", key, "ridge_lambda=0.5", "block_size=3", url=url).returncode == 0
    shown = run_lrr("settings", "get", "--key", key, "--json", url=url)
    assert json.loads(shown.stdout)["ridge_lambda"] == 0.5 and json.loads(shown.stdout)["block_size"] == 3
    changed = run_lrr("settings", "put", "--key", key, "ridge_lambda=0.25", url=url)
    assert "the session starts over" in changed.stdout
    settings = session(url, key)["settings"]
    assert settings["ridge_lambda"] == 0.25 and settings["block_size"] == 3  # the others kept their values
    one_line_failure(run_lrr("settings", "put", "--key", key, "ridge_lambda", url=url), "expected NAME=VALUE")
    one_line_failure(run_lrr("settings", "put", "--key", key, "ridge_lambda=-1", url=url), "ridge_lambda")
    assert session(url, key)["settings"]["ridge_lambda"] == 0.25
    deleted = run_lrr("delete", "--key", key, url=url)
    assert deleted.returncode == 0 and "deleted session 'cli-settings'" in deleted.stdout
    assert HTTP.get(f"{url}/streams/{key}").status_code == 404


def test_url_and_token_come_from_the_config_file_after_flags_and_environment(server_factory, tmp_path):
    server = server_factory(env={"LRR_API_TOKEN": "from-the-file"})
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{server.url}"\ntoken = "from-the-file"\n')
    config.chmod(0o600)
    listed = subprocess.run(
        [LRR, "sessions", "--json"], capture_output=True, text=True, env=clean_environment({"LRR_CONFIG": str(config)})
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    overridden = subprocess.run(
        [LRR, "sessions", "--token", "wrong"],
        capture_output=True,
        text=True,
        env=clean_environment({"LRR_CONFIG": str(config)}),
    )
    assert overridden.returncode == 1 and "--token" in overridden.stderr  # the flag won, and the hint names it
    config.chmod(0o644)
    exposed = subprocess.run(
        [LRR, "sessions"], capture_output=True, text=True, env=clean_environment({"LRR_CONFIG": str(config)})
    )
    assert exposed.returncode == 1
    assert f"{config} holds a token but others can read it (mode 0644); make it private: chmod 600" in exposed.stderr


def test_a_fit_that_leaves_every_channel_unchanged_is_refused_before_output(shared_server, tmp_path):
    """Two channels with the default min_group_size of 3: the weights are fitted, but change nothing."""
    path = save(tmp_path, "two.npy", recording(500)[:, :2])
    out = tmp_path / "out.npy"
    refused = run_lrr("stream", str(path), "--key", "two-channels", "-o", str(out), url=shared_server.url)
    one_line_failure(refused, "fewer than min_group_size=3 channels", "--allow-identity")
    assert not out.exists()
    allowed = run_lrr(
        "stream",
        str(path),
        "--key",
        "two-channels",
        "--append",
        "--allow-identity",
        "-o",
        str(out),
        url=shared_server.url,
    )
    assert allowed.returncode == 0, allowed.stderr
    np.testing.assert_array_equal(np.load(out), recording(500)[:, :2])


def test_cli_hints_name_the_flags_not_the_query_parameters(shared_server, tmp_path):
    small = np.full((3, 3), 0.5)
    np.fill_diagonal(small, 0.0)
    big = np.full((4, 4), 1 / 3)
    np.fill_diagonal(big, 0.0)
    np.savetxt(tmp_path / "w3.csv", small, delimiter=",")
    np.savetxt(tmp_path / "w4.csv", big, delimiter=",")
    url = shared_server.url
    assert run_lrr("weights", "put", str(tmp_path / "w3.csv"), "--key", "hinted", url=url).returncode == 0
    refused = run_lrr("weights", "put", str(tmp_path / "w4.csv"), "--key", "hinted", url=url)
    error = one_line_failure(refused, "--replace")
    assert "?replace=true" not in error
    replaced = run_lrr("weights", "put", str(tmp_path / "w4.csv"), "--key", "hinted", "--replace", url=url)
    assert replaced.returncode == 0 and session(url, "hinted")["n_channels"] == 4
