"""Every server error code becomes its own exception type carrying the server's code and message."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from live_server import HTTP

from lrr_service.clients import AsyncRestClient, LRRClient, ServerError, errors
from lrr_service.core.vocabulary import ErrorCode

FRAME_CODES = {
    ErrorCode.TEXT_FRAME: errors.TextFrameError,
    ErrorCode.BAD_MSGPACK: errors.BadMsgpackError,
    ErrorCode.NOT_A_MAP: errors.NotAMapError,
    ErrorCode.MISSING_FIELD: errors.MissingFieldError,
    ErrorCode.BAD_FIELD: errors.BadFieldError,
    ErrorCode.BAD_DTYPE: errors.BadDtypeError,
    ErrorCode.BAD_SHAPE: errors.BadShapeError,
    ErrorCode.SIZE_MISMATCH: errors.SizeMismatchError,
}

# Hand-made messages that break the contract in one way each; the reply must come back as the right type.
MALFORMED = {
    ErrorCode.TEXT_FRAME: "hello",
    ErrorCode.BAD_MSGPACK: b"\xc1",
    ErrorCode.NOT_A_MAP: msgpack.packb([1, 2, 3]),
    ErrorCode.MISSING_FIELD: msgpack.packb({"seq": 0, "shape": [1, 1], "dtype": "<f4"}),
    ErrorCode.BAD_FIELD: msgpack.packb({"seq": 0, "shape": [1, 1], "dtype": "<f4", "data": "text"}),
    ErrorCode.BAD_DTYPE: msgpack.packb({"seq": 0, "shape": [1, 1], "dtype": "<c8", "data": b"\0" * 8}),
    ErrorCode.BAD_SHAPE: msgpack.packb({"seq": 0, "shape": [1, 0], "dtype": "<f4", "data": b""}),
    ErrorCode.SIZE_MISMATCH: msgpack.packb({"seq": 0, "shape": [2, 4], "dtype": "<f4", "data": b"\0" * 24}),
}


def test_every_error_code_has_its_own_exception_type_that_keeps_code_message_and_seq():
    assert set(ErrorCode) <= {
        cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, ServerError)
    }
    for code in ErrorCode:
        error = errors.error_for(code, "what was wrong", seq=3)
        assert type(error).code == code and error.code == code
        assert (error.message, error.seq) == ("what was wrong", 3)
    assert len({type(errors.error_for(code, "")) for code in ErrorCode}) == len(ErrorCode)
    unknown = errors.error_for("brand_new_code", "later server", status=418)
    assert type(unknown) is ServerError and unknown.code == "brand_new_code" and unknown.status == 418


@pytest.mark.parametrize("code", sorted(MALFORMED))
async def test_malformed_frames_raise_their_frame_error_and_the_connection_stays_usable(shared_server, code):
    async with LRRClient(shared_server.url, f"errors-{code}", allow_identity=True) as client:
        channel = client.channel("transform")
        with pytest.raises(FRAME_CODES[code]) as caught:
            await channel.submit_encoded(0, MALFORMED[code])
        good = np.ones((2, 3))
        assert np.array_equal(await client.transform(good), good)
        assert channel.reconnects == 0
    assert caught.value.code == code and caught.value.message
    assert isinstance(caught.value, errors.FrameRejected)


async def test_non_finite_fit_chunk_raises_non_finite_and_changes_nothing(shared_server):
    async with LRRClient(shared_server.url, "errors-nan") as client:
        first = await client.fit(np.ones((4, 3)))
        bad = np.ones((4, 3))
        bad[2, 1] = np.nan
        with pytest.raises(errors.NonFiniteError) as caught:
            await client.fit(bad)
        after = await client.fit(np.ones((4, 3)))
    assert caught.value.seq == 1 and "NaN" in caught.value.message
    assert after.n_samples == first.n_samples + 4


async def test_limits_raise_too_many_channels_and_too_many_sessions(server_factory):
    server = server_factory(env={"LRR_MAX_CHANNELS": "4", "LRR_MAX_SESSIONS": "1"})
    async with LRRClient(server.url, "first", allow_identity=True) as client:
        with pytest.raises(errors.TooManyChannelsError):
            await client.transform(np.ones((2, 5)))
        await client.transform(np.ones((2, 4)))
    async with LRRClient(server.url, "second", allow_identity=True) as client:
        with pytest.raises(errors.TooManySessionsError):
            await client.fit(np.ones((2, 4)))
        with pytest.raises(errors.TooManySessionsError) as rest_refusal:
            await client.put_settings({})
    assert rest_refusal.value.status == 429


async def test_a_bad_key_is_refused_before_any_connection_with_the_servers_message(shared_server):
    """The clients check the key with the server's rule and message; the server's own refusal stays bad_key."""
    with pytest.raises(errors.BadKeyError) as by_client:
        LRRClient(shared_server.url, "not a key!")
    async with AsyncRestClient(shared_server.url) as rest:
        with pytest.raises(errors.BadKeyError) as by_rest_client:
            await rest.reset("not a key!")
    server_says = HTTP.post(f"{shared_server.url}/streams/not%20a%20key!/reset").json()["detail"]
    assert server_says["code"] == "bad_key"
    assert by_client.value.message == server_says["message"]
    assert "expected 1 to 128 characters" in by_rest_client.value.message


async def test_missing_or_wrong_token_raises_authentication_error(server_factory):
    server = server_factory(env={"LRR_API_TOKEN": "s3cret"})
    for token in (None, "wrong"):
        async with LRRClient(server.url, "auth", token, allow_identity=True) as client:
            with pytest.raises(errors.AuthenticationError) as on_websocket:
                await client.transform(np.ones((2, 3)))
            with pytest.raises(errors.AuthenticationError) as on_rest:
                await client.sessions()
        assert on_websocket.value.status == 403 and on_rest.value.status == 401
    async with LRRClient(server.url, "auth", "s3cret", allow_identity=True) as client:
        assert (await client.transform(np.ones((2, 3)))).shape == (2, 3)


async def test_oversized_frame_raises_frame_too_large_without_reconnect_loops(server_factory):
    server = server_factory(env={"LRR_MAX_FRAME_BYTES": "1024"})
    async with LRRClient(server.url, "big", allow_identity=True) as client:
        with pytest.raises(errors.FrameTooLargeError):
            await client.transform(np.ones((100, 10)))
        assert client.reconnects == 0
        assert (await client.transform(np.ones((2, 3)))).shape == (2, 3)  # a fresh connection serves small frames


async def test_rest_refusals_map_to_their_exceptions(shared_server):
    async with LRRClient(shared_server.url, "errors-rest") as client:
        with pytest.raises(errors.UnknownSessionError) as unknown:
            await client.reset()
        await client.put_settings({"ridge_lambda": 0.1})
        with pytest.raises(errors.NoFitDataError):
            await client.solve()
        with pytest.raises(errors.NoWeightsError):
            await client.get_weights()
        with pytest.raises(errors.BadCsvError) as bad_csv:
            await client.rest.put_weights_csv(client.key, "1,2\n3\n")
        await client.fit(np.random.default_rng(0).standard_normal((50, 4)))
        with pytest.raises(errors.SizeMismatchError) as mismatch:
            await client.put_weights(np.zeros((3, 3)))
        with pytest.raises(errors.InvalidRequestError) as bad_settings:
            await client.put_settings({"ridge_lambda": -1})
    assert unknown.value.status == 404 and "errors-rest" in unknown.value.message
    assert bad_csv.value.status == 422 and "line 2" in bad_csv.value.message
    assert mismatch.value.status == 409 and "replace=true" in mismatch.value.message
    assert bad_settings.value.status == 422 and "ridge_lambda" in bad_settings.value.message


async def test_settings_that_cannot_take_the_chunk_raise_settings_mismatch(shared_server):
    async with LRRClient(shared_server.url, "errors-groups") as client:
        await client.put_settings({"channel_groups": [[0, 1, 2, 7]]})
        with pytest.raises(errors.SettingsMismatchError) as caught:
            await client.fit(np.ones((3, 4)))
        assert (await client.info())["n_samples"] == 0
    assert caught.value.seq == 0


async def test_a_full_server_refuses_the_handshake_and_connection_lost_quotes_why(server_factory):
    server = server_factory(env={"LRR_MAX_CONNECTIONS": "1"})
    async with (
        LRRClient(server.url, "full-a", allow_identity=True) as first,
        LRRClient(server.url, "full-b", allow_identity=True) as second,
    ):
        assert (await first.transform(np.ones((2, 3)))).shape == (2, 3)  # holds the only websocket
        with pytest.raises(errors.ConnectionLost) as refused:
            await second.transform(np.ones((2, 3)))
    assert "HTTP 503" in str(refused.value) and "too_many_connections" in str(refused.value)
    assert refused.value.unanswered == (0,)


async def test_a_request_safe_to_repeat_is_sent_again_when_the_server_comes_back(tmp_path):
    """A request whose server is down for a moment (a cluster worker dying, the proxy moving the key) is sent
    again and answered; the service's own refusal is not repeated."""
    import asyncio
    import socket
    import threading

    from in_process import InProcessServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = InProcessServer(tmp_path / "state", port=port)
    starter = threading.Timer(0.3, server.start)
    starter.start()
    try:
        async with AsyncRestClient(f"http://127.0.0.1:{port}") as rest:
            assert await rest.sessions() == []  # refused at first, answered once the server is up
            with pytest.raises(errors.UnknownSessionError):
                await rest.solve("nobody")  # repeated while refused; then the service's own 404, not repeated
    finally:
        starter.join()
        await asyncio.get_running_loop().run_in_executor(None, server.stop)
