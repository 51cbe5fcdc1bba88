"""The relay's configuration: one frozen struct, filled from `relay.toml` and then from command-line flags."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from moq.model import MAX_CACHE_BYTES, MAX_CACHE_GROUPS

#: Longest a SUBSCRIBE may wait for a publisher, whatever RENDEZVOUS_TIMEOUT it asks for (draft-22 §9.20.7).
MAX_RENDEZVOUS_SECONDS = 30.0
#: How long sessions get to leave after GOAWAY when the relay shuts down.
GOAWAY_GRACE_SECONDS = 2.0
#: Most relay worker processes (`workers`): one per core is the point, and a QUIC relay process wants a core to
#: itself; beyond this many the kernel's SO_REUSEPORT spreading and each worker's link to the hub cost more than
#: they bring (each worker is also some 50 MB of memory).
MAX_WORKERS = 64


class RelayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything `moq relay` can be told (flags override the file)."""

    bind: str = "::"
    port: int = 4443
    cert: str | None = None
    key: str | None = None
    state_dir: str = ".moq-relay"
    upstream: list[str] = msgspec.field(default_factory=list)
    #: Groups each track keeps cached (named bound: MAX_CACHE_GROUPS).
    cache_groups: int = MAX_CACHE_GROUPS
    #: Payload bytes each track keeps cached (named bound: MAX_CACHE_BYTES).
    cache_bytes: int = MAX_CACHE_BYTES
    #: How long a SUBSCRIBE for a track nobody publishes waits when it asks for no rendezvous itself (seconds).
    rendezvous_timeout: float = 0.0
    #: Accept WebTransport as well as raw QUIC on the port.
    webtransport: bool = True
    log_level: str = "info"
    #: Starting QUIC packet size; None = aioquic's safe 1200 (path MTU discovery may grow it; a known-good path).
    max_datagram_size: int | None = None
    #: Probe each connection's path and send 1452-byte packets where it and the peer take them (moq.transport.pmtu).
    path_mtu_discovery: bool = True
    #: Seconds sessions get to leave after GOAWAY when the relay shuts down.
    goaway_grace: float = GOAWAY_GRACE_SECONDS
    upstream_fingerprint: str | None = None
    upstream_insecure: bool = False
    #: TCP port of the web pages (the browser player, relay/web.py): HTTP, or HTTPS with `cert`; 0 = any free port.
    web_port: int = 8080
    #: The MOQT drafts offered, best first (22, 21, 20, 18).
    versions: list[int] = msgspec.field(default_factory=lambda: [22, 21, 20, 18])
    #: Relay processes sharing the port (SO_REUSEPORT), joined by a private hub (relay.cluster); 1 = one process.
    workers: Annotated[int, msgspec.Meta(ge=1, le=MAX_WORKERS)] = 1
    #: Forward the namespaces published here to the `upstream` relay and take its namespaces (an edge in front of
    #: an origin; always on for the workers of `workers` >= 2). See relay.relay.
    announce_upstream: bool = False


def load_config(path: str | Path | None, **overrides: object) -> RelayConfig:
    """The config in `path` (TOML; None: defaults), with the given overrides (None values ignored)."""
    data: dict[str, object] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        data = {k.replace("-", "_"): v for k, v in data.items()}
    for key, value in overrides.items():
        if value is not None and value != ():
            data[key] = list(value) if isinstance(value, tuple) else value
    return msgspec.convert(data, RelayConfig)
