"""`python -m service`: every setting has a flag, bad configuration fails fast with the reason."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from live_server import REPO_ROOT, LiveServer
from service.__main__ import build_parser, settings_from_args
from service.config import ServiceSettings


def run_service(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", **(env or {})})  # fmt: skip


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


def test_runs_without_the_serve_word(tmp_path: Path) -> None:
    """`python -m service --port N --state-dir D` works like `serve`; SIGTERM stops it gracefully."""
    server = LiveServer(tmp_path / "state", subcommand=None).start()
    try:
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert '"event":"service_stopped"' in server.log_text()
