"""Catalog entries in other namespaces: the `namespace` string, and a host's catalog listing its stage."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from moq.media.catalog import (
    Catalog,
    audio_track,
    catalog_with_stage,
    decode_catalog,
    encode_catalog,
    make_catalog,
    media_role,
    namespace_text,
    parse_namespace_text,
    stage_tracks,
    track_namespace,
    video_track,
)
from moq.media.errors import CatalogError
from moq.wire.primitives import MAX_NAMESPACE_FIELDS

HOST = (b"live", b"show")
BOB = (b"live", b"show", b"stage", b"bob")


def camera() -> Catalog:
    """A participant's own catalog, as the browser's publisher writes it (no namespace: the catalog's)."""
    return make_catalog(
        [
            video_track(codec="avc1.42e01f", width=320, height=240, framerate=20, bitrate=600_000, label="b"),
            audio_track(codec="opus", channels=1, bitrate=32_000, label="b"),
        ],
        generated_at=1,
    )


def test_namespace_text_is_the_drafts_form_for_plain_names() -> None:
    assert namespace_text((b"conference.example.com", b"conference123", b"alice")) == (
        "conference.example.com/conference123/alice"
    )
    assert parse_namespace_text("conference.example.com/conference123/alice") == (
        b"conference.example.com",
        b"conference123",
        b"alice",
    )
    assert namespace_text((b"late show/2", b"caf\xc3\xa9", b"\xff")) == "late%20show%2F2/caf%C3%A9/%FF"


@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=MAX_NAMESPACE_FIELDS).map(tuple))
@example((b"/", b"%", b"%2F", b"-._~"))
def test_namespace_text_round_trip(ns: tuple[bytes, ...]) -> None:
    assert parse_namespace_text(namespace_text(ns)) == ns


@pytest.mark.parametrize("text", ["", "a//b", "/a", "a/", "x" * 20_000, "/".join(["a"] * 33)])
def test_bad_namespace_strings_are_catalog_errors(text: str) -> None:
    with pytest.raises(CatalogError):
        parse_namespace_text(text)


def test_bad_namespaces_cannot_be_written() -> None:
    for ns in [(), (b"",), tuple([b"a"] * 33)]:
        with pytest.raises(CatalogError):
            namespace_text(ns)


def test_a_track_inherits_the_catalogs_namespace_unless_it_names_its_own() -> None:
    own = video_track(codec="avc1", width=2, height=2, framerate=1, bitrate=1)
    staged = video_track(codec="avc1", width=2, height=2, framerate=1, bitrate=1, namespace="live/show/stage/bob")
    assert track_namespace(own, HOST) == HOST
    assert track_namespace(staged, HOST) == BOB


def test_media_role_from_role_or_codec() -> None:
    assert media_role(camera().tracks[0]) == "video" and media_role(camera().tracks[1]) == "audio"
    bare = decode_catalog(
        b'{"version":"draft-01","tracks":[{"name":"v","packaging":"loc","codec":"vp8"},'
        b'{"name":"a","packaging":"loc","codec":"opus"},{"name":"t","packaging":"loc","role":"caption"},'
        b'{"name":"m","packaging":"mediatimeline","codec":"avc1"}]}'
    )
    assert isinstance(bare, Catalog)
    assert [media_role(t) for t in bare.tracks] == ["video", "audio", None, None]


def test_stage_tracks_take_the_first_video_and_audio_with_the_participants_namespace_and_name() -> None:
    entries = stage_tracks(camera(), BOB, label="bob")
    assert [(t.name, t.role, t.namespace, t.label) for t in entries] == [
        ("video", "video", "live/show/stage/bob", "bob"),
        ("audio", "audio", "live/show/stage/bob", "bob"),
    ]
    assert entries[0].codec == "avc1.42e01f" and (entries[0].width, entries[0].height) == (320, 240)
    assert entries[1].samplerate == 48000 and entries[1].channel_config == "1"
    assert stage_tracks(camera(), BOB)[0].label == "b"  # no label given: the participant's own


def test_stage_tracks_leave_out_what_is_not_the_participants_own_media() -> None:
    elsewhere = video_track(codec="avc1", width=2, height=2, framerate=1, bitrate=1, name="x", namespace="live/show")
    second = video_track(codec="avc1", width=2, height=2, framerate=1, bitrate=1, name="hd")
    odd = video_track(codec="avc1", width=2, height=2, framerate=1, bitrate=1, name="y", namespace="a//b")
    own_explicit = audio_track(bitrate=1, namespace="live/show/stage/bob")
    catalog = make_catalog([elsewhere, odd, *camera().tracks, second], generated_at=1)
    # A participant cannot make the host list someone else's track (here: the host's own video).
    assert [t.name for t in stage_tracks(catalog, BOB)] == ["video", "audio"]
    assert [t.name for t in stage_tracks(make_catalog([own_explicit], generated_at=1), BOB)] == ["audio"]
    assert stage_tracks(make_catalog([], generated_at=1), BOB) == ()  # camera and microphone off
    same_name = make_catalog([video_track(codec="vp8", width=2, height=2, framerate=1, bitrate=1, name="m"),
                              audio_track(bitrate=1, name="m")], generated_at=1)  # fmt: skip
    assert [t.role for t in stage_tracks(same_name, BOB)] == ["video"]  # names stay unique in bob's namespace


def test_the_hosts_catalog_lists_its_own_tracks_then_the_stage() -> None:
    own = [video_track(codec="avc1.42c01e", width=640, height=360, framerate=30, bitrate=1), audio_track(bitrate=1)]
    alice = stage_tracks(camera(), (*HOST, b"stage", b"alice"), label="alice")
    bob = stage_tracks(camera(), BOB, label="bob")
    catalog = catalog_with_stage(own, (*alice, *bob), namespace=HOST, generated_at=5)
    assert [(t.name, t.namespace) for t in catalog.tracks] == [
        ("video", None),
        ("audio", None),
        ("video", "live/show/stage/alice"),
        ("audio", "live/show/stage/alice"),
        ("video", "live/show/stage/bob"),
        ("audio", "live/show/stage/bob"),
    ]
    # Through JSON and back, as a viewer reads it: `namespace` as the draft spells it.
    data = encode_catalog(catalog)
    assert b'"name":"video","namespace":"live/show/stage/bob","packaging":"loc"' in data
    assert decode_catalog(data) == catalog
    assert catalog_with_stage(own, (), namespace=HOST, generated_at=5) == make_catalog(own, generated_at=5)


def test_the_hosts_catalog_refuses_stage_entries_that_would_clash() -> None:
    own = [video_track(codec="avc1", width=2, height=2, framerate=1, bitrate=1)]
    bob = stage_tracks(camera(), BOB)
    with pytest.raises(CatalogError, match="twice"):
        catalog_with_stage(own, (*bob, *bob), namespace=HOST)
    with pytest.raises(CatalogError, match="no namespace of its own"):
        catalog_with_stage(own, camera().tracks[1:], namespace=HOST)
    in_ours = video_track(codec="avc1", width=2, height=2, framerate=1, bitrate=1, name="v", namespace="live/show")
    with pytest.raises(CatalogError, match="no namespace of its own"):
        catalog_with_stage(own, [in_ours], namespace=HOST)
