"""The `lrr` command line end to end against a real server.

The commands run in the test process (tests/cli_runner.py); what only a process can show (the
installed console script, `serve` replacing the process, a terminal on stderr, a missing optional
package, the token from the environment of a new process) runs `lrr` as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrr_service.clients.cli import build_parser

try:
    from cli_runner import Done
    from cli_runner import run_lrr as lrr
    from live_server import HTTP
except ImportError:
    from tests.cli_runner import Done
    from tests.cli_runner import run_lrr as lrr
    from tests.live_server import HTTP

LRR = str(Path(sys.executable).with_name("lrr"))


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands (or actions) by name; none for a parser without."""
    found = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


COMMANDS = [
    f"{name} {action}".strip()
    for name, command in subcommands(build_parser()).items()
    for action in ["", *subcommands(command)]
]
"""Every command and action `lrr` has, from its own parser: each must answer --help."""


def lrr_process(*args: str, url: str | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the installed `lrr` script as a subprocess, in the same environment `lrr` gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRR_")}
    if url:
        env["LRR_URL"] = url
    return subprocess.run(
        [LRR, *args], capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )


def lrr_json(*args: str, url: str | None = None) -> object:
    """Run an `lrr` command with --json, check it succeeded quietly and return the parsed output."""
    done = lrr(*args, "--json", url=url)
    assert done.returncode == 0, done.stderr
    # no progress bar when stderr is not a terminal; `lrr stream` states what the session held before it starts
    assert [line for line in done.stderr.splitlines() if not line.startswith("lrr stream: session")] == []
    return json.loads(done.stdout)


def assert_one_line_failure(done: Done | subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Non-zero exit, nothing on stdout, exactly one line on stderr holding every fragment, no traceback."""
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def recording(seed: int = 0, samples: int = 600, channels: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples, channels)) @ (rng.standard_normal((channels, channels)) + 1.0)


def server_weights(url: str, key: str) -> np.ndarray:
    return np.loadtxt(HTTP.get(f"{url}/streams/{key}/weights").text.splitlines(), delimiter=",")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    run = lrr_process if command == "serve" else lrr  # `serve` replaces the process with the service's
    done = run(*command.split(), "--help")
    assert done.returncode == 0
    assert f"usage: lrr {command}" in done.stdout
    if command == "serve":
        assert "--state-dir" in done.stdout  # the service's own parser answered


def test_stream_npy_fit_then_transform_writes_the_rereferenced_recording(shared_server, tmp_path):
    data = recording(1)
    np.save(tmp_path / "in.npy", data)
    out = tmp_path / "out.npy"
    summary = lrr_json(
        "stream", str(tmp_path / "in.npy"), "--key", "cli-npy", "--chunk", "37", "-o", str(out), url=shared_server.url
    )
    assert summary["mode"] == "fit-then-transform" and summary["samples"] == 600 and summary["channels"] == 5
    result = np.load(out)
    weights = server_weights(shared_server.url, "cli-npy")
    np.testing.assert_allclose(result, data @ (np.eye(5) - weights), rtol=1e-10, atol=1e-10)
    assert np.abs(weights).max() > 0


def test_stream_csv_transform_only_with_uploaded_weights_writes_csv(shared_server, tmp_path):
    data = recording(2, samples=120, channels=4).astype(np.float32)
    np.savetxt(tmp_path / "in.csv", data, delimiter=",", header="a,b,c,d", comments="")
    weights = np.full((4, 4), 0.25)
    np.fill_diagonal(weights, 0.0)
    np.savetxt(tmp_path / "w.csv", weights, delimiter=",")
    put = lrr_json("weights", "put", str(tmp_path / "w.csv"), "--key", "cli-csv", url=shared_server.url)
    assert put["weights_source"] == "uploaded"
    done = lrr(
        "stream",
        str(tmp_path / "in.csv"),
        "--key",
        "cli-csv",
        "--transform",
        "--chunk",
        "16",
        "-o",
        str(tmp_path / "out.csv"),
        "--url",
        shared_server.url,
    )
    assert done.returncode == 0, done.stderr
    assert "transform: 120 samples x 4 channels" in done.stdout
    result = np.loadtxt(tmp_path / "out.csv", delimiter=",")
    np.testing.assert_allclose(result, data.astype(np.float64) @ (np.eye(4) - weights), rtol=1e-5, atol=1e-5)


def test_stream_edf_fit_only_and_realtime_pacing(shared_server, tmp_path):
    import pyedflib.highlevel as edf

    signals = np.ascontiguousarray(recording(3, samples=500, channels=4).T * 10)  # one 1-second EDF record
    headers = edf.make_signal_headers(
        ["Fp1", "Fp2", "C3", "C4"], sample_frequency=500, physical_min=-500, physical_max=500
    )
    edf.write_edf(str(tmp_path / "rec.edf"), signals, headers)
    summary = lrr_json(
        "stream",
        str(tmp_path / "rec.edf"),
        "--key",
        "cli-edf",
        "--fit",
        "--rate",
        "realtime",
        "--chunk",
        "50",
        url=shared_server.url,
    )
    assert summary["samples"] == 500 and summary["output"] is None
    info = HTTP.get(f"{shared_server.url}/streams/cli-edf").json()
    assert info["n_samples"] == 500 and info["n_channels"] == 4


def test_weights_get_and_put_round_trip_bit_exactly(shared_server, tmp_path):
    rng = np.random.default_rng(4)
    weights = rng.standard_normal((6, 6)) * 1e-3
    np.fill_diagonal(weights, 0.0)
    np.savetxt(tmp_path / "w.csv", weights, delimiter=",", fmt="%.17g")
    lrr_json("weights", "put", str(tmp_path / "w.csv"), "--key", "cli-weights", url=shared_server.url)
    got = lrr_json("weights", "get", "--key", "cli-weights", "-o", str(tmp_path / "back.csv"), url=shared_server.url)
    assert got["n_channels"] == 6
    assert np.array_equal(np.loadtxt(tmp_path / "back.csv", delimiter=","), weights)
    printed = lrr("weights", "get", "--key", "cli-weights", "--url", shared_server.url)
    assert np.array_equal(np.loadtxt(printed.stdout.splitlines(), delimiter=","), weights)
    smaller = np.zeros((3, 3))
    np.savetxt(tmp_path / "small.csv", smaller, delimiter=",")
    refused = lrr("weights", "put", str(tmp_path / "small.csv"), "--key", "cli-weights", "--url", shared_server.url)
    assert_one_line_failure(refused, "size_mismatch", "replace")
    replaced = lrr_json(
        "weights", "put", str(tmp_path / "small.csv"), "--key", "cli-weights", "--replace", url=shared_server.url
    )
    assert replaced["n_channels"] == 3


def test_solving_a_session_without_fit_data_says_which_command_fits_it(shared_server):
    url = shared_server.url
    assert lrr("settings", "put", "--key", "cli-unfitted", "ridge_lambda=0.5", "--url", url).returncode == 0
    assert_one_line_failure(
        lrr("solve", "--key", "cli-unfitted", "--url", url),
        "lrr solve: error: no_fit_data:",
        "no fit data accepted since the last reset; fit it (lrr stream --fit --key cli-unfitted) first",
    )


def test_sessions_reset_and_solve(shared_server, tmp_path):
    np.save(tmp_path / "in.npy", recording(5, samples=300, channels=3))
    lrr_json("stream", str(tmp_path / "in.npy"), "--key", "cli-admin", "--fit", url=shared_server.url)
    solved = lrr_json("solve", "--key", "cli-admin", url=shared_server.url)
    assert solved["n_samples_solved"] == 300 and solved["weights_source"] == "fitted"
    listed = lrr_json("sessions", url=shared_server.url)
    assert {"key": "cli-admin", "n_channels": 3, "n_samples": 300}.items() <= next(
        s for s in listed if s["key"] == "cli-admin"
    ).items()
    table = lrr("sessions", "--url", shared_server.url).stdout.splitlines()
    assert table[0].split() == ["key", "n_channels", "n_samples", "weights_version", "weights_source"]
    assert any(line.split()[:3] == ["cli-admin", "3", "300"] for line in table[2:])
    reset = lrr("reset", "--key", "cli-admin", "--url", shared_server.url)
    assert reset.returncode == 0 and "reset 'cli-admin'" in reset.stdout
    assert HTTP.get(f"{shared_server.url}/streams/cli-admin").json()["n_samples"] == 0


def test_demo_against_a_running_server_reports_a_large_artifact_reduction(shared_server):
    report = lrr_json("demo", "--channels", "6", "--seconds", "4", "--fit-seconds", "2", url=shared_server.url)
    assert len(report["channels"]) == 6
    assert report["reduction_db"] > 15
    for channel in report["channels"]:
        assert channel["artifact_power_after"] < channel["artifact_power_before"] / 10
    assert all(s["key"] != "lrr-demo" for s in HTTP.get(f"{shared_server.url}/streams").json()["streams"])


def test_demo_starts_its_own_server_when_no_url_is_given():
    done = lrr("demo", "--channels", "4", "--seconds", "2", "--fit-seconds", "1")
    assert done.returncode == 0, done.stderr
    assert "overall artifact reduction" in done.stdout
    assert float(done.stdout.split("overall artifact reduction: ")[1].split(" dB")[0]) > 3  # identity gives 0


def test_failures_exit_non_zero_with_one_line(shared_server, tmp_path):
    np.save(tmp_path / "in.npy", recording(6, samples=20, channels=3))
    nobody = "http://127.0.0.1:9"  # discard port: nothing listens
    assert_one_line_failure(
        lrr("stream", str(tmp_path / "in.npy"), "--key", "k", "-o", str(tmp_path / "o.npy"), "--url", nobody),
        "lrr stream: error:",
        "cannot connect",
    )
    assert_one_line_failure(lrr("sessions", "--url", nobody), "lrr sessions: error:")
    assert_one_line_failure(lrr("stream", str(tmp_path / "missing.npy"), "--key", "k", "-o", "o.npy"), "no such file")
    assert_one_line_failure(lrr("stream", str(tmp_path / "in.npy"), "--key", "k", "-o", "out.txt"), ".npy or .csv")
    assert_one_line_failure(
        lrr("reset", "--key", "never-made", "--url", shared_server.url),
        "unknown_session",
        "sessions are created by lrr stream --key never-made, lrr settings put --key never-made NAME=VALUE or "
        "lrr weights put --key never-made",
    )
    assert_one_line_failure(lrr("solve", "--key", "bad key", "--url", shared_server.url), "bad_key")
    assert_one_line_failure(lrr("stream", str(tmp_path / "in.npy")), "required", "--key")
    assert_one_line_failure(lrr("demo", "--channels", "2", "--url", shared_server.url), "at least 3")
    np.save(tmp_path / "flat.npy", np.zeros(10))
    assert_one_line_failure(lrr("stream", str(tmp_path / "flat.npy"), "--key", "k", "-o", "o.npy"), "2-D")


def test_stream_draws_a_progress_bar_only_on_a_terminal(shared_server, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    np.save(tmp_path / "in.npy", recording(7, samples=2000, channels=4))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRR_")}
    process = subprocess.Popen(
        [
            LRR,
            "stream",
            str(tmp_path / "in.npy"),
            "--key",
            "cli-tty",
            "--chunk",
            "100",
            "-o",
            str(tmp_path / "out.npy"),
            "--url",
            shared_server.url,
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    os.close(slave)
    stdout, _ = process.communicate(timeout=120)
    drawn = b""
    while True:
        try:
            block = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not block:
            break
        drawn += block
    os.close(master)
    assert process.returncode == 0
    for phase in (b"fit:", b"transform:"):  # one bar per pass: samples done / total, rate, time left
        assert phase in drawn
    assert b"/2.00k [" in drawn and b"samples/s" in drawn
    assert "wrote" in stdout


@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("pyedflib", ["stream", "{dir}/rec.edf", "--key", "k", "-o", "{dir}/o.npy"]),
        ("pylsl", ["lsl", "--input", "anything", "--key", "k"]),
    ],
)
def test_a_missing_optional_extra_is_named_with_its_install_command(tmp_path, module, command):
    blocked = tmp_path / "blocked" / module
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(f"raise ImportError('{module} is not installed here')\n")
    (tmp_path / "rec.edf").write_bytes(b"0" * 256)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRR_")}
    env["PYTHONPATH"] = str(tmp_path / "blocked")
    done = subprocess.run(
        [LRR, *(part.format(dir=tmp_path) for part in command)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    extra = {"pyedflib": "edf", "pylsl": "lsl"}[module]
    assert_one_line_failure(done, f"needs {module}", f"lrr-service[{extra}]")


def test_token_from_option_or_environment(server_factory):
    server = server_factory(env={"LRR_API_TOKEN": "s3cret"})
    assert_one_line_failure(lrr("sessions", "--url", server.url), "unauthorized", "HTTP 401")
    assert lrr("sessions", "--url", server.url, "--token", "s3cret").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRR_")} | {
        "LRR_URL": server.url,
        "LRR_API_TOKEN": "s3cret",
    }
    done = subprocess.run(
        [LRR, "demo", "--channels", "3", "--seconds", "1", "--fit-seconds", "0.5", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["url"] == server.url


def test_weights_put_sends_the_files_bytes_and_get_writes_the_servers(shared_server, tmp_path):
    (tmp_path / "latin1.csv").write_bytes(b"# gain in \xb5V\n0,0.5\n0.25,0\n")
    refused = lrr("weights", "put", str(tmp_path / "latin1.csv"), "--key", "cli-bytes", "--url", shared_server.url)
    assert_one_line_failure(refused, "bad_csv", "0xb5")  # the server judged the bytes, not a local decode
    (tmp_path / "crlf.csv").write_bytes(b"0,0.5\r\n0.25,0\r\n")
    lrr_json("weights", "put", str(tmp_path / "crlf.csv"), "--key", "cli-bytes", url=shared_server.url)
    got = lrr_json("weights", "get", "--key", "cli-bytes", "-o", str(tmp_path / "back.csv"), url=shared_server.url)
    assert got["n_channels"] == 2
    assert (tmp_path / "back.csv").read_bytes() == HTTP.get(f"{shared_server.url}/streams/cli-bytes/weights").content
