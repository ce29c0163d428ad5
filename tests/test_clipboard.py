"""X11Clipboard on a real Xvfb, checked from the X side with xclip (another X client), not by
reading our own state back."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from Xlib import X, Xatom
from Xlib import display as xdisplay
from Xlib.protocol import event as xevent

from realenv import Xvfb
from runner.control.clipboard import ClipboardError, X11Clipboard
from runner.control.messages import MAX_CLIPBOARD_BYTES

pytestmark = pytest.mark.integration

XCLIP_TIMEOUT_S = 10.0
OWNER_WAIT_S = 5.0
CHANGE_DEADLINE_S = 1.0
SMALL_REQUEST_BYTES = 16 * 1024  # below MAX_CLIPBOARD_BYTES, so the largest texts need INCR


@pytest.fixture(scope="module", autouse=True)
def _xclip_installed() -> None:
    if shutil.which("xclip") is None:
        pytest.fail("xclip is required for the clipboard tests; install the Debian package xclip "
                    "(scripts/setup.sh does)", pytrace=False)


def xclip_env(screen: Xvfb) -> dict[str, str]:
    return {**os.environ, **screen.env}


def xclip_out(screen: Xvfb, target: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """What another application pasting from CLIPBOARD gets."""
    argv = ["xclip", "-o", "-selection", "clipboard"] + (["-t", target] if target else [])
    return subprocess.run(argv, env=xclip_env(screen), capture_output=True,
                          timeout=XCLIP_TIMEOUT_S)


def clipboard_owner(screen: Xvfb) -> int:
    """The window id owning CLIPBOARD (0 for none), asked without converting anything."""
    conn = xdisplay.Display(screen.display)
    try:
        owner = conn.get_selection_owner(conn.intern_atom("CLIPBOARD"))
        return int(owner.id) if owner != X.NONE else X.NONE
    finally:
        conn.close()


def xclip_in(screen: Xvfb, data: bytes, target: str | None = None) -> None:
    """Another application copies ``data``; returns once it owns CLIPBOARD.

    xclip forks a child that owns the selection and serves it until someone else takes it (or
    the X server goes away at the end of the test); the child keeps no pipe of ours open. The
    child takes ownership after the parent exits, hence the wait. (Not by pasting: xclip drops
    requests while it sends a large text with INCR, here to our clipboard reading it.)
    """
    before = clipboard_owner(screen)
    argv = ["xclip", "-i", "-selection", "clipboard"] + (["-t", target] if target else [])
    subprocess.run(argv, env=xclip_env(screen), input=data, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=XCLIP_TIMEOUT_S, check=True)
    deadline = time.monotonic() + OWNER_WAIT_S
    while clipboard_owner(screen) in (before, X.NONE):
        assert time.monotonic() < deadline, "xclip -i did not take the clipboard"
        time.sleep(0.01)


class Changes:
    """Collects on_change calls, made on the clipboard's thread."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._arrived = threading.Condition()

    def __call__(self, text: str) -> None:
        with self._arrived:
            self.texts.append(text)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.texts) >= count, timeout)


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def clipboard(xvfb: Xvfb, changes: Changes) -> Iterator[X11Clipboard]:
    board = X11Clipboard(xvfb.display, on_change=changes)
    yield board
    board.close()


@pytest.fixture
def x_client(xvfb: Xvfb) -> Iterator[xdisplay.Display]:
    """A separate raw X connection, playing another (possibly hostile) application."""
    conn = xdisplay.Display(xvfb.display)
    yield conn
    conn.close()


def elapsed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


# --- setting -----------------------------------------------------------------------------------


def test_set_text_is_what_another_app_pastes(xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    clipboard.set_text("héllo 世界")
    assert xclip_out(xvfb).stdout == "héllo 世界".encode()
    assert xclip_out(xvfb, "UTF8_STRING").stdout == "héllo 世界".encode()


def test_targets_offer_utf8_string(xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    clipboard.set_text("héllo 世界")
    targets = xclip_out(xvfb, "TARGETS").stdout.decode().split()
    assert sorted(targets) == ["STRING", "TARGETS", "TEXT", "TIMESTAMP", "UTF8_STRING"]


def test_string_target_is_latin1(xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    clipboard.set_text("café 世")
    assert xclip_out(xvfb, "STRING").stdout == b"caf\xe9 ?"


def test_text_of_exactly_the_limit_is_served_whole(xvfb: Xvfb) -> None:
    # Over one X request of the size we allow it here, so this goes out with INCR.
    text = "0123456789abcdé" * (MAX_CLIPBOARD_BYTES // 16)
    assert len(text.encode()) == MAX_CLIPBOARD_BYTES
    with X11Clipboard(xvfb.display, max_request_bytes=SMALL_REQUEST_BYTES) as clipboard:
        clipboard.set_text(text)
        assert xclip_out(xvfb).stdout == text.encode()


def test_oversize_set_text_is_refused_and_leaves_the_clipboard(
        xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    clipboard.set_text("before")
    with pytest.raises(ClipboardError, match=f"limit of {MAX_CLIPBOARD_BYTES} bytes"):
        clipboard.set_text("x" * (MAX_CLIPBOARD_BYTES + 1))
    assert xclip_out(xvfb).stdout == b"before"


def test_oversize_set_text_leaves_another_apps_clipboard(
        xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    xclip_in(xvfb, b"theirs")
    with pytest.raises(ClipboardError, match="MAX_CLIPBOARD_BYTES"):
        clipboard.set_text("é" * (MAX_CLIPBOARD_BYTES // 2 + 1))
    assert xclip_out(xvfb).stdout == b"theirs"


def test_close_gives_the_clipboard_up(xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    clipboard.set_text("ours")
    clipboard.close()
    clipboard.close()
    assert xclip_out(xvfb).returncode != 0, "nobody owns CLIPBOARD after close()"
    assert f"clipboard {xvfb.display}" not in [t.name for t in threading.enumerate()]


def test_unreachable_display_is_a_clipboard_error(xvfb_factory: Callable[..., Xvfb]) -> None:
    screen = xvfb_factory(640, 480)
    screen.stop()
    with pytest.raises(ClipboardError, match=f"cannot open X display {screen.display}"):
        X11Clipboard(screen.display)


# --- getting -----------------------------------------------------------------------------------


def test_get_text_reads_another_apps_text(xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    xclip_in(xvfb, "from another app ✓".encode())
    assert clipboard.get_text() == "from another app ✓"


def test_get_text_falls_back_to_latin1_string(xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    xclip_in(xvfb, b"caf\xe9", target="STRING")
    assert clipboard.get_text() == "café"


def test_get_text_reads_a_text_sent_with_incr(xvfb: Xvfb, clipboard: X11Clipboard,
                                              changes: Changes) -> None:
    # xclip only uses INCR above ~1 MB; a second X11Clipboard (its own X client, whose INCR
    # serving xclip checks above) sends the largest text we accept that way.
    text = "0123456789abcdé" * (MAX_CLIPBOARD_BYTES // 16)
    with X11Clipboard(xvfb.display, max_request_bytes=SMALL_REQUEST_BYTES) as other:
        other.set_text(text)
        assert changes.wait_for(1, CHANGE_DEADLINE_S)
        assert changes.texts == [text]
        assert clipboard.get_text() == text


def test_get_text_returns_our_own_text(clipboard: X11Clipboard) -> None:
    clipboard.set_text("ours")
    assert clipboard.get_text() == "ours"


def test_get_text_without_owner_is_none_at_once(clipboard: X11Clipboard) -> None:
    text, took = elapsed(clipboard.get_text)
    assert text is None
    assert took < 0.2


@pytest.mark.parametrize("size", [300 * 1024, 2 * 1024 * 1024], ids=["plain", "incr"])
def test_oversize_text_from_another_app_is_ignored(
        xvfb: Xvfb, clipboard: X11Clipboard, changes: Changes, size: int) -> None:
    # xclip sends more than ~1 MB with INCR, which we refuse as too large.
    xclip_in(xvfb, b"y" * size)
    assert not changes.wait_for(1, CHANGE_DEADLINE_S)
    assert clipboard.get_text() is None


def test_owner_that_never_answers_gives_none_after_the_timeout(
        clipboard: X11Clipboard, x_client: xdisplay.Display) -> None:
    silent = x_client.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    silent.set_selection_owner(x_client.intern_atom("CLIPBOARD"), X.CurrentTime)
    x_client.sync()
    text, took = elapsed(lambda: clipboard.get_text(timeout=0.3))
    assert text is None
    assert 0.3 <= took < 1.0


def test_close_while_get_text_waits_returns_none_promptly(
        clipboard: X11Clipboard, x_client: xdisplay.Display) -> None:
    silent = x_client.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    silent.set_selection_owner(x_client.intern_atom("CLIPBOARD"), X.CurrentTime)
    x_client.sync()
    result: list[tuple[object, float]] = []
    reader = threading.Thread(target=lambda: result.append(
        elapsed(lambda: clipboard.get_text(timeout=10))))
    reader.start()
    time.sleep(0.2)
    clipboard.close()
    reader.join(2)
    assert not reader.is_alive()
    text, took = result[0]
    assert text is None
    assert took < 1.0


# --- changes by other applications -------------------------------------------------------------


def test_another_app_copying_is_reported_once(xvfb: Xvfb, clipboard: X11Clipboard,
                                              changes: Changes) -> None:
    started = time.monotonic()
    xclip_in(xvfb, b"copied elsewhere")
    assert changes.wait_for(1, CHANGE_DEADLINE_S)
    assert time.monotonic() - started < CHANGE_DEADLINE_S + 0.5
    xclip_in(xvfb, b"marker")  # reported after any second report of the first copy would be
    assert changes.wait_for(2, CHANGE_DEADLINE_S)
    assert changes.texts == ["copied elsewhere", "marker"]


def test_our_own_set_text_is_not_reported(xvfb: Xvfb, clipboard: X11Clipboard, changes: Changes) -> None:
    clipboard.set_text("ours")
    clipboard.set_text("ours again")
    xclip_in(xvfb, b"marker")  # another app: reported after anything our own texts caused
    assert changes.wait_for(1, CHANGE_DEADLINE_S)
    assert changes.texts == ["marker"]


def test_another_app_copying_the_text_we_set_is_not_reported(
        xvfb: Xvfb, clipboard: X11Clipboard, changes: Changes) -> None:
    clipboard.set_text("same")
    xclip_in(xvfb, b"same")
    xclip_in(xvfb, b"different")  # reported after "same" would have been
    assert changes.wait_for(1, CHANGE_DEADLINE_S)
    assert changes.texts == ["different"]


# --- hostile clients and a dying server --------------------------------------------------------


def test_bogus_selection_requests_do_not_stop_serving(
        xvfb: Xvfb, clipboard: X11Clipboard, x_client: xdisplay.Display) -> None:
    clipboard.set_text("still here")
    clip = x_client.intern_atom("CLIPBOARD")
    utf8 = x_client.intern_atom("UTF8_STRING")
    owner = x_client.get_selection_owner(clip)
    mine = x_client.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    no_such_window, no_such_atom = 0x7FFFFFF, 0xFFFFFF
    bogus = [
        dict(requestor=no_such_window, selection=clip, target=utf8, property=utf8),
        dict(requestor=mine, selection=clip, target=utf8, property=no_such_atom),
        dict(requestor=mine, selection=clip, target=no_such_atom, property=utf8),
        dict(requestor=mine, selection=no_such_atom, target=utf8, property=utf8),
        dict(requestor=0, selection=clip, target=0, property=0),
    ]
    for fields in bogus:
        owner.send_event(xevent.SelectionRequest(time=X.CurrentTime, owner=owner, **fields))
    # A forged "you lost the clipboard" (only the server may say so), and an event that makes
    # no sense for a clipboard at all.
    owner.send_event(xevent.SelectionClear(time=X.CurrentTime, window=owner, atom=clip))
    owner.send_event(xevent.ClientMessage(window=owner, client_type=Xatom.STRING,
                                          data=(32, [1, 2, 3, 4, 5])))
    x_client.sync()
    assert xclip_out(xvfb).stdout == b"still here"
    assert clipboard.get_text() == "still here"


def test_killed_x_server_makes_calls_fail_promptly(xvfb: Xvfb, clipboard: X11Clipboard) -> None:
    clipboard.set_text("doomed")
    xvfb.kill()
    start = time.monotonic()
    with pytest.raises(ClipboardError, match=f"X display {xvfb.display} is gone"):
        clipboard.get_text(timeout=5)
    assert time.monotonic() - start < 2.0
    with pytest.raises(ClipboardError, match="is gone"):
        clipboard.set_text("after")
    clipboard.close()
    clipboard.close()
