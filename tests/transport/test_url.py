"""MOQT URL parsing (draft-ietf-moq-transport §6.1). No sockets."""

from __future__ import annotations

import pytest

from moq.transport import parse_url


def test_moqt_url_gives_authority_and_path_for_setup() -> None:
    url = parse_url("moqt://relay.example:4443/live/room?token=abc#track:video")
    assert (url.scheme, url.host, url.port) == ("moqt", "relay.example", 4443)
    assert url.authority == "relay.example:4443"
    assert url.path == "/live/room?token=abc"  # path-abempty "?" query
    assert url.fragment == "track:video"  # processed locally, never sent
    assert not url.webtransport


def test_defaults_and_ipv6() -> None:
    url = parse_url("moqt://relay.example")
    assert (url.port, url.path, url.authority) == (443, "", "relay.example")
    url = parse_url("https://[::1]:8443/moq")
    assert (url.host, url.port, url.authority, url.path) == ("::1", 8443, "[::1]:8443", "/moq")
    assert url.webtransport
    assert parse_url("moqt://user@relay.example:1/x").authority == "relay.example:1"


@pytest.mark.parametrize("bad", ["http://relay.example/", "moqt:///path", "moqt://relay.example:99999/", "relay"])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_url(bad)
