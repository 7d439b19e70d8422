"""What `pip install lrr-service` puts into site-packages: one import package, lrr_service.

The folders core/, service/ and clients/ stay at the top of the repository; a rig's environment
must not gain packages of those names, which would collide with any other project's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


PACKAGED = ("pyproject.toml", "README.md", "core", "service", "clients")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The project's wheel, built as pip builds it for an install, from a copy of the sources
    (setuptools writes its build/ folder beside them)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in PACKAGED:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2
        copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("lrr_service-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_one_top_level_package(wheel: zipfile.ZipFile) -> None:
    top_level = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"lrr_service"}
    assert not top_level & {"core", "service", "clients"}


def test_the_wheel_holds_every_package_under_lrr_service(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for folder in ("core", "service", "clients", "clients/commands"):
        sources = {path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / folder).glob("*.py")}
        assert sources, folder
        assert {f"lrr_service/{source}" for source in sources} <= names


def test_the_console_script_points_into_lrr_service(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    assert "lrr = lrr_service.clients.cli:main" in wheel.read(entry_points).decode()
