"""The MSF catalog (draft-ietf-moq-msf, editor's copy of 2026-08-04, §"Catalog"): JSON describing a broadcast's tracks.

The catalog is a track named exactly `catalog` in the broadcast's namespace (§"Catalog": "The top-level catalog
track MUST have a case-sensitive Track Name of \"catalog\""). Object 0 of each of its groups holds an independent
catalog; later objects of the group hold delta updates (§"Delta updates"). Field names on the wire are the draft's
camelCase names (Tables 1 and 2); the Structs here use snake_case and `rename="camel"`.

Decoding ignores unknown fields (§"Catalog": "A parser MUST ignore fields it does not understand") and enforces
the fields whose "Required: Yes" every example of the draft honours: the root's `version` and `tracks`, a track's
`name` and `packaging`. The draft marks `isLive` "Required: Yes" as well, yet its own examples omit it for
catalog-reference, media-timeline and publish tracks; so it is optional here, and `validate_catalog` reports a LOC
track without it, along with the other conditional rules (codec, bitrate, samplerate, channelConfig).

Ambiguities and how they are resolved:

- The version string. §"MSF version" says to write "draft-XX"; the -01 text's examples say "1", the editor's copy
  says "draft-01". We write "draft-01" and accept both on input (`SUPPORTED_VERSIONS`).
- An "update" operation "MUST include a Parent Name", but the draft's own example names its target with `name`.
  `apply_delta` takes `parentName` when present, else `name`.
- `namespace` is a JSON string, whereas MOQT namespaces are tuples of byte fields. The draft's examples write the
  fields with '/' between them ("conference.example.com/conference123/alice"); we write each field percent-encoded
  (every byte but RFC 3986's unreserved ones, '/' included) with '/' between them, which reads the same for plain
  names and keeps any field recoverable (`namespace_text`, `parse_namespace_text`). It is the form of the relay's
  /watch/NAME paths, which the browser decodes with the same rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal
from urllib.parse import quote, unquote_to_bytes

import msgspec

from moq.media.errors import CatalogError
from moq.media.frames import StreamInfo
from moq.wire.primitives import MAX_FULL_TRACK_NAME_BYTES, MAX_NAMESPACE_FIELDS, TrackNamespace

#: The catalog track's name (MSF §"Catalog").
CATALOG_TRACK_NAME = "catalog"
#: The version string we write (MSF §"MSF version": "draft-XX" for Internet-Draft releases).
MSF_VERSION = "draft-01"
#: Versions we parse; "1" is what the -01 text's examples wrote. A subscriber "MUST NOT attempt to parse a catalog
#: version which it does not understand" (§"MSF version").
SUPPORTED_VERSIONS = frozenset({"draft-01", "1"})

Packaging = str
"""`packaging` values (MSF Table 3): "loc", "mediatimeline", "eventtimeline", "moqlog", "moqmetrics", "catalog";
CMSF adds "cmaf". Kept as a plain string: an unknown packaging is a track to skip, not a catalog to refuse."""


class Buffers(msgspec.Struct, frozen=True, omit_defaults=True):
    """Target buffers in milliseconds (MSF §"Buffers")."""

    target: int | None = None
    min: int | None = None
    max: int | None = None


class Accessibility(msgspec.Struct, frozen=True):
    """An accessibility descriptor (MSF §"Accessibility")."""

    scheme: str
    value: str


class InitData(msgspec.Struct, frozen=True):
    """An Initialization Data List entry (MSF §"Initialization Data List")."""

    id: str
    type: str
    data: str


class _TrackFields(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Every track object field (MSF Table 2), all optional; `Track` makes the required ones required."""

    name: str | None = None
    namespace: str | None = None
    packaging: Packaging | None = None
    event_type: str | None = None
    is_live: bool | None = None
    target_latency: int | float | None = None
    buffers: Buffers | None = None
    role: str | None = None
    label: str | None = None
    render_group: int | None = None
    alt_group: int | None = None
    init_ref: str | None = None
    depends: tuple[str, ...] | None = None
    temporal_id: int | None = None
    spatial_id: int | None = None
    codec: str | None = None
    mime_type: str | None = None
    framerate: int | float | None = None
    timescale: int | None = None
    bitrate: int | None = None
    avg_bitrate: int | None = None
    max_gop_duration: int | float | None = None
    max_group_duration: int | float | None = None
    width: int | None = None
    height: int | None = None
    samplerate: int | None = None
    channel_config: str | None = None
    display_width: int | None = None
    display_height: int | None = None
    lang: str | None = None
    track_duration: int | float | None = None
    template: tuple[Any, ...] | None = None
    auth_info: dict[str, Any] | None = None
    accessibility: tuple[Accessibility, ...] | None = None
    encryption_scheme: str | None = None
    cipher_suite: str | None = None
    key_id: str | None = None
    track_base_key: str | None = None
    connection_uri: str | None = None
    token: str | None = None


class Track(_TrackFields, frozen=True, kw_only=True):
    """A track object (MSF §"Tracks object"); `name` and `packaging` are required."""

    name: str
    packaging: Packaging


#: Field names a delta's track object may set on a track.
_TRACK_FIELDS = Track.__struct_fields__


class TrackPatch(_TrackFields, frozen=True, kw_only=True):
    """A track object inside a delta operation: any subset of fields, plus the parent to clone or update."""

    parent_name: str | None = None
    parent_namespace: str | None = None

    def fields(self) -> dict[str, Any]:
        """The track fields this patch sets (parent fields excluded)."""
        return {f: v for f in _TRACK_FIELDS if (v := getattr(self, f)) is not None}


class DeltaOperation(msgspec.Struct, frozen=True):
    """One operation of a delta update (MSF §"Delta update")."""

    op: Literal["add", "remove", "clone", "update"]
    tracks: tuple[TrackPatch, ...]


class Catalog(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """An independent catalog (MSF §"Root Catalog Fields"). Field order puts `initDataList` after `tracks`, as the
    draft requires."""

    version: str
    generated_at: int | None = None
    #: Written only when true (§"Is Complete": "MUST NOT be included if it is FALSE").
    is_complete: bool = False
    tracks: tuple[Track, ...]
    publish_tracks: tuple[Track, ...] | None = None
    init_data_list: tuple[InitData, ...] | None = None

    def track(self, name: str, namespace: str | None = None) -> Track | None:
        """The track called `name` (in `namespace`, where given), or None."""
        for t in self.tracks:
            if t.name == name and (namespace is None or t.namespace in (None, namespace)):
                return t
        return None


class CatalogDelta(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A delta update (MSF §"Delta updates"): `generatedAt` and at least one operation, no other root field."""

    generated_at: int
    delta_update: tuple[DeltaOperation, ...]


class _Probe(msgspec.Struct, rename="camel"):
    """Just enough of the root to tell a delta from an independent catalog without decoding it twice."""

    delta_update: msgspec.Raw = msgspec.Raw(b"")


_probe_decoder = msgspec.json.Decoder(_Probe)
_catalog_decoder = msgspec.json.Decoder(Catalog)
_delta_decoder = msgspec.json.Decoder(CatalogDelta)
_encoder = msgspec.json.Encoder()


def encode_catalog(catalog: Catalog | CatalogDelta) -> bytes:
    """The catalog object's payload: compact JSON (MSF §"Catalog")."""
    if isinstance(catalog, CatalogDelta) and not catalog.delta_update:
        raise CatalogError("a delta update needs at least one operation")
    return _encoder.encode(catalog)


def decode_catalog(data: bytes, *, check_version: bool = True) -> Catalog | CatalogDelta:
    """Parse a catalog object: an independent `Catalog` or a `CatalogDelta` (the root has `deltaUpdate`).

    Raises `CatalogError` for bad JSON, a missing required field, a delta without operations, or (with
    `check_version`) a version outside `SUPPORTED_VERSIONS`.
    """
    try:
        probe = _probe_decoder.decode(data)
        if bytes(probe.delta_update) not in (b"", b"null"):
            delta = _delta_decoder.decode(data)
            if not delta.delta_update:
                raise CatalogError("a delta update needs at least one operation")
            return delta
        catalog = _catalog_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CatalogError(f"invalid catalog: {exc}") from None
    if check_version and catalog.version not in SUPPORTED_VERSIONS:
        raise CatalogError(f"catalog version {catalog.version!r} is not one we understand")
    return catalog


def _key(namespace: str | None, name: str | None, default_namespace: str | None) -> tuple[str | None, str | None]:
    return (namespace if namespace is not None else default_namespace, name)


def apply_delta(catalog: Catalog, delta: CatalogDelta, namespace: str | None = None) -> Catalog:
    """The catalog after the delta's operations, applied in order (MSF §"Delta updates").

    `namespace` is the catalog track's own, which tracks without a `namespace` inherit. An operation that names a
    track that does not exist (or adds one that does) is a `CatalogError`.
    """
    tracks: dict[tuple[str | None, str | None], Track] = {
        _key(t.namespace, t.name, namespace): t for t in catalog.tracks
    }
    for operation in delta.delta_update:
        for patch in operation.tracks:
            fields = patch.fields()
            if operation.op == "add":
                key = _key(patch.namespace, patch.name, namespace)
                if key in tracks:
                    raise CatalogError(f"delta adds track {patch.name!r}, which exists")
                try:
                    tracks[key] = Track(**fields)
                except TypeError:
                    raise CatalogError(f"added track {patch.name!r} lacks name or packaging") from None
            elif operation.op == "remove":
                key = _key(patch.namespace, patch.name, namespace)
                if tracks.pop(key, None) is None:
                    raise CatalogError(f"delta removes track {patch.name!r}, which does not exist")
            else:
                # "clone" and "update" name their target with parentName; the draft's own update example uses
                # `name`, so fall back to it for updates.
                parent_name = patch.parent_name
                if parent_name is None and operation.op == "update":
                    parent_name = patch.name
                parent_key = _key(patch.parent_namespace, parent_name, namespace)
                parent = tracks.get(parent_key)
                if parent is None:
                    raise CatalogError(f"delta {operation.op}s track {parent_name!r}, which does not exist")
                if operation.op == "clone":
                    new = msgspec.structs.replace(parent, **fields)
                    key = _key(new.namespace, new.name, namespace)
                    if key in tracks:
                        raise CatalogError(f"cloned track {new.name!r} needs a new name")
                    tracks[key] = new
                else:
                    if patch.parent_name is None:
                        fields.pop("name", None)  # `name` named the target; it is not a new value
                    updated = msgspec.structs.replace(parent, **fields)
                    new_key = _key(updated.namespace, updated.name, namespace)
                    # Rebuilt rather than deleted and re-added: the track keeps its place in the list.
                    tracks = {
                        (new_key if k == parent_key else k): (updated if k == parent_key else v)
                        for k, v in tracks.items()
                    }
    return msgspec.structs.replace(catalog, tracks=tuple(tracks.values()), generated_at=delta.generated_at)


def validate_catalog(catalog: Catalog) -> list[str]:
    """Problems with the draft's conditional rules (empty when none); decoding already enforced the required fields.

    Checked: unique names per namespace (§"Track name"); LOC tracks have `isLive` (§"Is Live"); audio and video
    tracks have `codec` (§"Codec") and `bitrate` (§"Maximum Bitrate"); audio tracks have `samplerate` and
    `channelConfig`; `targetLatency` and `buffers` exclude each other; `eventType` goes with "eventtimeline" only;
    `trackDuration` only on tracks that are not live.
    """
    problems: list[str] = []
    seen: set[tuple[str | None, str]] = set()
    for t in catalog.tracks:
        key = (t.namespace, t.name)
        if key in seen:
            problems.append(f"track {t.name!r}: name not unique in its namespace")
        seen.add(key)
        media = t.role in ("video", "audio") or (t.packaging == "loc" and t.role is None)
        if t.packaging == "loc" and t.is_live is None:
            problems.append(f"track {t.name!r}: isLive is required")
        if media and t.codec is None:
            problems.append(f"track {t.name!r}: codec is required for audio and video")
        if media and t.bitrate is None:
            problems.append(f"track {t.name!r}: bitrate is required for audio and video")
        if t.role == "audio" and (t.samplerate is None or t.channel_config is None):
            problems.append(f"track {t.name!r}: samplerate and channelConfig are required for audio")
        if t.target_latency is not None and t.buffers is not None:
            problems.append(f"track {t.name!r}: targetLatency and buffers must not both be present")
        if (t.packaging == "eventtimeline") != (t.event_type is not None):
            problems.append(f"track {t.name!r}: eventType goes with packaging eventtimeline, and only with it")
        if t.is_live and t.track_duration is not None:
            problems.append(f"track {t.name!r}: trackDuration must not be present on a live track")
    return problems


# -- Producing catalogs ------------------------------------------------------------------------------------------


def _number(value: float) -> int | float:
    """30.0 -> 30: JSON readers and humans expect an integer frame rate where there is one."""
    return int(value) if float(value).is_integer() else value


def video_track(
    name: str = "video",
    *,
    codec: str,
    width: int,
    height: int,
    framerate: float,
    bitrate: int,
    render_group: int | None = 1,
    is_live: bool = True,
    namespace: str | None = None,
    max_gop_duration: int | None = None,
    alt_group: int | None = None,
    target_latency: int | None = None,
    label: str | None = None,
) -> Track:
    """A LOC video track entry (MSF §"LOC packaging": `packaging` "loc"; role "video")."""
    return Track(
        name=name,
        namespace=namespace,
        packaging="loc",
        is_live=is_live,
        target_latency=target_latency,
        role="video",
        label=label,
        render_group=render_group,
        alt_group=alt_group,
        codec=codec,
        framerate=_number(framerate),
        bitrate=bitrate,
        max_gop_duration=max_gop_duration,
        width=width,
        height=height,
    )


def audio_track(
    name: str = "audio",
    *,
    codec: str = "opus",
    samplerate: int = 48000,
    channels: int = 2,
    bitrate: int,
    render_group: int | None = 1,
    is_live: bool = True,
    namespace: str | None = None,
    target_latency: int | None = None,
    lang: str | None = None,
    label: str | None = None,
) -> Track:
    """A LOC audio track entry; `channelConfig` is the channel count as a string, as the draft's examples write it."""
    return Track(
        name=name,
        namespace=namespace,
        packaging="loc",
        is_live=is_live,
        target_latency=target_latency,
        role="audio",
        label=label,
        render_group=render_group,
        codec=codec,
        bitrate=bitrate,
        samplerate=samplerate,
        channel_config=str(channels),
        lang=lang,
    )


def track_for_stream(
    name: str, info: StreamInfo, *, render_group: int | None = 1, is_live: bool = True, namespace: str | None = None
) -> Track:
    """The catalog entry for one stream of the encoding pipeline."""
    if info.kind == "video":
        if info.width is None or info.height is None or info.framerate is None:
            raise CatalogError("a video stream needs width, height and framerate for its catalog entry")
        gop_ms = round(info.gop * 1000 / info.framerate) if info.gop else None
        return video_track(
            name,
            codec=info.codec,
            width=info.width,
            height=info.height,
            framerate=info.framerate,
            bitrate=info.bitrate or 0,
            render_group=render_group,
            is_live=is_live,
            namespace=namespace,
            max_gop_duration=gop_ms,
        )
    return audio_track(
        name,
        codec=info.codec,
        samplerate=info.sample_rate or 48000,
        channels=info.channels or 2,
        bitrate=info.bitrate or 0,
        render_group=render_group,
        is_live=is_live,
        namespace=namespace,
    )


def make_catalog(
    tracks: Iterable[Track],
    *,
    generated_at: int | None = None,
    version: str = MSF_VERSION,
    is_complete: bool = False,
) -> Catalog:
    """An independent catalog. `generatedAt` defaults to now (ms since the epoch) when a track is live, and is left
    out otherwise (§"Generated at": "SHOULD NOT be included if the isLive field is false")."""
    tracks = tuple(tracks)
    if generated_at is None and any(t.is_live for t in tracks):
        generated_at = time.time_ns() // 1_000_000
    return Catalog(version=version, generated_at=generated_at, is_complete=is_complete, tracks=tracks)


def delta_update(operations: Sequence[DeltaOperation], *, generated_at: int | None = None) -> CatalogDelta:
    """A delta update with these operations, stamped now unless `generated_at` is given."""
    if not operations:
        raise CatalogError("a delta update needs at least one operation")
    stamp = generated_at if generated_at is not None else time.time_ns() // 1_000_000
    return CatalogDelta(generated_at=stamp, delta_update=tuple(operations))


# -- Namespaces in the catalog, and the tracks of a stage --------------------------------------------------------

#: The longest `namespace` string we parse: every byte of the largest namespace MOQT allows percent-encoded (3
#: characters each), plus the separators.
MAX_NAMESPACE_TEXT = 3 * MAX_FULL_TRACK_NAME_BYTES + MAX_NAMESPACE_FIELDS


def namespace_text(ns: TrackNamespace) -> str:
    """A track entry's `namespace` string for a MOQT namespace: each field percent-encoded, '/' between them
    (see the module notes): (b"live", b"demo", b"stage", b"bob") -> "live/demo/stage/bob"."""
    if not ns or any(not f for f in ns) or len(ns) > MAX_NAMESPACE_FIELDS:
        raise CatalogError(f"not a namespace: {ns!r} (1 to {MAX_NAMESPACE_FIELDS} non-empty fields)")
    return "/".join(quote(f, safe="") for f in ns)


def parse_namespace_text(text: str) -> TrackNamespace:
    """The MOQT namespace a track entry's `namespace` string names (the inverse of `namespace_text`). A string the
    draft's way ("example.com/live/alice") reads as its '/'-separated fields. Raises `CatalogError` for an empty
    field, too many fields or too many bytes."""
    if len(text) > MAX_NAMESPACE_TEXT:
        raise CatalogError(f"namespace {text[:40]!r}...: over {MAX_NAMESPACE_TEXT} characters")
    fields = tuple(unquote_to_bytes(part) for part in text.split("/"))
    if any(not f for f in fields):
        raise CatalogError(f"namespace {text!r}: a field is empty")
    if len(fields) > MAX_NAMESPACE_FIELDS:
        raise CatalogError(f"namespace {text!r}: over {MAX_NAMESPACE_FIELDS} fields")
    if sum(len(f) for f in fields) > MAX_FULL_TRACK_NAME_BYTES:
        raise CatalogError(f"namespace {text!r}: over {MAX_FULL_TRACK_NAME_BYTES} bytes")
    return fields


def track_namespace(track: Track, catalog_namespace: TrackNamespace) -> TrackNamespace:
    """The namespace a track entry lives in: its own `namespace`, else the catalog track's (§"Track namespace":
    "each track MUST inherit the namespace of the catalog track")."""
    return catalog_namespace if track.namespace is None else parse_namespace_text(track.namespace)


def media_role(track: Track) -> Literal["video", "audio"] | None:
    """ "video" or "audio" for a LOC media track (its `role`, else its codec), None for anything else."""
    if track.packaging != "loc":
        return None
    if track.role in ("video", "audio"):
        return "video" if track.role == "video" else "audio"
    if track.role is not None:
        return None
    codec = track.codec or ""
    if codec.startswith(("avc1", "avc3", "hev1", "hvc1", "vp08", "vp8", "vp09", "av01")):
        return "video"
    if codec.startswith(("opus", "mp4a", "flac", "vorbis")):
        return "audio"
    return None


def stage_tracks(catalog: Catalog, namespace: TrackNamespace, *, label: str | None = None) -> tuple[Track, ...]:
    """The entries a host's catalog lists for a stage participant whose own catalog (in `namespace`) is `catalog`:
    its first LOC video track and its first LOC audio track, each with `namespace` set to the participant's (so a
    player subscribes to them there, not in the host's namespace) and, when given, `label` (the participant's name).

    Only tracks in the participant's own namespace are taken: a participant's catalog may point at tracks
    elsewhere, and a host must not be made to list someone else's tracks. At most one video and one audio track
    (with different names), so the host's catalog grows by at most two entries per participant."""
    text = namespace_text(namespace)
    chosen: dict[str, Track] = {}
    for track in catalog.tracks:
        role = media_role(track)
        if role is None or role in chosen or any(t.name == track.name for t in chosen.values()):
            continue  # one of each, and names unique in the namespace (MSF §"Track name")
        try:
            if track_namespace(track, namespace) != namespace:
                continue
        except CatalogError:
            continue
        changes: dict[str, Any] = {"namespace": text}
        if label is not None:
            changes["label"] = label
        chosen[role] = msgspec.structs.replace(track, **changes)
    return tuple(chosen[role] for role in ("video", "audio") if role in chosen)


def catalog_with_stage(
    own: Iterable[Track], stage: Iterable[Track], *, namespace: TrackNamespace, generated_at: int | None = None
) -> Catalog:
    """The host's catalog: its own tracks (in its namespace, `namespace`), then the stage's entries, which must each
    live in another namespace and be unique there (`CatalogError` otherwise: a bug in whoever built them)."""
    own = tuple(own)
    stage = tuple(stage)
    seen: set[tuple[TrackNamespace, str]] = set()
    for track in (*own, *stage):
        key = (track_namespace(track, namespace), track.name)
        if key in seen:
            raise CatalogError(f"track {track.name!r} twice in namespace {namespace_text(key[0])!r}")
        seen.add(key)
    for track in stage:
        if track_namespace(track, namespace) == namespace:
            raise CatalogError(f"stage track {track.name!r} has no namespace of its own")
    return make_catalog((*own, *stage), generated_at=generated_at)
