"""Command line: a thin layer that fills the configuration and starts the service.

Exit status: 0 after a clean stop, 1 on a runtime failure (logged), 2 on bad configuration or
usage (one line on stderr naming the setting, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from runner.config import ConfigError, load_settings

EXIT_USAGE = 2

# flag -> (section, key); every flag has a TOML key and a RUNNER_SECTION__KEY variable too.
FLAGS: dict[str, tuple[str, str, type]] = {
    "--livekit-url": ("livekit", "url", str),
    "--room": ("livekit", "room", str),
    "--identity": ("livekit", "identity", str),
    "--display": ("capture", "display", str),
    "--monitor": ("capture", "monitor", int),
    "--fps": ("capture", "fps", float),
    "--bitrate": ("encoder", "bitrate", int),
    "--frame-engine": ("e2ee", "frame_engine", str),
    "--key-index": ("e2ee", "key_index", int),
    "--log-level": ("log", "level", str),
    "--log-format": ("log", "format", str),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: usage error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="desktop-runner",
        description="Share this X11 screen to a LiveKit room, end-to-end encrypted.",
        epilog="Secrets (livekit.api_secret, livekit.token, e2ee.passphrase) are read from the "
        "TOML file or RUNNER_* environment variables, or from files named by their *_file keys; "
        "never from flags, which other users can read in the process list.",
    )
    parser.add_argument(
        "command", nargs="?", choices=["run", "check", "passphrase"], default="run",
        help="run: share the screen (default); check: test configuration, display, encoder, E2EE "
        "and the LiveKit server, one PASS/FAIL line each, exit 0 when all pass; passphrase: print "
        "a random passphrase for e2ee.passphrase (192 bits) and exit",
    )
    parser.add_argument("--config", type=Path, metavar="PATH", help="TOML configuration file (or $RUNNER_CONFIG_FILE)")
    for flag, (section, key, kind) in FLAGS.items():
        parser.add_argument(flag, type=kind, dest=f"{section}.{key}", metavar=key.upper(), help=f"sets {section}.{key}")
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, dict[str, Any]] = {}
    for section, key, _ in FLAGS.values():
        value = getattr(args, f"{section}.{key}")
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "passphrase":  # needs no configuration
        from runner.e2ee.passphrase import generate_passphrase

        print(generate_passphrase())
        return 0
    overrides = overrides_from(args)
    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        print(f"desktop-runner: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from runner.logs import register_secrets, setup_logging

    setup_logging(settings.log.level, settings.log.format)
    register_secrets(settings.secrets())
    if args.command == "check":
        from runner.check import run_checks

        return run_checks(settings)

    from runner.service import run_service

    code = run_service(args.config, overrides, settings)
    _exit_without_finalizing(code)
    return code  # not reached


def _exit_without_finalizing(code: int) -> None:
    """End the process now, skipping interpreter finalization.

    The LiveKit SDK's native threads can still deliver an event through their ctypes callback
    while Python tears itself down; the Rust side then panics in a function that cannot unwind
    and the process dies with SIGABRT after a clean stop (seen in about 1 stop in 10 with a
    viewer connected). Everything worth keeping is done by now: the room is left, input
    released, the last log line written; so flush and leave.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
