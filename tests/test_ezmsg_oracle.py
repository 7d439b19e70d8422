"""LRRServiceProcessor against ezmsg-learn 1.16.2's LRRTransformer on the same AxisArrays (the real server).

Where the reference is right, the outputs are equal (explicit groups, block size, field-name groups, ridge,
incremental and batch, CAR and identity cold start). Where shared/reference/behaviours.md lists a fault of the
reference, the unit differs in the direction docs/engine.md documents, checked against an independent numpy
computation of y = X (I - W) (tests/engine_reference.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from engine_reference import loo_car, mixed_signals, ridge_weights
from ezmsg.learn.process.ssr import LRRSettings, LRRTransformer
from ezmsg.util.messages.axisarray import AxisArray

try:
    from test_ezmsg_unit import banked_axis, rows, signal_messages
except ImportError:  # tests imported as a package
    from tests.test_ezmsg_unit import banked_axis, rows, signal_messages

from lrr_service.clients.ezmsg_unit import LRRServiceProcessor

N = 24
"""Channels of the matrix: 3 banks of 8, arrays alternating, so (array, bank) makes 6 groups of 4."""

CASES: dict[str, tuple[dict[str, Any], list[int]]] = {
    "explicit-unordered": ({"channel_groups": [[3, 0, 5, 1, 9], [2, 4, 6, 7], list(range(10, 24))]}, [5, 4, 14]),
    "explicit-small-groups-pass": ({"channel_groups": [[0, 1, 2, 3], [4, 5], [6]]}, [4, 2, 1]),
    "block-size": ({"block_size": 10}, [10, 10, 4]),
    "field-bank": ({"channel_groups": "bank"}, [8, 8, 8]),
    "fields-array-bank": ({"channel_groups": ("array", "bank")}, [4] * 6),
    "field-absent-falls-back-to-block-size": ({"channel_groups": "shank", "block_size": 6}, [6] * 4),
    "ridge": ({"channel_groups": "bank", "ridge_lambda": 25.0}, [8, 8, 8]),
    "batch": ({"block_size": 8, "incremental": False}, [8, 8, 8]),
    "car-cold-start-by-bank": ({"channel_groups": "bank", "init_default": "car"}, [8, 8, 8]),
    "car-cold-start-block-size": ({"block_size": 7, "init_default": "car"}, [7, 7, 7, 3]),
    "identity-cold-start": ({}, [24]),
}
"""Settings, and the sizes of the groups the session must resolve them to."""


def processor(server: Any, key: str, **settings: Any) -> LRRServiceProcessor:
    return LRRServiceProcessor(url=server.url, key=key, axis="ch", solve_on_fit=True, **settings)


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_the_reference(shared_server, stream_key, case):
    """Cold-start transform, then after each of three partial fits a transform: equal to the reference's."""
    settings, sizes = CASES[case]
    messages = signal_messages(20, 5, N, samples=40, channel_axis=banked_axis(N))
    oracle = LRRTransformer(LRRSettings(axis="ch", **settings))
    with processor(shared_server, stream_key, **settings) as unit:
        outputs = [(unit(messages[0]).data, oracle(messages[0]).data)]
        for fit, probe in itertools.pairwise(messages[1:]):
            unit.partial_fit(fit)
            oracle.partial_fit(fit)
            outputs.append((unit(probe).data, oracle(probe).data))
        assert unit.info()["grouping"]["sizes"] == sizes
    for ours, theirs in outputs:
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    assert not np.allclose(outputs[-1][0], messages[4].data)  # something was rereferenced


def test_cold_start_car_is_leave_one_out_per_group(shared_server, stream_key):
    message = signal_messages(21, 1, N, channel_axis=banked_axis(N))[0]
    with processor(shared_server, stream_key, channel_groups="bank", init_default="car") as unit:
        output = unit(message)
    banks = [list(range(8)), list(range(8, 16)), list(range(16, 24))]
    expected = np.moveaxis(loo_car(rows(message), banks).reshape(2, 60, N), -1, 1)
    np.testing.assert_allclose(output.data, expected, rtol=1e-12, atol=1e-12)


# -- the reference's faults (behaviours.md, second list), each where the unit differs ----------------


def time_message(X: np.ndarray, key: str = "rig") -> Any:
    """(time, ch) AxisArray of X."""
    return AxisArray(X, dims=["time", "ch"], axes={"time": AxisArray.TimeAxis(fs=1000.0)}, key=key)


def outputs_after(settings: dict[str, Any], server: Any, key: str, steps: Sequence[tuple[str, Any]]) -> tuple[Any, Any]:
    """Run the same steps ("fit" or "transform" a message, "fit_array" an array) through the unit and the
    reference; the last transform's outputs (unit's, reference's)."""
    oracle = LRRTransformer(LRRSettings(**settings))
    ours = theirs = None
    with LRRServiceProcessor(url=server.url, key=key, solve_on_fit=True, **settings) as unit:
        for step, value in steps:
            if step == "fit":
                unit.partial_fit(value)
                oracle.partial_fit(value)
            elif step == "fit_array":
                unit.fit(value)
                oracle.fit(value)
            else:
                ours, theirs = unit(value).data, oracle(value).data
    return ours, theirs


def test_fault_1_cold_start_then_fit_at_128_channels_keeps_cross_block_weights(shared_server, stream_key):
    rng = np.random.default_rng(31)
    X = mixed_signals(rng, 512, 128)
    probe = time_message(X[:300])
    ours, theirs = outputs_after(
        {"ridge_lambda": 1.0},
        shared_server,
        stream_key,
        [("transform", probe), ("fit", time_message(X)), ("transform", probe)],
    )
    expected = X[:300] @ (np.eye(128) - ridge_weights(X, [list(range(128))], 1.0))
    np.testing.assert_allclose(ours, expected, rtol=1e-8, atol=1e-8)
    assert np.abs(theirs - expected).max() > 1.0  # the reference dropped the weights across its identity blocks


def test_fault_2_silent_channel_without_ridge_passes_through(shared_server, stream_key):
    rng = np.random.default_rng(32)
    X = mixed_signals(rng, 2000, 6)
    X[:, 2] = 0.0
    ours, theirs = outputs_after(
        {}, shared_server, stream_key, [("fit", time_message(X)), ("transform", time_message(X[:50]))]
    )
    live = [0, 1, 3, 4, 5]
    W = np.zeros((6, 6))
    W[np.ix_(live, live)] = ridge_weights(X[:, live], [list(range(5))])
    np.testing.assert_allclose(ours, X[:50] @ (np.eye(6) - W), rtol=1e-8, atol=1e-8)
    assert np.all(ours[:, 2] == 0.0)
    assert np.abs(theirs).max() > 1e6  # the reference's pseudo-inverse guard misses the silent channel


def test_fault_3_int16_fit_does_not_overflow(shared_server, stream_key):
    rng = np.random.default_rng(33)
    X = np.clip(mixed_signals(rng, 2000, 6) * 1500, -32768, 32767).astype(np.int16)
    probe = time_message(X[:50])
    ours, theirs = outputs_after({}, shared_server, stream_key, [("fit", time_message(X)), ("transform", probe)])
    Xf = X.astype(np.float64)
    expected = Xf[:50] @ (np.eye(6) - ridge_weights(Xf, [list(range(6))]))
    assert ours.dtype == np.float32  # integers come back as float32
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=0.05)
    assert np.abs(theirs - expected).max() > 100  # the reference's int16 covariance overflowed


def test_fault_4_fit_and_signal_messages_with_different_keys_share_the_model(shared_server, stream_key):
    rng = np.random.default_rng(34)
    X = mixed_signals(rng, 2000, 6)
    steps = [("fit", time_message(X, key="calibration")), ("transform", time_message(X[:50], key="live"))]
    ours, theirs = outputs_after({}, shared_server, stream_key, steps)
    np.testing.assert_allclose(ours, X[:50] @ (np.eye(6) - ridge_weights(X, [list(range(6))])), rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(theirs, X[:50])  # the reference reset its model at the new key


def test_fault_5_fit_before_the_first_message_is_kept(shared_server, stream_key):
    rng = np.random.default_rng(35)
    X = mixed_signals(rng, 2000, 6)
    ours, theirs = outputs_after({}, shared_server, stream_key, [("fit_array", X), ("transform", time_message(X[:50]))])
    np.testing.assert_allclose(ours, X[:50] @ (np.eye(6) - ridge_weights(X, [list(range(6))])), rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(theirs, X[:50])  # the reference's first message discarded the fit


def test_fault_6_weights_are_validated_and_stay_pinned(shared_server, stream_key):
    rng = np.random.default_rng(36)
    X = mixed_signals(rng, 2000, 6)
    probe = time_message(X[:50])
    larger = rng.standard_normal((7, 7)) * 0.1
    np.fill_diagonal(larger, 0.0)
    assert LRRTransformer(LRRSettings(weights=larger))(probe).data.shape == (50, 7)  # the reference: 7 channels out
    with (
        LRRServiceProcessor(url=shared_server.url, key=stream_key, weights=larger) as unit,
        pytest.raises(ValueError, match="weights are 7 x 7 but the channel axis has 6 channels"),
    ):
        unit(probe)
    W = larger[:6, :6]
    ours, theirs = outputs_after(
        {"weights": W}, shared_server, stream_key + "-pinned", [("fit", time_message(X)), ("transform", probe)]
    )
    np.testing.assert_allclose(ours, X[:50] @ (np.eye(6) - W), rtol=1e-12, atol=1e-12)  # the fit did not replace W
    assert not np.allclose(theirs, X[:50] @ (np.eye(6) - W))  # the reference's partial fit discarded it


def test_fault_9_too_few_samples_keep_the_default(shared_server, stream_key):
    rng = np.random.default_rng(39)
    X = mixed_signals(rng, 10, 16)
    probe = time_message(mixed_signals(rng, 50, 16))
    ours, theirs = outputs_after({}, shared_server, stream_key, [("fit", time_message(X)), ("transform", probe)])
    np.testing.assert_array_equal(ours, probe.data)  # 10 samples cannot determine 15 weights per channel: identity
    assert np.abs(theirs - probe.data).max() > 5 * np.abs(probe.data).max()  # the reference's weights blew up


def test_a_message_holding_nan_is_skipped_whole(shared_server, stream_key):
    """Like the reference (check_finite): a fit message with a NaN changes nothing, even split in many frames."""
    rng = np.random.default_rng(40)
    X = mixed_signals(rng, 2000, 6)
    bad = mixed_signals(rng, 300_000, 6)  # over 4 MiB: sent as several frames
    bad[-1, 3] = np.nan
    probe = time_message(X[:50])
    with LRRServiceProcessor(url=shared_server.url, key=stream_key, solve_on_fit=True) as unit:
        unit.partial_fit(time_message(X))
        unit.partial_fit(time_message(bad))
        output = unit(probe).data
        assert unit.skipped_fits == 1
        assert unit.info()["n_samples"] == 2000
    np.testing.assert_allclose(output, X[:50] @ (np.eye(6) - ridge_weights(X, [list(range(6))])), rtol=1e-8, atol=1e-8)
