"""Weights files through the Python client against the real server: uploaded and saved byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from live_server import HTTP

from lrr_service.clients import LRRClient, errors

LATIN1_COMMENT_CSV = b"# gain in \xb5V (Latin-1, not UTF-8)\r\n0,0.5\r\n0.25,0\r\n"
"""A CSV whose comment is not UTF-8: the server must see these bytes and name the bad one."""


async def test_a_csv_file_is_uploaded_as_its_bytes_so_the_server_judges_them(shared_server, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(LATIN1_COMMENT_CSV)
    async with LRRClient(shared_server.url, "weights-bytes") as client:
        with pytest.raises(errors.BadCsvError) as refused:
            await client.put_weights(path)
        path.write_bytes(LATIN1_COMMENT_CSV.replace(b"\xb5", b"u"))  # ASCII, CRLF line ends kept
        reply = await client.put_weights(path)
    assert refused.value.status == 422 and "0xb5" in refused.value.message and "line 1" in refused.value.message
    assert reply["weights_source"] == "uploaded"


async def test_downloaded_weights_are_the_servers_bytes(shared_server, tmp_path):
    weights = np.array([[0.0, 1 / 3], [2 / 7, 0.0]])
    async with LRRClient(shared_server.url, "weights-download") as client:
        await client.put_weights(weights)
        path = await client.download_weights(tmp_path / "w.csv")
        assert np.array_equal(await client.get_weights(), weights)
    served = HTTP.get(f"{shared_server.url}/streams/weights-download/weights").content
    assert path.read_bytes() == served
    assert np.array_equal(np.loadtxt(path, delimiter=","), weights)
