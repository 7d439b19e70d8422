"""The channel description and field groups in the pure core: validation, grouping, the engine's regrouping."""

from __future__ import annotations

import numpy as np
import pytest

from lrr_service.core import LRR, LRRSettings
from lrr_service.core.channels import MAX_FIELDS, ChannelDescription, ChannelDescriptionError
from lrr_service.core.codec import MAX_CHANNELS_BYTES, FrameError, decode_chunk, encode_chunk
from lrr_service.core.errors import ChannelsMismatchError, SettingsError
from lrr_service.core.vocabulary import ErrorCode, Regrouped


def data(n_channels: int = 6, n_samples: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_samples, n_channels)) + rng.standard_normal((n_samples, 1))


def test_groups_follow_first_appearance_and_values_of_other_types_never_match() -> None:
    described = ChannelDescription.from_dict({"fields": {"bank": ["B", "A", "B", 1, "1", True, 1]}})
    groups = described.groups_by(["bank"])
    assert groups is not None
    assert [g.tolist() for g in groups] == [[0, 2], [1], [3, 6], [4], [5]]
    assert described.groups_by(["absent"]) is None


def test_labels_can_be_grouped_by_as_the_label_field() -> None:
    described = ChannelDescription.from_dict({"labels": ["x", "y", "x"]})
    assert [g.tolist() for g in described.groups_by(["label"]) or []] == [[0, 2], [1]]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([1, 2], "must be a map"),
        ({"labels": ["a"], "fields": {"bank": [1, 2]}}, "labels has 1, fields.bank has 2"),
        ({"labels": "abc"}, "labels must be a list"),
        ({"fields": {"bank": [float("nan")]}}, "a finite number"),
        ({"fields": {"bank": [[1]]}}, "fields.bank[0] is list"),
        ({"fields": {"": [1]}}, "field name ''"),
        ({"fields": {f"f{i}": [1] for i in range(MAX_FIELDS + 1)}}, f"at most {MAX_FIELDS}"),
        ({"labels": ["x" * 257]}, "at most 256 characters"),
        ({"colour": [1]}, "unknown key(s) ['colour']"),
        ({}, "neither labels nor fields"),
        ({"labels": []}, "no channels"),
    ],
)
def test_a_malformed_description_says_what_was_expected(body: object, expected: str) -> None:
    with pytest.raises(ChannelDescriptionError) as refused:
        ChannelDescription.from_dict(body)
    assert expected in str(refused.value)


def test_field_name_settings_round_trip_and_mixed_specs_are_refused() -> None:
    assert LRRSettings.from_dict(LRRSettings(channel_groups="bank").to_dict()).channel_groups == "bank"
    assert LRRSettings(channel_groups=["array", "bank"]).to_dict()["channel_groups"] == ["array", "bank"]
    assert LRRSettings(channel_groups=("array", "bank")).group_fields == ("array", "bank")
    assert LRRSettings(channel_groups=[[0, 1]]).group_fields is None
    for mixed in (["bank", [1]], [[0], "bank"]):
        with pytest.raises(SettingsError, match="mixes"):
            LRRSettings(channel_groups=mixed)
    with pytest.raises(SettingsError, match="twice"):
        LRRSettings(channel_groups=["bank", "bank"])


def test_the_engine_regroups_fitted_weights_from_its_statistics() -> None:
    X = data()
    described = ChannelDescription.from_dict({"fields": {"bank": [0, 0, 0, 1, 1, 1]}})
    engine = LRR(LRRSettings(channel_groups="bank"), channels=described)
    engine.fit(X)
    reference = LRR(LRRSettings(channel_groups=[[0, 1, 2], [3, 4, 5]])).fit(X)
    assert engine.weights is not None and reference.weights is not None
    np.testing.assert_array_equal(engine.weights, reference.weights)
    outcome = engine.set_channels(ChannelDescription.from_dict({"fields": {"bank": [0] * 6}}))
    assert outcome is Regrouped.RESOLVED
    one_group = LRR().fit(X)
    assert one_group.weights is not None
    np.testing.assert_allclose(engine.weights, one_group.weights, rtol=1e-12, atol=1e-15)
    assert engine.grouping is not None and engine.grouping.source == "fields"
    with pytest.raises(ChannelsMismatchError):
        engine.set_channels(ChannelDescription.from_dict({"labels": ["a"] * 5}))
    assert engine.channels is not None and len(engine.channels) == 6  # the refusal changed nothing


def test_a_plan_made_before_a_change_is_refused() -> None:
    engine = LRR(LRRSettings(channel_groups="bank"))
    engine.fit(data())
    plan = engine.plan_channels(ChannelDescription.from_dict({"fields": {"bank": [0, 0, 0, 1, 1, 1]}}), None)
    engine.reset()
    with pytest.raises(ValueError, match="plan again"):
        engine.install_channels(plan)


def test_uploaded_weights_stay_pinned_through_a_regrouping() -> None:
    engine = LRR(LRRSettings(channel_groups="bank"))
    W = np.full((4, 4), 0.1)
    np.fill_diagonal(W, 0)
    engine.load_weights(W)
    outcome = engine.set_channels(ChannelDescription.from_dict({"fields": {"bank": [0, 0, 1, 1]}}))
    assert outcome is Regrouped.UPLOADED_KEPT
    assert engine.weights_source == "uploaded" and np.array_equal(engine.weights, W)  # type: ignore[arg-type]


def test_the_snapshot_keeps_the_description() -> None:
    described = ChannelDescription.from_dict(
        {"labels": list("abc"), "fields": {"bank": [1, 1, 2], "x": [0.5, 1.5, None]}}
    )
    engine = LRR(LRRSettings(channel_groups="bank"), channels=described)
    engine.fit(data(3))
    restored = LRR.restore(*engine.snapshot())
    assert restored.channels == described
    assert restored.grouping is not None and [g.tolist() for g in restored.grouping.groups] == [[0, 1], [2]]


def test_a_frame_carries_a_description_of_its_own_channels() -> None:
    described = ChannelDescription.from_dict({"labels": ["a", "b"]})
    chunk = decode_chunk(encode_chunk(1, np.zeros((3, 2), "<f4"), channels=described), max_channels=8)
    assert chunk.channels == described
    with pytest.raises(ValueError, match="describes 2 channels but data has 3"):
        encode_chunk(1, np.zeros((3, 3), "<f4"), channels=described)


def test_an_oversized_description_is_refused_before_it_is_read() -> None:
    huge = ChannelDescription.from_dict({"fields": {f"f{i}": ["x" * 256] * 200 for i in range(32)}})
    frame = encode_chunk(3, np.zeros((1, 200), "<f4"), channels=huge)
    with pytest.raises(FrameError) as refused:
        decode_chunk(frame, max_channels=4096)
    assert refused.value.code is ErrorCode.BAD_CHANNELS and refused.value.seq == 3
    assert f"at most {MAX_CHANNELS_BYTES}" in refused.value.message
