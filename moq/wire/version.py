"""The drafts this codec speaks, and how they are named on the wire.

The draft is a parameter of every codec function, never a subclass (DESIGN.md, decision 1). Every per-draft
difference is looked up from the tables here and in `moq.wire.drafts`; adding a draft is adding rows.
"""

from __future__ import annotations

from enum import IntEnum


class Version(IntEnum):
    """A negotiated draft of draft-ietf-moq-transport, by its draft number."""

    DRAFT_18 = 18
    DRAFT_20 = 20
    DRAFT_21 = 21
    DRAFT_22 = 22

    @property
    def alpn(self) -> str:
        """The ALPN / WT-Protocol token: `moqt-NN` (draft-22 §6.1)."""
        return f"moqt-{self.value}"

    @property
    def family(self) -> int:
        """The wire family: drafts 20, 21 and 22 share one codec (draft-21 App. A.1); 18 is its own."""
        return 20 if self.value >= 20 else self.value

    @classmethod
    def from_alpn(cls, alpn: str) -> Version | None:
        """The draft named by an ALPN token, or None for a token we do not speak."""
        for version in cls:
            if version.alpn == alpn:
                return version
        return None


#: The drafts we offer, best first: negotiation picks the first one the peer also offers.
SUPPORTED_VERSIONS: tuple[Version, ...] = (Version.DRAFT_22, Version.DRAFT_21, Version.DRAFT_20, Version.DRAFT_18)


def choose_version(ours: tuple[Version, ...], theirs: list[str] | tuple[str, ...]) -> Version | None:
    """The best of `ours` (our order of preference) that the peer also offered as an ALPN token."""
    offered = set(theirs)
    for version in ours:
        if version.alpn in offered:
            return version
    return None
