"""LRRServiceUnit in real ezmsg pipelines (ezmsg's own runtime) against the real server, and its processor.

The oracle is ezmsg-learn 1.16.2's LRRTransformer, fed the same AxisArrays (a test dependency, never code
used by the unit). tests/test_ezmsg_oracle.py holds the matrix of settings and the reference's faults.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

import ezmsg.core as ez
import numpy as np
import pytest
from engine_reference import mixed_signals, ridge_weights
from ezmsg.learn.process.ssr import LRRSettings, LRRTransformer
from ezmsg.util.messages.axisarray import AxisArray, CoordinateAxis

from lrr_service.clients.errors import UnknownSessionError
from lrr_service.clients.ezmsg_frames import GroupSpec, as_samples, check_groups, describe_axis, pieces
from lrr_service.clients.ezmsg_unit import PASSTHROUGH_ATTR, LRRServiceProcessor, LRRServiceSettings, LRRServiceUnit
from lrr_service.clients.rest import AsyncRestClient
from lrr_service.core.vocabulary import Mode

BANKS = ("A", "B", "C")
PIPELINE_TIMEOUT_S = 60.0
"""Upper bound on one ezmsg pipeline, so a lost message fails the test instead of hanging it."""


# -- messages -------------------------------------------------------------------------------------


def banked_axis(n_channels: int, banks: Sequence[str] = BANKS) -> CoordinateAxis:
    """A structured channel axis like a ChannelMap's: label, bank, array, x, y (banks in consecutive runs)."""
    table = np.zeros(n_channels, dtype=[("label", "U8"), ("bank", "U2"), ("array", "i4"), ("x", "f8"), ("y", "f8")])
    table["label"] = [f"e{i:03d}" for i in range(n_channels)]
    table["bank"] = [banks[i * len(banks) // n_channels] for i in range(n_channels)]
    table["array"] = [i % 2 for i in range(n_channels)]
    table["x"] = np.arange(n_channels) * 0.4
    table["y"] = np.arange(n_channels)[::-1] * 0.4
    return CoordinateAxis(table, dims=["ch"])


def signal_messages(
    seed: int,
    count: int,
    n_channels: int = 12,
    *,
    samples: int = 60,
    dtype: type = np.float64,
    layout: Sequence[str] = ("win", "ch", "time"),
    channel_axis: CoordinateAxis | None = None,
    key: str = "rig",
) -> list[Any]:
    """`count` consecutive AxisArrays of mixed signals: 2 windows x `samples` time points per message, the
    channel axis placed as `layout` says (not last by default), a time axis with an advancing offset."""
    rng = np.random.default_rng(seed)
    axis = channel_axis if channel_axis is not None else banked_axis(n_channels)
    messages = []
    for index in range(count):
        block = mixed_signals(rng, 2 * samples, n_channels).reshape(2, samples, n_channels)  # (win, time, ch)
        data = np.moveaxis(block, [0, 1, 2], [layout.index("win"), layout.index("time"), layout.index("ch")])
        messages.append(
            AxisArray(
                np.ascontiguousarray(data, dtype=dtype),
                dims=list(layout),
                axes={
                    "time": AxisArray.TimeAxis(fs=1000.0, offset=index * samples / 1000.0),
                    "ch": axis,
                    "win": AxisArray.LinearAxis(gain=1.0, offset=0.0),
                },
                attrs={"session": "test"},
                key=key,
            )
        )
    return messages


def rows(message: Any, axis: str = "ch") -> np.ndarray:
    """The message's samples as (samples, channels), the layout the service sees."""
    return as_samples(message.data, message.get_axis_idx(axis)).array


def rereferenced(message: Any, W: np.ndarray, axis: str = "ch") -> np.ndarray:
    """The message's data times I - W along its channel axis, in the message's layout (numpy, independently)."""
    return np.moveaxis(
        np.moveaxis(message.data, message.get_axis_idx(axis), -1) @ (np.eye(len(W)) - W), -1, message.get_axis_idx(axis)
    )


def assert_same_message(
    output: Any, message: Any, expected: np.ndarray, *, rtol: float, atol: float, passed_through: bool = False
) -> None:
    """`output` is `message` with data `expected`: same dims, axes, key and attrs (plus the pass-through marker
    when `passed_through`, and only then)."""
    assert output.dims == message.dims
    assert output.key == message.key
    assert output.attrs == (message.attrs | {PASSTHROUGH_ATTR: True} if passed_through else message.attrs)
    assert output.axes.keys() == message.axes.keys()
    for name, axis in message.axes.items():
        assert output.axes[name] == axis, name
    assert output.data.shape == message.data.shape
    np.testing.assert_allclose(output.data, expected, rtol=rtol, atol=atol)


# -- an ezmsg pipeline: source -> LRRServiceUnit -> sink ---------------------------------------------


class ScriptSettings(ez.Settings):
    """What the source publishes: fit messages, then (once the session solved them all) signal messages."""

    fit: tuple[Any, ...] = ()
    signal: tuple[Any, ...] = ()
    url: str = ""
    key: str = ""
    period: float = 0.0
    """Seconds between signal messages (0: as fast as the pipeline takes them)."""


class Script(ez.Unit):
    """A source: publishes the fit messages, waits until the service says it solved every fitted sample, then
    publishes the signal messages."""

    SETTINGS = ScriptSettings
    OUTPUT_SAMPLE = ez.OutputStream(AxisArray)
    OUTPUT_SIGNAL = ez.OutputStream(AxisArray)

    @ez.publisher(OUTPUT_SAMPLE)
    @ez.publisher(OUTPUT_SIGNAL)
    async def play(self) -> AsyncGenerator[tuple[Any, Any], None]:
        fitted = 0
        for message in self.SETTINGS.fit:
            fitted += rows(message).shape[0]
            yield self.OUTPUT_SAMPLE, message
        if fitted:
            async with AsyncRestClient(self.SETTINGS.url) as rest:
                while await solved(rest, self.SETTINGS.key) < fitted:
                    await asyncio.sleep(0.02)
        for message in self.SETTINGS.signal:
            yield self.OUTPUT_SIGNAL, message
            if self.SETTINGS.period:
                await asyncio.sleep(self.SETTINGS.period)
        raise ez.Complete


async def solved(rest: AsyncRestClient, key: str) -> int:
    """How many fitted samples the session's weights reflect (0 before the unit's first message made it)."""
    try:
        return int((await rest.session(key))["n_samples_solved"])
    except UnknownSessionError:
        return 0


class CollectSettings(ez.Settings):
    expected: int = 0
    path: str = ""
    timeout: float = PIPELINE_TIMEOUT_S


SINK_EVENTS: dict[str, Callable[[int], None]] = {}
"""Per-sink callbacks run with the count of messages received (the pipeline runs in this process)."""


class Collect(ez.Unit):
    """A sink: keeps every message; writes them to `path` and ends the pipeline after `expected` of them, or
    after `timeout` seconds with what it has."""

    SETTINGS = CollectSettings
    INPUT = ez.InputStream(AxisArray)

    async def initialize(self) -> None:
        self.received: list[Any] = []

    def _finish(self) -> None:
        Path(self.SETTINGS.path).write_bytes(pickle.dumps(self.received))
        raise ez.NormalTermination

    @ez.subscriber(INPUT)
    async def on_message(self, message: Any) -> None:
        self.received.append(pickle.loads(pickle.dumps(message)))  # a copy that outlives the message
        if self.SETTINGS.path in SINK_EVENTS:
            SINK_EVENTS[self.SETTINGS.path](len(self.received))
        if len(self.received) >= self.SETTINGS.expected:
            self._finish()

    @ez.task
    async def deadline(self) -> None:
        await asyncio.sleep(self.SETTINGS.timeout)
        self._finish()


def run_pipeline(
    tmp_path: Path, script: ScriptSettings, unit: LRRServiceSettings, expected: int, *, source_process: bool = False
) -> list[Any]:
    """Run Script -> LRRServiceUnit -> Collect with ezmsg's runtime on a private graph server; the outputs.
    `source_process`: the source in a process of its own (its messages then reach the unit through shared memory)."""
    out = tmp_path / f"collected-{time.monotonic_ns()}.pkl"
    source, lrr = Script(script), LRRServiceUnit(unit)
    sink = Collect(CollectSettings(expected=expected, path=str(out)))
    ez.run(
        components={"SOURCE": source, "LRR": lrr, "SINK": sink},
        connections=(
            (source.OUTPUT_SAMPLE, lrr.INPUT_SAMPLE),
            (source.OUTPUT_SIGNAL, lrr.INPUT_SIGNAL),
            (lrr.OUTPUT_SIGNAL, sink.INPUT),
        ),
        process_components=(source,) if source_process else None,
        graph_address=("127.0.0.1", free_port()),
        auto_start=True,
    )
    received: list[Any] = pickle.loads(out.read_bytes())
    return received


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def reference(settings: LRRSettings, fit: Sequence[Any]) -> LRRTransformer:
    """ezmsg-learn's LRRTransformer after partial fits on `fit`."""
    transformer = LRRTransformer(settings)
    for message in fit:
        transformer.partial_fit(message)
    return transformer


# -- the unit in ezmsg's runtime ---------------------------------------------------------------------


def test_pipeline_output_equals_the_reference_and_keeps_every_axis(shared_server, stream_key, tmp_path):
    """Banked channel axis in the middle of three dims, float32: fit by INPUT_SAMPLE, transform by INPUT_SIGNAL;
    the output equals LRRTransformer's on the same messages and keeps dims, axes, coordinates, key and attrs."""
    messages = signal_messages(1, 14, dtype=np.float32)
    fit, signal = messages[:6], messages[6:]
    unit = LRRServiceSettings(
        url=shared_server.url, key=stream_key, axis="ch", channel_groups="bank", ridge_lambda=0.5, solve_on_fit=True
    )
    script = ScriptSettings(fit=tuple(fit), signal=tuple(signal), url=shared_server.url, key=stream_key)
    outputs = run_pipeline(tmp_path, script, unit, expected=len(signal), source_process=True)

    oracle = reference(LRRSettings(axis="ch", channel_groups="bank", ridge_lambda=0.5), fit)
    assert len(outputs) == len(signal)
    for output, message in zip(outputs, signal):
        expected = oracle(message).data
        assert output.data.dtype == expected.dtype == np.float32
        assert_same_message(output, message, expected, rtol=1e-4, atol=2e-4)
        assert not np.allclose(output.data, message.data, atol=1e-2)  # the weights were applied
    with LRRServiceProcessor(url=shared_server.url, key=stream_key) as processor:
        info = processor.info()
    assert info["grouping"]["source"] == "fields"
    assert info["grouping"]["sizes"] == [4, 4, 4]


def test_pipeline_keeps_order_and_survives_a_service_restart(server_factory, stream_key, tmp_path):
    """A paced stream through the unit while the service restarts: every output arrives, in order, correct."""
    server = server_factory()
    calibration = signal_messages(2, 4, layout=("ch", "win", "time"))
    signal = signal_messages(3, 60, layout=("ch", "win", "time"), samples=10)
    with LRRServiceProcessor(url=server.url, key=stream_key, axis="ch", block_size=4) as processor:
        for message in calibration:
            processor.partial_fit(message)
        processor.solve()
        weights = processor.get_weights()

    out = tmp_path / "restart.pkl"
    restarting = threading.Thread(target=server.restart, daemon=True)

    def restart_once(count: int) -> None:
        if count == 15:  # the sink's 15th output: restart the service while the stream goes on
            restarting.start()

    SINK_EVENTS[str(out)] = restart_once
    try:
        source, lrr = (
            Script(ScriptSettings(signal=tuple(signal), period=0.01)),
            LRRServiceUnit(
                LRRServiceSettings(url=server.url, key=stream_key, axis="ch", block_size=4, max_in_flight=8)
            ),
        )
        sink = Collect(CollectSettings(expected=len(signal), path=str(out)))
        ez.run(
            components={"SOURCE": source, "LRR": lrr, "SINK": sink},
            connections=((source.OUTPUT_SIGNAL, lrr.INPUT_SIGNAL), (lrr.OUTPUT_SIGNAL, sink.INPUT)),
            graph_address=("127.0.0.1", free_port()),
            auto_start=True,
        )
    finally:
        SINK_EVENTS.pop(str(out), None)
        if restarting.is_alive():
            restarting.join()
    outputs = pickle.loads(out.read_bytes())
    assert restarting.ident is not None  # it ran
    assert server.log_text().count(f"/ws/{stream_key}/transform") >= 2  # the unit's client connected again
    assert len(outputs) == len(signal)
    for output, message in zip(outputs, signal):
        assert_same_message(output, message, rereferenced(message, weights), rtol=1e-9, atol=1e-9)


async def test_unit_publishes_in_order_drops_a_refused_message_and_takes_new_settings(server_factory, stream_key):
    """The unit's own plumbing, driven directly: outputs in order; a message the service refuses is logged and
    dropped, the next ones go on; INPUT_SETTINGS makes a new processor for the messages after it."""
    server = server_factory(env={"LRR_MAX_CHANNELS": "16"})
    messages = signal_messages(12, 5)
    too_wide = signal_messages(13, 1, 20)[0]
    unit = LRRServiceUnit(LRRServiceSettings(url=server.url, key=stream_key, axis="ch"))
    await unit.initialize()
    try:
        for message in [*messages[:2], too_wide, messages[2]]:
            await unit.on_signal(message)
        await unit.on_settings(LRRServiceSettings(url=server.url, key=stream_key, axis="ch", init_default="car"))
        for message in messages[3:]:
            await unit.on_signal(message)
        published = unit.publish()
        outputs = [(await anext(published))[1] for _ in range(5)]
        assert unit.dropped == 1
    finally:
        await unit.shutdown()
    for output, message in zip(outputs[:3], messages[:3]):
        assert_same_message(output, message, message.data, rtol=0, atol=0, passed_through=True)  # identity cold start
    for output, message in zip(outputs[3:], messages[3:]):
        x = rows(message)
        car = x - (x.sum(axis=1, keepdims=True) - x) / 11
        assert_same_message(output, message, as_samples(message.data, 1).restore(car), rtol=1e-9, atol=1e-9)


# -- the processor without ezmsg's runtime ---------------------------------------------------------


def test_processor_without_runtime_blocking_and_async_agree(shared_server, stream_key):
    messages = signal_messages(4, 6, dtype=np.float32)
    settings = LRRServiceSettings(url=shared_server.url, key=stream_key, axis="ch", channel_groups=[[0, 1, 2, 3]])
    with LRRServiceProcessor(settings) as processor:
        for message in messages[:4]:
            processor.partial_fit(message)
        processor.solve()
        blocking = [processor(message) for message in messages[4:]]

    async def pipelined() -> list[Any]:
        async with LRRServiceProcessor(settings) as processor:
            return [await output for output in [await processor.asubmit(m) for m in messages[4:]]]

    for a, b in zip(blocking, asyncio.run(pipelined())):
        np.testing.assert_array_equal(a.data, b.data)
    W = ridge_weights(np.concatenate([rows(m) for m in messages[:4]]), [[0, 1, 2, 3]])
    for output, message in zip(blocking, messages[4:]):
        assert_same_message(output, message, rereferenced(message, W), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(output.data[:, 4:], message.data[:, 4:])  # channels in no group pass through


def test_outputs_without_weights_are_marked_and_logged_until_weights_apply(shared_server, stream_key, caplog):
    """Before any weights the output is the input, as LRRUnit's; it says so in its attrs, and ezmsg's logger says
    so once, and once more when weights take over."""
    messages = signal_messages(6, 8)
    with (
        caplog.at_level("INFO", logger=ez.logger.name),
        LRRServiceProcessor(url=shared_server.url, key=stream_key, axis="ch") as processor,
    ):
        raw = [processor(message) for message in messages[:2]]
        for message in messages[2:6]:
            processor.partial_fit(message)
        processor.solve()
        cleaned = [processor(message) for message in messages[6:]]
    for output, message in zip(raw, messages[:2]):
        assert_same_message(output, message, message.data, rtol=0, atol=0, passed_through=True)
    W = ridge_weights(np.concatenate([rows(m) for m in messages[2:6]]), [list(range(12))])
    for output, message in zip(cleaned, messages[6:]):
        assert_same_message(output, message, rereferenced(message, W), rtol=1e-6, atol=1e-6)
    said = [record.getMessage() for record in caplog.records if record.name == ez.logger.name]
    assert said == [
        f"lrr-service session '{stream_key}' has no weights: output messages are the input unchanged "
        f"(attrs['{PASSTHROUGH_ATTR}'] = True) until it is fitted and solved or weights are set",
        f"lrr-service session '{stream_key}' has weights: output messages are rereferenced",
    ]


async def test_asubmit_returns_before_the_reply_and_outputs_come_in_order(shared_server, stream_key):
    """Pipelining: 32 messages are on their way before the first reply is awaited."""
    messages = signal_messages(5, 32, samples=5)
    async with LRRServiceProcessor(url=shared_server.url, key=stream_key, axis="ch", init_default="car") as processor:
        first = await processor.asubmit(messages[0])
        await first  # the session is configured; from here on asubmit does no I/O
        outputs = [await processor.asubmit(message) for message in messages]
        assert not any(output.done() for output in outputs)
        assert processor._link is not None
        assert processor._link.client.channel(Mode.TRANSFORM).in_flight == len(messages)
        results = [await output for output in outputs]
    for result, message in zip(results, messages):
        x = rows(message)
        car = x - (x.sum(axis=1, keepdims=True) - x) / 11  # leave-one-out average of the other 11 channels
        assert_same_message(result, message, as_samples(message.data, 1).restore(car), rtol=1e-9, atol=1e-9)


def test_description_goes_to_the_session_and_a_new_one_regroups(shared_server, stream_key):
    """The channel axis' labels and fields reach the session; new bank values regroup it and re-solve from the
    statistics (the reference resets its model at new coordinate values and passes data through)."""
    first = signal_messages(6, 3)
    moved = signal_messages(7, 2, channel_axis=banked_axis(12, ("A", "B")))
    with LRRServiceProcessor(url=shared_server.url, key=stream_key, axis="ch", channel_groups="bank") as processor:
        for message in first:
            processor.partial_fit(message)
        processor.solve()
        assert processor.info()["grouping"]["sizes"] == [4, 4, 4]
        processor(moved[0])
        assert processor.info()["grouping"]["sizes"] == [6, 6]
        output = processor(moved[1])
        described = processor.get_channels()
    assert described is not None
    assert described.labels == tuple(f"e{i:03d}" for i in range(12))
    assert described.fields["bank"] == ("A",) * 6 + ("B",) * 6
    assert described.fields["x"] == tuple(np.arange(12) * 0.4)
    fitted = np.concatenate([rows(m) for m in first])
    W = ridge_weights(fitted, [list(range(6)), list(range(6, 12))])
    assert_same_message(output, moved[1], rereferenced(moved[1], W), rtol=1e-8, atol=1e-8)
    oracle = reference(LRRSettings(axis="ch", channel_groups="bank"), first)
    np.testing.assert_array_equal(oracle(moved[1]).data, moved[1].data)


def test_weights_setting_as_array_or_csv_applies_at_once(shared_server, stream_key, tmp_path):
    rng = np.random.default_rng(8)
    W = rng.standard_normal((12, 12)) * 0.1
    np.fill_diagonal(W, 0.0)
    csv = tmp_path / "W.csv"
    np.savetxt(csv, W, delimiter=",")
    message = signal_messages(9, 1)[0]
    expected = rereferenced(message, W)
    for source, key in ((W, stream_key + "-array"), (str(csv), stream_key + "-csv")):
        with LRRServiceProcessor(url=shared_server.url, key=key, axis="ch", weights=source) as processor:
            output = processor(message)
        assert_same_message(output, message, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(output.data, LRRTransformer(LRRSettings(axis="ch", weights=source))(message).data)


def test_callable_groups_are_resolved_here(shared_server, stream_key):
    def by_parity(message: Any, axis: str) -> list[list[int]]:
        n = message.data.shape[message.get_axis_idx(axis)]
        return [list(range(0, n, 2)), list(range(1, n, 2))]

    messages = signal_messages(10, 4)
    oracle = reference(LRRSettings(axis="ch", channel_groups=by_parity), messages[:3])
    with LRRServiceProcessor(url=shared_server.url, key=stream_key, axis="ch", channel_groups=by_parity) as processor:
        for message in messages[:3]:
            processor.partial_fit(message)
        processor.solve()
        output = processor(messages[3])
        assert processor.info()["settings"]["channel_groups"] == by_parity(messages[3], "ch")
    np.testing.assert_allclose(output.data, oracle(messages[3]).data, rtol=1e-9, atol=1e-9)


def test_engine_settings_go_to_the_session_unless_it_is_configured_elsewhere(shared_server, stream_key):
    message = signal_messages(14, 1)[0]
    settings = {"axis": "ch", "ridge_lambda": 2.0, "min_group_size": 4, "half_life_samples": 50000.0}
    with LRRServiceProcessor(url=shared_server.url, key=stream_key, init_default="car", **settings) as processor:
        processor(message)
        held = processor.info()["settings"]
    assert held == {
        "ridge_lambda": 2.0,
        "channel_groups": None,
        "block_size": None,
        "incremental": True,
        "check_finite": True,
        "min_group_size": 4,
        "init_default": "car",
        "half_life_samples": 50000.0,
    }
    with LRRServiceProcessor(url=shared_server.url, key=stream_key, axis="ch", configure_session=False) as processor:
        output = processor(message)
        assert processor.info()["settings"] == held  # the unit's defaults were not PUT
    x = rows(message)
    car = x - (x.sum(axis=1, keepdims=True) - x) / 11
    np.testing.assert_allclose(output.data, as_samples(message.data, 1).restore(car), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("settings", "message_text"),
    [
        ({"axis": "ch", "channel_groups": [[0, 1, 12]]}, "out-of-range"),
        ({"channel_groups": [[0, 1, 2], [2, 3, 4]]}, "overlap"),
        ({"channel_groups": ["bank", [0, 1]]}, "mixes field names"),
        ({"init_default": "median"}, "init_default"),
        ({"kernel": "sparse"}, "kernel"),
        ({"key": "rig/1"}, "key"),
        ({"url": "ftp://daq"}, "not usable"),
        ({"axis": "chan"}, "has no dimension 'chan'"),
        ({"axis": "ch", "weights": np.zeros((13, 13))}, "weights are 13 x 13 but the channel axis has 12 channels"),
    ],
)
def test_refusals_are_clear_and_early(shared_server, stream_key, settings, message_text):
    """Refused with ValueError naming the problem: settings at construction, what needs the message at the first."""
    message = signal_messages(11, 1)[0]
    settings = {"url": shared_server.url, "key": stream_key, **settings}
    with pytest.raises(ValueError, match=message_text), LRRServiceProcessor(**settings) as processor:
        processor(message)


def test_unit_module_needs_ezmsg_only_itself():
    """lrr_service's core and clients import without ezmsg; the unit's module says how to install it."""
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'ezmsg' or name.startswith('ezmsg.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    check = blocker + (
        "import lrr_service.core, lrr_service.clients, lrr_service.clients.ezmsg_frames\n"
        "try:\n"
        "    import lrr_service.clients.ezmsg_unit\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'lrr-service[ezmsg]'" in result.stdout


# -- the pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("axis_index", [0, 1, 2])
def test_samples_round_trip_with_the_channel_axis_anywhere(axis_index):
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    samples = as_samples(data, axis_index)
    assert samples.array.shape == (data.size // data.shape[axis_index], data.shape[axis_index])
    np.testing.assert_array_equal(samples.array[:, 0], np.take(data, 0, axis=axis_index).reshape(-1))
    np.testing.assert_array_equal(samples.restore(samples.array), data)
    assert as_samples(np.zeros((0, 3)), 1).empty and as_samples(np.zeros((5, 0)), 1).empty


def test_pieces_split_rows_under_the_limit():
    array = np.zeros((1000, 64), dtype=np.float32)
    parts = pieces(array, max_bytes=64 * 4 * 300)
    assert [p.shape[0] for p in parts] == [300, 300, 300, 100]
    assert [p.shape[0] for p in pieces(array, max_bytes=1)] == [1] * 1000


def test_description_of_a_structured_axis():
    axis = banked_axis(6)
    description = describe_axis(axis, 6)
    assert description is not None
    assert description.labels == ("e000", "e001", "e002", "e003", "e004", "e005")
    assert set(description.fields) == {"bank", "array", "x", "y"}
    assert description.fields["array"] == (0, 1, 0, 1, 0, 1)
    assert description.groups_by(["bank"]) is not None
    assert describe_axis(axis, 7) is None  # another channel count: nothing to say about these channels
    plain = CoordinateAxis(np.array(["a", "b", "c"]), dims=["ch"])
    assert describe_axis(plain, 3).to_dict() == {"labels": ["a", "b", "c"], "fields": {}}  # type: ignore[union-attr]
    assert describe_axis(plain, 3, ["label"]) is None  # the reference finds no field to group by: fallback
    assert describe_axis(AxisArray.TimeAxis(fs=1.0), 3) is None


def test_description_keeps_grouping_by_fields_it_cannot_send_as_values():
    table = np.zeros(5, dtype=[("bank", "f8"), ("pos", "f8", (2,)), ("bad name", "i4")])
    table["bank"] = [np.nan, 1.0, np.nan, 2.0, 1.0]
    table["pos"] = [[0, 0], [0, 1], [0, 0], [1, 1], [0, 1]]
    axis = CoordinateAxis(table, dims=["ch"])
    assert describe_axis(axis, 5) is None  # no field is sendable as it is, none is grouped by
    grouped = describe_axis(axis, 5, ["bank", "pos"])
    assert grouped is not None
    assert grouped.fields["bank"] == (0, 1, 0, 2, 1)  # classes in order of first appearance; NaNs one class
    assert grouped.fields["pos"] == (0, 1, 0, 2, 1)


def test_group_specs_classified_like_the_reference():
    assert GroupSpec.parse(None).wire() is None
    assert GroupSpec.parse("bank").wire() == "bank"
    assert GroupSpec.parse(("array", "bank")).wire() == ["array", "bank"]
    assert GroupSpec.parse([[2, 0], np.array([1, 3])]).wire() == [[2, 0], [1, 3]]
    assert GroupSpec.parse(lambda message, axis: None).kind == "callable"
    with pytest.raises(ValueError, match="empty"):
        check_groups([], 4)
    assert check_groups([], 0) == []
    with pytest.raises(ValueError, match="overlap"):
        check_groups([[0, 1, 1]], 4)
