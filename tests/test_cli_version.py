"""The installed `lrr` console script: `lrr --version`, and `lrr serve --help`, which the service's own parser
answers under the name `lrr serve`."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from lrr_service.service.__main__ import PROG, build_parser, split_prog
from lrr_service.service.config import ServiceSettings

LRR = Path(sys.executable).with_name("lrr")

pytestmark = pytest.mark.timeout(60)


def run_lrr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LRR), *args], capture_output=True, text=True, timeout=50)


def test_version_prints_the_installed_version() -> None:
    done = run_lrr("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"lrr {metadata.version('lrr-service')}\n"


def test_serve_help_names_lrr_serve_and_lists_the_service_settings() -> None:
    done = run_lrr("serve", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: lrr serve [-h] ")
    assert PROG not in done.stdout and "--prog" not in done.stdout
    for name in ServiceSettings.model_fields:
        assert "--" + name.replace("_", "-") in done.stdout, name


def test_a_bad_serve_flag_is_reported_under_the_name_lrr() -> None:
    done = run_lrr("serve", "--no-such-flag")
    assert done.returncode == 2
    assert "lrr: error: unrecognized arguments: --no-such-flag" in done.stderr
    assert PROG not in done.stderr and "--prog" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "prog", "rest"),
    [
        (["--prog", "lrr", "serve", "--port", "1"], "lrr", ["serve", "--port", "1"]),
        (["--prog=x y", "serve"], "x y", ["serve"]),
        (["serve", "--port", "1"], PROG, ["serve", "--port", "1"]),
        (["--port", "1", "--prog", "lrr"], PROG, ["--port", "1", "--prog", "lrr"]),  # only first
    ],
)
def test_the_service_takes_its_program_name_from_a_leading_prog_flag(
    argv: list[str], prog: str, rest: list[str]
) -> None:
    assert split_prog(argv) == (prog, rest)
    assert build_parser(prog).format_usage().startswith(f"usage: {prog} [-h]")
