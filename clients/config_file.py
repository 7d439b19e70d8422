"""The `lrr` configuration file: the server URL and token a rig's operator uses every day.

`$LRR_CONFIG`, else `$XDG_CONFIG_HOME/lrr/config.toml`, else `~/.config/lrr/config.toml`:

    url = "http://daq-server:8000"
    token = "..."

Flags override the environment, which overrides the file. A file that holds a token must be
readable by its owner only (mode 0600, as ssh demands of its keys): otherwise it is refused.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

KEYS = ("url", "token")
DEFAULT_URL = "http://127.0.0.1:8000"


class ConfigFileError(ValueError):
    """The configuration file cannot be used; the message names the file and the fix."""


def config_path() -> Path:
    """Where the configuration file is (it need not exist)."""
    if os.environ.get("LRR_CONFIG"):
        return Path(os.environ["LRR_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lrr" / "config.toml"


def read_config(path: Path | None = None) -> dict[str, str]:
    """The file's settings ({} when there is no file); ConfigFileError for unknown keys, values that are not
    strings, TOML errors, or a token others may read."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read ({exc})") from None
    try:
        values = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{path}: not a TOML file ({exc})") from None
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigFileError(f"{path}: unknown setting(s) {', '.join(unknown)}; expected {' and '.join(KEYS)}")
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ConfigFileError(f'{path}: {name} must be a non-empty string, e.g. {name} = "..."')
    mode = path.stat().st_mode
    if "token" in values and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigFileError(
            f"{path} holds a token but others can read it (mode {stat.S_IMODE(mode):04o}); "
            f"make it private: chmod 600 {path}"
        )
    return values


def server_address(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The server's URL and token: those given, else $LRR_URL / $LRR_API_TOKEN, else the file's (read only when
    one of them is still missing), else DEFAULT_URL and no token."""
    url = url or os.environ.get("LRR_URL")
    token = token or os.environ.get("LRR_API_TOKEN")
    config = read_config() if url is None or token is None else {}
    return url or config.get("url") or DEFAULT_URL, token or config.get("token") or None
