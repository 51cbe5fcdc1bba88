"""moq: a Media over QUIC Transport (MOQT) toolkit: wire codec, sessions, transports, relay and media tools."""

__version__ = "0.1.0"
