"""Foreign check: our client, against aiomoqt's relay (picoquic, a stack that shares no code with ours).

Our publisher announces a namespace (PUBLISH_NAMESPACE) and serves a track; our subscriber SUBSCRIBEs through
their relay and gets every object, over raw QUIC and WebTransport, at drafts 22 and 18.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from interop.peers import Aiomoqt, aiomoqt_relay, find_aiomoqt
from moq.api import connect
from moq.model import CachedObject, Track
from moq.transport.tls import generate_dev_certificate
from moq.wire.version import Version

PEER = find_aiomoqt()
pytestmark = pytest.mark.skipif(
    PEER is None and not os.environ.get("MOQ_REQUIRE_PEERS"),
    reason="aiomoqt is not installed (python -m interop.peers install; make test does it)",
)


@pytest.fixture(scope="module")
def peer() -> Aiomoqt:
    assert PEER is not None, "MOQ_REQUIRE_PEERS is set but aiomoqt is not installed"
    return PEER


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("certs")
    bundle = generate_dev_certificate()
    bundle.save(directory / "cert.pem", directory / "key.pem")
    return directory / "cert.pem", directory / "key.pem"


@pytest.mark.parametrize("kind", ["quic", "webtransport"])
@pytest.mark.parametrize("version", [Version.DRAFT_22, Version.DRAFT_18], ids=lambda v: f"draft-{v.value}")
def test_publish_namespace_and_subscribe_through_aiomoqt(
    peer: Aiomoqt, cert_files: tuple[Path, Path], kind: str, version: Version
) -> None:
    async def scenario() -> list[tuple[int, int, bytes]]:
        async with aiomoqt_relay(peer, *cert_files) as port:
            url = f"moqt://127.0.0.1:{port}/" if kind == "quic" else f"https://127.0.0.1:{port}/"
            publisher = await connect(url, verify=False, versions=(version,))
            subscriber = await connect(url, verify=False, versions=(version,))
            async with publisher, subscriber:
                assert publisher.version is version and subscriber.version is version
                track = publisher.add_track(Track((b"moq-test", b"interop"), b"test-track"))
                await publisher.publish_namespace(track.namespace)
                sub = await subscriber.subscribe(track.namespace, "test-track")
                for group in range(3):
                    for oid in range(4):
                        track.append(CachedObject(group, 0, oid, b"object %d/%d" % (group, oid)))
                    track.end_subgroup(group, 0)
                got: list[tuple[int, int, bytes]] = []
                async for obj in sub:
                    got.append((obj.group_id, obj.object_id, obj.payload))
                    if len(got) == 12:
                        break
                return got

    got = asyncio.run(asyncio.wait_for(scenario(), 40))
    for group in range(3):
        assert [o for o in got if o[0] == group] == [(group, oid, b"object %d/%d" % (group, oid)) for oid in range(4)]
