"""Weights uploads hold W (zero diagonal) or, with form=i_minus_w, I - W: the rule, its messages in each
interface's terms (query parameter, Python argument, CLI flag), and what stays exact; against the real server."""

from __future__ import annotations

import asyncio
import inspect
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from cli_runner import run_lrr as lrr
from in_process import InProcessServer
from live_server import HTTP, LiveServer, exchange

from lrr_service.clients import LRRClient, LRRClientSync, errors
from lrr_service.core.codec import ChunkReply, encode_chunk
from lrr_service.core.errors import WeightsError
from lrr_service.core.weights_csv import format_weights_csv
from lrr_service.core.weights_form import (
    DIAGONAL_TOLERANCE,
    DiagonalError,
    Interface,
    check_form,
    restate,
    weights_from_upload,
)

CSV_LIMIT = 65536
MEAN_OF_OTHERS = (np.ones((3, 3)) - np.eye(3)) / 2
"""W = (J - I) / 2: each of 3 channels predicted as the mean of the other two."""
REREFERENCING = np.eye(3) - MEAN_OF_OTHERS
"""M = I - W for MEAN_OF_OTHERS: ones on the diagonal, -0.5 elsewhere."""
SAMPLE = np.array([[1.0, 2.0, 3.0]])
REREFERENCED = np.array([[-1.5, 0.0, 1.5]])
"""SAMPLE @ REREFERENCING: each channel minus the mean of the other two."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = InProcessServer(tmp_path_factory.mktemp("form") / "lrr-state", env={"LRR_MAX_CSV_BYTES": str(CSV_LIMIT)})
    yield live.start()
    live.stop()


def random_weights(n: int, seed: int) -> np.ndarray:
    """A valid W (zero diagonal) whose values need all 17 significant digits."""
    W = np.random.default_rng(seed).standard_normal((n, n)) / 7
    np.fill_diagonal(W, 0.0)
    return W


async def transformed(server: LiveServer, key: str, X: np.ndarray) -> np.ndarray:
    """The session's transform of X (float64), through its websocket."""
    async with server.connect(key, "transform") as ws:
        reply = await exchange(ws, encode_chunk(0, X))
    assert isinstance(reply, ChunkReply), reply
    return reply.data


def state(http: httpx.Client, key: str) -> tuple[object, ...]:
    """What a refused upload must leave alone: weights version and source, counters, and W's bytes."""
    session = http.get(f"/streams/{key}").json()
    served = http.get(f"/streams/{key}/weights").content
    return session["weights_version"], session["weights_source"], session["counters"], session["n_channels"], served


# -- the rule, in core ----------------------------------------------------------------------------


def test_a_zero_diagonal_w_is_taken_as_it_is_and_the_tolerance_is_inclusive() -> None:
    W = random_weights(5, seed=1)
    assert weights_from_upload(W, "w") is W  # not copied, not rounded: bit-exact
    W[1, 1], W[2, 2], W[3, 3] = DIAGONAL_TOLERANCE, -DIAGONAL_TOLERANCE, -0.0
    assert weights_from_upload(W, "w") is W  # kept as uploaded, not set to zero
    W[4, 4] = np.nextafter(DIAGONAL_TOLERANCE, 1.0)
    with pytest.raises(DiagonalError) as refused:
        weights_from_upload(W, "w")
    assert (refused.value.index, refused.value.value) == (4, W[4, 4])
    assert "W[4, 4] (data row 5, column 5)" in str(refused.value)


def test_i_minus_w_gives_w_exactly() -> None:
    W = random_weights(7, seed=2)
    W[0, 1], W[1, 0] = 5e-324, -1.7976931348623157e308  # a subnormal and the largest magnitude
    derived = weights_from_upload(np.eye(7) - W, "i_minus_w")
    assert derived.tobytes() == W.tobytes()
    assert weights_from_upload(REREFERENCING, "i_minus_w").tobytes() == MEAN_OF_OTHERS.tobytes()


def test_i_minus_w_keeps_a_diagonal_within_the_tolerance_and_turns_negative_zeros_positive() -> None:
    M = np.eye(3) - MEAN_OF_OTHERS
    M[0, 0] = 1.0 - 2.0**-45  # 2.8e-14 from one: exactly 1 - M[0, 0] in W
    M[1, 2], M[2, 1] = -0.0, 0.0
    uploaded = M.copy()
    W = weights_from_upload(M, "i_minus_w")
    assert W[0, 0] == 2.0**-45 and W[1, 1] == 0.0
    assert W[1, 2] == W[2, 1] == 0.0 and not np.signbit(W[[1, 2], [2, 1]]).any()  # no -0.0 in the download
    assert M.tobytes() == uploaded.tobytes()  # the upload itself is not modified


def test_each_form_refuses_the_other_naming_the_first_entry_and_how_to_upload_it() -> None:
    with pytest.raises(DiagonalError) as as_w:
        weights_from_upload(REREFERENCING, "w")
    message = str(as_w.value)
    for fragment in ("W[0, 0] (data row 1, column 1) is 1.0", "zero diagonal", "never predicted from itself"):
        assert fragment in message
    assert "I - W" in message and message.endswith("upload it with ?form=i_minus_w")
    M = REREFERENCING.copy()
    M[2, 2] = 0.75
    with pytest.raises(DiagonalError) as as_m:
        weights_from_upload(M, "i_minus_w", Interface.CLI)
    message = str(as_m.value)
    assert "M[2, 2] (data row 3, column 3) is 0.75" in message and "W[2, 2] = 1 - M[2, 2] would be 0.25" in message
    assert "ones on its diagonal" in message and message.endswith("upload it without --i-minus-w")
    with pytest.raises(WeightsError, match=r"shape \(2, 3\)"):
        weights_from_upload(np.zeros((2, 3)), "w")


def test_a_message_is_restated_in_each_interfaces_terms_and_others_stay_as_they_are() -> None:
    with pytest.raises(DiagonalError) as refused:
        weights_from_upload(REREFERENCING, "w")
    server_says = str(refused.value)
    in_python = restate(server_says, Interface.PYTHON)
    assert in_python.endswith('upload it with form="i_minus_w"') and "?form" not in in_python
    assert restate(in_python, Interface.CLI).endswith("upload it with --i-minus-w")
    assert restate(restate(in_python, Interface.CLI), Interface.QUERY) == server_says
    other = "the session's settings cannot take 5 channels; ?form=i_minus_w is not the point"
    assert restate(other, Interface.CLI) == other


@pytest.mark.parametrize("form", ["W", "I-W", "", None, b"w", 0])
def test_only_the_two_forms_are_forms(form: object) -> None:
    with pytest.raises(ValueError, match=r"expected 'w' .* or 'i_minus_w'"):
        check_form(form)
    assert [check_form("w"), check_form("i_minus_w")] == ["w", "i_minus_w"]


# -- the server -----------------------------------------------------------------------------------


async def test_i_minus_w_uploaded_as_w_is_refused_and_the_session_keeps_its_weights(
    server: LiveServer, stream_key: str
) -> None:
    W = random_weights(3, seed=3)
    with server.http() as http:
        http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(W)).raise_for_status()
        before = state(http, stream_key)
        as_body = http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(REREFERENCING))
        as_file = http.put(
            f"/streams/{stream_key}/weights", files={"file": ("m.csv", format_weights_csv(REREFERENCING), "text/csv")}
        )
        after = state(http, stream_key)
    for refused in (as_body, as_file):
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert detail["code"] == "bad_weights"
        for fragment in ("W[0, 0]", "is 1.0", "zero diagonal", "never predicted from itself", "I - W"):
            assert fragment in detail["message"]
        assert detail["message"].endswith("?form=i_minus_w")
    assert after == before
    np.testing.assert_allclose(await transformed(server, stream_key, SAMPLE), SAMPLE @ (np.eye(3) - W), rtol=1e-15)


def test_a_refused_diagonal_creates_no_session(server: LiveServer, stream_key: str) -> None:
    with server.http() as http:
        refused = http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(REREFERENCING))
        assert refused.json()["detail"]["code"] == "bad_weights"
        assert http.get(f"/streams/{stream_key}").status_code == 404


async def test_form_i_minus_w_stores_w_and_the_transform_subtracts_the_mean_of_the_others(
    server: LiveServer, stream_key: str
) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(np.zeros((3, 3)))).raise_for_status()
        reply = http.put(f"/streams/{stream_key}/weights?form=i_minus_w", content=format_weights_csv(REREFERENCING))
        assert reply.status_code == 200, reply.text
        assert reply.json()["weights_source"] == "uploaded" and reply.json()["counters"]["weights_uploads"] == 2
        served = http.get(f"/streams/{stream_key}/weights").content  # W, not what was uploaded
        as_file = http.put(
            f"/streams/{stream_key}/weights",
            params={"form": "i_minus_w"},
            files={"file": ("m.csv", format_weights_csv(REREFERENCING), "text/csv")},
        )
        assert as_file.status_code == 200, as_file.text
    assert served == format_weights_csv(MEAN_OF_OTHERS).encode()
    assert np.array_equal(await transformed(server, stream_key, SAMPLE), REREFERENCED)


async def test_form_i_minus_w_refuses_a_matrix_without_ones_on_its_diagonal(
    server: LiveServer, stream_key: str
) -> None:
    with server.http() as http:
        http.put(f"/streams/{stream_key}/weights", content=format_weights_csv(MEAN_OF_OTHERS)).raise_for_status()
        before = state(http, stream_key)
        refused = http.put(f"/streams/{stream_key}/weights?form=i_minus_w", content=format_weights_csv(MEAN_OF_OTHERS))
        after = state(http, stream_key)
    assert refused.status_code == 422 and refused.json()["detail"]["code"] == "bad_weights"
    message = refused.json()["detail"]["message"]
    assert "M[0, 0] (data row 1, column 1) is 0.0" in message and "ones on its diagonal" in message
    assert message.endswith("upload it with ?form=w or without ?form")
    assert after == before
    assert np.array_equal(await transformed(server, stream_key, SAMPLE), REREFERENCED)


def test_an_unknown_form_is_refused_before_the_body_is_read(server: LiveServer, stream_key: str) -> None:
    too_large = b"0" * (CSV_LIMIT + 1)  # read, it would be 413 too_large
    with server.http() as http:
        refused = http.put(f"/streams/{stream_key}/weights?form=I-W", content=too_large)
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["query", "form"]
        assert "'w'" in error["msg"] and "'i_minus_w'" in error["msg"]
        assert http.get(f"/streams/{stream_key}").status_code == 404


def test_w_round_trips_bit_exactly_and_so_does_i_minus_w_written_in_full(server: LiveServer, stream_key: str) -> None:
    W = random_weights(9, seed=4)
    W[0, 1] = 5e-324
    near_zero = W.copy()
    near_zero[4, 4] = -DIAGONAL_TOLERANCE  # within the tolerance: stored as uploaded, not zeroed
    savetxt = io.StringIO()
    np.savetxt(savetxt, np.eye(9) - W, delimiter=",")  # numpy's default format, %.18e
    uploads = {
        "": format_weights_csv(W),
        "?form=w": format_weights_csv(near_zero),
        "?form=i_minus_w": format_weights_csv(np.eye(9) - W),
        "?form=i_minus_w&": savetxt.getvalue(),
    }
    served = {}
    with server.http() as http:
        for query, body in uploads.items():
            http.put(f"/streams/{stream_key}/weights{query}", content=body).raise_for_status()
            served[query] = http.get(f"/streams/{stream_key}/weights").content
    assert served[""] == format_weights_csv(W).encode()
    assert np.loadtxt(served[""].decode().splitlines(), delimiter=",").tobytes() == W.tobytes()
    assert served["?form=w"] == format_weights_csv(near_zero).encode()
    assert served["?form=i_minus_w"] == served["?form=i_minus_w&"] == served[""]


# -- the clients ----------------------------------------------------------------------------------


async def test_the_python_client_takes_form_and_names_its_argument_when_refused(server: LiveServer) -> None:
    async with LRRClient(server.url, "form-client") as client:
        with pytest.raises(errors.BadWeightsError) as refused:
            await client.put_weights(REREFERENCING)
        with pytest.raises(ValueError, match="'i_minus_w'"):
            await client.put_weights(REREFERENCING, form="I-W")
        with pytest.raises(errors.UnknownSessionError):
            await client.info()  # neither refusal made a session
        reply = await client.put_weights(REREFERENCING, form="i_minus_w")
        assert np.array_equal(await client.get_weights(), MEAN_OF_OTHERS)
        again = await client.rest.put_weights_csv(client.key, format_weights_csv(REREFERENCING), form="i_minus_w")
        with pytest.raises(errors.BadWeightsError) as refused_m:
            await client.rest.put_weights_csv(client.key, format_weights_csv(MEAN_OF_OTHERS), form="i_minus_w")
    assert refused.value.status == 422 and refused.value.code == "bad_weights"
    assert refused.value.message.endswith('upload it with form="i_minus_w"') and "?form" not in refused.value.message
    assert "W[0, 0]" in refused.value.message
    assert refused_m.value.message.endswith('upload it with form="w" (the default)')
    assert again["weights_version"] == reply["weights_version"] + 1


def test_the_blocking_client_takes_form_with_the_same_signature(server: LiveServer) -> None:
    for method in (LRRClient.put_weights, LRRClientSync.put_weights):
        assert inspect.signature(method).parameters["form"].default == "w"
    with LRRClientSync(server.url, "form-sync") as client:
        client.put_weights(REREFERENCING, form="i_minus_w")
        assert np.array_equal(client.get_weights(), MEAN_OF_OTHERS)


def test_the_cli_uploads_i_minus_w_with_its_flag_and_names_the_flag_when_refused(
    server: LiveServer, tmp_path: Path
) -> None:
    np.savetxt(tmp_path / "m.csv", REREFERENCING, delimiter=",")
    np.savetxt(tmp_path / "w.csv", MEAN_OF_OTHERS, delimiter=",")
    as_w = lrr("weights", "put", str(tmp_path / "m.csv"), "--key", "form-cli", url=server.url)
    put = lrr("weights", "put", "--i-minus-w", str(tmp_path / "m.csv"), "--key", "form-cli", "--json", url=server.url)
    as_m = lrr("weights", "put", str(tmp_path / "w.csv"), "--i-minus-w", "--key", "form-cli", url=server.url)
    for refused, words in ((as_w, "upload it with --i-minus-w"), (as_m, "upload it without --i-minus-w")):
        assert refused.returncode == 1 and refused.stdout == ""
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith("lrr weights: error: bad_weights: ") and words in line
        assert "?form" not in line and "form=" not in line
    assert put.returncode == 0, put.stderr
    assert HTTP.get(f"{server.url}/streams/form-cli/weights").content == format_weights_csv(MEAN_OF_OTHERS).encode()
    assert np.array_equal(asyncio.run(transformed(server, "form-cli", SAMPLE)), REREFERENCED)
    shown = lrr("weights", "put", "--help")
    assert "--i-minus-w" in shown.stdout and "I - W" in shown.stdout
