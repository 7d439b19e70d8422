"""StreamChannel in-process on a real app context: what an `internal` reply says when a fault hits mid-chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from lrr_service.core.codec import AckReply, ErrorReply, decode_reply, encode_chunk
from lrr_service.service.app import create_app
from lrr_service.service.config import ServiceSettings
from lrr_service.service.context import ServiceContext
from lrr_service.service.stream import StreamChannel


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[ServiceContext]:
    """The context of a real app (not started: no sockets), with its lane stopped afterwards."""
    app = create_app(ServiceSettings(state_dir=tmp_path / "state"))
    context: ServiceContext = app.state.context
    try:
        yield context
    finally:
        context.lane.shutdown()


def failing(*args: object) -> None:
    raise MemoryError("injected fault")


async def send(channel: StreamChannel, seq: int, data: np.ndarray) -> AckReply | ErrorReply:
    reply = decode_reply(await channel.on_binary(encode_chunk(seq, data)))
    assert isinstance(reply, (AckReply, ErrorReply))
    return reply


async def test_a_fault_after_the_reset_says_the_session_changed(context: ServiceContext) -> None:
    channel = StreamChannel("rig", "fit", context)
    assert isinstance(await send(channel, 0, np.ones((5, 4))), AckReply)
    session = context.registry.require("rig")
    session.engine.bind = failing  # type: ignore[method-assign]  # the fault strikes after the reset
    reply = await send(channel, 1, np.ones((5, 6)))
    assert isinstance(reply, ErrorReply) and (reply.code, reply.seq) == ("internal", 1)
    assert "not applied" in reply.message and "may have been reset" in reply.message
    assert "GET /streams/rig" in reply.message
    assert session.engine.n_channels is None and session.counters.resets == 1  # what the message warned of


async def test_a_fault_that_changed_nothing_says_so(context: ServiceContext) -> None:
    channel = StreamChannel("rig", "fit", context)
    assert isinstance(await send(channel, 0, np.ones((5, 4))), AckReply)
    session = context.registry.require("rig")
    session.engine.accumulate = failing  # type: ignore[method-assign]
    reply = await send(channel, 1, np.ones((5, 4)))
    assert isinstance(reply, ErrorReply) and reply.code == "internal"
    assert reply.message.endswith("it was not applied and the session is as before")
    assert (session.engine.n_channels, session.engine.n_samples, session.counters.resets) == (4, 5, 0)
