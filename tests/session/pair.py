"""Two sans-IO sessions wired back to back in memory: no sockets, a fake clock, bytes delivered one at a time."""

from __future__ import annotations

from collections.abc import Callable

from moq.session.commands import (
    CloseSession,
    Command,
    OpenStream,
    ResetStream,
    SendDatagram,
    SendStreamData,
    StopSending,
)
from moq.session.events import Event
from moq.session.session import Role, Session
from moq.wire.messages import Setup
from moq.wire.version import Version


class Pair:
    """A client and a server session; `pump()` carries every command to the other side until both are quiet.

    `hold` decides, per command, whether to keep it back for now (to reorder delivery, e.g. let a data stream
    overtake its SUBSCRIBE_OK); held commands are delivered by `release()`. `drop` loses a command for good.
    """

    def __init__(self, version: Version, byte_by_byte: bool = True) -> None:
        self.version = version
        self.client = Session(
            Role.CLIENT, version, setup=Setup.create(path="/moq", authority="relay.test", implementation="client")
        )
        self.server = Session(Role.SERVER, version, setup=Setup.create(implementation="server"))
        self.byte_by_byte = byte_by_byte
        self.now = 0.0
        self.events: dict[str, list[Event]] = {"client": [], "server": []}
        self.sent: dict[str, list[Command]] = {"client": [], "server": []}
        self.hold: Callable[[str, Command], bool] = lambda side, cmd: False
        self.drop: Callable[[str, Command], bool] = lambda side, cmd: False
        self._held: list[tuple[str, Command]] = []

    def side(self, name: str) -> Session:
        return self.client if name == "client" else self.server

    def setup(self) -> None:
        self.client.initiate()
        self.server.initiate()
        self.pump()

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            for name, other in (("client", "server"), ("server", "client")):
                source = self.side(name)
                self.events[name].extend(source.events())
                for cmd in source.commands():
                    busy = True
                    self.sent[name].append(cmd)
                    if self.drop(name, cmd):
                        continue
                    if self.hold(name, cmd):
                        self._held.append((name, cmd))
                        continue
                    self._deliver(self.side(other), cmd)
                self.events[name].extend(source.events())

    def release(self) -> None:
        held, self._held = self._held, []
        for name, cmd in held:
            self._deliver(self.side("server" if name == "client" else "client"), cmd)
        self.pump()

    def take(self, name: str) -> list[Event]:
        out, self.events[name] = self.events[name], []
        return out

    def _deliver(self, peer: Session, cmd: Command) -> None:
        if isinstance(cmd, OpenStream):
            return  # in memory, a stream's id is its handle
        if isinstance(cmd, SendStreamData):
            data = cmd.data
            if self.byte_by_byte and len(data) > 1:
                for i in range(len(data) - 1):
                    peer.stream_data_received(cmd.stream, data[i : i + 1], False, self.now)
                data = data[-1:]
            peer.stream_data_received(cmd.stream, data, cmd.end_stream, self.now)
        elif isinstance(cmd, ResetStream):
            peer.stream_reset(cmd.stream, cmd.code, self.now)
        elif isinstance(cmd, StopSending):
            peer.stop_sending_received(cmd.stream, cmd.code, self.now)
        elif isinstance(cmd, SendDatagram):
            peer.datagram_received(cmd.data, self.now)
        elif isinstance(cmd, CloseSession):
            peer.transport_closed(cmd.code, cmd.reason)
