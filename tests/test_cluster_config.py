"""What `serve --workers N` starts, read from its parts: HAProxy's configuration and the workers' command line."""

from __future__ import annotations

from lrr_service.service.__main__ import worker_arguments
from lrr_service.service.config import ServiceSettings
from lrr_service.service.launcher import haproxy_config, redis_command, worker_address


def test_haproxy_routes_by_the_key_to_workers_on_the_listening_address() -> None:
    config = haproxy_config(ServiceSettings(host="10.1.2.3", port=8000, api_token="s3cret"), [8001, 8002])
    assert "bind 10.1.2.3:8000" in config
    assert "server w1 10.1.2.3:8001 check" in config and "server w2 10.1.2.3:8002 check" in config
    assert "http-request set-var(txn.key) path,field(3,/)" in config
    assert "balance hash var(txn.key)" in config and "hash-type consistent" in config
    assert "http-request set-header X-LRR-Routed 1" in config
    assert 'hdr Host 10.1.2.3 hdr Authorization "Bearer s3cret"' in config
    assert "timeout tunnel 1h" in config and "option http-no-delay" in config


def test_a_wildcard_host_is_reached_on_loopback_and_no_token_sends_no_header() -> None:
    config = haproxy_config(ServiceSettings(host="0.0.0.0", port=9000), [9001])
    assert worker_address("0.0.0.0") == "127.0.0.1"
    assert "server w1 127.0.0.1:9001 check" in config
    assert "Authorization" not in config


def test_workers_get_every_flag_but_those_the_launcher_sets_for_each() -> None:
    argv = [
        "serve",
        "--workers",
        "4",
        "--port=8000",
        "--max-channels",
        "512",
        "--store-url",
        "redis://x",
        "--advertise-url=http://a:1",
        "--api-token",
        "t",
    ]
    assert worker_arguments(argv) == ["--max-channels", "512", "--api-token", "t"]


def test_the_launched_redis_fsyncs_every_write_to_its_append_only_file(tmp_path) -> None:
    command = redis_command(6400, tmp_path)
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert command[command.index("--bind") + 1] == "127.0.0.1"
    assert command[command.index("--dir") + 1] == str(tmp_path)
