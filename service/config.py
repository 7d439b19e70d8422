"""Service configuration: every `LRR_*` environment variable, validated once at start-up."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lrr_service.core.groups import check_group_limit
from lrr_service.core.settings import LRRSettings
from lrr_service.core.weights_csv import max_csv_bytes
from lrr_service.service.schemas import setting_fields

MIB = 1024 * 1024
GIB = 1024 * MIB

SESSION_SETTING_FIELDS = tuple(setting.name for setting in dataclasses.fields(LRRSettings))
"""ServiceSettings fields that are the default engine settings of a new session."""

_SessionDefaults: type[BaseSettings] = create_model(
    "_SessionDefaults", __base__=BaseSettings, **setting_fields(all_optional=False)
)
"""The default settings of new sessions: one `LRR_` variable per engine setting, derived from
its declaration in core/settings.py (type, default, meaning, bounds)."""


class ServiceSettings(_SessionDefaults):
    """The server's configuration; each field is read from `LRR_<FIELD>` (CLI flags override)."""

    model_config = SettingsConfigDict(env_prefix="LRR_", extra="ignore", frozen=True)

    # -- network & security ------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    api_token: SecretStr | None = Field(
        None, description="When set, every REST route but /health and every websocket needs this token."
    )
    allowed_hosts: str | None = Field(
        None,
        description="Comma-separated host names the Host header may name (* = any); unset = localhost and "
        "loopback addresses when listening on loopback, any host otherwise.",
    )
    allowed_origins: str | None = Field(
        None,
        description="Comma-separated browser origins (scheme://host[:port]) allowed besides the server's own; "
        "unset = none.",
    )
    # -- limits ------------------------------------------------------------------------------
    max_frame_bytes: int = Field(16 * MIB, ge=1024, description="Largest websocket message; larger closes with 1009.")
    max_channels: int = Field(4096, ge=1, description="Most channels a chunk or weight matrix may have.")
    max_sessions: int = Field(1024, ge=1, description="Most stream sessions; new ones beyond are refused.")
    max_state_bytes: int = Field(
        4 * GIB, ge=MIB, description="Budget for the statistics and weights of all bound sessions (memory and disk)."
    )
    max_connections: int = Field(
        256, ge=1, description="Most open websocket streams (beyond: handshake refused with 503); HTTP gets 64 more."
    )
    max_csv_bytes: int | None = Field(
        None, ge=1024, description="Largest weights CSV upload, 413 beyond; unset = what max_channels needs."
    )
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest request body on every route but the weights upload; 413 beyond."
    )
    max_http_requests: int = Field(
        64, ge=1, description="HTTP requests in progress at once; beyond: 503 (/health and /ready always answer)."
    )
    client_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection whose request head is not complete, or whose request body stays silent, "
        "this long is closed.",
    )
    # -- state & scheduling -------------------------------------------------------------------
    state_dir: Path = Field(Path("lrr-state"), description="Directory holding one checkpoint file per session.")
    checkpoint_seconds: float = Field(
        30.0, gt=0, description="Sessions changed by fit traffic or solves are checkpointed at most this often."
    )
    # -- cluster (docs/scale.md) ------------------------------------------------------------------
    store_url: str | None = Field(
        None,
        description="redis://host:port/db of the shared session store; set, sessions live there instead of "
        "state_dir and each stream key has one owning worker (a lease); unset = one process, local files.",
    )
    advertise_url: str | None = Field(
        None,
        description="This worker's own base URL (http://host:port) as clients reach it directly; "
        "with store_url, named as a key's owner. Unset = http://<host>:<port>.",
    )
    lease_seconds: float = Field(
        1.5,
        ge=0.3,
        le=60,
        description="With store_url: how long a worker's ownership of a key outlives its last renewal "
        "(renewed every quarter of it); a dead worker's keys move after this.",
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=256,
        description="When set, `serve` starts this many worker processes behind HAProxy with a Redis store "
        "(docs/scale.md), the proxy listening on host:port; unset = one process serving host:port itself.",
    )
    solve_every_samples: int = Field(
        3000, ge=1, description="Start a background solve once this many new fit samples have been accumulated."
    )
    solve_min_interval_seconds: float = Field(
        0.5, ge=0, description="Automatic solves of one session start at most this often (REST solves: any time)."
    )
    blas_threads: int = Field(
        1, ge=1, description="BLAS threads numpy may use (threadpoolctl); 1 keeps a core free for the event loop."
    )
    quality_window_seconds: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="Time constant of the exponential window (wall-clock seconds) over which each session's "
        "transform input and output power are averaged for GET /streams/{key}/quality.",
    )
    quality_every: int = Field(
        16,
        ge=0,
        description="Measure the quality (power in and out) on every k-th transforming frame of a session; 0 = never.",
    )
    shutdown_timeout_seconds: int = Field(
        5, ge=1, description="On SIGTERM/SIGINT, how long open connections get before being closed."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Logging threshold of the structured (JSON lines) log."
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _token_not_blank(cls, value: Any) -> Any:
        """A blank (or `none`/`null`) token would silently turn authentication off: refuse it."""
        if _means_unset(value):
            raise ValueError(
                f"LRR_API_TOKEN is {value!r}, which is not a usable token; set a real token, "
                "or unset the variable (and drop --api-token) to disable authentication"
            )
        return value

    @field_validator(
        "max_csv_bytes",
        "channel_groups",
        "block_size",
        "half_life_samples",
        "allowed_hosts",
        "allowed_origins",
        "store_url",
        "advertise_url",
        "workers",
        mode="before",
    )
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        """An empty or `none`/`null` value of an optional variable means "not set"."""
        if _means_unset(value):
            return None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        """Accept `info` as well as `INFO`."""
        return value.upper() if isinstance(value, str) else value

    def session_defaults(self) -> LRRSettings:
        """The engine settings a session gets when nobody configured it; raises SettingsError if invalid."""
        defaults = self.session_default_dict()
        check_group_limit(defaults["channel_groups"], self.max_channels)
        return LRRSettings.from_dict(defaults)

    def session_default_dict(self) -> dict[str, Any]:
        """The default engine settings as a plain dict (the PUT /streams/{key} base)."""
        return {name: getattr(self, name) for name in SESSION_SETTING_FIELDS}

    def csv_limit_bytes(self) -> int:
        """The weights upload size limit: LRR_MAX_CSV_BYTES, or the size a max_channels matrix can need."""
        return self.max_csv_bytes or max_csv_bytes(self.max_channels)

    def listens_on_loopback(self) -> bool:
        """True when `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`: only this machine can connect."""
        if self.host.strip().lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:  # a host name other than localhost: assume it is reachable from elsewhere
            return False

    def own_url(self) -> str:
        """The base URL clients use to reach this process directly (LRR_ADVERTISE_URL or host:port)."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def token(self) -> str | None:
        """The API token in clear, or None when authentication is off."""
        return self.api_token.get_secret_value() if self.api_token else None


def _means_unset(value: Any) -> bool:
    """True for an environment value that spells "not set": empty, blank, `none` or `null` (any case)."""
    return isinstance(value, str) and value.strip().lower() in ("", "none", "null")
