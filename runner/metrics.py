"""Prometheus metrics and a health check over HTTP, off unless ``metrics.address`` is set.

Counters are read from the live objects at scrape time (pipeline stats, control server, service),
so the frame path pays nothing for them; only the per-frame stage timings are observed into
histograms as frames are published. The endpoint is a small asyncio HTTP/1.0 server with two
GET routes and nothing else: ``/metrics`` (Prometheus text format) and ``/healthz`` (200 while
frames are being published, 503 with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner.config import FrameEngine
from runner.logs import get_logger
from runner.media.stats import FrameTimes

log = get_logger(__name__)

PREFIX = "desktop_runner"
# Stage timings of one frame: 0.1 ms .. 100 ms.
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.012, 0.016,
                 0.020, 0.025, 0.033, 0.050, 0.100)
HEALTHY_WITHIN_S = 2.0
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_LINE = 2048


@dataclass(frozen=True)
class MetricValues:
    """What one scrape reports, read from the live objects (counters since start)."""

    captured: int
    encoded: int
    published: int
    keyframes: int
    keyframe_requests: int
    bytes: int  # of encoded, encrypted video published
    dropped: int  # superseded by a newer picture
    rejected: int  # refused by LiveKit's source
    reconnects: int
    input_accepted: int
    input_rejected: dict[str, int]  # by reason
    connected: bool
    bitrate_target: int  # bit/s
    fps: float  # captured per second (the target)
    key_index: int
    viewers: int
    last_frame_age: float  # seconds; -1 before the first frame
    frame_engine: FrameEngine


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str


class RunnerCollector(Collector):
    """Reads counters and gauges from the running service when Prometheus scrapes."""

    def __init__(self, read: Callable[[], MetricValues]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        v = self._read()
        counters = {
            "frames_captured": ("pictures grabbed from the screen", v.captured),
            "frames_encoded": ("pictures encoded", v.encoded),
            "frames_published": ("encoded frames handed to LiveKit", v.published),
            "keyframes": ("IDR frames published", v.keyframes),
            "keyframe_requests": ("keyframe requests received from LiveKit", v.keyframe_requests),
            "published_bytes": ("bytes of encoded, encrypted video published", v.bytes),
            "reconnects": ("LiveKit connections made after the first", v.reconnects),
            "input_accepted": ("input messages authenticated, validated and injected", v.input_accepted),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        dropped = CounterMetricFamily(f"{PREFIX}_frames_dropped", "pictures not published, by reason",
                                      labels=["reason"])
        dropped.add_metric(["superseded"], v.dropped)  # a newer picture replaced it
        dropped.add_metric(["rejected"], v.rejected)  # LiveKit's source refused it
        yield dropped
        rejected = CounterMetricFamily(f"{PREFIX}_input_rejected", "input messages dropped, by reason",
                                       labels=["reason"])
        for reason, count in sorted(v.input_rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        gauges: dict[str, tuple[str, float]] = {
            "connected": ("1 while connected to LiveKit and publishing", int(v.connected)),
            "bitrate_target_bps": ("bitrate the encoder aims at, bit/s", v.bitrate_target),
            "fps_target": ("frames per second captured", v.fps),
            "e2ee_key_index": ("E2EE key index frames are encrypted at", v.key_index),
            "viewers": ("remote participants in the room", v.viewers),
            "last_frame_age_seconds": ("seconds since the last frame was published (-1: none yet)",
                                       v.last_frame_age),
        }
        for name, (doc, gauge) in gauges.items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=gauge)
        # No key fingerprint here: /metrics has no authentication, and a fingerprint of a key
        # derived with a fixed salt lets anyone who reads it test passphrase guesses offline.
        engine = GaugeMetricFamily(f"{PREFIX}_e2ee_info", "E2EE state (always 1; see labels)",
                                   labels=["frame_engine"])
        engine.add_metric([v.frame_engine], 1)
        yield engine


class Metrics:
    """The registry, the stage histograms and the HTTP endpoint."""

    def __init__(self, read: Callable[[], MetricValues], health: Callable[[], Health]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(RunnerCollector(read))
        self._health = health
        self._stages = {
            stage: Histogram(f"{PREFIX}_{stage}_seconds", f"time per published frame spent in {what}",
                             buckets=STAGE_BUCKETS, registry=self.registry)
            for stage, what in (("capture", "the screen grab"), ("convert", "BGRA to I420 conversion"),
                                ("encode", "libx264"), ("encrypt", "E2EE frame encryption"),
                                ("handoff", "handing the frame to the LiveKit SDK"))
        }
        self._server: asyncio.Server | None = None

    def observe(self, t: FrameTimes) -> None:
        self._stages["capture"].observe(t.capture_s)
        self._stages["convert"].observe(t.convert_s)
        self._stages["encode"].observe(t.encode_s)
        self._stages["encrypt"].observe(t.encrypt_s)
        self._stages["handoff"].observe(t.handoff_s)

    async def start(self, host: str, port: int) -> None:
        """Bind the endpoint; OSError if the address cannot be bound (reported at start-up)."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_LINE)
        bound = self._server.sockets[0].getsockname()
        log.info("metrics_listening", address=f"{bound[0]}:{bound[1]}")

    async def serve(self) -> None:
        """Serve until cancelled (after ``start``)."""
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    @property
    def port(self) -> int | None:
        return self._server.sockets[0].getsockname()[1] if self._server and self._server.sockets else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            parts = request.decode("latin-1").split()
            status, ctype, body = self._route(parts[0] if parts else "", parts[1] if len(parts) > 1 else "")
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (TimeoutError, ValueError, ConnectionError, asyncio.LimitOverrunError):
            pass  # a client that is slow, malformed or gone gets nothing
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)
        if path == "/healthz":
            h = self._health()
            return ("200 OK" if h.ok else "503 Service Unavailable"), "text/plain", (h.reason + "\n").encode()
        return "404 Not Found", "text/plain", b"/metrics or /healthz\n"


def frame_health(last_published_at: float, connected: bool, now: float | None = None) -> Health:
    """Healthy only while frames are being published: connected and a frame in the last 2 s."""
    now = time.monotonic() if now is None else now
    if not connected:
        return Health(False, "not connected to LiveKit")
    if last_published_at <= 0:
        return Health(False, "no frame published yet")
    age = now - last_published_at
    if age > HEALTHY_WITHIN_S:
        return Health(False, f"no frame published for {age:.1f} s")
    return Health(True, f"ok: last frame {age * 1000:.0f} ms ago")
