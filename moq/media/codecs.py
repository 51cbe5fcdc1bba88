"""Codec bitstream helpers, pure Python: H.264 NAL framing, avcC, SPS, codec strings, AAC ADTS, Opus headers.

LOC-04 §2.1 lets an H.264 payload be "canonical" (avc1: 4-byte length prefixes, parameter sets out of band in
VIDEO_CONFIG) or Annex-B (start codes, parameter sets in band). We publish the canonical form, so everything an
encoder or a demuxer hands us is brought to it here:

- libx264 with the global_header flag gives its extradata and its packets in Annex-B (start codes), not avcC;
- MP4 and Matroska demuxers give length-prefixed packets (any prefix size 1, 2 or 4) and an avcC;
- MPEG-TS gives Annex-B with SPS/PPS (and access unit delimiters) in band and no extradata.

The codec strings are the WebCodecs Codec Registry forms that MSF's `codec` field takes (MSF §"Codec"):
`avc1.PPCCLL` (RFC 6381 §3.3: profile_idc, the constraint flags byte, level_idc, in hex), `mp4a.40.<AOT>`, `opus`.
"""

from __future__ import annotations

import struct

import msgspec

from moq.media.errors import BitstreamError

# -- H.264 NAL units ---------------------------------------------------------------------------------------------

#: NAL unit types (ITU-T H.264 Table 7-1) the packaging treats specially.
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
#: Parameter sets and delimiters: carried in VIDEO_CONFIG (avcC), never in an avc1 payload.
_OUT_OF_BAND = frozenset((NAL_SPS, NAL_PPS, NAL_AUD))

#: Profiles whose SPS carries chroma format and bit depths, and whose avcC has the extension fields
#: (H.264 §7.3.2.1.1; ISO/IEC 14496-15 §5.3.3.1.2 lists 100, 110, 122 and 144 for the avcC extension).
_HIGH_SPS_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))
_AVCC_EXT_PROFILES = frozenset((100, 110, 122, 144))

_START_CODE = b"\x00\x00\x01"


def nal_type(nal: bytes) -> int:
    """The nal_unit_type of one NAL unit (its header's low five bits)."""
    if not nal:
        raise BitstreamError("empty NAL unit")
    return nal[0] & 0x1F


def is_annexb(data: bytes) -> bool:
    """True when `data` starts with an Annex-B start code (3 or 4 bytes)."""
    return data.startswith(_START_CODE) or data.startswith(b"\x00" + _START_CODE)


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream, without start codes or trailing zero bytes."""
    nals: list[bytes] = []
    start = data.find(_START_CODE)
    if start < 0:
        raise BitstreamError("no Annex-B start code")
    start += 3
    while True:
        nxt = data.find(_START_CODE, start)
        end = len(data) if nxt < 0 else nxt
        # A NAL unit never ends in a zero byte (H.264 §7.4.1.1: rbsp_trailing_bits, emulation prevention), so zeros
        # before the next start code are the fourth byte of a 4-byte start code or trailing_zero_8bits.
        while end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            nals.append(data[start:end])
        if nxt < 0:
            return nals
        start = nxt + 3


def split_avcc(data: bytes, length_size: int = 4) -> list[bytes]:
    """The NAL units of a length-prefixed (avc1) access unit; `length_size` is 1, 2 or 4 (from the avcC)."""
    if length_size not in (1, 2, 4):
        raise BitstreamError(f"NAL length size must be 1, 2 or 4, not {length_size}")
    nals: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + length_size > len(data):
            raise BitstreamError("NAL length prefix truncated")
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            raise BitstreamError(f"NAL length {size} runs past the end of the access unit")
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def join_avcc(nals: list[bytes]) -> bytes:
    """An access unit with a 4-byte big-endian length before each NAL unit (LOC-04 §2.1.3 SHOULD be 4 bytes)."""
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in nals)


def join_annexb(nals: list[bytes]) -> bytes:
    """An access unit with a 4-byte start code before each NAL unit (LOC-04 §2.1.4 SHOULD be 4 bytes)."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00, H.264 §7.4.1)."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _BitReader:
    """MSB-first bit reader with Exp-Golomb codes (H.264 §9.1)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        byte = self._pos >> 3
        if byte >= len(self._data):
            raise BitstreamError("SPS truncated")
        value = (self._data[byte] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError("Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


class Sps(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of an H.264 sequence parameter set the packaging needs (H.264 §7.3.2.1.1)."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8
    width: int
    height: int


def parse_sps(nal: bytes) -> Sps:
    """Parse an SPS NAL unit (with its one-byte header) as far as the frame cropping."""
    if nal_type(nal) != NAL_SPS:
        raise BitstreamError(f"NAL type {nal_type(nal)} is not an SPS")
    r = _BitReader(unescape_rbsp(nal[1:]))
    profile_idc, constraint_flags, level_idc = r.bits(8), r.bits(8), r.bits(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes, depth_luma, depth_chroma = 1, 0, 8, 8
    if profile_idc in _HIGH_SPS_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_planes = r.bit()
        depth_luma = r.ue() + 8
        depth_chroma = r.ue() + 8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.bit():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.bit()  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue()):
            r.se()  # offset_for_ref_frame
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.bit():  # frame_cropping_flag
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    # Crop units (H.264 §7.4.2.1.1, Table 6-1): in chroma samples unless monochrome or separate colour planes.
    chroma_array_type = 0 if separate_planes else chroma_format_idc
    sub_w, sub_h = {1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma_array_type, (1, 1))
    unit_x = 1 if chroma_array_type == 0 else sub_w
    unit_y = (2 - frame_mbs_only) * (1 if chroma_array_type == 0 else sub_h)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_map_units * 16 - unit_y * (crop[2] + crop[3])
    return Sps(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=depth_luma,
        bit_depth_chroma=depth_chroma,
        width=width,
        height=height,
    )


def _skip_scaling_list(r: _BitReader, size: int) -> None:
    last, nxt = 8, 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


class AvcConfig(msgspec.Struct, frozen=True, kw_only=True):
    """An AVCDecoderConfigurationRecord (avcC, ISO/IEC 14496-15 §5.3.3.1)."""

    profile: int
    compatibility: int
    level: int
    length_size: int = 4
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


def parse_avcc(data: bytes) -> AvcConfig:
    """Parse an avcC record (the high-profile extension fields, when present, are not needed and are skipped)."""
    try:
        if data[0] != 1:
            raise BitstreamError(f"avcC configurationVersion is {data[0]}, not 1")
        profile, compatibility, level = data[1], data[2], data[3]
        length_size = (data[4] & 0x03) + 1
        pos = 5
        sets: list[tuple[bytes, ...]] = []
        for mask in (0x1F, 0xFF):
            count = data[pos] & mask
            pos += 1
            found = []
            for _ in range(count):
                size = int.from_bytes(data[pos : pos + 2], "big")
                pos += 2
                if pos + size > len(data):
                    raise BitstreamError("avcC parameter set runs past the end")
                found.append(data[pos : pos + size])
                pos += size
            sets.append(tuple(found))
    except IndexError:
        raise BitstreamError("avcC truncated") from None
    if length_size == 3:
        raise BitstreamError("avcC lengthSizeMinusOne of 2 (3-byte lengths) is not allowed")
    return AvcConfig(
        profile=profile, compatibility=compatibility, level=level, length_size=length_size, sps=sets[0], pps=sets[1]
    )


def build_avcc(sps: list[bytes], pps: list[bytes]) -> bytes:
    """An avcC record with 4-byte NAL lengths for these parameter sets (ISO/IEC 14496-15 §5.3.3.1)."""
    if not sps or not pps:
        raise BitstreamError("an avcC needs at least one SPS and one PPS")
    first = sps[0]
    if len(first) < 4:
        raise BitstreamError("SPS too short")
    out = bytearray((1, first[1], first[2], first[3], 0xFC | 3, 0xE0 | len(sps)))
    for nal in sps:
        out += struct.pack(">H", len(nal)) + nal
    out.append(len(pps))
    for nal in pps:
        out += struct.pack(">H", len(nal)) + nal
    if first[1] in _AVCC_EXT_PROFILES:
        # The extension is required for these profiles; players that check it (Safari, some MSE stacks) refuse an
        # avcC without it.
        info = parse_sps(first)
        out += bytes(
            (
                0xFC | info.chroma_format_idc,
                0xF8 | (info.bit_depth_luma - 8),
                0xF8 | (info.bit_depth_chroma - 8),
                0,  # numOfSequenceParameterSetExt
            )
        )
    return bytes(out)


def h264_codec_string(config: bytes, prefix: str = "avc1") -> str:
    """The RFC 6381 codec string (`avc1.64001f`) from an avcC record, an Annex-B SPS/PPS blob, or one SPS NAL.

    The three bytes are profile_idc, the constraint_set flags byte and level_idc, as the SPS carries them
    (the avcC copies them into AVCProfileIndication, profile_compatibility and AVCLevelIndication).
    """
    if not config:
        raise BitstreamError("empty H.264 decoder configuration")
    if config[0] == 1:
        rec = parse_avcc(config)
        triple = (rec.profile, rec.compatibility, rec.level)
    else:
        nals = split_annexb(config) if is_annexb(config) else [config]
        sps = next((nal for nal in nals if nal_type(nal) == NAL_SPS), None)
        if sps is None:
            raise BitstreamError("no SPS in the H.264 decoder configuration")
        info = parse_sps(sps)
        triple = (info.profile_idc, info.constraint_flags, info.level_idc)
    return f"{prefix}." + "".join(f"{b:02x}" for b in triple)


class AvcNormalizer:
    """Brings H.264 access units of any framing to avc1 form: 4-byte lengths, no SPS/PPS/AUD in the payload.

    Keeps the current avcC: the input's (from an MP4/MKV demuxer), or one built from the in-band SPS/PPS
    (MPEG-TS, libx264's Annex-B extradata); a changed in-band SPS or PPS gives a new avcC.
    """

    def __init__(self, extradata: bytes | None = None) -> None:
        self.length_size = 0  # 0: Annex-B input
        self.config: bytes | None = None
        self._sps: list[bytes] = []
        self._pps: list[bytes] = []
        if extradata:
            if extradata[0] == 1:
                rec = parse_avcc(extradata)
                self.length_size = rec.length_size
                self._sps, self._pps = list(rec.sps), list(rec.pps)
                self.config = extradata if rec.length_size == 4 else build_avcc(self._sps, self._pps)
            else:
                self._absorb(split_annexb(extradata) if is_annexb(extradata) else [])

    def _absorb(self, nals: list[bytes]) -> None:
        sps = [n for n in nals if nal_type(n) == NAL_SPS]
        pps = [n for n in nals if nal_type(n) == NAL_PPS]
        changed = False
        if sps and sps != self._sps:
            self._sps, changed = sps, True
        if pps and pps != self._pps:
            self._pps, changed = pps, True
        if (changed or self.config is None) and self._sps and self._pps:
            self.config = build_avcc(self._sps, self._pps)

    def convert(self, data: bytes) -> bytes:
        """One access unit in avc1 form; in-band parameter sets update `config`."""
        if self.length_size:
            # Trust the avcC's framing: a 4-byte length of 256..511 also begins 00 00 01, so sniffing would lie.
            try:
                nals = split_avcc(data, self.length_size)
            except BitstreamError:
                nals = split_annexb(data)  # some Matroska muxers write Annex-B despite an avcC
        else:
            nals = split_annexb(data)
        if any(nal_type(n) in _OUT_OF_BAND for n in nals):
            self._absorb(nals)
            nals = [n for n in nals if nal_type(n) not in _OUT_OF_BAND]
        return join_avcc(nals)


def avcc_to_annexb(payload: bytes, config: bytes | None, keyframe: bool) -> bytes:
    """An avc1 access unit as Annex-B, with the SPS/PPS from `config` in front of a keyframe (for MPEG-TS, avc3)."""
    nals = split_avcc(payload)
    if keyframe and config:
        rec = parse_avcc(config)
        nals = [*rec.sps, *rec.pps, *nals]
    return join_annexb(nals)


# -- AAC ---------------------------------------------------------------------------------------------------------

#: Sampling frequencies by samplingFrequencyIndex (ISO/IEC 14496-3 §1.6.3.4, Table 1.18).
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


class AdtsHeader(msgspec.Struct, frozen=True):
    """The fields of an ADTS header that an AudioSpecificConfig needs (ISO/IEC 14496-3 §1.A.2.2)."""

    object_type: int
    sample_rate_index: int
    channel_config: int
    header_size: int
    frame_length: int


def parse_adts(data: bytes, pos: int = 0) -> AdtsHeader:
    """Parse the ADTS header at `pos`."""
    if len(data) < pos + 7 or data[pos] != 0xFF or data[pos + 1] & 0xF0 != 0xF0:
        raise BitstreamError("no ADTS sync word")
    b = data[pos : pos + 7]
    protection_absent = b[1] & 1
    frame_length = ((b[3] & 0x03) << 11) | (b[4] << 3) | (b[5] >> 5)
    header_size = 7 if protection_absent else 9
    if frame_length < header_size or pos + frame_length > len(data):
        raise BitstreamError(f"ADTS frame length {frame_length} does not fit")
    return AdtsHeader(
        object_type=(b[2] >> 6) + 1,
        sample_rate_index=(b[2] >> 2) & 0x0F,
        channel_config=((b[2] & 1) << 2) | (b[3] >> 6),
        header_size=header_size,
        frame_length=frame_length,
    )


def split_adts(data: bytes) -> tuple[list[bytes], AdtsHeader]:
    """The raw AAC frames of a run of ADTS frames, and the first header."""
    frames: list[bytes] = []
    pos = 0
    first: AdtsHeader | None = None
    while pos < len(data):
        header = parse_adts(data, pos)
        first = first or header
        frames.append(data[pos + header.header_size : pos + header.frame_length])
        pos += header.frame_length
    if first is None:
        raise BitstreamError("empty ADTS packet")
    return frames, first


def audio_specific_config(object_type: int, sample_rate_index: int, channel_config: int) -> bytes:
    """A two-byte AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) with a plain GASpecificConfig."""
    bits = (object_type << 11) | (sample_rate_index << 7) | (channel_config << 3)
    return bits.to_bytes(2, "big")


def aac_codec_string(asc: bytes) -> str:
    """`mp4a.40.<audioObjectType>` from an AudioSpecificConfig (RFC 6381 §3.3, WebCodecs AAC registration)."""
    if not asc:
        raise BitstreamError("empty AudioSpecificConfig")
    aot = asc[0] >> 3
    if aot == 31:  # escape: 32 + the next six bits
        if len(asc) < 2:
            raise BitstreamError("AudioSpecificConfig truncated")
        aot = 32 + (((asc[0] & 0x07) << 3) | (asc[1] >> 5))
    return f"mp4a.40.{aot}"


# -- Opus --------------------------------------------------------------------------------------------------------

#: libopus's encoder delay at 48 kHz, which FFmpeg's encoder reports as pre-skip (RFC 7845 §4.2).
OPUS_DEFAULT_PRE_SKIP = 312


def opus_head(channels: int, sample_rate: int = 48000, pre_skip: int = OPUS_DEFAULT_PRE_SKIP) -> bytes:
    """An Opus identification header (RFC 7845 §5.1), channel mapping family 0 (mono or stereo)."""
    if channels not in (1, 2):
        raise BitstreamError(f"channel mapping family 0 carries 1 or 2 channels, not {channels}")
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, sample_rate, 0, 0)


class OpusHead(msgspec.Struct, frozen=True):
    """The fields of an Opus identification header (RFC 7845 §5.1) a decoder setup needs."""

    channels: int
    pre_skip: int
    sample_rate: int


def parse_opus_head(data: bytes) -> OpusHead:
    """Parse an Opus identification header."""
    if len(data) < 19 or not data.startswith(b"OpusHead"):
        raise BitstreamError("not an OpusHead")
    _version, channels, pre_skip, rate, _gain, _family = struct.unpack_from("<BBHIhB", data, 8)
    return OpusHead(channels, pre_skip, rate)
