"""How big each part of a run is: the full run, `--quick` (under two minutes on 2 cores) and `--tiny` (the smoke
test: seconds)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Settings:
    """Every size the parts use. Bitrates in bit/s, durations in seconds."""

    mode: str
    # Part 1, the ceiling.
    ceiling_mb: int = 64
    ceiling_connections: int = 10
    ceiling_conn_mb: int = 16
    # Part 2, fan-out: the synthetic video track and the audiences.
    bitrate: int = 1_000_000
    fps: int = 30
    group_seconds: float = 2.0
    #: A keyframe object is this many times the size of the other objects of its group.
    keyframe_ratio: int = 8
    subscriber_counts: tuple[int, ...] = (1, 10, 50, 100, 200)
    #: Subscriber processes at most per run; subscribers are spread evenly over them.
    max_subscriber_processes: int = 10
    #: Seconds measured, after `warmup` seconds of publishing (joins, first groups).
    duration: float = 15.0
    warmup: float = 2.0
    #: Seconds subscribers keep listening after the publisher's last object (stragglers, a lagging subscriber).
    tail: float = 5.0
    cache_groups: int = 4
    cache_bytes: int = 8 * 1024 * 1024
    # Part 3, aiomoqt's relay with the same workload, and aiomoqt's subscribers as a cheaper load generator.
    aiomoqt_counts: tuple[int, ...] = (10, 50, 100, 200)
    loadgen_counts: tuple[int, ...] = (100, 200, 300, 400)
    #: Our relay in the load-generator part: one process, and `moq relay --workers N` for each N > 1 here.
    relay_workers: tuple[int, ...] = (1, 2)
    # Part 4, slow subscriber.
    slow_others: int = 10
    #: The slow subscriber's link, as a fraction of the track's bitrate.
    slow_fraction: float = 0.5
    slow_duration: float = 20.0
    # Part 5, media.
    media_seconds: float = 10.0
    media_streams: tuple[int, ...] = (1, 2)
    # Part 6, a call: K headless Chromium call pages in one room.
    call_pages: tuple[int, ...] = (2, 3)
    #: Seconds measured, after every page decodes every other participant and `call_warmup` more seconds.
    call_seconds: float = 20.0
    call_warmup: float = 2.0
    # The relay profile.
    profile_subscribers: int = 100
    profile_seconds: float = 10.0


FULL = Settings(mode="full")

QUICK = replace(
    FULL,
    mode="quick",
    ceiling_mb=16,
    ceiling_conn_mb=4,
    subscriber_counts=(1, 10, 50),
    duration=6.0,
    warmup=1.5,
    aiomoqt_counts=(50,),
    loadgen_counts=(),
    slow_others=10,
    slow_duration=6.0,
    media_seconds=5.0,
    media_streams=(1,),
    call_seconds=6.0,
    call_warmup=1.0,
    profile_subscribers=0,
)

TINY = replace(
    QUICK,
    mode="tiny",
    ceiling_mb=1,
    ceiling_connections=2,
    ceiling_conn_mb=1,
    bitrate=200_000,
    group_seconds=0.5,
    subscriber_counts=(1, 2),
    max_subscriber_processes=2,
    duration=1.0,
    warmup=0.5,
    tail=1.0,
    aiomoqt_counts=(),
    slow_others=1,
    slow_duration=1.0,
    media_seconds=1.0,
    call_pages=(2,),
    call_seconds=2.0,
    call_warmup=0.5,
)
