"""Benchmarks that print numbers (DESIGN.md: never pass/fail on time): `python -m bench [--quick] [--json FILE]`.

Parts, each printing a table: the raw QUIC ceiling (`ceiling`), relay fan-out (`fanout`), the same workload through
aiomoqt's relay (`aiomoqt`) and with aiomoqt's cheaper subscribers as the load (`loadgen`), a slow subscriber
(`slow`), the media path (`media`), the cache bound (`cache`) and the relay's profile under load (`profile`).
Every relay, publisher and subscriber runs as its own process (`bench.worker`), on 127.0.0.1 only.
"""
