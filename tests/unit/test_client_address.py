"""Which address a per-client limit counts: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

from gateway.login_throttle import client_address


def test_the_peer_counts_without_trusted_proxies() -> None:
    assert client_address("198.51.100.7", "203.0.113.5", []) == "198.51.100.7"


def test_a_trusted_proxy_names_the_client() -> None:
    assert client_address("10.0.0.2", "203.0.113.5", ["10.0.0.0/8"]) == "203.0.113.5"


def test_a_client_cannot_spoof_by_prepending_addresses() -> None:
    forwarded = "1.2.3.4, 203.0.113.5, 10.0.0.3"
    assert client_address("10.0.0.2", forwarded, ["10.0.0.0/8"]) == "203.0.113.5"


def test_an_untrusted_peer_forwarding_is_ignored() -> None:
    assert client_address("198.51.100.7", "203.0.113.5", ["10.0.0.0/8"]) == "198.51.100.7"
    assert client_address(None, None, []) == "unknown"
