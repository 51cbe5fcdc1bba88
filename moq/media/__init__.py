"""Media packaging for MOQT: LOC objects, the MSF catalog, and PyAV pipelines that produce and consume them.

- `moq.media.loc`: LOC object properties and payloads (draft-ietf-moq-loc-04).
- `moq.media.catalog`: the MSF catalog JSON (draft-ietf-moq-msf), track entries, delta updates.
- `moq.media.groups`: encoded frames to MOQT groups and objects (one group per GOP).
- `moq.media.codecs`: H.264/AAC/Opus bitstream helpers (avcC, codec strings, ADTS, OpusHead).
- `moq.media.frames`: `EncodedFrame` and `StreamInfo`, the pipeline's output.
- `moq.media.encode`: sources and encoders with PyAV (test pattern, files, stdin, camera; libx264, libopus, copy).
- `moq.media.decode`: decoding and recording (MP4, Matroska, MPEG-TS) with PyAV.

The modules without PyAV (loc, catalog, groups, codecs, frames) import nothing heavy; `encode` and `decode` load
FFmpeg. Transport-agnostic: nothing here imports moq.session or moq.transport (DESIGN.md import rule).
"""
