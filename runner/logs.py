"""Logging with structlog: human-readable on a terminal, JSON lines otherwise.

Standard-library loggers (the LiveKit SDK logs through ``logging``) go through the same
processors, so one redaction step covers every line: any registered secret that shows up in
an event, a field or a foreign message is replaced by ``[redacted]`` before it is rendered.
Code in this project never logs secrets in the first place; redaction is the second wall.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import Processor

REDACTED = "[redacted]"
_MIN_SECRET_LEN = 4  # shorter "secrets" would shred ordinary words


class _Redactor:
    """Replaces registered secret strings anywhere in an event dict."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if len(s) >= _MIN_SECRET_LEN}
            # Longest first, so a secret containing another is replaced whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, (bytes, bytearray)):
            return self._scrub(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self._scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        for key in list(event.keys()):
            event[key] = self._scrub(event[key])
        return event


redactor = _Redactor()


def register_secrets(secrets: Iterable[str]) -> None:
    """Add values that must never be rendered in a log line (passphrases, tokens, API secrets)."""
    redactor.add(secrets)


def setup_logging(
    level: str = "info",
    fmt: Literal["auto", "console", "json"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard library root logger to write to ``stream``."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Exceptions become text first, so that the redactor sees tracebacks too.
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python warnings (PyJWT's key-length warning, deprecations) become log lines too, so a
    # JSON log stays one JSON object per line.
    logging.captureWarnings(True)
    # The SDK is chatty at debug and its lines are about WebRTC internals; keep them at
    # warning unless the user asked for debug.
    sdk_level = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("livekit", "livekit.rtc", "livekit.api"):
        logging.getLogger(name).setLevel(sdk_level)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
