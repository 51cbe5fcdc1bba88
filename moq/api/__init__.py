"""The public async API: connect to a relay or serve, publish tracks, subscribe, fetch.

session = await moq.api.connect("moqt://localhost:4443/moq", fingerprint=...)
sub = await session.subscribe("live/demo", "video")
async for obj in sub: ...
"""

from moq.api.connect import connect, serve
from moq.api.session import MoqSession, NamespaceWatch, Subscription, namespace, track_name

__all__ = ["MoqSession", "NamespaceWatch", "Subscription", "connect", "namespace", "serve", "track_name"]
