"""The Host and Origin rules of service/sites.py, on their own (the gate's use of them: test_hardening_http)."""

from __future__ import annotations

import pytest

from lrr_service.service.config import ServiceSettings
from lrr_service.service.sites import SitePolicy, host_name


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("rig.lab.example.:443", "rig.lab.example"),
        ("rig.local", "rig.local"),
    ],
)
def test_host_name_drops_port_brackets_case_and_trailing_dot(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_loopback_server_answers_only_to_loopback_names_by_default() -> None:
    policy = SitePolicy.from_settings(ServiceSettings(host="127.0.0.1"))
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.2", None):
        assert policy.host_allowed(host), host
    for host in ("attacker.example:8000", "127.0.0.1.attacker.example", "0.0.0.0:8000", "192.168.1.5"):
        assert not policy.host_allowed(host), host


def test_other_hosts_answer_to_any_name_unless_a_list_is_given() -> None:
    assert SitePolicy.from_settings(ServiceSettings(host="0.0.0.0")).host_allowed("anything.example")
    listed = SitePolicy.from_settings(ServiceSettings(host="0.0.0.0", allowed_hosts="Rig.Lab, 10.0.0.5"))
    assert listed.host_allowed("rig.lab:8000") and listed.host_allowed("10.0.0.5")
    assert not listed.host_allowed("127.0.0.1:8000") and not listed.host_allowed("evil.example")
    assert SitePolicy.from_settings(ServiceSettings(allowed_hosts="*")).host_allowed("evil.example")


def test_origins_are_the_servers_own_or_listed() -> None:
    policy = SitePolicy.from_settings(ServiceSettings(allowed_origins="https://Lab.Example:8443/"))
    assert policy.origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert policy.origin_allowed("https://lab.example:8443", "127.0.0.1:8000")
    assert not policy.origin_allowed("https://evil.example", "127.0.0.1:8000")
    assert not policy.origin_allowed("http://127.0.0.1:9000", "127.0.0.1:8000")  # another port is another origin
    assert not policy.origin_allowed("null", "127.0.0.1:8000")
    assert not policy.origin_allowed("http://127.0.0.1:8000", None)
