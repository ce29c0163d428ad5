"""The one place the runner reaches into mss's private parts. Checked against mss 10.2.0.

mss has no public API for three things the capture path needs:

- the XShmGetImage shared-memory image itself: ``MSS.grab`` copies it into a new bytearray per
  frame (8 MB at 1080p), and the pipeline converts it to I420 where it lies (``ScreenGrabber.grab_picture``);
- the pointer image alone (XFixesGetCursorImage): ``MSS(with_cursor=True)`` blends it into a BGRA
  copy pixel by pixel in Python, and the zero-copy grab has no BGRA copy to blend into;
- re-reading the monitor list: ``MSS.monitors`` caches it for the life of the connection, and a new
  connection would also re-create the shared-memory segment.

Everything here reads mss attributes by name, so a new mss that renames them breaks here and
nowhere else; tests/test_capture.py::test_mss_private_parts_are_where_the_adapter_expects checks
them against a real X server, and ``MSS_CHECKED_VERSION`` is pinned in pyproject.toml.
"""

from __future__ import annotations

from dataclasses import dataclass
from mmap import mmap
from typing import Any

import mss
from mss.screenshot import ScreenShot

MSS_CHECKED_VERSION = "10.2.0"
ALL_PLANES = 0xFFFFFFFF
SHM_AVAILABLE = "AVAILABLE"  # mss.linux.xshmgetimage.ShmStatus.AVAILABLE.name


def _impl(sct: mss.MSS) -> Any:
    """The backend object behind an MSS (an XShmGetImage, XGetImage or Xlib implementation)."""
    return getattr(sct, "_impl", None)


def forget_monitors(sct: mss.MSS) -> None:
    """Make the next ``sct.monitors`` ask the X server again (mss caches the list)."""
    sct._monitors = None


def cursor_image(sct: mss.MSS) -> ScreenShot | None:
    """The pointer's image (BGRA, straight alpha) and position; raises what mss raises when the
    server has no XFixes."""
    shot: ScreenShot | None = _impl(sct).cursor()
    return shot


@dataclass(frozen=True)
class SharedImage:
    """The XShmGetImage backend's shared-memory image of one MSS connection."""

    _impl: Any

    @property
    def size(self) -> int:
        """Bytes the segment holds (the whole screen at open, 4 bytes a pixel)."""
        size: int = self._impl._bufsize
        return size

    @property
    def buffer(self) -> mmap:
        """The mapped segment: after ``fill`` it holds the rectangle's BGRA rows, tightly packed."""
        buf: mmap = self._impl._buf
        return buf

    def fill(self, left: int, top: int, width: int, height: int) -> None:
        """Ask the X server to write this rectangle of the screen into the segment."""
        from mss.linux import xcb

        impl = self._impl
        xcb.shm_get_image(impl.conn, impl.drawable, left, top, width, height, ALL_PLANES,  # type: ignore[attr-defined]
                          xcb.ImageFormat.ZPixmap, impl._shmseg, 0)  # type: ignore[attr-defined]


def shared_image(sct: mss.MSS) -> SharedImage | None:
    """The shared-memory image when this connection grabs through MIT-SHM (after one grab, which
    tells whether it works), else None (the Xlib or XGetImage backend, or MIT-SHM refused)."""
    impl = _impl(sct)
    status = getattr(getattr(impl, "shm_status", None), "name", "")
    if getattr(impl, "_buf", None) is None or status != SHM_AVAILABLE:
        return None
    return SharedImage(impl)
