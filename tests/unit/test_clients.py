"""Who a request comes from (services/gateway/clients.py): the peer address, or behind trusted proxies the
right-most X-Forwarded-For address that is not one of them; IPv6 clients by their /64."""

from __future__ import annotations

import pytest

from artsearch.config import ConfigError, Env
from services.gateway.clients import client_of, trusted_proxies_from_env


def scope(peer: str, *forwarded: str) -> dict:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"type": "http", "client": (peer, 50000), "headers": headers}


PROXIES = trusted_proxies_from_env(Env({"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.10, fd00::/8"}))


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards():
    assert client_of(scope("203.0.113.5")) == "203.0.113.5"
    assert client_of(scope("203.0.113.5", "198.51.100.1")) == "203.0.113.5"
    assert client_of(scope("10.1.2.3", "198.51.100.1")) == "10.1.2.3"


def test_a_peer_that_is_not_a_trusted_proxy_cannot_choose_its_identity():
    assert client_of(scope("203.0.113.5", "198.51.100.1"), PROXIES) == "203.0.113.5"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        (["198.51.100.1"], "198.51.100.1"),
        # The client wrote the left part itself: only what the proxies appended counts.
        (["1.2.3.4, 198.51.100.1"], "198.51.100.1"),
        (["1.2.3.4, 198.51.100.1, 10.4.4.4"], "198.51.100.1"),  # a chain of trusted proxies
        (["1.2.3.4", "198.51.100.1, 192.168.1.10"], "198.51.100.1"),  # several headers, in order
        (["spoofed, not-an-address"], "not-an-address"),  # what the proxy wrote is the client
        (["10.9.9.9, 10.4.4.4"], "10.9.9.9"),  # started inside: the left-most
        ([], "10.0.0.2"),  # the proxy forwarded nothing: the proxy itself
        (["::ffff:198.51.100.1"], "198.51.100.1"),
    ],
)
def test_behind_trusted_proxies_the_right_most_untrusted_address_is_the_client(forwarded, client):
    assert client_of(scope("10.0.0.2", *forwarded), PROXIES) == client


def test_ipv6_clients_count_by_their_64_network():
    assert client_of(scope("2001:db8:1:2::7")) == "2001:db8:1:2::/64"
    assert client_of(scope("2001:db8:1:2:ffff::1")) == client_of(scope("2001:db8:1:2::7"))
    assert client_of(scope("2001:db8:1:3::7")) != client_of(scope("2001:db8:1:2::7"))
    assert client_of(scope("fd00::1", "2001:db8:5:6::9"), PROXIES) == "2001:db8:5:6::/64"


def test_a_request_without_a_peer_address_still_has_a_client():
    assert client_of({"type": "http", "client": None, "headers": []}) == "unknown"
    assert client_of({"type": "http", "headers": []}) == "unknown"


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "proxy.internal", "10.0.0.1,,nope"])
def test_a_malformed_trusted_proxy_stops_the_start(raw: str):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        trusted_proxies_from_env(Env({"TRUSTED_PROXIES": raw}))


def test_no_trusted_proxies_by_default():
    assert trusted_proxies_from_env(Env({})) == ()
