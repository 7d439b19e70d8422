"""The behaviours the reference's own tests pin down (shared/reference/behaviours.md, first list)."""

from __future__ import annotations

import numpy as np
import pytest
from engine_reference import loo_car, mixed_signals, ridge_weights

from lrr_service.core import LRR, ChannelCountError, LRRSettings, SettingsError

GROUPS_8 = [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_output_shape_equals_input_shape_and_identity_before_fit(rng):
    X = rng.standard_normal((50, 6))
    y = LRR().transform(X)
    assert y.shape == X.shape
    np.testing.assert_array_equal(y, X)


def test_car_default_before_fit_is_leave_one_out_average_per_group(rng):
    X = rng.standard_normal((40, 8))
    engine = LRR(LRRSettings(channel_groups=GROUPS_8, init_default="car"))
    np.testing.assert_allclose(engine.transform(X), loo_car(X, GROUPS_8), atol=1e-12)
    assert engine.weights_source == "default"


def test_fitted_weights_match_per_channel_least_squares_and_y_is_x_times_i_minus_w(rng):
    X = mixed_signals(rng, 3000, 8)
    engine = LRR().fit(X)
    W = engine.weights
    np.testing.assert_allclose(W, ridge_weights(X, [list(range(8))]), rtol=1e-8, atol=1e-11)
    assert np.all(np.diag(W) == 0.0)
    np.testing.assert_allclose(engine.transform(X), X @ (np.eye(8) - W), atol=1e-10)


def test_ridge_weights_match_ridge_normal_equations(rng):
    X = mixed_signals(rng, 500, 6)
    engine = LRR(LRRSettings(ridge_lambda=250.0)).fit(X)
    np.testing.assert_allclose(engine.weights, ridge_weights(X, [list(range(6))], 250.0), rtol=1e-9, atol=1e-12)


def test_weights_across_groups_are_exactly_zero_and_nonzero_within(rng):
    X = mixed_signals(rng, 2000, 8)
    W = LRR(LRRSettings(channel_groups=GROUPS_8)).fit(X).weights
    assert np.all(W[:4, 4:] == 0.0) and np.all(W[4:, :4] == 0.0)
    off_diagonal = ~np.eye(4, dtype=bool)
    assert np.all(W[:4, :4][off_diagonal] != 0.0)
    assert np.all(W[4:, 4:][off_diagonal] != 0.0)
    np.testing.assert_allclose(W, ridge_weights(X, GROUPS_8), rtol=1e-8, atol=1e-11)


def test_explicit_groups_may_be_unordered_and_non_contiguous(rng):
    groups = [[6, 0, 3], [5, 1, 7, 2], [4]]
    X = mixed_signals(rng, 2000, 8)
    engine = LRR(LRRSettings(channel_groups=groups)).fit(X)
    W = engine.weights
    np.testing.assert_allclose(W, ridge_weights(X, [[6, 0, 3], [5, 1, 7, 2]]), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(engine.transform(X), X @ (np.eye(8) - W), atol=1e-10)
    assert np.all(W[:, 4] == 0) and np.all(W[4, :] == 0)


def test_block_size_falls_back_to_consecutive_blocks(rng):
    X = mixed_signals(rng, 2000, 10)
    W = LRR(LRRSettings(block_size=4)).fit(X).weights
    # blocks [0..3], [4..7], [8, 9]; the last is below min_group_size and passes through
    np.testing.assert_allclose(W, ridge_weights(X, [[0, 1, 2, 3], [4, 5, 6, 7]]), rtol=1e-8, atol=1e-11)
    assert np.all(W[8:, :] == 0) and np.all(W[:, 8:] == 0)


def test_groups_below_three_channels_are_untouched_and_three_are_rereferenced(rng):
    X = mixed_signals(rng, 1000, 5)
    engine = LRR(LRRSettings(channel_groups=[[0, 1], [2, 3, 4]])).fit(X)
    y = engine.transform(X)
    np.testing.assert_array_equal(y[:, :2], X[:, :2])
    assert not np.allclose(y[:, 2:], X[:, 2:])


def test_group_of_four_plus_lone_channel(rng):
    X = mixed_signals(rng, 1000, 5)
    engine = LRR(LRRSettings(channel_groups=[[0, 1, 2, 3], [4]])).fit(X)
    y = engine.transform(X)
    np.testing.assert_array_equal(y[:, 4], X[:, 4])
    np.testing.assert_allclose(engine.weights, ridge_weights(X, [[0, 1, 2, 3]]), rtol=1e-8, atol=1e-11)


def test_zero_channels_do_not_crash():
    engine = LRR()
    X = np.zeros((10, 0))
    engine.partial_fit(X)
    assert engine.transform(X).shape == (10, 0)
    assert engine.partial_fit_transform(X).shape == (10, 0)
    engine.fit(X)
    assert engine.weights is not None and engine.weights.shape == (0, 0)
    assert LRR(LRRSettings(channel_groups=[])).transform(X).shape == (10, 0)


def test_incremental_partial_fits_equal_one_fit_on_the_concatenation(rng):
    X = mixed_signals(rng, 900, 6)
    incremental = LRR()
    incremental.partial_fit(X[:400]).partial_fit(X[400:])
    batch = LRR().fit(X)
    np.testing.assert_allclose(incremental.weights, batch.weights, atol=1e-10)


def test_non_incremental_partial_fit_replaces_the_statistics(rng):
    X = mixed_signals(rng, 900, 6)
    engine = LRR(LRRSettings(incremental=False))
    engine.partial_fit(X[:400]).partial_fit(X[400:])
    np.testing.assert_allclose(engine.weights, LRR().fit(X[400:]).weights, atol=1e-12)
    assert engine.n_samples == 500


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_fit_chunk_is_skipped_and_weights_unchanged(rng, bad):
    X = mixed_signals(rng, 500, 6)
    engine = LRR().fit(X)
    before = engine.weights.copy()
    version, n = engine.weights_version, engine.n_samples
    poisoned = mixed_signals(rng, 50, 6)
    poisoned[7, 3] = bad
    engine.partial_fit(poisoned)
    assert engine.accumulate(poisoned) is False
    np.testing.assert_array_equal(engine.weights, before)
    assert (engine.weights_version, engine.n_samples) == (version, n)


def test_ridge_with_duplicated_channel_gives_finite_output(rng):
    X = mixed_signals(rng, 500, 5)
    X[:, 4] = X[:, 1]
    engine = LRR(LRRSettings(ridge_lambda=1.0)).fit(X)
    assert np.isfinite(engine.weights).all()
    assert np.isfinite(engine.transform(X)).all()


def test_fit_then_transform_equals_partial_fit_transform(rng):
    X = mixed_signals(rng, 300, 6)
    a = LRR().partial_fit(X).transform(X)
    b = LRR().partial_fit_transform(X)
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_two_fits_before_first_transform_apply_the_newest_weights(rng):
    X1, X2 = mixed_signals(rng, 500, 6), mixed_signals(rng, 500, 6)
    engine = LRR().fit(X1).fit(X2)
    np.testing.assert_allclose(engine.transform(X2), X2 @ (np.eye(6) - LRR().fit(X2).weights), atol=1e-10)


def test_out_of_range_group_index_raises():
    with pytest.raises(ValueError, match="out-of-range"):
        LRR(LRRSettings(channel_groups=[[0, 1, 9]])).transform(np.zeros((3, 4)))


def test_empty_group_list_with_channels_raises():
    with pytest.raises(ValueError, match="empty"):
        LRR(LRRSettings(channel_groups=[])).transform(np.zeros((3, 4)))


def test_overlapping_groups_raise():
    with pytest.raises(ValueError, match="overlap"):
        LRRSettings(channel_groups=[[0, 1, 2], [2, 3, 4]])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"ridge_lambda": -1.0}, "ridge_lambda"),
        ({"ridge_lambda": float("nan")}, "ridge_lambda"),
        ({"channel_groups": [[0, 1], []]}, "empty"),
        ({"channel_groups": [[0, -1, 2]]}, "out-of-range"),
        ({"block_size": 0}, "block_size"),
        ({"min_group_size": 0}, "min_group_size"),
        ({"init_default": "median"}, "init_default"),
        ({"half_life_samples": 0}, "half_life_samples"),
        ({"incremental": "yes"}, "incremental"),
    ],
)
def test_invalid_settings_say_what_was_expected(kwargs, fragment):
    with pytest.raises(SettingsError, match=fragment):
        LRRSettings(**kwargs)


def test_settings_round_trip_and_refuse_unknown_keys():
    s = LRRSettings(ridge_lambda=0.5, channel_groups=[[2, 0, 1]], half_life_samples=3000)
    assert LRRSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingsError, match="unknown setting"):
        LRRSettings.from_dict({"ridge": 1.0})


def test_precomputed_weights_as_array_or_csv_apply_immediately(rng, tmp_path):
    X = rng.standard_normal((20, 5))
    W = rng.standard_normal((5, 5)) * 0.1
    np.fill_diagonal(W, 0.0)
    path = tmp_path / "w.csv"
    np.savetxt(path, W, delimiter=",")
    for source in (W, np.loadtxt(path, delimiter=",")):
        engine = LRR()
        engine.load_weights(source)
        np.testing.assert_allclose(engine.transform(X), X @ (np.eye(5) - W), atol=1e-12)
        assert engine.weights_source == "uploaded"


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [11, 3, 7, 0, 5, 9, 1, 10, 2, 6, 4, 8]])
def test_block_diagonal_application_equals_dense_matmul_whatever_the_index_order(rng, order):
    groups = [sorted(order[0:4]), order[4:8], order[8:12][::-1]]
    X = mixed_signals(rng, 2000, 12)
    engine = LRR(LRRSettings(channel_groups=groups)).fit(X)
    dense = X @ (np.eye(12) - engine.weights)
    np.testing.assert_allclose(engine.transform(X), dense, atol=1e-10)
    np.testing.assert_allclose(engine.transform(X.astype(np.float32)), dense, rtol=1e-4, atol=1e-4)


def test_channel_count_mismatch_raises_and_reset_rebinds(rng):
    engine = LRR().fit(mixed_signals(rng, 200, 6))
    with pytest.raises(ChannelCountError) as info:
        engine.transform(np.zeros((5, 7)))
    assert (info.value.expected, info.value.got) == (6, 7)
    engine.reset()
    assert engine.transform(np.ones((5, 7))).shape == (5, 7)
    assert engine.n_channels == 7


def test_huge_but_finite_chunk_is_not_mistaken_for_non_finite():
    X = np.full((30, 4), 3e38, dtype=np.float32)  # its float32 sum overflows
    assert LRR(LRRSettings(incremental=True)).accumulate(X) is True


def test_a_chunk_whose_square_would_overflow_is_skipped_and_changes_nothing(rng):
    engine = LRR()
    X = mixed_signals(rng, 500, 4)
    assert engine.accumulate(X) is True
    engine.solve()
    before = (engine.n_samples, engine.weights.copy(), engine.statistics().cxx.copy())
    huge = X[:30].copy()
    huge[7, 2] = 1e200  # finite, but 1e200² overflows float64
    assert engine.accumulate(huge) is False
    assert engine.n_samples == before[0]
    np.testing.assert_array_equal(engine.statistics().cxx, before[2])
    np.testing.assert_array_equal(engine.weights, before[1])
    assert np.isfinite(engine.statistics().cxx).all()
    with pytest.raises(ValueError, match="sample 7, channel 2"):
        LRR().fit(huge)


def test_check_finite_cannot_be_turned_off():
    with pytest.raises(SettingsError, match="check_finite must be true"):
        LRRSettings(check_finite=False)
    assert LRRSettings(check_finite=True).check_finite is True


def test_no_weights_are_solved_from_non_finite_statistics(rng):
    from lrr_service.core import StatisticsError
    from lrr_service.core.solver import solve_weights
    from lrr_service.core.statistics import Statistics

    cxx = np.eye(4)
    cxx[1, 1] = np.inf
    stats = Statistics(cxx, np.zeros(4), 100.0, 100)
    with pytest.raises(StatisticsError, match="NaN or infinity"):
        solve_weights(stats, [np.arange(4)], LRRSettings())


def test_restore_checks_counts_and_can_leave_non_finite_statistics_out(rng):
    from lrr_service.core import SnapshotError, StatisticsError

    engine = LRR()
    engine.fit(mixed_signals(rng, 300, 4))
    meta, arrays = engine.snapshot()
    for name, bad in [
        ("weights_version", 2**70),
        ("weights_version", -5),
        ("weights_version", 1e300),
        ("n_samples", -1),
        ("n_samples", 2**70),
        ("n_samples_solved", 2.5),
        ("stats_weight", float("nan")),
        ("stats_weight", -1.0),
    ]:
        with pytest.raises(SnapshotError, match=name):
            LRR.restore(meta | {name: bad}, arrays)
    poisoned = arrays | {"cxx": np.full((4, 4), np.nan)}
    with pytest.raises(StatisticsError):
        LRR.restore(meta, poisoned)
    kept = LRR.restore(meta, poisoned, statistics=False)
    assert (kept.n_channels, kept.n_samples, kept.weights_version) == (4, 0, engine.weights_version)
    np.testing.assert_array_equal(kept.weights, engine.weights)
