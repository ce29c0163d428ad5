"""Logging: JSON off a terminal, and secrets redacted from every line, whatever its origin."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from runner.logs import REDACTED, get_logger, redactor, register_secrets, setup_logging

SECRET = "correct-horse-battery-staple"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    redactor.clear()
    setup_logging("debug", "json", out)
    register_secrets([SECRET])
    yield out
    redactor.clear()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_carries_event_and_fields(stream: io.StringIO) -> None:
    get_logger("t").info("status", fps=30.0, subscribers=2)
    (line,) = lines(stream)
    assert (line["event"], line["fps"], line["subscribers"], line["level"]) == ("status", 30.0, 2, "info")


def test_secret_in_a_field_is_redacted(stream: io.StringIO) -> None:
    get_logger("t").warning("connect_failed", error=f"bad url ws://h/rtc?access_token={SECRET}&x=1")
    (line,) = lines(stream)
    assert line["error"] == f"bad url ws://h/rtc?access_token={REDACTED}&x=1"


def test_secret_in_nested_values_and_event_is_redacted(stream: io.StringIO) -> None:
    get_logger("t").info(f"event {SECRET}", nested={"k": [SECRET, 1]})
    (line,) = lines(stream)
    assert (line["event"], line["nested"]) == (f"event {REDACTED}", {"k": [REDACTED, 1]})


def test_secret_in_a_traceback_is_redacted(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError:
        get_logger("t").exception("task_failed")
    text = stream.getvalue()
    assert SECRET not in text
    assert f"RuntimeError: boom {REDACTED}" in lines(stream)[0]["exception"]


def test_secret_in_a_standard_library_record_is_redacted(stream: io.StringIO) -> None:
    logging.getLogger("livekit").warning("signal url %s", f"wss://x?access_token={SECRET}")
    (line,) = lines(stream)
    assert line["event"] == f"signal url wss://x?access_token={REDACTED}"
    assert line["logger"] == "livekit"


def test_console_format_is_not_json() -> None:
    out = io.StringIO()
    setup_logging("info", "console", out)
    get_logger("t").info("hello", fps=1)
    text = out.getvalue()
    assert "hello" in text and "fps=1" in text and not text.startswith("{")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    setup_logging("info", "auto", out)
    get_logger("t").info("hello")
    assert json.loads(out.getvalue())["event"] == "hello"
