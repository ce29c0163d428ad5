"""A real Xorg server with the dummy video driver: several monitors, RandR, XKB layouts.

Xvfb shows mss one monitor only and keeps its core keymap on ``setxkbmap``; this server has 16
RandR outputs (``DUMMY0``..``DUMMY15``) and switches layouts like a desktop does, so tests of
multi-monitor capture, pointer offsets and non-US keyboards run against it. ``XorgDummy`` starts
it on a free display number (``-displayfd``), with its config, its own log and an empty config
directory (so the host's ``xorg.conf.d`` never applies) under a private temporary directory, then
lays out the monitors with xrandr (modes from ``cvt``) and loads the keymap with setxkbmap.

Needs root (Xorg opens no VT with the dummy driver, but reads devices only root may) and the Debian
packages xserver-xorg-core, xserver-xorg-video-dummy, x11-xserver-utils (xrandr), xcvt (cvt) and
x11-xkb-utils (setxkbmap). Input hot-plugging is off, so the server never takes the machine's
real keyboard or mouse; keyboard input comes from XTEST only.

Importable as ``xorgdummy`` with ``scripts/`` on ``sys.path``; process handling is devstack's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from devstack import (
    STARTUP_TIMEOUT_S,
    X11_SOCKET_DIR,
    ComponentError,
    _log_hint,
    _ManagedProcess,
    _resolve_binary,
    _unix_socket_accepts,
    _wait_until,
    read_display_number,
)

# (width, height, x, y) in pixels; x, y is the monitor's top-left corner on the root window.
MonitorSpec = tuple[int, int, int, int]

DEFAULT_MONITORS: tuple[MonitorSpec, ...] = ((1280, 720, 0, 0), (1024, 768, 1280, 0))
OUTPUT_PREFIX = "DUMMY"
# Video memory the driver may use, in KiB: room for a 8192x4320x32bpp framebuffer and pixmaps.
VIDEO_RAM_KIB = 256_000
# The framebuffer the server starts with; RandR grows it to fit any layout set later.
VIRTUAL_SIZE = (4096, 2160)
REFRESH_HZ = 60
# Xkb rules with the evdev keycodes that Xorg with libinput/evdev input and Xvfb use. Without an
# input driver the dummy server's core keyboard starts with rules "base" and xfree86 keycodes,
# where keycode 113 is Alt_R instead of Left; None keeps that built-in keymap.
DEFAULT_XKB_RULES = "evdev"
XKB_MODEL = "pc105"
TOOL_TIMEOUT_S = 10.0

INSTALL_HINT = ("install the Debian packages xserver-xorg-core xserver-xorg-video-dummy "
                "x11-xserver-utils xcvt x11-xkb-utils")

XORG_CONF = """\
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AutoEnableDevices" "false"
    Option "DontVTSwitch" "true"
    Option "BlankTime" "0"
    Option "StandbyTime" "0"
    Option "SuspendTime" "0"
    Option "OffTime" "0"
EndSection

Section "Device"
    Identifier "dummy"
    Driver "dummy"
    VideoRam {video_ram}
EndSection

Section "Monitor"
    Identifier "monitor"
    HorizSync 5.0 - 1000.0
    VertRefresh 5.0 - 200.0
EndSection

Section "Screen"
    Identifier "screen"
    Device "dummy"
    Monitor "monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Virtual {virtual_width} {virtual_height}
    EndSubSection
EndSection
"""


def check_monitors(monitors: Sequence[MonitorSpec]) -> tuple[MonitorSpec, ...]:
    """The layout as a tuple of (width, height, x, y) ints; ValueError when it cannot be shown."""
    layout = tuple(tuple(int(v) for v in m) for m in monitors)
    if not layout:
        raise ValueError("a layout needs at least one monitor")
    for spec in layout:
        if len(spec) != 4:
            raise ValueError(f"monitor {spec!r} is not (width, height, x, y)")
        width, height, x, y = spec
        if width <= 0 or height <= 0 or x < 0 or y < 0:
            raise ValueError(f"monitor {spec!r} needs a positive size and a position >= 0")
    return layout  # type: ignore[return-value]


def cvt_modeline(cvt: str, width: int, height: int, name: str) -> list[str]:
    """``xrandr --newmode`` arguments for a ``width`` x ``height`` mode called ``name``.

    cvt rounds the width up to a multiple of 8 (1366 -> 1368); the horizontal timings are kept and
    the visible width set back to ``width``, which the dummy driver shows as it is.
    """
    out = subprocess.run([cvt, str(width), str(height), str(REFRESH_HZ)], capture_output=True,
                         text=True, check=True, timeout=TOOL_TIMEOUT_S).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("Modeline")), None)
    if line is None:
        raise ComponentError(f"cvt printed no modeline for {width}x{height}: {out!r}")
    fields = line.split()[2:]  # drop 'Modeline' and cvt's quoted name
    clock, timings, flags = fields[0], [int(f) for f in fields[1:9]], fields[9:]
    hdisplay, hsync_start, hsync_end, htotal = timings[:4]
    shift = max(0, width - hdisplay)
    timings[:4] = [width, hsync_start + shift, hsync_end + shift, htotal + shift]
    return [name, clock, *(str(t) for t in timings), *flags]


class XorgDummy(_ManagedProcess):
    """Xorg with the dummy driver on a free display, showing ``monitors`` side by side or wherever
    their (width, height, x, y) put them. ``.display`` is ``":N"``; ``.xorg_log_path`` is Xorg's own
    log (``.log_path`` gets its stderr).

    ``xkb_rules``/``xkb_layout`` load a keymap at start (see ``DEFAULT_XKB_RULES``); a test may
    switch layouts later with ``setxkbmap -display :N de``, which keeps the rules.
    """

    name = "xorg-dummy"

    def __init__(self, monitors: Sequence[MonitorSpec] = DEFAULT_MONITORS, *,
                 xkb_rules: str | None = DEFAULT_XKB_RULES, xkb_layout: str = "us",
                 startup_timeout: float = STARTUP_TIMEOUT_S) -> None:
        layout = check_monitors(monitors)
        super().__init__()
        binary = _resolve_binary("Xorg", install_hint=INSTALL_HINT)
        self._xrandr = _resolve_binary("xrandr", install_hint=INSTALL_HINT)
        self._cvt = _resolve_binary("cvt", install_hint=INSTALL_HINT)
        self._setxkbmap = _resolve_binary("setxkbmap", install_hint=INSTALL_HINT)
        self.config_path = self._tmp / "xorg.conf"
        self.xorg_log_path = self._tmp / "Xorg.log"
        config_dir = self._tmp / "xorg.conf.d"
        config_dir.mkdir()
        self.config_path.write_text(XORG_CONF.format(
            video_ram=VIDEO_RAM_KIB, virtual_width=VIRTUAL_SIZE[0], virtual_height=VIRTUAL_SIZE[1]))
        self._modes: set[str] = set()
        self._output_modes: set[tuple[str, str]] = set()
        self.monitors: tuple[MonitorSpec, ...] = ()

        read_fd, write_fd = os.pipe()
        try:
            # -displayfd: Xorg picks a free display and writes its number once it accepts
            # connections. -noreset keeps the server (and its layout) when the last client leaves.
            self._spawn([binary, "-displayfd", str(write_fd), "-config", str(self.config_path),
                         "-configdir", str(config_dir), "-logfile", str(self.xorg_log_path),
                         "-nolisten", "tcp", "-noreset", "-novtswitch"], pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        try:
            number = self._read_display_number(read_fd, startup_timeout)
            self.display = f":{number}"
            socket_path = X11_SOCKET_DIR / f"X{number}"
            _wait_until(lambda: _unix_socket_accepts(socket_path), startup_timeout,
                        f"Xorg dummy {self.display}", self._proc, self.xorg_log_path)
            self.outputs = self._query_outputs()
            if xkb_rules is not None:
                self._run(self._setxkbmap, "-rules", xkb_rules, "-model", XKB_MODEL,
                          "-layout", xkb_layout)
            elif xkb_layout != "us":
                self._run(self._setxkbmap, xkb_layout)
            self.set_layout(layout)
        except BaseException:
            self.stop()
            raise

    def env(self) -> dict[str, str]:
        """Environment additions for a client of this server: ``{"DISPLAY": ":N"}``."""
        return {"DISPLAY": self.display}

    def set_layout(self, monitors: Sequence[MonitorSpec]) -> None:
        """Show exactly ``monitors`` (outputs DUMMY0.. in order; DUMMY0 is primary), others off."""
        layout = check_monitors(monitors)
        if len(layout) > len(self.outputs):
            raise ValueError(f"{len(layout)} monitors asked, the dummy driver has "
                             f"{len(self.outputs)} outputs")
        args: list[str] = []
        for output, (width, height, x, y) in zip(self.outputs, layout, strict=False):
            mode = self._ensure_mode(output, width, height)
            args += ["--output", output, "--mode", mode, "--pos", f"{x}x{y}"]
            if output == self.outputs[0]:
                args.append("--primary")
        for output in self.outputs[len(layout):]:
            args += ["--output", output, "--off"]
        self._run(self._xrandr, *args)
        shown = self._active_monitors()
        if shown != sorted(layout):
            raise ComponentError(f"xrandr on {self.display} shows {shown}, not {sorted(layout)}"
                                 + _log_hint(self.xorg_log_path))
        self.monitors = layout

    # --- internals --------------------------------------------------------------------------------

    def _ensure_mode(self, output: str, width: int, height: int) -> str:
        name = f"{width}x{height}_{REFRESH_HZ}"
        if name not in self._modes:
            self._run(self._xrandr, "--newmode", *cvt_modeline(self._cvt, width, height, name))
            self._modes.add(name)
        if (output, name) not in self._output_modes:
            self._run(self._xrandr, "--addmode", output, name)
            self._output_modes.add((output, name))
        return name

    def _query_outputs(self) -> tuple[str, ...]:
        text = self._run(self._xrandr, "--query")
        outputs = [line.split()[0] for line in text.splitlines()
                   if line.startswith(OUTPUT_PREFIX)]
        if not outputs:
            raise ComponentError(f"Xorg {self.display} has no {OUTPUT_PREFIX}* outputs; is the "
                                 "dummy driver xserver-xorg-video-dummy >= 0.4?"
                                 + _log_hint(self.xorg_log_path))
        return tuple(sorted(outputs, key=lambda o: int(o[len(OUTPUT_PREFIX):])))

    def _active_monitors(self) -> list[MonitorSpec]:
        # " 0: +*DUMMY0 1280/339x720/190+0+0  DUMMY0"
        monitors = []
        for line in self._run(self._xrandr, "--listactivemonitors").splitlines()[1:]:
            geometry = line.split()[2]
            size, x, y = geometry.split("+")
            width, height = (int(part.split("/")[0]) for part in size.split("x"))
            monitors.append((width, height, int(x), int(y)))
        return sorted(monitors)

    def _run(self, *argv: str) -> str:
        """Run an X client against this server; ComponentError with its output when it fails."""
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                                  env={**os.environ, "DISPLAY": self.display})
        except subprocess.TimeoutExpired as exc:
            raise ComponentError(f"{' '.join(argv)} on {self.display} timed out"
                                 + _log_hint(self.xorg_log_path)) from exc
        if done.returncode != 0:
            raise ComponentError(f"{' '.join(argv)} on {self.display} failed with code "
                                 f"{done.returncode}: {done.stderr.strip()}"
                                 + _log_hint(self.xorg_log_path))
        return done.stdout

    def _read_display_number(self, read_fd: int, timeout: float) -> int:
        assert self._proc is not None
        return read_display_number(self._proc, read_fd, timeout, name="Xorg (dummy driver)",
                                   log_path=self.xorg_log_path,
                                   exit_hint=f"; it needs root and {INSTALL_HINT.removeprefix('install ')}")
