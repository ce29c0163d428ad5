"""``make demo``: the whole system on this machine, with a link to watch it in a browser.

Starts a LiveKit server (loopback only, a fresh API secret), a 1920x1080 virtual screen with a test
pattern, a moving clock and a beep every second (a private PulseAudio, scripts/audiostack.py) when
``$DISPLAY`` is not set (else shares the existing display and its sound as they are),
the runner (``python -m runner``) and the viewer page server. Prints the viewer link (no secret
in it), then the token and the passphrase to paste into the page, both new for every demo. Ctrl-C
or SIGTERM stops everything.

    .venv/bin/python scripts/demo.py [--room desktop] [--size 1920x1080] [--viewer-port 0]
                                     [--link-with-secrets]

A browser keeps every address it opens in its profile (history, session restore), so the link
carries no secret unless ``--link-with-secrets`` asks for one that connects by itself (the token
and passphrase in its fragment; the page and this script warn).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devstack import (
    QUADRANTS,
    REPO_ROOT,
    ComponentError,
    LiveKitServer,
    Runner,
    ViewerServer,
    Xvfb,
    mint_token,
    paint,
    viewer_address,
    viewer_link,
)

RUNNER_PUBLISHED_EVENT = "track_published"
POLL_S = 0.5
LOG_TAIL_LINES = 15
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--room", default="desktop", help="LiveKit room name (default desktop)")
    parser.add_argument("--size", type=parse_size, default=(1920, 1080),
                        help="virtual screen size when $DISPLAY is unset (default 1920x1080)")
    parser.add_argument("--viewer-port", type=int, default=0,
                        help="viewer page port (default: a free one)")
    parser.add_argument("--link-with-secrets", action="store_true",
                        help="print a link that connects by itself, token and passphrase in it "
                             "(they stay in the browser's history)")
    parser.add_argument("--scene", action="store_true", help=argparse.SUPPRESS)  # internal
    return parser.parse_args(argv)


# --- the moving part of the virtual screen --------------------------------------------------------


def run_scene() -> None:
    """A small window with a ticking clock and a sliding bar, so motion is easy to see, a text
    field to type into and a canvas that marks every click, so remote control is easy to see."""
    import time
    import tkinter

    width, height, bar = 480, 200, 60
    root = tkinter.Tk()
    root.title("desktop-runner demo")
    left = (root.winfo_screenwidth() - width) // 2
    top = (root.winfo_screenheight() - height) // 2
    root.geometry(f"{width}x{height + 50}+{left}+{top}")
    canvas = tkinter.Canvas(root, width=width, height=height, bg="#202428", highlightthickness=0)
    canvas.pack()
    canvas.create_text(width // 2, 40, text="desktop-runner demo", fill="#c0c6cc",
                       font=("DejaVu Sans", 16))
    clock = canvas.create_text(width // 2, 100, fill="#ffffff", font=("DejaVu Sans Mono", 36))
    slider = canvas.create_rectangle(0, 160, bar, 180, fill="#f0b400", width=0)
    canvas.bind("<Button-1>", lambda e: canvas.create_oval(e.x - 4, e.y - 4, e.x + 4, e.y + 4,
                                                            fill="#40c0ff", width=0))
    entry = tkinter.Entry(root, font=("DejaVu Sans", 14), width=36)
    entry.insert(0, "click here and type")
    entry.pack(pady=8)

    def tick() -> None:
        now = time.time()
        canvas.itemconfigure(clock, text=time.strftime("%H:%M:%S", time.localtime(now)))
        x = (now * 200) % (2 * (width - bar))  # 200 px/s, back and forth
        x = x if x < width - bar else 2 * (width - bar) - x
        canvas.coords(slider, x, 160, x + bar, 180)
        root.after(40, tick)

    tick()
    root.mainloop()


def start_scene(display: str) -> subprocess.Popen[bytes] | None:
    try:
        import tkinter  # noqa: F401
    except ImportError:
        print("demo: tkinter is not installed; the screen shows the test pattern only")
        return None
    return subprocess.Popen([sys.executable, __file__, "--scene"],
                            env={**os.environ, "DISPLAY": display}, stdin=subprocess.DEVNULL,
                            start_new_session=True)


# --- main -----------------------------------------------------------------------------------------


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scene:
        run_scene()
        return 0

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    passphrase = secrets.token_urlsafe(18)
    runner_env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        try:
            # A fresh secret, so no other local user can mint tokens for this server; playout
            # delay 0: Chrome shows each frame as it is decoded (docs/operations.md).
            server = stack.enter_context(LiveKitServer(api_secret=secrets.token_urlsafe(32),
                                                       playout_delay=(0, 0)))
            display = os.environ.get("DISPLAY")
            if not display:
                screen = stack.enter_context(Xvfb(*args.size))
                display = screen.display
                paint(display, QUADRANTS)
                scene = start_scene(display)
                if scene is not None:
                    stack.callback(_stop_process, scene)
                runner_env.update(start_sound(stack, stop))
            viewer = stack.enter_context(ViewerServer(port=args.viewer_port))
        except ComponentError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1

        python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
        runner = stack.enter_context(Runner(
            livekit_url=server.url, api_key=server.api_key, api_secret=server.api_secret,
            room=args.room, passphrase=passphrase, display=display, python=python, extra_env=runner_env))
        viewer_token = mint_token(server.api_key, server.api_secret, args.room,
                                  f"viewer-{secrets.token_hex(3)}")

        print_instructions(viewer.url, server.url, viewer_token, passphrase,
                           with_secrets=args.link_with_secrets)
        print(f"LiveKit server:  {server.url}  (log {server.log_path})")
        print(f"Screen:          DISPLAY={display}")
        print(f"Runner log:      {runner.log_path}")
        print("Ctrl-C stops everything.\n", flush=True)

        watch(runner, stop)
        print("\ndemo: stopping", flush=True)
    return 0


def start_sound(stack: contextlib.ExitStack, stop: threading.Event) -> dict[str, str]:
    """A private PulseAudio with a short beep every second, for the virtual screen's sound; the
    runner's environment to capture it (empty, and a note, without pulseaudio)."""
    from audiostack import PulseAudio, Tone

    try:
        pulse = stack.enter_context(PulseAudio())
    except ComponentError as exc:
        print(f"demo: no sound ({exc})", file=sys.stderr)
        return {}
    tone = Tone(pulse)
    stack.callback(tone.close)

    def beep() -> None:
        while not stop.wait(1.0):
            tone.play(880.0, 0.08)

    threading.Thread(target=beep, name="demo-beep", daemon=True).start()
    print(f"Sound:           a beep every second ({pulse.server})")
    return {"RUNNER_AUDIO__SERVER": pulse.server}


def print_instructions(viewer_url: str, livekit_url: str, token: str, passphrase: str, *,
                       with_secrets: bool) -> None:
    """How to open the viewer: a link without secrets and the two secrets to paste, or (opt-in)
    a link that carries them."""
    if with_secrets:
        print("\nOpen the viewer (it connects by itself):\n\n"
              f"  {viewer_link(viewer_url, livekit_url, token, passphrase)}\n\n"
              "WARNING: this link carries the token and the passphrase; your browser's history now\n"
              "keeps them. Without --link-with-secrets the link has none and you paste them.\n")
        return
    print(f"\nOpen the viewer:\n\n  {viewer_address(viewer_url, livekit_url)}\n\n"
          "then paste into the page's form and press Connect:\n\n"
          f"  Token:       {token}\n"
          f"  Passphrase:  {passphrase}\n\n"
          "(Neither is in the link: a browser keeps every address it opens in its history.)\n")


def watch(runner: Runner, stop: threading.Event) -> None:
    """Report the runner's progress until asked to stop; the rest keeps running if it dies."""
    published = False
    while not stop.wait(POLL_S):
        if not published and any(e.get("event") == RUNNER_PUBLISHED_EVENT for e in runner.events()):
            published = True
            print("demo: the runner is publishing the screen", flush=True)
        if runner.returncode is not None:
            print(f"demo: the runner exited with code {runner.returncode}; last lines of "
                  f"{runner.log_path}:\n{tail(runner.log_path)}\n"
                  "demo: the server and viewer keep running; Ctrl-C to stop", flush=True)
            stop.wait()
            return


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
