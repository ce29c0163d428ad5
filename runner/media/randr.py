"""Resizing an X screen the runner owns, with RandR (python-xlib), the way xrandr does it.

Only for a server the runner was told it owns (``capture.resizable``: the container's Xvfb, a
virtual display it manages); never someone's monitor. Xvfb starts with one output (``screen``)
and one mode, and accepts modes added at run time up to the size it was started with, so a
server meant to grow starts large and is shrunk to what viewers ask for.

The sequence, on one connection kept open for the runner's life (RandR modes belong to the
connection that made them): find or create a mode of the size, add it to the output, switch
the CRTC off if it would stick out of the new screen, set the screen size (with millimetres
that give the DPI asked for), switch the CRTC to the mode, all under a server grab; then
remove the mode made for the previous fit, so modes do not pile up. ``Xft.dpi`` in the root
window's resources is set too: toolkits read it rather than the screen's millimetres.

Not thread-safe: the pipeline calls it on its capture thread.
"""

from __future__ import annotations

from typing import Any

from Xlib import X, Xatom
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import randr

from runner.logs import get_logger
from runner.media.screen_size import ScreenSize

log = get_logger(__name__)

REFRESH_HZ = 60  # Xvfb ignores timings; the mode still says 60 Hz, as xrandr shows it
H_BLANK = 160  # reduced blanking (CVT-RB), for servers that do look at timings
V_BLANK = 30


class ResizeError(RuntimeError):
    """The screen cannot be resized; the message says why (no RandR, several monitors, an X error)."""


class RandrScreen:
    """Resizes the screen of one X display."""

    def __init__(self, display: str) -> None:
        self.display = display
        self._d: Any = None  # python-xlib Display, opened on first use
        self._errors: list[str] = []
        self._made: set[int] = set()  # mode ids this connection created and still holds

    def max_size(self) -> tuple[int, int]:
        """The largest screen the server takes (Xvfb: the size it was started with)."""
        try:
            limits = randr.get_screen_size_range(self._connect().screen().root)
        except ResizeError:
            raise
        except Exception as exc:  # as in apply(): a failed connection is not used again
            self.close()
            raise ResizeError(f"X display {self.display}: {type(exc).__name__}: {exc}") from None
        return int(limits.max_width), int(limits.max_height)

    def size(self) -> tuple[int, int]:
        root = self._connect().screen().root
        geometry = root.get_geometry()
        return int(geometry.width), int(geometry.height)

    def apply(self, size: ScreenSize) -> ScreenSize:
        """Set the screen to ``size``; returns what the server reports afterwards."""
        try:
            return self._apply(size)
        except ResizeError:
            raise
        except Exception as exc:
            # An X error can wedge python-xlib's connection for good (0.33 fails to parse RandR's
            # errors, "'BadRRModeError' object has no attribute 'sequence_number'", and then never
            # reads another reply: the next sync() hangs). So the connection is dropped without a
            # word more, which also ends its server grab; the next fit opens a new one.
            self.close()
            raise ResizeError(f"X display {self.display} refused the new size: "
                              f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        d, self._d = self._d, None
        self._made.clear()
        if d is not None:
            try:
                d.close()
            except Exception as exc:  # closing a connection to a dead server raises; it is gone
                log.debug("randr_close_failed", error=f"{type(exc).__name__}: {exc}")

    # --- the steps -----------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._d is None:
            try:
                d = xdisplay.Display(self.display)
            except (OSError, xerror.DisplayError) as exc:
                raise ResizeError(f"cannot open X display {self.display}: {exc}") from None
            if not d.has_extension("RANDR"):
                d.close()
                raise ResizeError(f"X display {self.display} has no RandR extension")
            # Errors of requests without a reply arrive later; collected and checked after sync.
            d.set_error_handler(lambda err, *_: self._errors.append(str(err)))
            self._d = d
        return self._d

    def _apply(self, size: ScreenSize) -> ScreenSize:
        d = self._connect()
        root = d.screen().root
        largest = randr.get_screen_size_range(root)
        if not (0 < size.width <= largest.max_width and 0 < size.height <= largest.max_height):
            raise ResizeError(f"{size.width}x{size.height} is beyond the largest screen this X server takes, "
                              f"{largest.max_width}x{largest.max_height}")
        res = randr.get_screen_resources(root)
        active = []
        for output in res.outputs:
            info = randr.get_output_info(d, output, res.config_timestamp)
            if info.connection == randr.Connected and info.crtc:
                active.append((output, info))
        if len(active) != 1:
            raise ResizeError(f"the screen has {len(active)} active outputs; fitting needs exactly one")
        output, info = active[0]
        crtc = randr.get_crtc_info(d, info.crtc, res.config_timestamp)
        mode = self._mode(d, root, res, output, info, size.width, size.height)
        mm_w, mm_h = size.millimetres
        self._errors.clear()
        d.grab_server()
        try:
            # The screen may not shrink under an active CRTC: switch it off first, as xrandr does.
            if crtc.mode and (crtc.x + crtc.width > size.width or crtc.y + crtc.height > size.height):
                self._crtc(d, info.crtc, res.config_timestamp, 0, [])
            randr.set_screen_size(root, size.width, size.height, mm_w, mm_h)
            self._crtc(d, info.crtc, res.config_timestamp, mode, [output])
        except ResizeError:  # a refused configuration, on a connection still in order
            d.ungrab_server()
            d.sync()
            raise
        d.ungrab_server()  # (any other failure drops the connection, and with it the grab: apply)
        d.sync()
        if self._errors:
            raise ResizeError(f"the X server refused the new size: {'; '.join(self._errors)}")
        self._forget_old_modes(d, output, keep=mode)
        set_xft_dpi(d, size.dpi)
        width, height = self.size()
        return ScreenSize(width, height, size.dpi)

    def _mode(self, d: Any, root: Any, res: Any, output: int, info: Any, width: int, height: int) -> int:
        """A mode of exactly this size on ``output``: one the server has, or a new one."""
        mode = next((m.id for m in res.modes if (m.width, m.height) == (width, height)), None)
        if mode is None:
            name = f"{width}x{height}"
            h_total, v_total = width + H_BLANK, height + V_BLANK
            mode_info = {
                "id": 0, "width": width, "height": height, "dot_clock": h_total * v_total * REFRESH_HZ,
                "h_sync_start": width + 48, "h_sync_end": width + 80, "h_total": h_total, "h_skew": 0,
                "v_sync_start": height + 3, "v_sync_end": height + 8, "v_total": v_total,
                "name_length": len(name), "flags": randr.HSyncPositive | randr.VSyncNegative,
            }
            mode = int(randr.create_mode(root, mode_info, name).mode)
            self._made.add(mode)
        if mode not in info.modes:
            randr.add_output_mode(d, output, mode)
        return mode

    @staticmethod
    def _crtc(d: Any, crtc: int, timestamp: int, mode: int, outputs: list[int]) -> None:
        status = randr.set_crtc_config(d, crtc, timestamp, 0, 0, mode, randr.Rotate_0, outputs).status
        if status != randr.SetConfigSuccess:
            raise ResizeError(f"RandR SetCrtcConfig failed with status {status}")

    def _forget_old_modes(self, d: Any, output: int, *, keep: int) -> None:
        """Remove the modes made for earlier fits: at most one made mode is left on the server."""
        for mode in self._made - {keep}:
            randr.delete_output_mode(d, output, mode)
            randr.destroy_mode(d, mode)
        d.sync()
        if self._errors:  # a mode still in use elsewhere stays; nothing depends on its removal
            log.debug("randr_mode_kept", errors=list(self._errors))
            self._errors.clear()
        self._made &= {keep}


def set_xft_dpi(d: Any, dpi: int) -> None:
    """Set ``Xft.dpi`` in the root window's RESOURCE_MANAGER (what ``xrdb -merge`` would)."""
    root = d.screen().root
    atom = d.get_atom("RESOURCE_MANAGER")
    current = root.get_full_property(atom, Xatom.STRING)
    text = current.value.decode("latin-1") if current is not None and isinstance(current.value, bytes) else ""
    lines = [line for line in text.splitlines() if line and not line.startswith("Xft.dpi:")]
    lines.append(f"Xft.dpi:\t{dpi}")
    root.change_property(atom, Xatom.STRING, 8, ("\n".join(lines) + "\n").encode("latin-1"), X.PropModeReplace)
    d.sync()
