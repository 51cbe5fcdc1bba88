"""The MSF catalog: JSON round trips, the draft's own examples, required fields, delta updates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from moq.media.catalog import (
    CATALOG_TRACK_NAME,
    MSF_VERSION,
    Catalog,
    CatalogDelta,
    DeltaOperation,
    TrackPatch,
    apply_delta,
    audio_track,
    decode_catalog,
    delta_update,
    encode_catalog,
    make_catalog,
    track_for_stream,
    validate_catalog,
    video_track,
)
from moq.media.errors import CatalogError
from moq.media.frames import StreamInfo

# MSF editor's copy (2026-08-04), §"Time-aligned Audio/Video Tracks with single quality", verbatim.
DRAFT_EXAMPLE = b"""
{
  "version": "draft-01",
  "generatedAt": 1746104606044,
  "tracks": [
    {
      "name": "1080p-video",
      "namespace": "conference.example.com/conference123/alice",
      "packaging": "loc",
      "isLive": true,
      "targetLatency": 2000,
      "role": "video",
      "renderGroup": 1,
      "codec":"av01.0.08M.10.0.110.09",
      "width":1920,
      "height":1080,
      "framerate":30,
      "bitrate":1500000
    },
    {
      "name": "audio",
      "namespace": "conference.example.com/conference123/alice",
      "packaging": "loc",
      "isLive": true,
      "targetLatency": 2000,
      "role": "audio",
      "renderGroup": 1,
      "codec":"opus",
      "samplerate":48000,
      "channelConfig":"2",
      "bitrate":32000
    }
   ]
}
"""

# Same draft, §"Delta update - adding two tracks", verbatim.
DRAFT_DELTA = b"""
{
  "generatedAt": 1746104606044,
  "deltaUpdate": [
     {
      "op": "update",
      "tracks": [
        {
          "name": "video-1080",
          "bitrate": 4000000
        }
      ]
     },
     {
      "op": "add",
      "tracks": [
        {
          "name": "slides",
          "packaging": "loc",
          "isLive": true,
          "role": "video",
          "codec": "av01.0.08M.10.0.110.09",
          "width": 1920,
          "height": 1080,
          "framerate": 15,
          "bitrate": 750000,
          "renderGroup": 1
        }
      ]
    },
    {
      "op": "clone",
      "tracks": [
        {
          "parentName": "video-1080",
          "parentNamespace": "example.com/custom",
          "name": "video-720",
          "width": 1280,
          "height": 720,
          "bitrate": 600000
        }
      ]
    }
  ]
}
"""

SPEC_DIR = Path("/work/shared/spec")


def test_the_catalog_track_name() -> None:
    assert CATALOG_TRACK_NAME == "catalog"


def test_decode_the_drafts_example() -> None:
    catalog = decode_catalog(DRAFT_EXAMPLE)
    assert isinstance(catalog, Catalog)
    assert catalog.version == "draft-01" and catalog.generated_at == 1746104606044
    video, audio = catalog.tracks
    assert (video.name, video.packaging, video.is_live, video.role, video.render_group) == (
        "1080p-video",
        "loc",
        True,
        "video",
        1,
    )
    assert (video.codec, video.width, video.height, video.framerate, video.bitrate) == (
        "av01.0.08M.10.0.110.09",
        1920,
        1080,
        30,
        1500000,
    )
    assert video.target_latency == 2000
    assert (audio.codec, audio.samplerate, audio.channel_config, audio.bitrate) == ("opus", 48000, "2", 32000)
    assert validate_catalog(catalog) == []
    # Our encoding is the same JSON value.
    assert json.loads(encode_catalog(catalog)) == json.loads(DRAFT_EXAMPLE)


def test_produced_catalog_round_trip_and_field_names() -> None:
    video = video_track(
        codec="avc1.42c01f", width=1280, height=720, framerate=30.0, bitrate=2_000_000, max_gop_duration=1000
    )
    audio = audio_track(bitrate=64_000)
    catalog = make_catalog([video, audio])
    data = encode_catalog(catalog)
    raw = json.loads(data)
    assert raw["version"] == MSF_VERSION
    assert isinstance(raw["generatedAt"], int)
    assert "isComplete" not in raw  # §"Is Complete": MUST NOT be included if FALSE
    assert list(raw) == ["version", "generatedAt", "tracks"]
    assert raw["tracks"][0] == {
        "name": "video",
        "packaging": "loc",
        "isLive": True,
        "role": "video",
        "renderGroup": 1,
        "codec": "avc1.42c01f",
        "framerate": 30,
        "bitrate": 2000000,
        "maxGopDuration": 1000,
        "width": 1280,
        "height": 720,
    }
    assert raw["tracks"][1] == {
        "name": "audio",
        "packaging": "loc",
        "isLive": True,
        "role": "audio",
        "renderGroup": 1,
        "codec": "opus",
        "bitrate": 64000,
        "samplerate": 48000,
        "channelConfig": "2",
    }
    assert decode_catalog(data) == catalog
    assert validate_catalog(catalog) == []


def test_vod_catalog_has_no_generated_at() -> None:
    """§"Generated at": SHOULD NOT be included if isLive is false."""
    catalog = make_catalog([audio_track(bitrate=1, is_live=False)])
    assert "generatedAt" not in json.loads(encode_catalog(catalog))


def test_track_for_stream() -> None:
    info = StreamInfo(
        kind="video", codec="avc1.64001f", width=1280, height=720, framerate=29.97, bitrate=3_000_000, gop=60
    )
    track = track_for_stream("cam", info)
    assert (track.codec, track.framerate, track.max_gop_duration) == ("avc1.64001f", 29.97, 2002)
    opus = track_for_stream("mic", StreamInfo(kind="audio", codec="opus", sample_rate=48000, channels=1, bitrate=32000))
    assert (opus.samplerate, opus.channel_config, opus.role) == (48000, "1", "audio")


def test_unknown_fields_are_ignored() -> None:
    data = (
        b'{"version":"draft-01","future":{"x":1},"tracks":[{"name":"v","packaging":"loc","isLive":true,'
        b'"com.example-tier":"premium","com.example-billing-code":3201}]}'
    )
    catalog = decode_catalog(data)
    assert isinstance(catalog, Catalog) and catalog.tracks[0].name == "v"


@pytest.mark.parametrize(
    "data",
    [
        b'{"tracks": []}',  # no version
        b'{"version": "draft-01"}',  # no tracks
        b'{"version": "draft-01", "tracks": [{"packaging": "loc"}]}',  # a track without a name
        b'{"version": "draft-01", "tracks": [{"name": "v"}]}',  # a track without packaging
        b'{"version": "draft-01", "tracks": [{"name": "v", "packaging": "loc", "width": "wide"}]}',
        b'{"generatedAt": 1, "deltaUpdate": []}',  # a delta without operations
        b'{"deltaUpdate": [{"op": "add", "tracks": []}]}',  # a delta without generatedAt
        b'{"generatedAt": 1, "deltaUpdate": [{"op": "rename", "tracks": []}]}',
        b"[1, 2]",
        b"{not json",
    ],
)
def test_invalid_catalogs_raise_catalog_error(data: bytes) -> None:
    with pytest.raises(CatalogError):
        decode_catalog(data)


def test_unknown_version_is_refused_unless_asked() -> None:
    """§"MSF version": a subscriber MUST NOT attempt to parse a version it does not understand."""
    data = b'{"version": "draft-99", "tracks": []}'
    with pytest.raises(CatalogError, match="draft-99"):
        decode_catalog(data)
    catalog = decode_catalog(data, check_version=False)
    assert isinstance(catalog, Catalog)
    assert isinstance(decode_catalog(b'{"version": "1", "tracks": []}'), Catalog)  # the -01 examples' spelling


def test_validate_reports_conditional_fields() -> None:
    data = (
        b'{"version":"draft-01","tracks":['
        b'{"name":"v","packaging":"loc","role":"video"},'
        b'{"name":"a","packaging":"loc","isLive":true,"role":"audio","codec":"opus","bitrate":1},'
        b'{"name":"a","packaging":"loc","isLive":true,"role":"audio","codec":"opus","bitrate":1,'
        b'"samplerate":48000,"channelConfig":"2","targetLatency":1,"buffers":{"target":2}}]}'
    )
    catalog = decode_catalog(data)
    assert isinstance(catalog, Catalog)
    problems = "\n".join(validate_catalog(catalog))
    assert "'v': isLive is required" in problems
    assert "'v': codec is required" in problems
    assert "'v': bitrate is required" in problems
    assert "'a': samplerate and channelConfig" in problems
    assert "not unique" in problems
    assert "targetLatency and buffers" in problems


def test_decode_and_apply_the_drafts_delta() -> None:
    delta = decode_catalog(DRAFT_DELTA)
    assert isinstance(delta, CatalogDelta)
    assert [op.op for op in delta.delta_update] == ["update", "add", "clone"]
    clone = delta.delta_update[2].tracks[0]
    assert (clone.parent_name, clone.parent_namespace, clone.name) == ("video-1080", "example.com/custom", "video-720")

    base = make_catalog(
        [
            video_track(
                "video-1080",
                codec="avc1.640028",
                width=1920,
                height=1080,
                framerate=30,
                bitrate=5_000_000,
                namespace="example.com/custom",
            ),
            audio_track(bitrate=64_000),
        ],
        generated_at=1,
    )
    after = apply_delta(base, delta, namespace="example.com/custom")
    assert after.generated_at == 1746104606044
    names = [t.name for t in after.tracks]
    assert names == ["video-1080", "audio", "slides", "video-720"]
    hd = after.track("video-1080")
    assert hd is not None and hd.bitrate == 4_000_000 and hd.width == 1920
    sd = after.track("video-720")
    assert sd is not None and (sd.width, sd.height, sd.bitrate, sd.codec) == (1280, 720, 600_000, "avc1.640028")
    slides = after.track("slides")
    assert slides is not None and slides.framerate == 15

    removed = apply_delta(
        after, delta_update([DeltaOperation("remove", (TrackPatch(name="slides"),))]), namespace="example.com/custom"
    )
    assert [t.name for t in removed.tracks] == ["video-1080", "audio", "video-720"]
    with pytest.raises(CatalogError):
        apply_delta(removed, delta_update([DeltaOperation("remove", (TrackPatch(name="slides"),))]))


def test_delta_round_trip() -> None:
    delta = delta_update(
        [DeltaOperation("add", (TrackPatch(name="x", packaging="loc", is_live=True),))], generated_at=5
    )
    data = encode_catalog(delta)
    assert json.loads(data) == {
        "generatedAt": 5,
        "deltaUpdate": [{"op": "add", "tracks": [{"name": "x", "packaging": "loc", "isLive": True}]}],
    }
    assert decode_catalog(data) == delta


@pytest.mark.skipif(not SPEC_DIR.is_dir(), reason="the shared draft texts are not on this machine")
def test_every_catalog_example_in_the_draft_decodes() -> None:
    """Every complete catalog JSON object in the MSF editor's copy decodes (fragments and timelines are skipped)."""
    text = (SPEC_DIR / "draft-ietf-moq-msf-editors-copy-2026-08-04-9eb17eb.md").read_text()
    blocks = re.findall(r"~~~json\n(.*?)~~~", text, flags=re.S)
    decoded = 0
    for block in blocks:
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue  # a fragment such as "authInfo": {...}
        if not isinstance(value, dict) or not ("tracks" in value or "deltaUpdate" in value):
            continue  # media and event timelines are arrays
        catalog = decode_catalog(block.encode())
        assert msgspec.json.decode(encode_catalog(catalog)) is not None
        decoded += 1
    assert decoded >= 10
