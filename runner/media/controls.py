from dataclasses import dataclass
from typing import Protocol

@dataclass(frozen=True)
class Region:
    """A rectangle of the X screen in pixels."""
    left: int
    top: int
    width: int
    height: int

@dataclass(frozen=True)
class ScreenMonitor:
    """One monitor as the X server reports it (today: one entry of mss's monitor list, index >= 1)."""
    region: Region
    output: str | None    # RandR output name (mss "output"), None when unknown
    name: str | None      # mss "name", None when unknown
    primary: bool         # mss "is_primary"

@dataclass(frozen=True)
class ScreenLayout:
    union: Region                      # mss monitors[0]: the bounding box of all
    monitors: tuple[ScreenMonitor, ...]  # mss monitors[1:], in mss's order (index i+1)

@dataclass(frozen=True)
class QualityRequest:
    """dr.quality.set: None = leave as is."""
    fps: int | None = None
    bitrate: int | None = None      # cap in bit/s
    max_width: int | None = None    # 0 = no limit
    max_height: int | None = None

@dataclass(frozen=True)
class Quality:
    """What is applied after a request (clamped by the configuration)."""
    fps: int
    bitrate: int        # the cap in bit/s
    max_width: int      # 0 = no limit
    max_height: int

@dataclass(frozen=True)
class Rates:
    """Rates over the last interval (one copy of the maths, used by the status line and dr.stats)."""
    fps: float
    bitrate: int              # bit/s published
    encode_ms: float | None   # mean encode time per encoded frame, None when nothing was encoded

@dataclass(frozen=True)
class StreamInfo:
    """What dr.stats reports about the picture."""
    width: int            # encoded size
    height: int
    keyframes: int        # since start
    dropped: int          # since start
    rates: Rates          # over the last second (zeros / None before the first second)

class MediaControl(Protocol):
    """The only way control changes or reads the media pipeline."""
    @property
    def display(self) -> str: ...                      # the X display name, e.g. ":1"
    @property
    def region(self) -> Region | None: ...             # what is being captured now (None before open)
    async def screen_layout(self, *, refresh: bool) -> ScreenLayout: ...
        # runs on the capture thread; refresh=True asks the X server again; raises
        # runner.media.capture.DisplayError when the display does not answer
    async def select_region(self, region: Region) -> tuple[int, int]: ...
        # capture this rectangle from the next frame on (IDR); returns the encoded (width, height)
    def request_keyframe(self) -> None: ...
    def set_quality(self, request: QualityRequest) -> Quality: ...
        # fps clamped to capture.fps; bitrate clamped to encoder.min_bitrate..max_bitrate and the
        # current bitrate target lowered to it at once (the pipeline is the only writer of its target)
    def stream_info(self) -> StreamInfo: ...
