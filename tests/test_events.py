"""GET /events: server-sent `streams` events about once a second, behind the API token, ending at shutdown."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx

from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.errors import ServiceError
from lrr_service.service.events import SharedBody, event


def read_events(client: httpx.Client, count: int, timeout: float = 10.0) -> list[tuple[str, dict]]:
    """The first `count` events (name, data) of GET /events."""
    events: list[tuple[str, dict]] = []
    name = None
    with client.stream("GET", "/events", timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name or "message", json.loads(line.removeprefix("data: "))))
                if len(events) == count:
                    break
    return events


def test_events_push_the_streams_body_every_second(shared_server, stream_key: str) -> None:
    with shared_server.http() as http:
        assert http.put(f"/streams/{stream_key}", json={}).status_code == 201
        started = time.monotonic()
        events = read_events(http, 3)
        elapsed = time.monotonic() - started
    assert [name for name, _ in events] == ["streams"] * 3
    assert 1.5 < elapsed < 6  # the first at once, then about one a second
    for _, body in events:
        assert set(body) == {"streams", "count", "max_sessions", "cluster"}
        entry = next(s for s in body["streams"] if s["key"] == stream_key)
        assert entry["status"]["connections"] == {"fit": 0, "transform": 0, "fit_transform": 0}
    with shared_server.http() as http:
        assert http.get("/streams").json()["count"] == events[-1][1]["count"]


def test_events_need_the_token_when_one_is_set(server_factory) -> None:
    server = server_factory(env={"LRR_API_TOKEN": "sesame"})
    with server.http(token="wrong") as http:
        refused = http.get("/events")
        assert refused.status_code == 401 and refused.json()["detail"]["code"] == "unauthorized"
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/events").status_code == 401
    with server.http() as http:
        assert [name for name, _ in read_events(http, 2)] == ["streams", "streams"]


def test_event_streams_are_limited_to_a_quarter_of_the_http_requests(server_factory) -> None:
    server = server_factory(env={"LRR_MAX_HTTP_REQUESTS": "4"})
    opened = threading.Event()
    done = threading.Event()

    def hold_one() -> None:
        with server.http() as http, http.stream("GET", "/events") as response:
            assert response.status_code == 200
            opened.set()
            done.wait(10)

    holder = threading.Thread(target=hold_one)
    holder.start()
    try:
        assert opened.wait(10)
        with server.http() as http:
            refused = http.get("/events")
            assert refused.status_code == 503 and refused.json()["detail"]["code"] == "too_many_requests"
            assert http.get("/streams").status_code == 200  # REST still answers
    finally:
        done.set()
        holder.join(10)
    deadline = time.monotonic() + 5
    while (status := status_of_events(server)) == 503:  # the slot comes back when the stream ends
        assert time.monotonic() < deadline, "the event stream's slot was not given back"
        time.sleep(0.05)
    assert status == 200  # asked again at once, it could be 503: the server may not have seen this one end yet


def status_of_events(server: object) -> int:
    """The status of GET /events (the stream is closed after its head)."""
    with server.http() as http, http.stream("GET", "/events") as response:  # type: ignore[attr-defined]
        return response.status_code


def test_an_open_event_stream_does_not_hold_up_shutdown(server_factory) -> None:
    server = server_factory()
    received = threading.Event()
    ended = threading.Event()

    def listen() -> None:
        try:
            with server.http() as http, http.stream("GET", "/events", timeout=30) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received.set()
        except httpx.HTTPError:
            pass
        ended.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert received.wait(10)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3  # not the 5 s graceful timeout
    assert ended.wait(5)  # the response ended (completed), the client saw its end


def test_event_frames_are_one_line_of_json() -> None:
    frame = event("streams", {"a": [1, 2], "b": None})
    assert frame == b'event: streams\ndata: {"a":[1,2],"b":null}\n\n'


# -- one body for every stream -----------------------------------------------------------------


class CountedBuild:
    """A body builder that counts its builds and takes `seconds` each; raises while `failing`."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.builds = 0
        self.failing = False

    async def __call__(self) -> dict:
        self.builds += 1
        number = self.builds
        await asyncio.sleep(self.seconds)
        if self.failing:
            raise ServiceError("the store is unreachable", code=ErrorCode.STORE_UNAVAILABLE)
        return {"build": number}


async def test_streams_asking_together_share_one_build_and_a_fresh_one_follows() -> None:
    build = CountedBuild()
    shared = SharedBody(build, fresh_seconds=0.2)
    bodies = await asyncio.gather(*(shared.get() for _ in range(16)))
    assert build.builds == 1 and bodies == [{"build": 1}] * 16
    assert await shared.get() == {"build": 1}  # done, but not stale yet
    await asyncio.sleep(0.25)
    assert await shared.get() == {"build": 2}
    assert build.builds == 2


async def test_a_stream_that_leaves_does_not_cancel_the_build_of_the_others() -> None:
    build = CountedBuild(seconds=0.2)
    shared = SharedBody(build, fresh_seconds=0.5)
    leaving = asyncio.ensure_future(shared.get())
    staying = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0.05)
    leaving.cancel()
    assert await staying == {"build": 1}
    assert leaving.cancelled() and build.builds == 1


async def test_a_failed_build_is_shared_and_the_next_one_is_tried_again() -> None:
    build = CountedBuild()
    build.failing = True
    shared = SharedBody(build, fresh_seconds=0.1)
    failures = await asyncio.gather(shared.get(), shared.get(), return_exceptions=True)
    assert [type(failure) for failure in failures] == [ServiceError, ServiceError] and build.builds == 1
    build.failing = False
    await asyncio.sleep(0.15)
    assert await shared.get() == {"build": 2}
