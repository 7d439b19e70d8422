"""`python -m lrr_service.service`: every setting has a flag, bad configuration fails fast with the reason.

The configuration checks call the command's `main` in this process (it refuses before serving anything);
starting and stopping the real command runs it as a process (`test_runs_without_the_serve_word`)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pytest
from live_server import HTTP, LiveServer

from lrr_service.service.__main__ import build_parser, exposure_problem, main, settings_from_args
from lrr_service.service.config import ServiceSettings


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_service(*args: str, env: dict[str, str] | None = None) -> Result:
    """The command's `main(args)` with exactly these LRR_ variables set: its exit status and output."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("LRR_")}
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, {**clean, **(env or {})}, clear=True), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # --help
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def test_serve_help_lists_every_setting() -> None:
    result = run_service("serve", "--help")
    assert result.returncode == 0
    for name in ServiceSettings.model_fields:
        assert "--" + name.replace("_", "-") in result.stdout, name
        assert "LRR_" + name.upper() in result.stdout, name


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRR_MAX_CHANNELS", "100")
    monkeypatch.setenv("LRR_RIDGE_LAMBDA", "0.5")
    args = build_parser().parse_args(["serve", "--max-channels", "200", "--channel-groups", "[[0,1,2],[3,4,5]]"])
    settings = settings_from_args(args)
    assert settings.max_channels == 200 and settings.ridge_lambda == 0.5
    assert settings.session_defaults().channel_groups == ((0, 1, 2), (3, 4, 5))


pytestmark = pytest.mark.timeout(60)  # a configuration accepted by mistake would start serving: fail, not hang


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve", "--max-channels", "0"], {}, "max_channels"),
        (["serve", "--ridge-lambda", "-1"], {}, "ridge_lambda"),
        (["serve"], {"LRR_INIT_DEFAULT": "median"}, "init_default"),
        (["serve"], {"LRR_CHANNEL_GROUPS": "[[0,1],[1,2]]"}, "channel"),
        (["serve", "--channel-groups", "not json"], {}, "channel_groups"),
    ],
)
def test_invalid_configuration_exits_2_naming_the_setting(args: list[str], env: dict[str, str], named: str) -> None:
    result = run_service(*args, env=env)
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr and named in result.stderr


@pytest.mark.parametrize("token", ["", "  ", "none", "NULL"])
def test_a_blank_token_is_refused_rather_than_turning_auth_off(token: str) -> None:
    result = run_service("serve", "--port", "0", env={"LRR_API_TOKEN": token})
    assert result.returncode == 2
    assert "api_token" in result.stderr and "unset the variable" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "rig-server.lab"])
def test_a_non_loopback_host_without_a_token_is_refused(host: str, tmp_path: Path) -> None:
    result = run_service("serve", "--host", host, "--port", "0", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2
    assert f"refusing to listen on {host!r} without LRR_API_TOKEN" in result.stderr
    assert "--allow-unauthenticated" in result.stderr
    assert not (tmp_path / "state").exists()  # it stopped before doing anything


@pytest.mark.parametrize(
    ("host", "token", "allowed", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("127.5.6.7", None, False, False),
        ("::1", None, False, False),
        ("[::1]", None, False, False),
        ("localhost", None, False, False),
        ("0.0.0.0", None, False, True),
        ("0.0.0.0", "t0ken", False, False),
        ("0.0.0.0", None, True, False),
        ("example.org", None, False, True),
    ],
)
def test_exposure_rule(host: str, token: str | None, allowed: bool, refused: bool) -> None:
    settings = ServiceSettings(host=host, api_token=token)
    assert (exposure_problem(settings, allowed) is not None) == refused


def test_allow_unauthenticated_flag_parses_before_or_after_serve() -> None:
    assert build_parser().parse_args(["serve", "--allow-unauthenticated"]).allow_unauthenticated is True
    assert build_parser().parse_args(["--allow-unauthenticated"]).allow_unauthenticated is True
    assert not hasattr(build_parser().parse_args(["serve"]), "allow_unauthenticated")


def test_runs_without_the_serve_word(tmp_path: Path) -> None:
    """`python -m lrr_service.service --port N --state-dir D` works like `serve`; SIGTERM stops it gracefully."""
    server = LiveServer(tmp_path / "state", subcommand=None).start()
    try:
        assert HTTP.get(server.url + "/health").json() == {"status": "ok"}
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert '"event":"service_stopped"' in server.log_text()


def test_the_command_line_and_the_cluster_launcher_import_no_web_stack() -> None:
    """`--help` and `serve --workers N` (which only starts processes) load neither uvicorn, FastAPI, the app nor
    Redis's client: a cluster's launcher stays small and `lrr serve --help` answers quickly."""
    probe = (
        "import sys, lrr_service.service.__main__, lrr_service.service.launcher; "
        "print(sorted(m for m in ('uvicorn', 'fastapi', 'starlette', 'redis', 'lrr_service.service.app') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
