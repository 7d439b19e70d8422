"""The clients' pure parts: backoff bounds, URLs, recordings I/O, the LSL fitting window, the demo's measure."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from lrr_service.clients.backoff import ReconnectPolicy, RetryBudget, as_policy
from lrr_service.clients.endpoints import http_base, stream_path, websocket_url
from lrr_service.clients.errors import BadKeyError
from lrr_service.clients.local_server import free_loopback_port, wait_until_healthy
from lrr_service.clients.lsl_bridge import FitWindow
from lrr_service.clients.recordings import RecordingError, read_recording, write_recording
from lrr_service.clients.sync import LRRClientSync
from lrr_service.clients.synthetic import artifact_power, make_rig, reduction_db
from lrr_service.core.vocabulary import ErrorCode


def test_backoff_grows_caps_and_stops_at_either_bound():
    assert list(ReconnectPolicy(max_attempts=5, initial_delay=0.1, max_delay=0.3, factor=2).delays()) == [
        0.1,
        0.2,
        0.3,
        0.3,
        0.3,
    ]
    assert list(ReconnectPolicy(max_attempts=100, initial_delay=1.0, max_delay=1.0, max_elapsed=3.0).delays()) == [
        1.0,
        1.0,
        1.0,
    ]
    assert list(as_policy(False).delays()) == []
    assert as_policy(True) == ReconnectPolicy()
    with pytest.raises(ValueError, match="factor"):
        ReconnectPolicy(factor=0.5)


def test_retry_budget_is_spent_by_attempts_and_renewed_whole():
    budget = RetryBudget(ReconnectPolicy(max_attempts=3, initial_delay=0.1, max_delay=1.0, factor=2))
    assert [budget.next_delay() for _ in range(4)] == [0.1, 0.2, 0.4, None]
    assert budget.next_delay() is None  # spent stays spent until renewed
    budget.renew()  # what a reply, or a restarted connection supervisor, does
    assert [budget.next_delay() for _ in range(4)] == [0.1, 0.2, 0.4, None]
    assert RetryBudget(as_policy(False)).next_delay() is None


def test_blocking_client_stops_its_loop_thread_even_when_closing_fails():
    before = set(threading.enumerate())
    client = LRRClientSync("http://127.0.0.1:9", "never-connected")  # nothing connects until first use
    original_aclose = client._client.aclose

    async def failing_aclose() -> None:
        await original_aclose()
        raise RuntimeError("closing failed")

    client._client.aclose = failing_aclose  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="closing failed"):
        client.close()
    assert set(threading.enumerate()) <= before  # the client's loop thread is gone
    client.close()  # idempotent after a failed close


def test_urls_map_http_to_ws_and_refuse_keys_the_server_would_refuse():
    assert http_base("ws://host:1/base/") == "http://host:1/base"
    assert websocket_url("https://host/lrr", "rig-1.a_b", "fit") == "wss://host/lrr/ws/rig-1.a_b/fit"
    assert websocket_url("http://127.0.0.1:8000", "k", "fit_transform") == "ws://127.0.0.1:8000/ws/k/fit_transform"
    assert stream_path("rig_2", "weights") == "/streams/rig_2/weights"
    for key in ("rig 1/a", "a/b", "", "x" * 129):
        with pytest.raises(BadKeyError, match="expected 1 to 128 characters"):
            websocket_url("http://h", key, "fit")
        with pytest.raises(BadKeyError, match="invalid stream key"):
            stream_path(key)
    with pytest.raises(ValueError, match="expected http"):
        http_base("ftp://host")
    with pytest.raises(ValueError, match="expected one of"):
        websocket_url("http://h", "k", "predict")


def test_recordings_round_trip_and_refuse_what_they_cannot_read(tmp_path):
    data = np.random.default_rng(0).standard_normal((7, 3))
    write_recording(tmp_path / "x.csv", data)
    assert np.array_equal(read_recording(tmp_path / "x.csv").data, data)  # shortest exact decimals
    write_recording(tmp_path / "x32.csv", data.astype(np.float32))
    assert np.array_equal(read_recording(tmp_path / "x32.csv").data.astype(np.float32), data.astype(np.float32))
    (tmp_path / "named.csv").write_text("a,b\n1,2\n3,4\n")
    assert read_recording(tmp_path / "named.csv").data.tolist() == [[1, 2], [3, 4]]
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    with pytest.raises(RecordingError, match="comma-separated"):
        read_recording(tmp_path / "bad.csv")
    np.save(tmp_path / "one.npy", np.zeros(4))
    with pytest.raises(RecordingError, match="2-D"):
        read_recording(tmp_path / "one.npy")
    with pytest.raises(RecordingError, match="expected one of"):
        read_recording(tmp_path / "x.wav")
    with pytest.raises(RecordingError, match=r"\.npy or \.csv"):
        write_recording(tmp_path / "out.edf", data)


def test_fit_window_splits_chunks_at_the_boundary_by_timestamp():
    window = FitWindow(fit_seconds=1.0)
    assert window.split(np.array([10.0, 10.5])) == 2
    assert window.split(np.array([10.75, 11.0, 11.25])) == 1  # 11.0 is the first sample after the fitting period
    assert window.split(np.array([12.0])) == 0
    assert FitWindow(fit_seconds=None).split(np.array([1.0, 2.0])) == 0


def test_artifact_measure_sees_the_artifacts_and_not_the_signals():
    rig = make_rig(n_channels=5, n_samples=4000, seed=3)
    before = artifact_power(rig.recording, rig.sources)
    clean = artifact_power(rig.signals, rig.sources)
    assert (before > 4).all() and (clean < 0.01).all()
    assert reduction_db(before, clean) > 25
    assert reduction_db(before, before) == 0


async def test_in_flight_matches_replies_by_seq_and_unreadable_ones_to_the_oldest_sent_frame():
    import asyncio

    from lrr_service.clients.errors import BadMsgpackError, ConnectionLost
    from lrr_service.clients.inflight import InFlight
    from lrr_service.core import codec

    loop = asyncio.get_running_loop()
    frames = InFlight()
    futures = [loop.create_future() for _ in range(4)]
    for seq, future in enumerate(futures):
        frames.add(seq, b"frame%d" % seq, future)
    assert frames.start_connection(resend=True) == [0, 1, 2, 3]
    for seq in (0, 1, 2):
        frames.mark_sent(seq)
    assert frames.unsent() == 1 and frames.to_send(0) is None and frames.to_send(3) == b"frame3"
    frames.resolve(codec.AckReply(seq=1, n_samples=5, weights_version=0, reset=False))
    frames.resolve(codec.ErrorReply(code=ErrorCode.BAD_MSGPACK, message="garbled", seq=None))
    assert futures[1].result().n_samples == 5
    assert isinstance(futures[0].exception(), BadMsgpackError)  # the oldest frame on this connection
    assert frames.seqs() == (2, 3)
    assert frames.start_connection(resend=False) == [3]  # 2 was on the lost connection: reported, not resent
    assert isinstance(futures[2].exception(), ConnectionLost) and futures[2].exception().unanswered == (2,)
    frames.fail_all(ConnectionLost("gone"))
    assert futures[3].exception().unanswered == (3,) and len(frames) == 0
    with pytest.raises(ValueError, match="in flight"):
        frames.add(7, b"x", loop.create_future())
        frames.add(7, b"y", loop.create_future())


def test_waiting_for_health_gives_up_when_the_server_process_exits():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stdin=subprocess.DEVNULL)
    try:
        assert wait_until_healthy(f"http://127.0.0.1:{free_loopback_port()}", process, timeout=60.0) is False
        assert process.poll() == 3  # it returned because the process had exited
    finally:
        process.kill()
        process.wait(10)


def test_the_blocking_client_has_every_method_of_the_async_one_with_the_same_signature() -> None:
    import inspect

    from lrr_service.clients import LRRClient, LRRClientSync

    def public(cls: type) -> dict[str, object]:
        return {
            name: member
            for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and (callable(member) or isinstance(member, property))
        }

    def parameters(method: object) -> list[tuple[str, object, object]]:  # annotations differ: Iterator / AsyncIterator
        return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]  # type: ignore[arg-type]

    asynchronous, blocking = public(LRRClient), public(LRRClientSync)
    assert set(asynchronous) - {"aclose", "channel", "window_size", "rest"} == set(blocking) - {"close"}
    for name, member in blocking.items():
        if isinstance(member, property) or name == "close":
            continue
        twin = asynchronous[name]
        assert parameters(member) == parameters(twin), name
        if inspect.isasyncgenfunction(twin):
            assert inspect.isgeneratorfunction(member), name
        elif name == "set_channels":  # no I/O on either side: it marks the description for the next frames
            assert not inspect.iscoroutinefunction(twin) and not inspect.iscoroutinefunction(member)
        else:
            assert inspect.iscoroutinefunction(twin) and not inspect.iscoroutinefunction(member), name
