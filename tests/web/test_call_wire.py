"""What the browser publisher emits, read by the Python side: the MSF catalog, the LOC properties and the subgroup
streams of web/js/publisher.js and web/js/tracks.js (run in Node), decoded with moq.media and moq.wire.

The catalog must be byte for byte what `moq.media.catalog.make_catalog` writes for the same tracks, so that any
player that reads the Python publisher's broadcasts reads a call participant's the same way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from moq.media.catalog import (
    Catalog,
    audio_track,
    decode_catalog,
    encode_catalog,
    make_catalog,
    validate_catalog,
    video_track,
)
from moq.media.loc import AudioLevel, LocFrame
from moq.wire.data import DataStreamParser, SubgroupHeader, SubgroupObject
from moq.wire.messages import PublishDone, SubscribeOk, decode_message
from moq.wire.version import Version

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js 20+) is not installed")

GENERATED_AT = 1_700_000_000_000
#: The browser side: a catalog, then a video track (keyframe + delta) and an audio frame served to a subscriber
#: over a stand-in WebTransport; every byte written is printed as hex.
SCRIPT = """
import * as moqt from '@ROOT@/web/js/moqt.js';
import { audioProperties, buildCatalog, videoProperties } from '@ROOT@/web/js/publisher.js';
import { LocalTrack, ServedSubscription } from '@ROOT@/web/js/tracks.js';

const hex = (chunks) => Buffer.concat(chunks.map((c) => Buffer.from(c))).toString('hex');
function sink() {
  const record = { chunks: [] };
  const stream = new WritableStream({ write(chunk) { record.chunks.push(chunk); } });
  return { record, stream };
}
const streams = [];
const transport = {
  createUnidirectionalStream() {
    const { record, stream } = sink();
    streams.push(record);
    return Promise.resolve(stream);
  },
};
const catalog = buildCatalog({
  video: { codec: 'avc1.42e01f', width: 320, height: 240, framerate: 20, bitrate: 600000, gopMs: 1000 },
  audio: { codec: 'opus', samplerate: 48000, channels: 1, bitrate: 32000 },
  label: 'alice',
  generatedAt: @GENERATED_AT@,
});
const out = { catalog: JSON.stringify(catalog), tracks: {} };
const avcC = new Uint8Array([1, 0x42, 0xe0, 0x1f, 0xff, 0xe1]);
for (const [name, priority] of [['video', 128], ['audio', 64]]) {
  const track = new LocalTrack(['team', 'alice'], name, { priority });
  const request = sink();
  const served = new ServedSubscription({
    transport, version: 22, track, requestId: 1, trackAlias: name === 'video' ? 0 : 1,
    parameters: { forward: 1 }, writer: request.stream.getWriter(),
  });
  await served.start();
  streams.length = 0;
  if (name === 'video') {
    const key = videoProperties({ keyframe: true, timestampUs: 1000, description: avcC });
    track.append(5, 0, new Uint8Array([0, 0, 0, 1, 0x65]), key);
    track.append(5, 1, new Uint8Array([0, 0, 0, 1, 0x41]), videoProperties({ keyframe: false, timestampUs: 51000 }));
  } else {
    track.append(9, 0, new Uint8Array([0xfc, 0xff, 0xfe]), audioProperties({ level: 20, timestampUs: 2000 }));
  }
  track.end();
  await served.over;
  await new Promise((resolve) => setTimeout(resolve, 0));
  out.tracks[name] = { request: hex(request.record.chunks), streams: streams.map((s) => hex(s.chunks)) };
}
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def emitted() -> Any:
    assert NODE is not None
    script = SCRIPT.replace("@ROOT@", ROOT.as_uri()).replace("@GENERATED_AT@", str(GENERATED_AT))
    result = subprocess.run(
        [NODE, "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _stream(hex_bytes: str) -> tuple[SubgroupHeader, list[SubgroupObject]]:
    parser = DataStreamParser(Version.DRAFT_22)
    events = parser.feed(bytes.fromhex(hex_bytes), True)
    header = events[0]
    assert isinstance(header, SubgroupHeader)
    objects = [e for e in events[1:] if isinstance(e, SubgroupObject)]
    assert len(objects) == len(events) - 1
    return header, objects


def _messages(hex_bytes: str) -> list[Any]:
    data = bytes.fromhex(hex_bytes)
    messages = []
    while data:
        msg, used = decode_message(data, Version.DRAFT_22)
        messages.append(msg)
        data = data[used:]
    return messages


def test_the_catalog_is_what_the_python_publisher_writes(emitted: Any) -> None:
    js = emitted["catalog"].encode()
    python = encode_catalog(
        make_catalog(
            [
                video_track(
                    "video",
                    codec="avc1.42e01f",
                    width=320,
                    height=240,
                    framerate=20,
                    bitrate=600_000,
                    max_gop_duration=1000,
                    label="alice",
                ),
                audio_track("audio", codec="opus", samplerate=48000, channels=1, bitrate=32_000, label="alice"),
            ],
            generated_at=GENERATED_AT,
        )
    )
    assert js == python
    catalog = decode_catalog(js)
    assert isinstance(catalog, Catalog) and validate_catalog(catalog) == []


def test_video_objects_are_loc_with_timestamp_marking_and_config_on_keyframes(emitted: Any) -> None:
    video = emitted["tracks"]["video"]
    [stream] = video["streams"]
    header, objects = _stream(stream)
    assert (header.track_alias, header.group_id, header.subgroup_id, header.publisher_priority) == (0, 5, 0, 128)
    assert header.first_object and header.end_of_group
    key, delta = (LocFrame.from_object(o.properties, o.payload) for o in objects)
    assert [o.object_id for o in objects] == [0, 1]
    assert key.keyframe is True and key.timestamp == 1000 and key.is_wallclock
    assert key.video_config == bytes([1, 0x42, 0xE0, 0x1F, 0xFF, 0xE1])
    assert delta.keyframe is False and delta.timestamp == 51000 and delta.video_config is None
    assert key.payload == bytes([0, 0, 0, 1, 0x65])
    ok, done = _messages(video["request"])
    assert isinstance(ok, SubscribeOk) and ok.track_alias == 0
    assert isinstance(done, PublishDone) and done.stream_count == 1 and done.status_code == 0x2  # TRACK_ENDED


def test_audio_objects_carry_their_level(emitted: Any) -> None:
    audio = emitted["tracks"]["audio"]
    [stream] = audio["streams"]
    header, [obj] = _stream(stream)
    assert (header.group_id, header.publisher_priority) == (9, 64)
    frame = LocFrame.from_object(obj.properties, obj.payload)
    assert frame.timestamp == 2000 and frame.audio_level == AudioLevel(voice=True, level=20)
