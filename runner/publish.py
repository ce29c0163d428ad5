"""LiveKit: one connection to a room with one pre-encoded H.264 screen-share track and, with
``audio.enabled``, the desktop's sound as a screen-share-audio track (Opus, encrypted by the SDK).

A ``Publisher`` lives for one connection. When the SDK gives up on a connection it reports
"disconnected"; the service then builds a new ``Publisher`` (new ``rtc.Room``, freshly minted
token, republished track) instead of reusing anything from the old one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from livekit import rtc

from runner.config import FrameEngine, Settings
from runner.control.messages import MAX_RPC_PAYLOAD_CHARS
from runner.logs import get_logger
from runner.nackwatch import NACK_WATCH_POLL_S, NackWatch, ReportWatch
from runner.roomconfig import configure_room
from runner.tokens import sign_token

log = get_logger(__name__)

TRACK_NAME = "screen"
AUDIO_TRACK_NAME = "desktop-audio"
# Both tracks ask for one media stream: browsers lip-sync only the tracks of one stream.
# livekit-server 1.13.5 still gives each track a stream of its own (participant|track, measured in
# Chromium), so today the sound is not lip-synced (README, Known limitations); asked anyway.
STREAM_ID = "desktop"
# 0: the SDK's audio source keeps no queue of its own and hands each 10 ms frame straight to
# WebRTC (LiveKit's recommended mode for real-time capture). The capture is paced by the audio
# server's clock already, and the runner's own backlog (runner/audio/pacing.py) bounds what waits.
# A queue would keep whatever burst filled it as latency for the rest of the stream (the sink
# plays at exactly the rate the queue drains).
AUDIO_QUEUE_MS = 0
# The disconnect reason when LiveKit stopped reporting on the video (runner.nackwatch.ReportWatch).
UNREPORTED = "MEDIA_UNREPORTED"
# The disconnect reason after the SDK's own full reconnect (its session restarted and the tracks
# republished): the runner then leaves and joins afresh, as after any disconnect. After a 30 s
# outage, twice in CI (tests/test_faults.py), the republished video reached no viewer: a viewer
# rejoining every 3 s for 35 s decoded nothing, while the runner sent keyframes for each of its
# joins and the control channel worked both ways; a fresh join of the runner is the path every
# other recovery takes (cause not found; it never happened in ~30 local runs).
RESTARTED = "SDK_RESTARTED"
# libwebrtc drops a frame whose capture time does not advance by at least 1 ms.
MIN_TIMESTAMP_STEP_US = 1000


def mint_token(settings: Settings) -> str:
    """A fresh access token with only the grants the runner needs.

    Join this one room, publish a screen share and its audio, send and receive data; no room
    administration. The subscribe grant is needed although the runner subscribes to nothing
    (auto_subscribe is off) but the controller's microphone with ``audio.microphone``: without
    it LiveKit sends no participant updates, so data packets arrive without a sender and nobody
    is seen leaving (measured with livekit-server 1.13.5).
    """
    lk = settings.livekit
    if lk.token is not None:
        return lk.token.get_secret_value()
    video: dict[str, object] = {
        "roomJoin": True,
        "room": lk.room,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        "canPublishSources": ["screen_share", "screen_share_audio"],
    }
    return sign_token(lk, video, lk.token_ttl_s, name=lk.name)


@dataclass(frozen=True)
class SdkKey:
    """The passphrase and key index the SDK's key provider holds: data packets always, frames
    with the sdk engine. The service owns the current one, so a reconnect after a rotation uses
    the rotated key, not the one from start-up."""

    passphrase: bytes = field(repr=False)
    index: int


@dataclass(frozen=True)
class Feedback:
    """What the receivers asked for since the last poll."""

    keyframe: bool
    target_bitrate: int | None
    republished: bool = False  # the SDK republished the track: its new receivers need an IDR


@dataclass(frozen=True)
class VideoCounters:
    """The published video's counters from the SDK's publisher stats (since the track began)."""

    nacks: int  # NACK packets received
    resent: int  # packets sent again
    sent: int  # packets sent
    reports: int  # receiver reports on it from LiveKit (round-trip measurements)
    rtt_s: float | None  # the last round trip to LiveKit


def video_counters(stats: rtc.RtcStats) -> VideoCounters | None:
    """The published video's counters; None before it has sent anything. After a republish the
    SDK may list the old sender too: the active one counts, with LiveKit's reports on it (the
    remote-inbound entry whose ``local_id`` is its id)."""
    outbound, remote = [], {}
    for entry in stats.publisher_stats:
        if entry.HasField("outbound_rtp") and entry.outbound_rtp.stream.kind == "video":
            outbound.append(entry.outbound_rtp)
        elif entry.HasField("remote_inbound_rtp") and entry.remote_inbound_rtp.stream.kind == "video":
            remote[entry.remote_inbound_rtp.remote_inbound.local_id] = entry.remote_inbound_rtp.remote_inbound
    if not outbound:
        return None
    video = max(outbound, key=lambda o: (o.outbound.active, o.sent.packets_sent))
    reports = remote.get(video.rtc.id)
    return VideoCounters(nacks=video.outbound.nack_count, resent=video.outbound.retransmitted_packets_sent,
                         sent=video.sent.packets_sent,
                         reports=reports.round_trip_time_measurements if reports is not None else 0,
                         rtt_s=(reports.round_trip_time or None) if reports is not None else None)


class Publisher:
    """A connected room and its published screen-share track. Create with ``connect``."""

    def __init__(self, room: rtc.Room, source: rtc.EncodedVideoSource, track_sid: str, *,
                 frame_engine: FrameEngine, key_index: int) -> None:
        self.room = room
        self.source = source
        self.track_sid = track_sid
        # The desktop-audio track, when published (see publish_audio).
        self.audio_source: rtc.AudioSource | None = None
        self.audio_track: rtc.LocalAudioTrack | None = None
        self.audio_sid: str | None = None
        self.disconnected = asyncio.Event()
        self.disconnect_reason: str = ""
        self.reconnecting = False  # the SDK lost the server and is trying to resume
        self._last_ts_us = 0
        room.on("disconnected", self._on_disconnected)
        room.on("reconnecting", self._on_reconnecting)
        room.on("reconnected", self._on_reconnected)
        room.on("local_track_republished", self._on_republished)
        room.on("participant_connected", self._on_participant_connected)
        self._frame_engine = frame_engine
        self._key_index = key_index  # the frame cryptor's index, re-applied after a republish
        self._republished = False  # handed out once by take_feedback
        self._restarted = False  # the SDK republished the video: join afresh once it is back
        self._joined = False  # a participant joined since the last take_feedback
        self._lost_for_good = False  # NACKs the runner cannot answer (runner.nackwatch)
        self._pushed = 0  # video frames handed to the SDK (runner.nackwatch.ReportWatch)
        self._stats_task: asyncio.Task[None] | None = None

    def _on_republished(self, publication: rtc.LocalTrackPublication, previous_sid: str) -> None:
        """After a full reconnect of its own the SDK republishes the track under a new sid with
        a new frame cryptor, switched on: without this, frames would be encrypted twice with
        the runner engine (viewers see green or black until the runner restarts)."""
        if previous_sid == self.audio_sid:
            self.audio_sid = publication.sid
            self._configure_audio_cryptor(self._key_index)
            log.info("track_republished", track_sid=publication.sid, previous_sid=previous_sid)
            return
        if previous_sid != self.track_sid:
            return
        self.track_sid = publication.sid
        self._configure_frame_cryptor(self._frame_engine, self._key_index)
        self._republished = self._restarted = True
        log.info("track_republished", track_sid=publication.sid, previous_sid=previous_sid)

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        """A participant joined: it will want a keyframe. LiveKit asks for one when it subscribes,
        but after the SDK's full reconnect that request was seen never to arrive (CI,
        tests/test_faults.py: a viewer rejoining for 30 s without a picture, no keyframe request
        counted); held like LiveKit's requests, so it costs at most one IDR."""
        self._joined = True

    def _on_reconnecting(self) -> None:
        self.reconnecting = True
        log.warning("livekit_reconnecting")

    def _on_reconnected(self) -> None:
        self.reconnecting = False
        log.info("livekit_reconnected")
        if self._restarted:
            # A full reconnect of the SDK's own (not a resume): leave, and join afresh (RESTARTED).
            self.disconnect_reason = RESTARTED
            self.disconnected.set()

    @property
    def live(self) -> bool:
        """Connected and not resuming: frames pushed now reach the server."""
        return not self.reconnecting and not self.disconnected.is_set()

    def _on_disconnected(self, reason: rtc.DisconnectReason.ValueType = rtc.DisconnectReason.UNKNOWN_REASON) -> None:
        try:
            self.disconnect_reason = rtc.DisconnectReason.Name(reason)
        except ValueError:
            self.disconnect_reason = str(reason)
        self.disconnected.set()

    @classmethod
    async def connect(cls, settings: Settings, width: int, height: int, key: SdkKey) -> Publisher:
        """Connect, publish the track and return; raises on any failure (nothing left open)."""
        lk, e2ee = settings.livekit, settings.e2ee
        assert lk.url is not None
        options = rtc.RoomOptions(
            auto_subscribe=False,
            dynacast=False,
            connect_timeout=lk.connect_timeout_s,
            # `encryption` (not the deprecated `e2ee`) also encrypts data packets.
            encryption=rtc.E2EEOptions(
                key_provider_options=rtc.KeyProviderOptions(shared_key=key.passphrase)
            ),
            # The SDK buffers an RPC payload whole (RPC v2 rides a data stream) before any handler
            # sees it: unbounded, a peer's 16 MB payload cost +82 MB resident. Bounded here to the
            # control protocol's own limit, the SDK refuses the stream as it arrives (+1 MB).
            data_stream=rtc.DataStreamOptions(max_payload_byte_length=MAX_RPC_PAYLOAD_CHARS),
        )
        await configure_room(settings)  # logs and goes on when it cannot
        room = rtc.Room()
        try:
            await asyncio.wait_for(
                room.connect(lk.url, mint_token(settings), options), timeout=lk.connect_timeout_s + 5
            )
            key_provider = room.e2ee_manager.key_provider
            if key.index != 0 and key_provider is not None:
                key_provider.set_shared_key(key.passphrase, key.index)
            source = rtc.EncodedVideoSource(width, height)
            track = rtc.LocalVideoTrack.create_video_track(TRACK_NAME, source)
            publish_options = rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_SCREENSHARE,
                video_codec=rtc.VideoCodec.H264,
                video_encoder=rtc.VideoEncoderBackend.ENCODER_BACKEND_PRE_ENCODED,
                simulcast=False,
            )
            publish_options.video_encoding.max_bitrate = settings.encoder.max_bitrate
            publish_options.video_encoding.max_framerate = settings.capture.fps
            publish_options.stream = STREAM_ID
            publication = await room.local_participant.publish_track(track, publish_options)
            publisher = cls(room, source, publication.sid, frame_engine=e2ee.frame_engine, key_index=key.index)
            publisher.start_stats_watch()
            publisher._configure_frame_cryptor(e2ee.frame_engine, key.index)
            if settings.audio.enabled:
                await publisher._publish_audio(muted=settings.audio.muted)
        except BaseException:
            await room.disconnect()
            raise
        log.info(
            "track_published",
            room=lk.room,
            identity=lk.identity,
            track_sid=publication.sid,
            width=width,
            height=height,
            frame_engine=e2ee.frame_engine,
            key_index=key.index,
        )
        return publisher

    def _configure_frame_cryptor(self, frame_engine: FrameEngine, key_index: int) -> None:
        """Make sure each frame is encrypted exactly once.

        With ``frame_engine = "runner"`` the pipeline encrypts access units before
        ``capture_frame``; the SDK's cryptor for this track is switched off (the track is
        still announced as GCM, so viewers decrypt, and data packets stay SDK-encrypted).
        With ``"sdk"`` the SDK's cryptor encrypts, at the configured key index.
        """
        identity = self.room.local_participant.identity
        cryptors = [
            c
            for c in self.room.e2ee_manager.frame_cryptors()
            if c.track_sid == self.track_sid and c.participant_identity == identity
        ]
        if not cryptors:
            raise RuntimeError(f"no SDK frame cryptor found for track {self.track_sid}")
        for cryptor in cryptors:
            if frame_engine == "runner":
                cryptor.set_enabled(False)
            else:
                cryptor.set_key_index(key_index)
                cryptor.set_enabled(True)

    async def _publish_audio(self, *, muted: bool) -> None:
        """Publish the desktop-audio track: the SDK encodes Opus and encrypts every frame with
        the room's key at the current key index (the one track whose cryptor stays on)."""
        from runner.audio.format import DESKTOP, SAMPLE_RATE

        source = rtc.AudioSource(SAMPLE_RATE, DESKTOP.channels, queue_size_ms=AUDIO_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK_NAME, source)
        # RED off, as livekit-client publishes with E2EE on; DTX off, so a silent desktop still
        # sends a steady stream and the viewer's jitter buffer has no gaps to adapt to.
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO, stream=STREAM_ID,
                                          dtx=False, red=False)
        try:
            publication = await self.room.local_participant.publish_track(track, options)
        except BaseException:
            await source.aclose()
            raise
        self.audio_source, self.audio_track, self.audio_sid = source, track, publication.sid
        self._configure_audio_cryptor(self._key_index)
        if muted:
            track.mute()
        log.info("audio_track_published", track_sid=publication.sid, key_index=self._key_index, muted=muted)

    def _configure_audio_cryptor(self, key_index: int) -> None:
        """The audio track is always encrypted by the SDK (there is no pre-encoded audio path),
        at the same key index as everything else; raises when the SDK made no cryptor for it."""
        identity = self.room.local_participant.identity
        cryptors = [c for c in self.room.e2ee_manager.frame_cryptors()
                    if c.track_sid == self.audio_sid and c.participant_identity == identity]
        if not cryptors:
            raise RuntimeError(f"no SDK frame cryptor found for audio track {self.audio_sid}")
        for cryptor in cryptors:
            cryptor.set_key_index(key_index)
            cryptor.set_enabled(True)

    def set_audio_muted(self, muted: bool) -> None:
        """Mute or unmute the desktop-audio track (``audio.muted``, applied on SIGHUP)."""
        if self.audio_track is not None:
            if muted:
                self.audio_track.mute()
            else:
                self.audio_track.unmute()

    def set_sdk_key(self, key: SdkKey, *, use_for_frames: bool) -> None:
        """Install a key in the SDK's provider (data packets; frames with the sdk engine)."""
        key_provider = self.room.e2ee_manager.key_provider
        if key_provider is None:
            return
        key_provider.set_shared_key(key.passphrase, key.index)
        self._key_index = key.index  # a republished track gets its cryptor set up at this index
        if self.audio_sid is not None:
            self._configure_audio_cryptor(key.index)
        if use_for_frames:
            identity = self.room.local_participant.identity
            for cryptor in self.room.e2ee_manager.frame_cryptors():
                if cryptor.track_sid == self.track_sid and cryptor.participant_identity == identity:
                    cryptor.set_key_index(key.index)

    @property
    def subscribers(self) -> int:
        """Remote participants in the room (the SDK does not expose per-track subscribers)."""
        return len(self.room.remote_participants)

    def take_feedback(self) -> Feedback:
        """LiveKit's keyframe requests (and participants joined, which count as one), its bitrate
        target, and a republish, since the last call."""
        feedback = self.source.take_feedback()
        rate = feedback.rate_control
        target = rate.target_bitrate_bps if rate is not None and rate.target_bitrate_bps > 0 else None
        republished, self._republished = self._republished, False
        joined, self._joined = self._joined, False
        lost, self._lost_for_good = self._lost_for_good, False
        return Feedback(keyframe=feedback.keyframe_requested or joined or lost, target_bitrate=target,
                        republished=republished)

    def start_stats_watch(self) -> None:
        """Read the video's counters every NACK_WATCH_POLL_S until ``close``, while another
        participant is in the room: NACKs the runner cannot answer count as a keyframe request
        (``NackWatch``), video that goes nowhere ends the connection (``ReportWatch``)."""
        if self._stats_task is None:
            self._stats_task = asyncio.get_running_loop().create_task(self._watch_stats())

    async def _watch_stats(self) -> None:
        nack_watch, report_watch, failing = NackWatch(), ReportWatch(), False
        while True:
            await asyncio.sleep(NACK_WATCH_POLL_S)
            if not self.live or not self.room.remote_participants:
                # Nobody to freeze for (a viewer joining gets a keyframe anyway), and the stats
                # cost about 2 % of a core at this rate: read them only while someone watches,
                # counting afresh from the next reading.
                nack_watch, report_watch = NackWatch(), ReportWatch()
                continue
            try:
                counters = video_counters(await self.room.get_rtc_stats())
            except Exception as exc:  # the SDK's stats are a help, never a reason to stop
                if not failing:
                    log.warning("nack_watch_failed", error=str(exc) or type(exc).__name__)
                failing = True
                continue
            failing = False
            if counters is None:
                continue
            now = time.monotonic()
            hole = nack_watch.update(now, counters.nacks, counters.resent, counters.rtt_s)
            if hole is not None:
                self._lost_for_good = True
                log.info("nack_unanswered", nacks=hole[0], resent=hole[1],
                         window_s=round(nack_watch.window(counters.rtt_s), 3))
            silence = report_watch.update(now, self._pushed, counters.sent, counters.reports)
            if silence is not None:
                # The SDK believes it is connected, but nothing it sends arrives: start afresh.
                log.warning("livekit_media_unreported", silent_s=round(silence[0], 1), packets=silence[1],
                            frames=silence[2])
                self.disconnect_reason = UNREPORTED
                self.disconnected.set()
                return

    def next_timestamp_us(self, captured_at_s: float) -> int:
        """Capture time in µs, forced to rise by at least 1 ms per frame."""
        ts = max(int(captured_at_s * 1_000_000), self._last_ts_us + MIN_TIMESTAMP_STEP_US)
        self._last_ts_us = ts
        return ts

    def push(self, data: bytes, *, keyframe: bool, width: int, height: int, timestamp_us: int) -> bool:
        frame = rtc.EncodedVideoFrame(
            data=data,
            width=width,
            height=height,
            codec=rtc.VideoCodec.H264,
            frame_type=rtc.EncodedFrameType.ENCODED_FRAME_KEY
            if keyframe
            else rtc.EncodedFrameType.ENCODED_FRAME_DELTA,
            timestamp_us=timestamp_us,
        )
        self._pushed += 1
        return self.source.capture_frame(frame)

    async def close(self) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
            await asyncio.gather(self._stats_task, return_exceptions=True)
        try:
            await self.room.disconnect()
        finally:
            await self.source.aclose()
            if self.audio_source is not None:
                await self.audio_source.aclose()
