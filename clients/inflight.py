"""Bookkeeping of frames waiting for their replies (no I/O): which to send, which a reply answers.

Replies carry the frame's seq; a reply without seq (the server could not read the message) answers
the oldest frame sent on the current connection, because the server replies in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lrr_service.clients.errors import ConnectionLost, LRRClientError, ServerError, error_for
from lrr_service.core import codec

NOT_SENT = -1


@dataclass
class _Pending:
    """A frame awaiting its reply, and the connection generation it was last written to."""

    message: bytes | str
    future: asyncio.Future[codec.Reply]
    sent_on: int = NOT_SENT


class InFlight:
    """Frames by seq, in submission order, each with its reply's future."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}
        self.next_seq = 0
        self.generation = 0
        """Counts connections: a frame is 'sent' only if written to the current one."""

    def __len__(self) -> int:
        return len(self._pending)

    def seqs(self) -> tuple[int, ...]:
        """The seq of every frame still waiting, oldest first."""
        return tuple(self._pending)

    def unsent(self) -> int:
        """How many waiting frames are not written to the current connection."""
        return sum(1 for pending in self._pending.values() if pending.sent_on != self.generation)

    def add(self, seq: int, message: bytes | str, future: asyncio.Future[codec.Reply]) -> None:
        """Record a new frame; later automatic seq numbers continue after it."""
        if seq in self._pending:
            raise ValueError(f"seq {seq} is still waiting for its reply; expected a seq not in flight")
        self._pending[seq] = _Pending(message, future)
        self.next_seq = max(self.next_seq, seq + 1)

    def to_send(self, seq: int) -> bytes | str | None:
        """The frame to write for `seq`, or None if it was answered or is already on the current connection."""
        pending = self._pending.get(seq)
        if pending is None or pending.sent_on == self.generation:
            return None
        return pending.message

    def mark_sent(self, seq: int) -> None:
        """`seq` is now written to the current connection."""
        if seq in self._pending:
            self._pending[seq].sent_on = self.generation

    def start_connection(self, *, resend: bool) -> list[int]:
        """A new connection: the seqs to write again, oldest first.

        With `resend` off, frames written to a lost connection are failed with ConnectionLost instead,
        since the server may or may not have applied them; frames never written are always kept.
        """
        self.generation += 1
        if not resend:
            for seq in [s for s, p in self._pending.items() if p.sent_on != NOT_SENT]:
                pending = self._pending.pop(seq)
                _settle(
                    pending.future,
                    ConnectionLost(
                        "the connection dropped before this frame was answered; it may or may not have been applied",
                        (seq,),
                    ),
                )
        return list(self._pending)

    def resolve(self, reply: codec.Reply) -> None:
        """Settle the future a reply answers: its result, or the ServerError of an error reply."""
        seq = reply.seq
        if seq is None:
            seq = next((s for s, p in self._pending.items() if p.sent_on == self.generation), None)
        pending = self._pending.pop(seq, None) if seq is not None else None
        if pending is None:
            return  # a late duplicate of a frame answered before a reconnect
        if isinstance(reply, codec.ErrorReply):
            _settle(pending.future, error_for(reply.code, reply.message, seq=seq))
        else:
            _settle(pending.future, reply)

    def fail_all(self, exc: LRRClientError) -> None:
        """Settle every waiting frame with a copy of `exc` (ConnectionLost lists them all, ServerError gets its seq)."""
        pending, self._pending = self._pending, {}
        for seq, item in pending.items():
            if isinstance(exc, ConnectionLost):
                error: Exception = ConnectionLost(exc.reason, tuple(pending))
            elif isinstance(exc, ServerError):
                error = error_for(exc.code, exc.message, seq=seq, status=exc.status)
            else:
                error = type(exc)(*exc.args)
            _settle(item.future, error)


def _settle(future: asyncio.Future[codec.Reply], outcome: codec.Reply | Exception) -> None:
    """Resolve `future` unless the caller already cancelled it."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
