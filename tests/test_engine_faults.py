"""Regression tests for the places the reference gives wrong output (behaviours.md, second list).

Each test fails on the faulty behaviour it is named after.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_reference import mixed_signals, ridge_weights

from lrr_service.core import LRR, ChannelCountError, LRRSettings, ShapeError, WeightsError


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


@pytest.mark.parametrize("n_channels", [128, 384])
def test_1_cold_start_then_fit_replans_blocks(rng, n_channels):
    """A transform before any fit must not freeze the identity's block structure."""
    X = mixed_signals(rng, 4 * n_channels, n_channels)
    engine = LRR(LRRSettings(ridge_lambda=1.0))
    np.testing.assert_array_equal(engine.transform(X[:30]), X[:30])
    engine.fit(X)
    expected = X[:30] @ (np.eye(n_channels) - engine.weights)
    np.testing.assert_allclose(engine.transform(X[:30]), expected, atol=1e-9)


def test_1_replanned_when_weights_change_structure(rng):
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
    X = mixed_signals(rng, 500, 8)
    engine = LRR(LRRSettings(channel_groups=groups)).fit(X)
    full = rng.standard_normal((8, 8)) * 0.1
    engine.load_weights(full)
    np.testing.assert_allclose(engine.transform(X), X @ (np.eye(8) - full), atol=1e-12)


@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_2_silent_channel_passes_through_and_does_not_blow_up(rng, ridge):
    X = mixed_signals(rng, 2000, 6)
    X[:, 2] = 0.0
    engine = LRR(LRRSettings(ridge_lambda=ridge)).fit(X)
    y = engine.transform(X)
    assert np.all(y[:, 2] == 0.0)
    assert np.all(engine.weights[2, :] == 0) and np.all(engine.weights[:, 2] == 0)
    live = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(
        engine.weights[np.ix_(live, live)], ridge_weights(X[:, live], [list(range(5))], ridge), rtol=1e-8, atol=1e-11
    )
    assert np.abs(y).max() < 10 * np.abs(X).max()


def test_2_flat_channel_is_detected_by_variance_with_a_tolerance(rng):
    """Not only exact zeros: a railed (constant) channel and one of 1e-9-scale noise are flat too."""
    X = mixed_signals(rng, 2000, 6)
    X[:, 1] = 2.5e3
    X[:, 4] = 1e-9 * rng.standard_normal(2000) + 7.0
    W = LRR().fit(X).weights
    for flat in (1, 4):
        assert np.all(W[flat, :] == 0) and np.all(W[:, flat] == 0)
    live = [0, 2, 3, 5]
    np.testing.assert_allclose(
        W[np.ix_(live, live)], ridge_weights(X[:, live], [list(range(4))]), rtol=1e-7, atol=1e-10
    )


def test_3_int16_statistics_accumulate_in_float64_without_overflow(rng):
    X = rng.integers(-32768, 32767, size=(4000, 5), dtype=np.int16)
    engine = LRR()
    engine.partial_fit(X[:2000]).partial_fit(X[2000:])
    exact = X.astype(np.float64)
    np.testing.assert_allclose(engine.statistics().cxx, exact.T @ exact, rtol=1e-12)
    np.testing.assert_allclose(engine.weights, ridge_weights(exact, [list(range(5))]), rtol=1e-7, atol=1e-11)


def test_4_dtype_sample_rate_or_chunk_length_never_reset_the_model(rng):
    X = mixed_signals(rng, 600, 6)
    engine = LRR()
    engine.partial_fit(X[:100].astype(np.float32))
    engine.partial_fit(X[100:350])
    engine.partial_fit(np.round(X[350:] * 1000).astype(np.int16) / 1000.0)
    assert engine.n_samples == 600
    engine.transform(X[:3].astype(np.int32))
    assert engine.n_samples == 600 and engine.weights_source == "fitted"


def test_5_fit_before_the_first_transform_is_kept(rng):
    X = mixed_signals(rng, 500, 6)
    engine = LRR().fit(X)
    W = engine.weights.copy()
    y = engine.transform(X[:10])
    np.testing.assert_allclose(y, X[:10] @ (np.eye(6) - W), atol=1e-12)
    np.testing.assert_array_equal(engine.weights, W)


def test_6_uploaded_weights_are_validated(rng):
    engine = LRR().fit(mixed_signals(rng, 300, 6))
    version = engine.weights_version
    W = engine.weights.copy()
    with pytest.raises(ChannelCountError, match="7 channels"):
        engine.load_weights(np.zeros((7, 7)))
    with pytest.raises(WeightsError, match="square"):
        engine.load_weights(np.zeros((6, 7)))
    bad = np.zeros((6, 6))
    bad[2, 3] = np.nan
    with pytest.raises(WeightsError, match=r"W\[2, 3\]"):
        engine.load_weights(bad)
    with pytest.raises(WeightsError, match="numeric"):
        engine.load_weights([["a"] * 6] * 6)
    np.testing.assert_array_equal(engine.weights, W)
    assert engine.weights_version == version


def test_6_partial_fit_does_not_silently_discard_uploaded_weights(rng):
    engine = LRR()
    uploaded = rng.standard_normal((6, 6)) * 0.1
    engine.load_weights(uploaded)
    engine.partial_fit(mixed_signals(rng, 300, 6))
    np.testing.assert_array_equal(engine.weights, uploaded)
    assert engine.weights_source == "uploaded" and engine.n_samples == 300
    engine.solve()  # an explicit solve replaces them, and says so
    assert engine.weights_source == "fitted"


def test_7_accumulate_does_not_solve(rng):
    engine = LRR()
    version = engine.weights_version
    for _ in range(20):
        assert engine.accumulate(mixed_signals(rng, 30, 16))
    assert engine.weights_version == version and engine.weights is None
    engine.solve()
    assert engine.weights_version == version + 1 and engine.n_samples_solved == 600


def test_8_float32_input_accumulates_in_float64(rng):
    """An offset of 1e4 with unit noise: float32 sums of squares lose the noise entirely."""
    X = (1e4 + rng.standard_normal((20000, 4))).astype(np.float32)
    engine = LRR()
    for start in range(0, 20000, 30):
        engine.accumulate(X[start : start + 30])
    exact = X.astype(np.float64)
    np.testing.assert_allclose(engine.statistics().cxx, exact.T @ exact, rtol=1e-13)


def test_9_fewer_samples_than_channels_without_ridge_keeps_the_default(rng):
    X = mixed_signals(rng, 10, 32)
    engine = LRR().fit(X)
    assert np.all(engine.weights == 0)
    car = LRR(LRRSettings(init_default="car")).fit(X)
    np.testing.assert_allclose(car.weights.sum(axis=0), 1.0)
    engine.partial_fit(mixed_signals(rng, 200, 32))
    assert np.abs(engine.weights).max() < 5


def test_rejected_calls_leave_the_state_exactly_as_it_was(rng):
    engine = LRR(LRRSettings(channel_groups=[[0, 1, 2], [3, 4, 5]]))
    engine.fit(mixed_signals(rng, 300, 6))
    before_meta, before_arrays = engine.snapshot()
    for call in (
        lambda: engine.transform(np.zeros((3, 7))),
        lambda: engine.partial_fit(np.zeros((3, 5))),
        lambda: engine.transform(np.zeros(6)),
        lambda: engine.transform(np.zeros((2, 3, 6))),
        lambda: engine.transform(np.array([["x"] * 6])),
        lambda: engine.fit(np.full((4, 6), np.nan)),
        lambda: engine.load_weights(np.ones((5, 5))),
    ):
        with pytest.raises(ValueError):
            call()
    after_meta, after_arrays = engine.snapshot()
    assert after_meta == before_meta
    assert after_arrays.keys() == before_arrays.keys()
    for key in before_arrays:
        np.testing.assert_array_equal(after_arrays[key], before_arrays[key])


def test_binding_with_out_of_range_groups_changes_nothing():
    engine = LRR(LRRSettings(channel_groups=[[0, 1, 5]]))
    with pytest.raises(ValueError, match="out-of-range"):
        engine.partial_fit(np.ones((3, 4)))
    assert engine.n_channels is None and engine.n_samples == 0
    assert engine.transform(np.ones((2, 6))).shape == (2, 6)


def test_not_two_dimensional_is_a_shape_error():
    with pytest.raises(ShapeError, match="2-D"):
        LRR().transform(np.zeros(5))
