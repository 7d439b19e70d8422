"""`LRRServiceUnit`: an ezmsg Unit that rereferences AxisArrays through an lrr-service session.

A drop-in for ezmsg-learn's `LRRUnit`: the same settings (`weights`, `axis`, `channel_groups`, `block_size`,
`ridge_lambda`, `incremental`, `check_finite`, `init_default`, `kernel`) plus where the service is (`url`,
`key`, `token`) and how to talk to it. `INPUT_SIGNAL` messages are transformed (the service's `transform`
websocket) and published on `OUTPUT_SIGNAL` in order; `INPUT_SAMPLE` messages fit the session (`fit`).
`LRRServiceProcessor` does the work and is usable without ezmsg's runtime (scripts, notebooks).
Needs the `ezmsg` extra: `pip install 'lrr-service[ezmsg]'`. Details: docs/clients.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Hashable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import numpy as np

try:
    import ezmsg.core as ez  # type: ignore[import-untyped]
    from ezmsg.util.messages.axisarray import AxisArray  # type: ignore[import-untyped]
    from ezmsg.util.messages.util import replace  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"lrr_service.clients.ezmsg_unit needs ezmsg ({exc}); install it with: pip install 'lrr-service[ezmsg]'"
    ) from exc

from lrr_service.clients.client import DEFAULT_MAX_IN_FLIGHT, LRRClient
from lrr_service.clients.config_file import server_address
from lrr_service.clients.endpoints import http_base
from lrr_service.clients.errors import ChunkNotFittedError, NoFitDataError, UnknownSessionError
from lrr_service.clients.ezmsg_frames import (
    GroupSpec,
    Samples,
    as_samples,
    axis_fingerprint,
    channel_axis,
    check_groups,
    describe_axis,
    pieces,
)
from lrr_service.clients.loop_thread import LoopThread
from lrr_service.core import codec, validate_weights
from lrr_service.core.channels import ChannelDescription
from lrr_service.core.keys import key_problem
from lrr_service.core.samples import first_bad_sample
from lrr_service.core.settings import LRRSettings
from lrr_service.core.vocabulary import Mode

__all__ = ["PASSTHROUGH_ATTR", "LRRServiceProcessor", "LRRServiceSettings", "LRRServiceUnit"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

KERNELS: Final = ("auto", "dense", "blocks")
PASSTHROUGH_ATTR: Final = "lrr_passthrough"
"""Set to True in the `attrs` of an output message that no weights were applied to (the session has none yet):
its data is the input's, unchanged, as `LRRUnit` passes data through before its first fit."""
DEFAULT_KEY: Final = "ezmsg-lrr"

# ezmsg ships no type information: its decorators, typed here as what they are (they return the function).
_subscriber: Callable[[Any], Callable[[F], F]] = ez.subscriber
_publisher: Callable[[Any], Callable[[F], F]] = ez.publisher

if TYPE_CHECKING:
    from dataclasses import dataclass as _settings_dataclass
else:

    def _settings_dataclass(**_: object) -> Callable[[type[T]], type[T]]:
        """ez.Settings' metaclass already makes every subclass a frozen dataclass; this tells mypy so."""
        return lambda cls: cls


@_settings_dataclass(frozen=True)
class LRRServiceSettings(ez.Settings):  # type: ignore[misc]
    """LRRUnit's settings, same names and meanings, plus where the service is and how to reach it."""

    weights: np.ndarray | str | Path | None = None
    """W (channels x channels, zero diagonal; output = X (I - W)) or the path of a CSV holding it
    (`np.savetxt(path, W, delimiter=",")`); uploaded at the first message and pinned: fits do not replace it."""
    axis: str | None = None
    """The channel axis; None: the last dimension that is not the message's `stream_dim`."""
    channel_groups: Any = None
    """Explicit index groups ([[0, 1, 2], [3, 4, 5]]), a field of the channel axis' structured coordinates
    ("bank"), a tuple of fields, or a callable fn(message, axis) -> groups | None resolved here; None, or a field
    the axis lacks: block_size blocks, else one group."""
    block_size: int | None = None
    """Without groups: consecutive blocks of this many channels."""
    ridge_lambda: float = 0.0
    """L2 penalty added to each group's covariance diagonal."""
    incremental: bool = True
    """True: statistics accumulate across fit messages; False: each fit message replaces them."""
    check_finite: bool = True
    """Accepted for LRRUnit's sake; the service always skips fit messages holding NaN, inf or |x| > 1e100."""
    init_default: str = "identity"
    """Before any weights: "identity" (pass through) or "car" (leave-one-out average per group)."""
    kernel: str = "auto"
    """Accepted for LRRUnit's sake ("auto", "dense", "blocks"); the service plans the product from W's sparsity."""
    url: str | None = None
    """The service (http(s):// or ws(s)://); None: $LRR_URL, else the `lrr` configuration file's, else
    http://127.0.0.1:8000 (as the `lrr` command line)."""
    key: str = DEFAULT_KEY
    """The stream key of the session (1-128 characters of A-Z a-z 0-9 . _ -)."""
    token: str | None = None
    """The service's API token, if it has one; None: $LRR_API_TOKEN, else the configuration file's, else none."""
    min_group_size: int = 3
    """Groups with fewer live channels pass through untouched (LRRUnit's fixed 3)."""
    half_life_samples: float | None = None
    """Exponential forgetting of old statistics (the service's setting); None: none."""
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    """Messages sent and not yet answered, at most (the unit's pipelining window)."""
    solve_on_fit: bool = False
    """True: every fit message is followed by a solve, so the next transform uses weights from every fit so far,
    as LRRUnit does (one O(channels³) solve per fit message). False: the service solves on its own schedule."""
    configure_session: bool = True
    """True: the engine settings above are PUT to the session (a change clears its statistics and weights).
    False: the session is used as configured on the server (e.g. with `lrr settings put`)."""
    direct: bool = False
    """Stream straight to the worker that owns the key in a cluster (docs/scale.md)."""


def session_settings(settings: LRRServiceSettings, channel_groups: object) -> dict[str, Any]:
    """The body of PUT /streams/{key}: the engine's eight settings, `channel_groups` as the service takes it."""
    return {
        "ridge_lambda": float(settings.ridge_lambda),
        "channel_groups": channel_groups,
        "block_size": settings.block_size,
        "incremental": bool(settings.incremental),
        "check_finite": True,
        "min_group_size": settings.min_group_size,
        "init_default": _init_default(settings.init_default),
        "half_life_samples": settings.half_life_samples,
    }


def _init_default(value: object) -> str:
    """`init_default` as the service spells it: a string, or the value of a string enum (RereferenceKind)."""
    return str(getattr(value, "value", value)).lower()


def load_weights(weights: np.ndarray | str | Path) -> np.ndarray:
    """W from an array or a CSV path (~ expanded); WeightsError (a ValueError) unless it is a finite square matrix
    (core's validate_weights, which the service applies too)."""
    if isinstance(weights, (str, Path)):
        return validate_weights(np.loadtxt(Path(os.path.expanduser(weights)), delimiter=",", ndmin=2))
    return validate_weights(weights)


def check_settings(settings: LRRServiceSettings) -> GroupSpec:
    """Refuse at once, with ValueError naming the setting, what the service or this unit would refuse later;
    returns the classified channel_groups."""
    spec = GroupSpec.parse(settings.channel_groups)
    if settings.kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {settings.kernel!r}")
    if settings.max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {settings.max_in_flight}")
    problem = key_problem(settings.key)
    if problem is not None:
        raise ValueError(f"key: {problem}")
    if settings.url is not None:
        http_base(settings.url)  # ValueError for a URL that is not http(s):// or ws(s)://
    LRRSettings.from_dict(session_settings(settings, spec.wire()))  # SettingsError (a ValueError) names the field
    if settings.weights is not None:
        load_weights(settings.weights)
    return spec


_UNSET: Final[Any] = object()


class _Link:
    """One LRRClient on one event loop, and what it has told its session: settings, weights, description."""

    def __init__(self, settings: LRRServiceSettings, spec: GroupSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        url, token = server_address(settings.url, settings.token)
        self.client = LRRClient(
            url,
            settings.key,
            token,
            max_in_flight=settings.max_in_flight,
            allow_identity=True,  # before any fit LRRUnit passes data through (or applies CAR): so does the service
            direct=settings.direct,
        )
        self.weights = load_weights(settings.weights) if settings.weights is not None else None
        self.skipped_fits = 0
        self._lock = asyncio.Lock()
        self._groups: Any = _UNSET
        """The channel_groups last PUT; _UNSET: the settings are yet to be PUT."""
        self._weights_for: int | None = None
        """The channel count the weights were uploaded for; None: not uploaded."""
        self._n_channels: int | None = None
        self._axis: object = _UNSET
        self._axis_key: Hashable | None = None
        self._resolved: list[list[int]] | None = None
        self._description: ChannelDescription | None = None
        self._reconnects = 0
        self._passing_through = False
        self._axis_copy: tuple[Hashable, Any] | None = None

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- keeping the session in step with the messages ------------------------------------

    async def prepare(self, message: Any) -> tuple[Samples, str]:
        """The message's samples, after the session got what they need first (settings, weights, description)."""
        name, index = channel_axis(message, self.settings.axis)
        samples = as_samples(message.data, index)
        if samples.n_channels > 0:
            async with self._lock:
                await self._sync(message, name, samples.n_channels)
        return samples, name

    async def _sync(self, message: Any, name: str | None, n_channels: int) -> None:
        """Describe the channels when they change, resolve the groups, PUT the settings and upload the weights
        when needed; after a reconnection the settings are PUT again (a no-op on a session that kept them).
        What a failed step left undone is done again at the next message."""
        if self.client.reconnects != self._reconnects:
            self._reconnects, self._groups = self.client.reconnects, _UNSET
        recount = n_channels != self._n_channels
        description, axis, key = self._description, self._axis, self._axis_key
        if message is not None and name is not None:
            axis = message.axes.get(name)
            if recount or axis is not self._axis:
                key = axis_fingerprint(axis) if axis is not None else None
                if key is None or key != self._axis_key or recount:
                    description = describe_axis(axis, n_channels, self.spec.fields) if axis is not None else None
        redescribed = description != self._description
        if self.spec.kind == "explicit" and recount:
            check_groups(self.spec.explicit, n_channels)
        function = self.spec.function
        if function is not None and name is not None and (recount or redescribed or self._groups is _UNSET):
            found = function(message, name)
            self._resolved = None if found is None else check_groups(found, n_channels)
        groups = self.spec.wire(self._resolved)
        changed = False
        if self.settings.configure_session and groups != self._groups:
            reply = await self.client.put_settings(session_settings(self.settings, groups))
            changed = bool(reply.get("changed", True))
            self._groups = groups
        if self.weights is not None and (changed or self._weights_for != n_channels):
            if self.weights.shape[0] != n_channels:
                raise ValueError(
                    f"weights are {self.weights.shape[0]} x {self.weights.shape[1]} but the channel axis has "
                    f"{n_channels} channels"
                )
            await self.client.put_weights(self._weights_source(), replace=True)
            self._weights_for = n_channels
        if redescribed or changed:
            await self._send_description(description)
        self._n_channels, self._description, self._axis, self._axis_key = n_channels, description, axis, key

    def _weights_source(self) -> np.ndarray | Path:
        """What put_weights uploads: a CSV file's own bytes, else the array."""
        source = self.settings.weights
        if isinstance(source, (str, Path)):
            return Path(os.path.expanduser(source))
        assert self.weights is not None
        return self.weights

    async def _send_description(self, description: ChannelDescription | None) -> None:
        """Have the next frame of each websocket carry the description; with none left, delete the session's."""
        self.client.set_channels(description)
        if description is None and self._description is not None:
            with contextlib.suppress(UnknownSessionError):
                await self.client.delete_channels()

    # -- transform --------------------------------------------------------------------------

    async def submit_transform(self, message: Any, *, detach: bool) -> asyncio.Future[Any]:
        """Send the message's frames now; the future gives the output message. With `detach`, what the output
        keeps of the message (its coordinate arrays and attrs) is copied, so the message may be reused."""
        samples, name = await self.prepare(message)
        if samples.empty:  # nothing to rereference: the message as it is (LRRUnit passes it through too)
            done: asyncio.Future[Any] = self.loop.create_future()
            done.set_result(replace(self._detached(message, name), data=message.data.copy()) if detach else message)
            return done
        channel = self.client.channel(Mode.TRANSFORM)
        replies = [channel.submit(piece) for piece in pieces(samples.array)]
        template = self._detached(message, name) if detach else message
        return _retrieved(asyncio.ensure_future(self._assembled(template, samples, replies)))

    async def _assembled(self, template: Any, samples: Samples, replies: list[asyncio.Future[codec.Reply]]) -> Any:
        """The output message: the replies' rows in the message's layout, every other field of `template` kept;
        marked with PASSTHROUGH_ATTR when any of its frames was passed through for want of weights."""
        outputs: list[np.ndarray] = []
        passed_through = False
        for reply in replies:
            answer = await reply
            assert isinstance(answer, codec.ChunkReply)
            outputs.append(answer.data)
            passed_through |= answer.weights_source == "none"
        self._say_whether_passing_through(passed_through)
        data = samples.restore(outputs[0] if len(outputs) == 1 else np.concatenate(outputs))
        if passed_through:
            return replace(template, data=data, attrs={**template.attrs, PASSTHROUGH_ATTR: True})
        return replace(template, data=data)

    def _say_whether_passing_through(self, passed_through: bool) -> None:
        """On ezmsg's logger, once per change: outputs start being the input unchanged (no weights), or weights
        now apply. The data alone cannot tell raw from rereferenced."""
        if passed_through == self._passing_through:
            return
        self._passing_through = passed_through
        if passed_through:
            ez.logger.warning(
                f"lrr-service session '{self.settings.key}' has no weights: output messages are the input "
                f"unchanged (attrs['{PASSTHROUGH_ATTR}'] = True) until it is fitted and solved or weights are set"
            )
        else:
            ez.logger.info(f"lrr-service session '{self.settings.key}' has weights: output messages are rereferenced")

    def _detached(self, message: Any, name: str) -> Any:
        """The message with a placeholder for its data and its own copies of every coordinate array and attr
        array (the channel axis' copy is kept while its values do not change)."""
        axes = dict(message.axes)
        for dim, axis in axes.items():
            if not isinstance(getattr(axis, "data", None), np.ndarray):
                continue
            if dim == name and self._axis_key is not None:
                if self._axis_copy is None or self._axis_copy[0] != self._axis_key:
                    self._axis_copy = (self._axis_key, replace(axis, data=axis.data.copy()))
                axes[dim] = self._axis_copy[1]
            else:
                axes[dim] = replace(axis, data=axis.data.copy())
        attrs = {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in message.attrs.items()}
        placeholder = np.empty((0,) * message.data.ndim, dtype=message.data.dtype)
        return replace(message, data=placeholder, axes=axes, attrs=attrs)

    # -- fit --------------------------------------------------------------------------------

    async def submit_fit(self, message: Any) -> asyncio.Future[int]:
        """Send the message's fit frames now; the future gives how many samples the session took (0: the message
        held NaN, inf or |x| > 1e100 and was skipped whole, like LRRUnit skips it)."""
        samples, _ = await self.prepare(message)
        return self._fit_frames(samples.array if not samples.empty else None)

    def _fit_frames(self, array: np.ndarray | None) -> asyncio.Future[int]:
        if array is None or array.shape[0] == 0:
            done: asyncio.Future[int] = self.loop.create_future()
            done.set_result(0)
            return done
        parts = pieces(array) if self.settings.incremental else [array]
        if len(parts) > 1 and first_bad_sample(array) is not None:  # skipped whole, as one frame would be
            self.skipped_fits += 1
            parts = []
        channel = self.client.channel(Mode.FIT)
        acks = [channel.submit(part) for part in parts]
        return _retrieved(asyncio.ensure_future(self._taken(acks, [part.shape[0] for part in parts])))

    async def _taken(self, acks: list[asyncio.Future[codec.Reply]], rows: list[int]) -> int:
        """Samples the session took, once every frame is acknowledged; a skipped frame is counted in skipped_fits."""
        taken = 0
        for ack, count in zip(acks, rows, strict=True):
            try:
                await ack
            except ChunkNotFittedError:
                self.skipped_fits += 1
            else:
                taken += count
        return taken

    async def partial_fit(self, message: Any) -> int:
        """Fit on the message and wait for the acknowledgement; with solve_on_fit (and no weights setting),
        solve before returning. Returns the samples the session took."""
        taken = await (await self.submit_fit(message))
        if taken and self.settings.solve_on_fit and self.weights is None:
            with contextlib.suppress(NoFitDataError):
                await self.client.solve()
        return taken

    async def fit(self, samples: np.ndarray) -> int:
        """Replace the session's statistics with `samples` (samples x channels) and solve, like LRRUnit's fit."""
        array = np.asarray(samples)
        if array.ndim == 0:
            raise ValueError("fit takes a (samples, channels) array")
        array = array.reshape(-1, array.shape[-1])
        if array.shape[1] == 0:
            return 0
        async with self._lock:
            await self._sync(None, None, array.shape[1])
            with contextlib.suppress(UnknownSessionError):
                await self.client.reset()
            self.client.set_channels(self._description)
        taken = await self._fit_frames(array)
        if taken:
            await self.client.solve()
        return taken


def _retrieved(future: asyncio.Future[T]) -> asyncio.Future[T]:
    """`future`, whose exception is not reported as never retrieved if nobody awaits it (a unit shutting down)."""
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


class LRRServiceProcessor:
    """LRR of AxisArray messages by an lrr-service session, with or without ezmsg's runtime.

    Blocking: `processor(message)` (or `send`) -> AxisArray, `partial_fit(message)`, `fit(X)`, `solve()`.
    Async: `__acall__` / `asend`, `apartial_fit`, `afit`, `asolve`, and `asubmit(message)`, which sends at once
    and returns a future of the output (pipelining). The blocking methods run a client on a loop thread of
    their own; the async ones a client on the caller's loop (one loop per processor). Close with `close()`
    or `aclose()` (or use it as a context manager).
    """

    def __init__(self, settings: LRRServiceSettings | None = None, **kwargs: Any) -> None:
        if settings is not None and kwargs:
            raise TypeError("pass either a settings object or settings as keyword arguments, not both")
        self.settings = settings if settings is not None else LRRServiceSettings(**kwargs)
        self._spec = check_settings(self.settings)
        self._link: _Link | None = None
        self._thread: LoopThread | None = None
        self._thread_link: _Link | None = None

    # -- async ------------------------------------------------------------------------------

    def _alink(self) -> _Link:
        """The link of the caller's event loop, made on first use; RuntimeError from another loop."""
        loop = asyncio.get_running_loop()
        if self._link is None:
            self._link = _Link(self.settings, self._spec)
        elif self._link.loop is not loop:
            raise RuntimeError(
                "this LRRServiceProcessor's async methods were first used on another event loop; "
                "make one processor per event loop"
            )
        return self._link

    async def asubmit(self, message: Any) -> asyncio.Future[Any]:
        """Send the message for rereferencing now; the future gives the output AxisArray. Once this returns the
        message may be reused: its samples are encoded and what the output keeps of it is copied."""
        return await self._alink().submit_transform(message, detach=True)

    async def __acall__(self, message: Any) -> Any:
        """The message rereferenced: same shape, axes, key and attrs (AxisArray replace), data X (I - W)."""
        return await (await self._alink().submit_transform(message, detach=False))

    async def asend(self, message: Any) -> Any:
        """Same as `await processor.__acall__(message)`."""
        return await self.__acall__(message)

    async def asubmit_fit(self, message: Any) -> asyncio.Future[int]:
        """Send the message's samples to fit now; the future gives how many the session took (0: skipped)."""
        return await self._alink().submit_fit(message)

    async def apartial_fit(self, message: Any) -> None:
        """Fit the session on the message (all axes but the channel axis are samples); waits for the
        acknowledgement, and with `solve_on_fit` for the solve. A message holding NaN or inf is skipped."""
        await self._alink().partial_fit(message)

    async def afit(self, samples: np.ndarray) -> None:
        """Replace the session's statistics by those of `samples` (samples x channels) and solve."""
        await self._alink().fit(samples)

    async def asolve(self) -> dict[str, Any]:
        """Solve the session's weights now from every sample fitted so far (POST /streams/{key}/solve)."""
        return await self._alink().client.solve()

    async def ainfo(self) -> dict[str, Any]:
        """The session as the service reports it (GET /streams/{key})."""
        return await self._alink().client.info()

    async def aget_weights(self) -> np.ndarray:
        """The W the session applies (NoWeightsError while it passes data through)."""
        return await self._alink().client.get_weights()

    async def aget_channels(self) -> ChannelDescription | None:
        """The channel description the session holds (GET /streams/{key}/channels), None if none."""
        return await self._alink().client.get_channels()

    async def aclose(self) -> None:
        """Close the connections of both the async and the blocking side; frames waiting fail."""
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._close_thread)

    async def __aenter__(self) -> LRRServiceProcessor:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def skipped_fits(self) -> int:
        """Fit frames the service skipped (they held NaN, inf or |x| > 1e100), on both sides."""
        return sum(link.skipped_fits for link in (self._link, self._thread_link) if link is not None)

    # -- blocking ---------------------------------------------------------------------------

    def _run(self, work: Callable[[_Link], Awaitable[T]]) -> T:
        """Run `work` with the blocking side's link on its loop thread (both made on first use)."""
        if self._thread is None:
            self._thread = LoopThread("lrr-ezmsg-processor")
            self._thread_link = self._thread.run(_make_link(self.settings, self._spec))
        link = self._thread_link
        assert link is not None
        return self._thread.run(_coroutine(lambda: work(link)))

    def __call__(self, message: Any) -> Any:
        """The message rereferenced (blocking): same shape, axes, key and attrs, data X (I - W)."""
        return self._run(lambda link: _awaited(link.submit_transform(message, detach=False)))

    def send(self, message: Any) -> Any:
        """Same as `processor(message)`."""
        return self(message)

    def partial_fit(self, message: Any) -> None:
        """Fit the session on the message (blocking; see apartial_fit)."""
        self._run(lambda link: link.partial_fit(message))

    def fit(self, samples: np.ndarray) -> None:
        """Replace the session's statistics by those of `samples` (samples x channels) and solve (blocking)."""
        self._run(lambda link: link.fit(samples))

    def solve(self) -> dict[str, Any]:
        """Solve the session's weights now (blocking; POST /streams/{key}/solve)."""
        return self._run(lambda link: link.client.solve())

    def info(self) -> dict[str, Any]:
        """The session as the service reports it (blocking)."""
        return self._run(lambda link: link.client.info())

    def get_weights(self) -> np.ndarray:
        """The W the session applies (blocking; NoWeightsError while it passes data through)."""
        return self._run(lambda link: link.client.get_weights())

    def get_channels(self) -> ChannelDescription | None:
        """The channel description the session holds (blocking), None if none."""
        return self._run(lambda link: link.client.get_channels())

    def close(self) -> None:
        """Close the blocking side's connections and stop its thread; idempotent. (The async side: aclose.)"""
        self._close_thread()

    def _close_thread(self) -> None:
        thread, link = self._thread, self._thread_link
        self._thread = self._thread_link = None
        if thread is None:
            return
        try:
            if link is not None:
                thread.run(link.aclose())
        finally:
            thread.close()

    def __enter__(self) -> LRRServiceProcessor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _make_link(settings: LRRServiceSettings, spec: GroupSpec) -> _Link:
    """A link made inside the loop it will run on."""
    return _Link(settings, spec)


async def _coroutine(work: Callable[[], Awaitable[T]]) -> T:
    """`work()` awaited inside a coroutine (what a loop thread runs), so it starts on that loop."""
    return await work()


async def _awaited(submitted: Coroutine[Any, Any, asyncio.Future[T]]) -> T:
    """The result of the future a submission returns."""
    return await (await submitted)


class LRRServiceUnit(ez.Unit):  # type: ignore[misc]
    """ezmsg Unit: INPUT_SIGNAL -> OUTPUT_SIGNAL rereferenced by the service (pipelined, in order);
    INPUT_SAMPLE fits the session; INPUT_SETTINGS replaces the settings (a new processor).

    A message that cannot be sent or whose reply is an error is dropped (not published unreferenced) and
    reported on ezmsg's logger, at most once a second with the count of messages dropped meanwhile.
    """

    SETTINGS = LRRServiceSettings

    INPUT_SETTINGS = ez.InputStream(LRRServiceSettings)
    INPUT_SIGNAL = ez.InputStream(AxisArray)
    INPUT_SAMPLE = ez.InputStream(AxisArray)
    OUTPUT_SIGNAL = ez.OutputStream(AxisArray)

    @property
    def settings(self) -> LRRServiceSettings:
        """The unit's settings (ezmsg puts the instance in SETTINGS)."""
        return cast(LRRServiceSettings, self.SETTINGS)

    async def initialize(self) -> None:
        """Make the processor, the queue of outputs to publish, and the windows of unanswered messages."""
        self.processor = LRRServiceProcessor(self.settings)
        self._outputs: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        self._room = asyncio.Semaphore(self.settings.max_in_flight)
        self._fit_room = asyncio.Semaphore(self.settings.max_in_flight)
        self._pending: set[asyncio.Future[Any]] = set()
        self._drops = DropReport(type(self).__name__)

    @property
    def dropped(self) -> int:
        """Signal and fit messages dropped so far (not sent, or answered with an error)."""
        return self._drops.dropped

    async def shutdown(self) -> None:
        """Close the processor; outputs not yet published are dropped."""
        await self.processor.aclose()

    @_subscriber(INPUT_SIGNAL)
    async def on_signal(self, message: Any) -> None:
        """Send the message at once (waiting only while max_in_flight messages are unanswered)."""
        await self._room.acquire()
        try:
            output = await self.processor.asubmit(message)
        except Exception as exc:  # the stream goes on: a later message may well succeed
            self._room.release()
            self._drops.add("signal", exc)
            return
        self._pending.add(output)
        self._outputs.put_nowait(output)

    @_publisher(OUTPUT_SIGNAL)
    async def publish(self) -> AsyncGenerator[tuple[Any, Any], None]:
        """Publish the outputs in the order their messages came; a message that failed is dropped."""
        while True:
            output = await self._outputs.get()
            try:
                result = await output
            except Exception as exc:
                self._drops.add("signal", exc)
                continue
            finally:
                self._pending.discard(output)
                self._room.release()
            yield self.OUTPUT_SIGNAL, result

    @_subscriber(INPUT_SAMPLE)
    async def on_sample(self, message: Any) -> None:
        """Fit on the message: pipelined like the signal, or, with solve_on_fit, waiting for the fit and solve."""
        if self.settings.solve_on_fit:
            try:
                await self.processor.apartial_fit(message)
            except Exception as exc:
                self._drops.add("fit", exc)
            return
        await self._fit_room.acquire()
        try:
            taken = await self.processor.asubmit_fit(message)
        except Exception as exc:
            self._fit_room.release()
            self._drops.add("fit", exc)
            return
        self._pending.add(taken)
        taken.add_done_callback(self._fitted)

    def _fitted(self, taken: asyncio.Future[int]) -> None:
        self._fit_room.release()
        self._pending.discard(taken)
        if not taken.cancelled() and taken.exception() is not None:
            self._drops.add("fit", taken.exception())

    @_subscriber(INPUT_SETTINGS)
    async def on_settings(self, settings: LRRServiceSettings) -> None:
        """New settings: a new processor takes the next messages; the old one closes once its messages are done."""
        old, pending = self.processor, list(self._pending)
        self.apply_settings(settings)
        self.processor = LRRServiceProcessor(settings)
        await asyncio.gather(*pending, return_exceptions=True)
        await old.aclose()


class DropReport:
    """Reports dropped messages on ezmsg's logger: the first at once, then at most one line per `interval`
    seconds saying how many were dropped since and the latest reason."""

    def __init__(self, name: str, interval: float = 1.0) -> None:
        self.name = name
        self.interval = interval
        self.dropped = 0
        """Messages dropped in all."""
        self._unreported = 0
        self._last = -math.inf

    def add(self, kind: str, exc: BaseException | None) -> None:
        """Count one dropped `kind` ("signal" or "fit") message; log if the last report is old enough."""
        self.dropped += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            ez.logger.error(
                f"{self.name}: {self._unreported} message(s) dropped since the last report; "
                f"latest ({kind}): {type(exc).__name__}: {exc}"
            )
            self._unreported, self._last = 0, now
