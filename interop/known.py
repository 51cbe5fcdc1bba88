"""Known interop issues: why a matrix cell fails, whose side breaks the draft, the section, and the bytes.

Each entry was found by running the matrix here and reading the wire; `explain()` matches a failing case of a
cell to the entries that account for it, and the report renders them next to the failure. A failure nothing here
explains is shown as unexplained: that is a new finding, to be read and added (or fixed).

`status` says where the fix stands: "open" (reported, not fixed), "fixed" (kept so old reports still read right;
not matched any more).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownIssue:
    """One known cause of failing cells."""

    id: str
    #: The case it breaks, by the name the client reports.
    case: str
    #: Whose side breaks the draft (implementation and component).
    side: str
    #: The section of the draft it breaks.
    section: str
    summary: str
    #: The evidence: what was sent, as bytes where the wire shows it, and what the draft asks instead.
    detail: str
    #: Restrict the match to a client / relay implementation (None: any).
    client: str | None = None
    relay: str | None = None
    drafts: frozenset[int] | None = None
    status: str = "open"

    def matches(self, client: str, relay: str, draft: int, case: str) -> bool:
        return (
            self.status != "fixed"
            and self.case == case
            and (self.client is None or self.client == client)
            and (self.relay is None or self.relay == relay)
            and (self.drafts is None or draft in self.drafts)
        )

    def render(self) -> str:
        """One line for a report: id, whose side, section, summary."""
        return f"{self.id}: {self.side} breaks {self.section}: {self.summary}"


KNOWN_ISSUES: tuple[KnownIssue, ...] = (
    KnownIssue(
        id="moq-send-order-ignores-priority",
        status="fixed",  # efc8c02: each subscription writer waits on its own backlog; streams open with priority
        case="priorities",
        client="moq",
        side="moq (MoqSession writers, moq/api/session.py; in our publisher and in our relay's downstream)",
        section="draft-22 §5.1.2 (Scheduling Algorithm)",
        summary="objects of a low-priority track published first leave before those of a high-priority track "
        "published at the same moment",
        detail=(
            "Both subgroup streams carry their priority on the wire (draft-22 subgroup header 51 (alias) 00 c8 for "
            "`bulk`, publisher priority 200; 51 (alias) 00 0a for `urgent`, 10) and in the transport's stream "
            "priority, yet 94-100% of `bulk` (up to 524288 of 524288 bytes) arrived before `urgent` was complete, "
            "through our relay and through aiomoqt's (which orders by priority: 0% once our publisher does). "
            "Two causes, one after the other: (1) in the committed code `MoqSession._execute` opens streams with "
            "`conn.try_open_uni_stream()` without `cmd.priority`, so every data stream has one level (the send "
            "scheduler work in the working tree passes it now); (2) the new back-pressure in `_send_track` "
            "(`while self.conn.buffered_bytes > MAX_SESSION_BACKLOG_BYTES`, 256 KB) is one budget per session, "
            "blind to priority: the `bulk` writer, first to run, fills it, and the `urgent` writer then gets one "
            "object in per wake-up. With (1) fixed and the budget lifted (MAX_SESSION_BACKLOG_BYTES = 64 MB, tried "
            "locally) the case passes: 3-6% of `bulk` first through our relay, 0% through aiomoqt's. A writer "
            "should wait only for bytes queued at its priority or higher."
        ),
    ),
    KnownIssue(
        id="moq-relay-subscribes-after-goaway",
        status="fixed",  # fixed in efc8c02: Relay._publishers skips sessions that sent GOAWAY
        case="goaway",
        relay="moq",
        side="moq relay (relay/relay.py `Relay._publishers`)",
        section="draft-22 §9.2 (GOAWAY: SHOULD NOT initiate new requests after receiving GOAWAY)",
        summary="the relay still routes new SUBSCRIBEs to a publisher session that has sent GOAWAY",
        detail=(
            "The leaving publisher sent GOAWAY on its control stream: 10 0003 00 87d0 (type 0x10, length 3, empty "
            "New Session URI, Timeout 2000 ms). A new publisher then announced the same namespace, and a new "
            "subscriber asked for another track of it. The relay sent SUBSCRIBE to both publishers; to the leaving "
            "one (draft-22): 03 0022 03 02 08 'moq-test' 0d 'goaway-(run id)' 05 'other' 01 10 01 (SUBSCRIBE, request "
            "id 3, FORWARD=1). `Relay._publishers` lists every announcement whose namespace matches, including "
            "those of sessions whose `goaway` is set; excluding them (`a.session.goaway is None`) makes the case "
            "pass (tried locally). aiomoqt's relay passes this case."
        ),
    ),
)


def explain(client: str, relay: str, draft: int, case: str) -> list[KnownIssue]:
    """The known issues that account for `case` failing in the cell (client, relay, draft)."""
    return [issue for issue in KNOWN_ISSUES if issue.matches(client, relay, draft, case)]


def triage(client: str, relay: str, draft: int, failed: list[str]) -> tuple[dict[str, list[KnownIssue]], list[str]]:
    """Split failing case names into those known issues explain (case -> issues) and the unexplained rest."""
    explained: dict[str, list[KnownIssue]] = {}
    unexplained: list[str] = []
    for case in failed:
        issues = explain(client, relay, draft, case)
        if issues:
            explained[case] = issues
        else:
            unexplained.append(case)
    return explained, unexplained
