"""Channel descriptions and groups by field, against the real server: REST, chunk frames, restarts."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from live_server import exchange

from lrr_service.clients import LRRClient
from lrr_service.core.codec import AckReply, ChunkReply, ErrorReply, encode_chunk

N = 9
BANKS = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
BANK_GROUPS = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
DESCRIPTION = {"labels": [f"e{i}" for i in range(N)], "fields": {"bank": BANKS}}


def recording(seed: int = 0, n_samples: int = 600, n_channels: int = N) -> np.ndarray:
    """Samples with noise common to all channels and to each bank, so groupings give different weights."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n_samples, n_channels)) + 2 * rng.standard_normal((n_samples, 1))
    for start in range(0, n_channels, 3):
        data[:, start : start + 3] += rng.standard_normal((n_samples, 1))
    return data


async def fitted_weights(client: LRRClient, data: np.ndarray) -> np.ndarray:
    """Fit `data` in 100-sample chunks, solve, and return W as the server holds it."""
    async for _ in client.fit_stream(np.array_split(data, len(data) // 100)):
        pass
    await client.solve()
    return await client.get_weights()


def put(server: Any, path: str, body: object) -> Any:
    with server.http() as http:
        return http.put(path, json=body)


def get(server: Any, path: str) -> dict[str, Any]:
    with server.http() as http:
        response = http.get(path)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_bank_field_groups_exactly_like_the_explicit_groups(shared_server: Any, stream_key: str) -> None:
    data = recording()
    by_field, explicit = f"{stream_key}-field", f"{stream_key}-explicit"
    assert put(shared_server, f"/streams/{by_field}", {"channel_groups": "bank"}).status_code == 201
    assert put(shared_server, f"/streams/{explicit}", {"channel_groups": BANK_GROUPS}).status_code == 201
    described = put(shared_server, f"/streams/{by_field}/channels", DESCRIPTION)
    assert described.status_code == 200, described.text
    assert described.json()["regrouped"] == "unbound"  # no channel count yet
    async with LRRClient(shared_server.url, by_field) as a, LRRClient(shared_server.url, explicit) as b:
        W_field, W_explicit = await fitted_weights(a, data), await fitted_weights(b, data)
    np.testing.assert_array_equal(W_field, W_explicit)
    assert np.all(W_field[np.ix_([0, 1, 2], [3, 4, 5, 6, 7, 8])] == 0)
    view = get(shared_server, f"/streams/{by_field}/channels")
    assert view["channels"] == DESCRIPTION
    assert view["groups"] == BANK_GROUPS
    assert view["grouping"] == {"source": "fields", "fallback": None, "n_groups": 3, "sizes": [3, 3, 3]}


async def test_a_tuple_of_fields_groups_by_their_combination(shared_server: Any, stream_key: str) -> None:
    arrays = ["left"] * 6 + ["right"] * 6
    banks = [1, 1, 1, 2, 2, 2] * 2
    assert put(shared_server, f"/streams/{stream_key}", {"channel_groups": ["array", "bank"]}).status_code == 201
    put(shared_server, f"/streams/{stream_key}/channels", {"fields": {"array": arrays, "bank": banks}})
    async with LRRClient(shared_server.url, stream_key) as client:
        await client.fit(recording(n_channels=12))
    view = get(shared_server, f"/streams/{stream_key}/channels")
    assert view["groups"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert view["grouping"]["source"] == "fields"


async def test_without_the_field_the_session_falls_back_to_block_size_and_says_so(
    shared_server: Any, stream_key: str
) -> None:
    settings = {"channel_groups": "bank", "block_size": 4}
    assert put(shared_server, f"/streams/{stream_key}", settings).status_code == 201
    put(shared_server, f"/streams/{stream_key}/channels", {"fields": {"array": [0] * N}})
    async with LRRClient(shared_server.url, stream_key) as client:
        await client.fit(recording())
    grouping = get(shared_server, f"/streams/{stream_key}")["grouping"]
    assert grouping["source"] == "block_size"
    assert grouping["sizes"] == [4, 4, 1]
    assert "no field 'bank'" in grouping["fallback"] and "array" in grouping["fallback"]
    no_description = f"{stream_key}-bare"
    put(shared_server, f"/streams/{no_description}", {"channel_groups": "bank"})
    async with LRRClient(shared_server.url, no_description) as client:
        await client.fit(recording())
    grouping = get(shared_server, f"/streams/{no_description}")["grouping"]
    assert grouping["source"] == "all" and grouping["sizes"] == [N]
    assert "no channel description" in grouping["fallback"]


async def test_a_description_that_changes_the_groups_resolves_from_the_statistics(
    shared_server: Any, stream_key: str
) -> None:
    data = recording(seed=3)
    new_banks = ["x"] * 4 + ["y"] * 5
    reference = f"{stream_key}-reference"
    put(shared_server, f"/streams/{stream_key}", {"channel_groups": "bank"})
    put(shared_server, f"/streams/{reference}", {"channel_groups": [[0, 1, 2, 3], [4, 5, 6, 7, 8]]})
    put(shared_server, f"/streams/{stream_key}/channels", DESCRIPTION)
    async with LRRClient(shared_server.url, stream_key) as client, LRRClient(shared_server.url, reference) as ref:
        before = await fitted_weights(client, data)
        version = (await client.info())["weights_version"]
        regrouped = await client.put_channels({"fields": {"bank": new_banks}})
        assert regrouped["regrouped"] == "resolved"
        assert regrouped["weights_version"] == version + 1
        assert regrouped["n_samples_solved"] == len(data)
        after, expected = await client.get_weights(), await fitted_weights(ref, data)
    assert not np.array_equal(before, after)
    np.testing.assert_allclose(after, expected, rtol=1e-12, atol=1e-14)
    # labels alone do not change the groups: nothing is solved again
    unchanged = put(
        shared_server, f"/streams/{stream_key}/channels", {"labels": list("abcdefghi"), "fields": {"bank": new_banks}}
    )
    assert unchanged.json()["regrouped"] == "unchanged"
    assert unchanged.json()["weights_version"] == version + 1


async def test_a_new_description_before_any_fit_gives_the_defaults_of_the_new_groups(
    shared_server: Any, stream_key: str
) -> None:
    put(shared_server, f"/streams/{stream_key}", {"channel_groups": "bank", "init_default": "car"})
    put(shared_server, f"/streams/{stream_key}/channels", DESCRIPTION)
    async with LRRClient(shared_server.url, stream_key) as client:
        await client.transform(recording(n_samples=10))
        regrouped = await client.put_channels({"fields": {"bank": ["one"] * N}})
        W = await client.get_weights()
    assert regrouped["regrouped"] == "defaults"
    assert regrouped["weights_source"] == "default"
    off_diagonal = W[~np.eye(N, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, 1 / (N - 1))  # leave-one-out average of all nine channels


async def test_a_description_of_another_channel_count_is_refused_and_changes_nothing(
    shared_server: Any, stream_key: str
) -> None:
    put(shared_server, f"/streams/{stream_key}", {"channel_groups": "bank"})
    put(shared_server, f"/streams/{stream_key}/channels", DESCRIPTION)
    async with LRRClient(shared_server.url, stream_key) as client:
        await fitted_weights(client, recording())
    before = get(shared_server, f"/streams/{stream_key}/channels")
    info = get(shared_server, f"/streams/{stream_key}")
    refused = put(shared_server, f"/streams/{stream_key}/channels", {"fields": {"bank": BANKS[:8]}})
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail["code"] == "channels_mismatch"
    assert "8 channels" in detail["message"] and "bound to 9" in detail["message"]
    assert get(shared_server, f"/streams/{stream_key}/channels") == before
    assert get(shared_server, f"/streams/{stream_key}")["weights_version"] == info["weights_version"]
    malformed = put(shared_server, f"/streams/{stream_key}/channels", {"labels": ["a"], "fields": {"bank": [1, 2]}})
    assert malformed.status_code == 422
    assert malformed.json()["detail"]["code"] == "bad_channels"
    assert "one entry per channel" in malformed.json()["detail"]["message"]
    assert get(shared_server, f"/streams/{stream_key}/channels") == before


async def test_chunks_of_another_channel_count_than_the_description_are_refused(
    shared_server: Any, stream_key: str
) -> None:
    put(shared_server, f"/streams/{stream_key}/channels", DESCRIPTION)
    async with shared_server.connect(stream_key, "fit") as ws:
        reply = await exchange(ws, encode_chunk(0, recording(n_channels=8)))
        assert isinstance(reply, ErrorReply) and reply.code == "channels_mismatch"
        assert "9 channels but the chunk has 8" in reply.message
        ok = await exchange(ws, encode_chunk(1, recording(n_channels=9)))
        assert isinstance(ok, AckReply)
    assert get(shared_server, f"/streams/{stream_key}")["n_channels"] == N


async def test_a_frame_carries_the_description_when_it_changes(shared_server: Any, stream_key: str) -> None:
    put(shared_server, f"/streams/{stream_key}", {"channel_groups": "bank"})
    data = recording(seed=5)
    async with LRRClient(shared_server.url, stream_key) as client:
        client.set_channels(DESCRIPTION)
        replies = [reply async for reply in client.stream("fit", np.array_split(data, 6))]
        assert [r.regrouped for r in replies] == ["unbound"] + [None] * 5
        await client.solve()
        client.set_channels({"fields": {"bank": ["p"] * 5 + ["q"] * 4}})
        reply = await client.request("fit_transform", data[:30])
        assert isinstance(reply, ChunkReply) and reply.regrouped == "resolved"
        assert (await client.get_channels()).fields["bank"] == ("p",) * 5 + ("q",) * 4  # type: ignore[union-attr]
    view = get(shared_server, f"/streams/{stream_key}/channels")
    assert view["groups"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]


async def test_a_frame_whose_description_does_not_fit_its_chunk_is_refused(shared_server: Any, stream_key: str) -> None:
    data = np.zeros((2, 3), dtype="<f4")
    frame = {"seq": 4, "shape": [2, 3], "dtype": "<f4", "data": data.tobytes(), "channels": {"labels": ["a", "b"]}}
    async with shared_server.connect(stream_key, "transform") as ws:
        reply = await exchange(ws, msgpack.packb(frame))
    assert isinstance(reply, ErrorReply) and reply.code == "bad_channels" and reply.seq == 4
    assert "describes 2 channels but the chunk has 3" in reply.message
    with shared_server.http() as http:
        assert http.get(f"/streams/{stream_key}").status_code == 404  # nothing was created


async def test_the_description_survives_a_restart(server_factory: Any, stream_key: str) -> None:
    server = server_factory()
    put(server, f"/streams/{stream_key}", {"channel_groups": "bank"})
    put(server, f"/streams/{stream_key}/channels", DESCRIPTION)
    async with LRRClient(server.url, stream_key) as client:
        W = await fitted_weights(client, recording())
    before = get(server, f"/streams/{stream_key}/channels")
    server.restart()
    assert get(server, f"/streams/{stream_key}/channels") == before
    async with LRRClient(server.url, stream_key) as client:
        np.testing.assert_array_equal(await client.get_weights(), W)
        removed = await client.delete_channels()
    assert removed["regrouped"] == "resolved"  # back to one group: solved again from the statistics
    assert removed["grouping"]["source"] == "all" and removed["channels"] is None


@pytest.mark.parametrize("body", [{"labels": [1, 2]}, {"fields": {"b a d": [1]}}, {}, {"fields": {"x": [[1]]}}])
def test_malformed_descriptions_are_refused_with_what_was_expected(
    shared_server: Any, stream_key: str, body: dict[str, Any]
) -> None:
    refused = put(shared_server, f"/streams/{stream_key}/channels", body)
    assert refused.status_code == 422, refused.text
    with shared_server.http() as http:
        assert http.get(f"/streams/{stream_key}").status_code == 404
