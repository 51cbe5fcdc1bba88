"""Bitstream helpers: codec strings from real libx264 output, avcC, NAL framing, ADTS, OpusHead."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import pytest
from av.codec.context import Flags
from av.video.frame import PictureType

from moq.media import codecs
from moq.media.errors import BitstreamError


def ffmpeg_avcc(options: dict[str, str]) -> tuple[bytes, str | None, int]:
    """Encode a few frames with libx264 into an in-memory MP4; FFmpeg's muxer writes the avcC (its own code, not
    ours). Returns the avcC and the profile name and level FFmpeg's decoder reports for the stream."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.options = options
        with av.open("testsrc2=size=320x180:rate=30:duration=0.2,format=yuv420p", format="lavfi") as src:
            for frame in src.decode(video=0):
                frame.pict_type = PictureType.NONE
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as container:
        ctx = container.streams.video[0].codec_context
        assert ctx.extradata is not None
        return ctx.extradata, ctx.profile, ctx.level


def global_header_extradata(options: dict[str, str]) -> bytes:
    """What libx264 itself gives with the global_header flag: Annex-B SPS and PPS."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 180, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = options
    ctx.flags |= Flags.global_header
    ctx.open()
    assert ctx.extradata is not None
    return ctx.extradata


@pytest.mark.parametrize(
    ("options", "expected", "profile"),
    [
        # ultrafast turns off CABAC and 8x8 transforms: Constrained Baseline (66, constraint_set0+1), level 1.3.
        ({"preset": "ultrafast"}, "avc1.42c00d", "Constrained Baseline"),
        # "fast" with the high profile: CABAC, 8x8 transforms, B-frames: High (100), no constraint flags.
        ({"preset": "fast", "profile": "high"}, "avc1.64000d", "High"),
    ],
)
def test_codec_string_from_real_libx264_output(options: dict[str, str], expected: str, profile: str) -> None:
    avcc, ffmpeg_profile, ffmpeg_level = ffmpeg_avcc(options)
    assert codecs.h264_codec_string(avcc) == expected
    assert ffmpeg_profile == profile
    assert int(expected[-2:], 16) == ffmpeg_level  # FFmpeg's level_idc agrees with ours
    # The same string from the SPS alone (Annex-B, as libx264 hands it over), and from the SPS NAL unit.
    annexb = global_header_extradata(options)
    assert codecs.h264_codec_string(annexb) == expected
    sps = next(n for n in codecs.split_annexb(annexb) if codecs.nal_type(n) == codecs.NAL_SPS)
    assert codecs.h264_codec_string(sps) == expected
    info = codecs.parse_sps(sps)
    assert (info.width, info.height) == (320, 180)  # 192 rows coded, 12 cropped
    # The avcC we build from libx264's Annex-B headers is byte for byte the one FFmpeg's MP4 muxer writes,
    # including the High profile extension (chroma format, bit depths).
    assert codecs.AvcNormalizer(annexb).config == avcc
    record = codecs.parse_avcc(avcc)
    assert record.length_size == 4 and len(record.sps) == 1 and len(record.pps) == 1


def test_annexb_and_length_prefixed_framing() -> None:
    nals = [b"\x67\x42\x00\x1e", b"\x68\xce", b"\x65\x88\x84\x00\x10"]
    mixed = b"\x00\x00\x00\x01" + nals[0] + b"\x00\x00\x01" + nals[1] + b"\x00\x00\x00\x01" + nals[2]
    assert codecs.is_annexb(mixed)
    assert codecs.split_annexb(mixed) == nals
    joined = codecs.join_avcc(nals)
    assert joined[:4] == b"\x00\x00\x00\x04"
    assert codecs.split_avcc(joined) == nals
    assert codecs.split_annexb(codecs.join_annexb(nals)) == nals
    with pytest.raises(BitstreamError):
        codecs.split_avcc(b"\x00\x00\x00\x09\x65")
    with pytest.raises(BitstreamError):
        codecs.split_annexb(b"\x65\x88")


def test_normalizer_strips_in_band_parameter_sets() -> None:
    sps, pps, idr, aud = b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80", b"\x65\x88\x84", b"\x09\xf0"
    norm = codecs.AvcNormalizer()
    assert norm.config is None
    payload = norm.convert(codecs.join_annexb([aud, sps, pps, idr]))
    assert payload == codecs.join_avcc([idr])  # AUD, SPS and PPS leave the payload...
    assert norm.config is not None
    assert codecs.parse_avcc(norm.config).sps == (sps,)  # ...and go into the avcC
    first = norm.config
    norm.convert(codecs.join_annexb([b"\x67\x42\xc0\x1f\xda", pps, idr]))
    assert norm.config != first and codecs.h264_codec_string(norm.config) == "avc1.42c01f"
    # A 2-byte length-prefixed input (avcC lengthSizeMinusOne = 1) comes out with 4-byte lengths.
    two = codecs.AvcNormalizer(bytes((1, 0x42, 0xC0, 0x1E, 0xFD, 0xE1, 0, 5)) + sps + bytes((1, 0, 4)) + pps)
    assert two.config is not None and codecs.parse_avcc(two.config).length_size == 4
    assert two.convert(b"\x00\x03" + idr) == codecs.join_avcc([idr])


def test_avcc_errors() -> None:
    with pytest.raises(BitstreamError):
        codecs.parse_avcc(b"\x02\x42\xc0\x1e")
    with pytest.raises(BitstreamError):
        codecs.parse_avcc(b"\x01\x42\xc0\x1e\xff\xe1\x00\x20\x67")
    with pytest.raises(BitstreamError):
        codecs.build_avcc([], [b"\x68"])
    with pytest.raises(BitstreamError):
        codecs.h264_codec_string(codecs.join_annexb([b"\x68\xce"]))


def test_adts_to_audio_specific_config() -> None:
    # AAC-LC (profile 1 -> object type 2), 48 kHz (index 3), stereo, frame length 10, no CRC.
    header = bytes((0xFF, 0xF1, 0x4C, 0x80, 0x01, 0x5F, 0xFC))
    frame = header + b"abc"
    parsed = codecs.parse_adts(frame)
    assert (parsed.object_type, parsed.sample_rate_index, parsed.channel_config) == (2, 3, 2)
    assert (parsed.header_size, parsed.frame_length) == (7, 10)
    raws, first = codecs.split_adts(frame + frame)
    assert raws == [b"abc", b"abc"] and first == parsed
    asc = codecs.audio_specific_config(2, 3, 2)
    assert asc == b"\x11\x90"  # the AudioSpecificConfig FFmpeg writes for 48 kHz stereo AAC-LC
    assert codecs.aac_codec_string(asc) == "mp4a.40.2"
    assert codecs.aac_codec_string(bytes((0xF8, 0x20))) == "mp4a.40.33"  # escaped object type 32 + 1
    with pytest.raises(BitstreamError):
        codecs.parse_adts(b"\x00" * 8)


def test_opus_head() -> None:
    head = codecs.opus_head(2)
    assert len(head) == 19 and head.startswith(b"OpusHead")
    assert codecs.parse_opus_head(head) == codecs.OpusHead(2, codecs.OPUS_DEFAULT_PRE_SKIP, 48000)
    # libopus's own header agrees on everything but the input rate field it may leave as is.
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48000, "stereo", "s16"
    ctx.open()
    assert ctx.extradata is not None
    assert codecs.parse_opus_head(ctx.extradata).channels == 2
    assert codecs.parse_opus_head(ctx.extradata).pre_skip == codecs.OPUS_DEFAULT_PRE_SKIP
    with pytest.raises(BitstreamError):
        codecs.opus_head(6)


def test_avc1_back_to_annexb() -> None:
    """For consumers that want start codes (raw .h264, avc3): parameter sets go back in front of keyframes."""
    sps, pps, idr, p_slice = b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80", b"\x65\x88\x84", b"\x41\x9a"
    config = codecs.build_avcc([sps], [pps])
    assert codecs.split_annexb(codecs.avcc_to_annexb(codecs.join_avcc([idr]), config, True)) == [sps, pps, idr]
    assert codecs.split_annexb(codecs.avcc_to_annexb(codecs.join_avcc([p_slice]), config, False)) == [p_slice]
