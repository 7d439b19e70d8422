"""Hypothesis properties of LRR, dtypes, forgetting, and the accumulate/solve/install split."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from engine_reference import loo_car, mixed_signals
from hypothesis import given, settings
from hypothesis import strategies as st

from lrr_service.core import LRR, LRRSettings, SnapshotError

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def grouped_data(draw):
    n_channels = draw(st.integers(3, 12))
    perm = draw(st.permutations(range(n_channels)))
    cuts = sorted(draw(st.sets(st.integers(1, n_channels - 1), max_size=3)))
    groups = [list(perm[a:b]) for a, b in zip([0, *cuts], [*cuts, n_channels])]
    seed = draw(st.integers(0, 2**32 - 1))
    n_samples = draw(st.integers(4 * n_channels, 300))
    X = mixed_signals(np.random.default_rng(seed), n_samples, n_channels)
    return X, groups


@SETTINGS
@given(grouped_data())
def test_diagonal_is_zero_and_weights_across_groups_are_zero(data):
    X, groups = data
    W = LRR(LRRSettings(channel_groups=groups, min_group_size=2)).fit(X).weights
    assert np.all(np.diag(W) == 0.0)
    label = np.empty(X.shape[1], dtype=int)
    for gi, group in enumerate(groups):
        label[group] = gi
    assert np.all(W[label[:, None] != label[None, :]] == 0.0)


@SETTINGS
@given(grouped_data(), st.lists(st.integers(1, 400), min_size=1, max_size=6), st.floats(0, 10))
def test_incremental_fit_over_any_split_equals_one_batch_fit(data, cuts, ridge):
    X, groups = data
    settings_ = LRRSettings(channel_groups=groups, ridge_lambda=ridge)
    engine = LRR(settings_, staging_bytes=8 * X.shape[1] * 40)  # small staging: exercise every path
    bounds = sorted({0, X.shape[0], *(c % X.shape[0] for c in cuts)})
    for a, b in itertools.pairwise(bounds):
        engine.partial_fit(X[a:b])
    np.testing.assert_allclose(engine.weights, LRR(settings_).fit(X).weights, atol=1e-10)


@SETTINGS
@given(grouped_data(), st.data())
def test_exact_linear_combination_has_near_zero_residual(data, draw):
    X, _ = data
    n = X.shape[1]
    target = draw.draw(st.integers(0, n - 1))
    coefficients = np.array(draw.draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n)))
    coefficients[target] = 0.0
    coefficients[(target + 1) % n] = 1.5  # at least one predictor
    X = X.copy()
    X[:, target] = X @ coefficients
    y = LRR().fit(X).transform(X)
    assert np.sqrt(np.mean(y[:, target] ** 2)) < 1e-6 * np.sqrt(np.mean(X[:, target] ** 2))


@SETTINGS
@given(grouped_data())
def test_lrr_residual_variance_never_exceeds_leave_one_out_car(data):
    X, groups = data
    groups = [g for g in groups if len(g) >= 3]
    if not groups:
        groups = [list(range(X.shape[1]))]
    y = LRR(LRRSettings(channel_groups=groups)).fit(X).transform(X)
    car = loo_car(X, groups)
    for c in (c for g in groups for c in g):
        assert np.sum(y[:, c] ** 2) <= np.sum(car[:, c] ** 2) * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize(
    "dtype, out_dtype",
    [(np.int16, np.float32), (np.int32, np.float32), (np.float32, np.float32), (np.float64, np.float64)],
)
def test_dtypes_in_and_out(dtype, out_dtype):
    rng = np.random.default_rng(5)
    X = np.round(mixed_signals(rng, 1000, 8) * 100).astype(dtype)
    engine = LRR().fit(X)
    y = engine.transform(X)
    assert y.dtype == out_dtype
    expected = X.astype(np.float64) @ (np.eye(8) - engine.weights)
    tolerance = 1e-10 if out_dtype == np.float64 else 1e-5
    np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


def test_forgetting_matches_the_closed_form():
    rng = np.random.default_rng(8)
    X = mixed_signals(rng, 1000, 5)
    half_life = 150.0
    engine = LRR(LRRSettings(half_life_samples=half_life))
    for start in range(0, 1000, 37):
        engine.accumulate(X[start : start + 37])
    weights = 0.5 ** (np.arange(999, -1, -1) / half_life)
    stats = engine.statistics()
    np.testing.assert_allclose(stats.cxx, (X * weights[:, None]).T @ X, rtol=1e-11)
    np.testing.assert_allclose(stats.weight, weights.sum(), rtol=1e-12)
    engine.solve()
    Xw = X * np.sqrt(weights)[:, None]
    np.testing.assert_allclose(engine.weights, LRR().fit(Xw).weights, rtol=1e-8, atol=1e-11)


def test_forgetting_follows_a_change_in_the_noise():
    rng = np.random.default_rng(9)
    old, new = mixed_signals(rng, 20000, 6), mixed_signals(rng, 3000, 6)
    forgetting = LRR(LRRSettings(half_life_samples=300))
    forgetting.partial_fit(old).partial_fit(new)
    recent = LRR().fit(new[-1500:])
    remembering = LRR().fit(np.vstack([old, new]))
    assert np.abs(forgetting.weights - recent.weights).max() < np.abs(remembering.weights - recent.weights).max()


def test_solve_is_deterministic_for_the_same_statistics():
    engine = LRR()
    engine.accumulate(mixed_signals(np.random.default_rng(3), 800, 24))
    stats = engine.statistics()
    a, b = engine.solve_statistics(stats), engine.solve_statistics(stats)
    np.testing.assert_array_equal(a.weights, b.weights)


def test_stale_solutions_are_not_installed():
    rng = np.random.default_rng(4)
    engine = LRR()
    engine.accumulate(mixed_signals(rng, 300, 6))
    stale = engine.solve_statistics(engine.statistics())
    engine.reset()
    engine.accumulate(mixed_signals(rng, 300, 6))
    assert engine.install(stale) is False and engine.weights is None
    fresh = engine.solve_statistics(engine.statistics())
    engine.load_weights(np.zeros((6, 6)))
    assert engine.install(fresh) is False and engine.weights_source == "uploaded"
    newer = engine.solve_statistics(engine.statistics())
    assert engine.install(newer) is False
    assert engine.install(newer, replace_uploaded=True) is True and engine.weights_source == "fitted"
    engine.accumulate(mixed_signals(rng, 10, 6))
    older = newer
    newest = engine.solve_statistics(engine.statistics())
    assert engine.install(newest) is True
    assert engine.install(older) is False and engine.n_samples_solved == 310


@pytest.mark.parametrize("source", ["none", "default", "fitted", "uploaded"])
def test_snapshot_restore_round_trip(source):
    rng = np.random.default_rng(6)
    engine = LRR(LRRSettings(channel_groups=[[0, 2, 4], [1, 3, 5]], init_default="car", half_life_samples=500))
    if source != "none":
        engine.accumulate(mixed_signals(rng, 400, 6))
    if source == "fitted":
        engine.solve()
    if source == "uploaded":
        engine.load_weights(rng.standard_normal((6, 6)))
    engine.accumulate(mixed_signals(rng, 10, 6))
    meta, arrays = engine.snapshot()
    restored = LRR.restore(meta, arrays)
    assert restored.weights_source == engine.weights_source
    assert restored.weights_version == engine.weights_version
    assert restored.n_samples == engine.n_samples and restored.settings == engine.settings
    X = mixed_signals(rng, 50, 6)
    np.testing.assert_array_equal(restored.transform(X), engine.transform(X))
    engine.accumulate(X)
    restored.accumulate(X)
    np.testing.assert_array_equal(restored.statistics().cxx, engine.statistics().cxx)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda m, a: m.update(format="other"),
        lambda m, a: m.update(n_channels=7),
        lambda m, a: a.update(weights=np.full((6, 6), np.nan)),
        lambda m, a: a.update(cxx=np.zeros((5, 5))),
        lambda m, a: m["settings"].update(ridge_lambda=-1),
        lambda m, a: m.pop("weights_version"),
    ],
)
def test_restore_refuses_inconsistent_snapshots(corrupt):
    engine = LRR().fit(mixed_signals(np.random.default_rng(7), 100, 6))
    meta, arrays = engine.snapshot()
    corrupt(meta, arrays)
    with pytest.raises(SnapshotError):
        LRR.restore(meta, arrays)


def test_accumulate_is_cheap_until_a_fold_is_due_and_sealing_a_full_block_is_not_a_fold():
    engine = LRR(staging_bytes=2 * 8 * 4 * 50)  # two staging blocks of 50 rows of 4 channels
    assert not engine.accumulate_is_cheap(30)  # unbound: accumulating would allocate the statistics
    engine.bind(4)
    assert engine.accumulate_is_cheap(30) and engine.n_samples == 0
    engine.accumulate(np.ones((30, 4)))
    assert engine.accumulate_is_cheap(21) and not engine.accumulate_is_cheap(50)  # a whole block folds at once
    assert not engine.has_pending_fold
    engine.accumulate(np.ones((21, 4)))  # seals the 30 staged rows, stages these 21 in the other block
    assert engine.has_pending_fold and engine.n_samples == 51
    assert engine.accumulate_is_cheap(29) and not engine.accumulate_is_cheap(30)  # sealing again would fold first
    engine.fold_pending()
    assert not engine.has_pending_fold and engine.accumulate_is_cheap(30)


@SETTINGS
@given(
    st.lists(st.integers(1, 90), min_size=1, max_size=40),
    st.lists(st.booleans(), min_size=40, max_size=40),
    st.sampled_from([None, 37.0]),
)
def test_statistics_are_bit_identical_whenever_the_pending_fold_runs(sizes, fold_after, half_life):
    rng = np.random.default_rng(len(sizes))
    chunks = [rng.standard_normal((size, 5)).astype(np.float32) for size in sizes]
    settings_ = LRRSettings(half_life_samples=half_life)
    eager, lazy = (LRR(settings_, staging_bytes=2 * 8 * 5 * 40) for _ in range(2))
    for chunk, fold in zip(chunks, fold_after):
        eager.accumulate(chunk)
        lazy.accumulate(chunk)
        if fold:
            eager.fold_pending()
    eager_stats, lazy_stats = eager.statistics(), lazy.statistics()
    np.testing.assert_array_equal(eager_stats.cxx, lazy_stats.cxx)
    np.testing.assert_array_equal(eager_stats.col_sum, lazy_stats.col_sum)
    assert eager_stats.weight == lazy_stats.weight and eager_stats.n_samples == lazy_stats.n_samples == sum(sizes)
    if half_life is None:
        X = np.concatenate(chunks).astype(np.float64)
        np.testing.assert_allclose(lazy_stats.cxx, X.T @ X, rtol=1e-12, atol=1e-9)


def test_fold_pending_in_a_worker_thread_while_cheap_chunks_are_staged_gives_the_same_statistics():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    chunks = [rng.standard_normal((30, 256)).astype(np.float32) for _ in range(400)]
    sequential, overlapped = LRR(staging_bytes=1 << 20), LRR(staging_bytes=1 << 20)  # blocks of 256 rows
    overlaps = 0
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
        for chunk in chunks:
            sequential.accumulate(chunk)
            if overlapped.n_channels is None:
                overlapped.bind(chunk.shape[1])
            if not overlapped.accumulate_is_cheap(chunk.shape[0]) and pending is not None:
                pending.result()  # the contract: nothing but cheap accumulates while a fold runs
                pending = None
            overlapped.accumulate(chunk)
            if pending is not None and not pending.done():
                overlaps += 1  # staged while the worker folded
            if overlapped.has_pending_fold and pending is None:
                pending = worker.submit(overlapped.fold_pending)
            elif pending is not None and pending.done():
                pending.result()
                pending = None
        if pending is not None:
            pending.result()
    assert overlaps > 0
    np.testing.assert_array_equal(sequential.statistics().cxx, overlapped.statistics().cxx)
    assert sequential.n_samples == overlapped.n_samples == 400 * 30


def test_statistics_carry_their_generation_so_a_reset_in_between_makes_them_stale():
    rng = np.random.default_rng(11)
    engine = LRR()
    engine.accumulate(mixed_signals(rng, 300, 6))
    stats = engine.statistics()
    engine.reset()
    engine.accumulate(mixed_signals(rng, 300, 6))  # same channel count again
    assert engine.install(engine.solve_statistics(stats)) is False
    assert engine.install(engine.solve_statistics(engine.statistics())) is True


def test_solutions_bring_their_application_plans_for_the_dtypes_in_use():
    rng = np.random.default_rng(12)
    engine = LRR()
    X = mixed_signals(rng, 300, 6)
    engine.accumulate(X)
    first = engine.solve_statistics(engine.statistics())
    assert set(first.plans) == {np.dtype(np.float32)}
    engine.install(first)
    engine.transform(X)  # float64 now in use too
    second = engine.solve_statistics(engine.statistics())
    assert set(second.plans) == {np.dtype(np.float32), np.dtype(np.float64)}
    engine.install(second)
    np.testing.assert_allclose(engine.transform(X), X @ (np.eye(6) - second.weights), atol=1e-12)


def test_a_replacement_engine_continues_the_weights_version():
    engine = LRR(weights_version=41)
    engine.load_weights(np.zeros((3, 3)))
    assert engine.weights_version == 42
    with pytest.raises(ValueError, match="weights_version"):
        LRR(weights_version=-1)


def test_bind_checks_like_a_chunk_and_changes_nothing_when_refused():
    engine = LRR(LRRSettings(channel_groups=[[0, 1, 2]]))
    with pytest.raises(ValueError, match="out-of-range"):
        engine.bind(2)
    assert engine.n_channels is None
    engine.bind(3)
    with pytest.raises(ValueError, match="bound to 3"):
        engine.bind(4)
    assert engine.n_channels == 3 and engine.n_samples == 0


def test_first_bad_sample_names_sample_and_channel():
    from lrr_service.core.samples import first_bad_sample

    X = np.zeros((5, 4), dtype=np.float32)
    assert first_bad_sample(X) is None
    assert first_bad_sample(np.zeros((5, 4), dtype=np.int16)) is None
    X[3, 2] = np.inf
    X[4, 0] = np.nan
    bad = first_bad_sample(X)
    assert (bad.sample, bad.channel, bad.value, bad.finite) == (3, 2, np.inf, False)


def test_first_bad_sample_finds_finite_samples_whose_square_would_overflow():
    from lrr_service.core.samples import MAX_FIT_MAGNITUDE, first_bad_sample

    X = np.ones((6, 3))
    X[1, 1] = MAX_FIT_MAGNITUDE  # the largest magnitude accepted
    X[2, 0] = -MAX_FIT_MAGNITUDE
    assert first_bad_sample(X) is None
    X[4, 2] = -1e200
    bad = first_bad_sample(X)
    assert (bad.sample, bad.channel, bad.value, bad.finite) == (4, 2, -1e200, True)
    many_large = np.full((300, 8), 0.9 * MAX_FIT_MAGNITUDE)  # their sum of squares overflows the quick check
    assert first_bad_sample(many_large) is None
